//! The rule (README.md, "The rule"): at checkout, the lines of one tracked variant may take at
//! most `free` plus the units of the holds those lines name, each hold id counted once.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::input::{Input, Line, Text};
use crate::message::{item_name, line_quantity_target, units_left};
use crate::stock::Stock;

/// The steps the rule runs at. CART_INTERACTION (and no step) pass: the storefront's adds go
/// through the App Proxy first, and blocking there would refuse the add that takes the hold.
const CHECKED_STEPS: [&str; 2] = ["CHECKOUT_INTERACTION", "CHECKOUT_COMPLETION"];

/// Output bytes the errors may take: Shopify's limit is 20,000 for a cart of up to 200 lines;
/// past this the remaining errors are left out (one error already blocks the checkout).
const OUTPUT_BUDGET: usize = 18_000;

/// Shopify keeps 1,000 bytes of a run's logs.
const LOG_BUDGET: usize = 1_000;

/// `group_of` for a line that is not checked.
const NONE: usize = usize::MAX;

#[derive(Serialize)]
struct CartValidationsGenerateRunResult {
    operations: Vec<Operation>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    validation_add: ValidationAddOperation,
}

#[derive(Serialize)]
struct ValidationAddOperation {
    errors: Vec<ValidationError>,
}

#[derive(Serialize)]
struct ValidationError {
    message: String,
    target: String,
}

/// The lines of one variant, checked together.
struct Group<'i, 'a> {
    /// The variant's id; None: a line of its own.
    id: Option<&'i str>,
    /// Its first line (for the variant's name).
    line: &'i Line<'a>,
    free: i64,
    holds: &'i [(Cow<'a, str>, i64)],
    quantity: i64,
    /// Units of the distinct holds the lines name.
    held: i64,
    /// Which entries of `holds` are counted (each id once): the first, then any others.
    counted: Option<usize>,
    counted_more: Vec<usize>,
    /// The error message, once the group is found over its units.
    message: Option<String>,
}

impl<'i, 'a> Group<'i, 'a> {
    /// Count the hold a line names, once per group.
    fn name_hold(&mut self, id: &str) {
        let entry = match self
            .holds
            .iter()
            .position(|(key, _)| key.eq_ignore_ascii_case(id))
        {
            Some(entry) => entry,
            None => return, // another cart's, expired, or made up: it holds nothing for us
        };
        if self.counted == Some(entry) || self.counted_more.contains(&entry) {
            return;
        }
        if self.counted.is_none() {
            self.counted = Some(entry);
        } else {
            self.counted_more.push(entry);
        }
        self.held = self.held.saturating_add(self.holds[entry].1);
    }
}

/// Log lines for stderr, cut at Shopify's limit.
struct Log(String);

impl Log {
    fn line(&mut self, text: &str) {
        if self.0.len() + text.len() < LOG_BUDGET {
            self.0.push_str(text);
            self.0.push('\n');
        }
    }
}

/// The function: the input JSON in, the result JSON out; Err only for input that is not the
/// input query's shape (writing the output to memory cannot fail).
pub fn run(raw: &[u8]) -> Result<Vec<u8>, InputError> {
    // UTF-8 checked once for the whole input (a word at a time where it is ASCII), so that
    // serde_json reads from a str and does not check every string again.
    let text = std::str::from_utf8(raw).map_err(InputError::Utf8)?;
    let input: Input = serde_json::from_str(text).map_err(InputError::Json)?;
    let mut log = Log(String::new());
    let errors = validate(&input, &mut log);
    let operations = if errors.is_empty() {
        Vec::new()
    } else {
        vec![Operation {
            validation_add: ValidationAddOperation { errors },
        }]
    };
    if !log.0.is_empty() {
        eprint!("{}", log.0);
    }
    let mut output = Vec::with_capacity(OUTPUT_BUDGET + 2_048);
    serde_json::to_writer(
        &mut output,
        &CartValidationsGenerateRunResult { operations },
    )
    .map_err(InputError::Json)?;
    Ok(output)
}

/// Input that is not the input query's result.
pub enum InputError {
    Utf8(std::str::Utf8Error),
    Json(serde_json::Error),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            InputError::Utf8(error) => write!(f, "not UTF-8: {error}"),
            InputError::Json(error) => write!(f, "{error}"),
        }
    }
}

