//! The input query's result (cart_validations_generate_run.graphql), read with serde.
//!
//! Strings borrow from the input where they have no escapes. Fields the query does not ask for
//! are ignored, and every field is optional here except the cart's lines: a line whose variant
//! lacks what the rule needs is not checked, it never fails the whole run.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, Visitor};
use serde::Deserialize as DeriveDeserialize;

use crate::stock::Stock;

/// A JSON string, borrowed from the input when it has no escapes.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(DeriveDeserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input<'a> {
    #[serde(borrow)]
    pub buyer_journey: Option<BuyerJourney<'a>>,
    #[serde(borrow)]
    pub cart: Cart<'a>,
}

#[derive(DeriveDeserialize)]
pub struct BuyerJourney<'a> {
    #[serde(borrow)]
    pub step: Option<Text<'a>>,
}

#[derive(DeriveDeserialize)]
pub struct Cart<'a> {
    #[serde(borrow)]
    pub lines: Vec<Line<'a>>,
}

#[derive(DeriveDeserialize)]
pub struct Line<'a> {
    pub quantity: i64,
    /// `attribute(key: "_bazico_hold")`: the hold id the storefront put on the line.
    #[serde(borrow)]
    pub attribute: Option<Attribute<'a>>,
    #[serde(borrow)]
    pub merchandise: Option<Merchandise<'a>>,
}

#[derive(DeriveDeserialize)]
pub struct Attribute<'a> {
    #[serde(borrow)]
    pub value: Option<Text<'a>>,
}

/// A `ProductVariant`; a `CustomProduct` has none of these fields (`{}`).
#[derive(DeriveDeserialize)]
pub struct Merchandise<'a> {
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    #[serde(borrow)]
    pub title: Option<Text<'a>>,
    #[serde(borrow)]
    pub product: Option<Product<'a>>,
    /// `metafield(namespace: "$app:bazico", key: "stock")`; null when the variant is untracked.
    #[serde(borrow)]
    pub metafield: Option<Metafield<'a>>,
}

#[derive(DeriveDeserialize)]
pub struct Product<'a> {
    #[serde(borrow)]
    pub title: Option<Text<'a>>,
}

#[derive(DeriveDeserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metafield<'a> {
    /// Read without failing: a malformed value is a `Stock::Malformed`, not an input error.
    #[serde(borrow)]
    pub json_value: Option<Stock<'a>>,
}

impl<'a> Line<'a> {
    /// The line's merchandise: a product variant's fields, or none of them.
    pub fn variant(&self) -> Option<&Merchandise<'a>> {
        self.merchandise.as_ref()
    }

    /// The hold id the line carries (`_bazico_hold`), trimmed; None when absent or blank.
    pub fn hold_id(&self) -> Option<&str> {
        let value = self.attribute.as_ref()?.value.as_ref()?.as_str().trim();
        if value.is_empty() {
            None
        } else {
            Some(value)
        }
    }
}
