//! The buyer's message, in Brazilian Portuguese (the store's language).
//!
//! Built with `push_str` rather than `format!`: core::fmt costs a few thousand instructions a
//! call, and a 200-line cart may need 200 messages and targets.

/// "Camiseta Azul / M": the product's title and the variant's, without Shopify's
/// "Default Title" of a product that has one variant.
pub fn item_name(product_title: Option<&str>, variant_title: Option<&str>) -> String {
    let product = product_title.map(str::trim).filter(|t| !t.is_empty());
    let variant = variant_title
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "Default Title");
    match (product, variant) {
        (Some(product), Some(variant)) => concat(&[product, " / ", variant]),
        (Some(title), None) | (None, Some(title)) => title.to_owned(),
        (None, None) => "este produto".to_owned(),
    }
}

/// How many units the cart may have of `name`: 0 is sold out, 1 is singular.
pub fn units_left(units: i64, name: &str) -> String {
    match units {
        i64::MIN..=0 => concat(&["Esgotado: ", name, "."]),
        1 => concat(&["Só resta 1 unidade disponível de ", name, "."]),
        _ => concat(&[
            "Só restam ",
            &decimal(units, true),
            " unidades disponíveis de ",
            name,
            ".",
        ]),
    }
}

/// The error target of the line at `index`: `$.cart.lines[3].quantity`.
pub fn line_quantity_target(index: usize) -> String {
    concat(&[
        "$.cart.lines[",
        &decimal(i64::try_from(index).unwrap_or(i64::MAX), false),
        "].quantity",
    ])
}

fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// `n` in decimal; with `grouped`, thousands separated by a dot as pt-BR writes them
/// (12.345).
fn decimal(n: i64, grouped: bool) -> String {
    let mut digits = Vec::with_capacity(26);
    let mut rest = n.unsigned_abs();
    loop {
        if grouped && digits.len() % 4 == 3 {
            digits.push(b'.');
        }
        digits.push(b'0' + (rest % 10) as u8);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}