fn validate(input: &Input, log: &mut Log) -> Vec<ValidationError> {
    let step = input
        .buyer_journey
        .as_ref()
        .and_then(|journey| journey.step.as_ref())
        .map(Text::as_str);
    if !step.map_or(false, |step| CHECKED_STEPS.contains(&step)) {
        return Vec::new();
    }

    let lines = &input.cart.lines;
    let mut groups: Vec<Group> = Vec::new();
    // Each line's group, NONE for a line that is not checked.
    let mut group_of: Vec<usize> = vec![NONE; lines.len()];
    // Variant ids by a hash: comparing the ids themselves ("gid://shopify/ProductVariant/…",
    // one long common prefix) in a map costs more than the rest of the rule.
    let mut by_variant: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        // No metafield: a variant the service does not track, or a custom product.
        let (variant, metafield) = match line.variant() {
            Some(variant) => match &variant.metafield {
                Some(metafield) => (variant, metafield),
                None => continue,
            },
            None => continue,
        };
        let variant_id = variant.id.as_ref().map(Text::as_str);
        let key = variant_id.map(fnv1a);
        let found = match (key, variant_id) {
            (Some(key), Some(id)) => by_variant.get(&key).and_then(|&group| {
                if groups[group].id == Some(id) {
                    Some(group)
                } else {
                    // Two ids with one hash: find the group by its id.
                    groups.iter().position(|group| group.id == Some(id))
                }
            }),
            _ => None,
        };
        let group = match found {
            Some(group) => group,
            None => {
                let (free, holds) = match &metafield.json_value {
                    Some(Stock::Valid { free, holds }) => (*free, holds.as_slice()),
                    // The documented safe outcome: a malformed value checks nothing (README.md).
                    Some(Stock::Malformed(why)) => {
                        log.line(&format!(
                            "bazico: malformed stock metafield on {} (line {index}): {why}; not checked",
                            variant_id.unwrap_or("a variant")
                        ));
                        continue;
                    }
                    None => {
                        log.line(&format!(
                            "bazico: stock metafield without jsonValue on {} (line {index}); not checked",
                            variant_id.unwrap_or("a variant")
                        ));
                        continue;
                    }
                };
                if let Some(key) = key {
                    by_variant.entry(key).or_insert(groups.len());
                }
                groups.push(Group {
                    id: variant_id,
                    line,
                    free,
                    holds,
                    quantity: 0,
                    held: 0,
                    counted: None,
                    counted_more: Vec::new(),
                    message: None,
                });
                groups.len() - 1
            }
        };
        group_of[index] = group;
        let group = &mut groups[group];
        group.quantity = group.quantity.saturating_add(line.quantity);
        if let Some(id) = line.hold_id() {
            group.name_hold(id);
        }
    }

    for group in &mut groups {
        let allowed = group.free.saturating_add(group.held).max(0);
        if group.quantity > allowed {
            group.message = Some(units_left(allowed, &name_of(group.line)));
        }
    }

    // Every line of a refused variant, in line order, while they fit the output.
    let mut errors = Vec::new();
    let mut size = 0;
    let mut left_out = 0;
    for (index, &group) in group_of.iter().enumerate() {
        let message = match groups.get(group).and_then(|group| group.message.as_ref()) {
            Some(message) => message,
            None => continue,
        };
        let target = line_quantity_target(index);
        // {"message":"…","target":"…"}, and a comma; quotes in titles are escaped, a few bytes.
        size += message.len() + target.len() + 32;
        if size > OUTPUT_BUDGET && !errors.is_empty() {
            left_out += 1;
            continue;
        }
        errors.push(ValidationError {
            message: message.clone(),
            target,
        });
    }
    if left_out > 0 {
        log.line(&format!(
            "bazico: {left_out} of {} line errors left out (output limit)",
            left_out + errors.len()
        ));
    }
    errors
}

/// The variant's name for the buyer: "Camiseta Azul / M".
fn name_of(line: &Line) -> String {
    let variant = line.variant();
    item_name(
        variant
            .and_then(|variant| variant.product.as_ref())
            .and_then(|product| product.title.as_ref())
            .map(Text::as_str),
        variant
            .and_then(|variant| variant.title.as_ref())
            .map(Text::as_str),
    )
}

/// FNV-1a, 64 bits.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
