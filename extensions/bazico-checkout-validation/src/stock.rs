//! The stock metafield's `jsonValue` (README.md, "The metafield"):
//! `{"v":1,"free":N,"h":{"<hold id>":units,...}}`.
//!
//! Read by hand-written serde visitors that accept any JSON: whatever is not that shape becomes
//! `Stock::Malformed` with the reason, so a publishing bug on one variant never fails the run
//! (nor the check of the cart's other lines). Unknown keys are ignored (the publisher may add
//! fields without a new version); a missing `h` is no holds.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::input::Text;

/// The only format version this function reads.
pub const VERSION: i64 = 1;

pub enum Stock<'a> {
    Valid {
        /// The ledger's available units: on hand - reserved - committed (may be negative).
        free: i64,
        /// Live holds' units by the id their cart line carries.
        holds: Vec<(Cow<'a, str>, i64)>,
    },
    Malformed(&'static str),
}

/// Consume whatever a map or a list holds.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Every JSON kind a visitor does not want becomes `$other`, after consuming it.
macro_rules! anything_else {
    ($value:ty, $other:expr) => {
        fn visit_bool<E: Error>(self, _: bool) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_str<E: Error>(self, _: &str) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_unit<E: Error>(self) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_none<E: Error>(self) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<$value, A::Error> {
            drain_seq(seq)?;
            Ok($other)
        }
    };
}

/// A JSON integer that fits an i64, or anything else.
enum Int {
    Value(i64),
    Other,
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl<'de> Visitor<'de> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int::Value(v))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Int, E> {
                Ok(i64::try_from(v).map_or(Int::Other, Int::Value))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Int, A::Error> {
                drain_map(map)?;
                Ok(Int::Other)
            }
            anything_else!(Int, Int::Other);
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// `h`: an object of non-negative integers, or not.
enum Holds<'a> {
    Valid(Vec<(Cow<'a, str>, i64)>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Holds<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HoldsVisitor;
        impl<'de> Visitor<'de> for HoldsVisitor {
            type Value = Holds<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Holds<'de>, A::Error> {
                let mut holds = Vec::with_capacity(map.size_hint().unwrap_or(0));
                let mut valid = true;
                while let Some(Text(id)) = map.next_key::<Text<'de>>()? {
                    match map.next_value::<Int>()? {
                        Int::Value(units) if units >= 0 => holds.push((id, units)),
                        _ => valid = false,
                    }
                }
                Ok(if valid {
                    Holds::Valid(holds)
                } else {
                    Holds::Other
                })
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<Holds<'de>, E> {
                Ok(Holds::Other)
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<Holds<'de>, E> {
                Ok(Holds::Other)
            }
            anything_else!(Holds<'de>, Holds::Other);
        }
        deserializer.deserialize_any(HoldsVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Stock<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StockVisitor;
        impl<'de> Visitor<'de> for StockVisitor {
            type Value = Stock<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Stock<'de>, A::Error> {
                let mut version = None;
                let mut free = None;
                let mut holds = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.as_str() {
                        "v" => version = Some(map.next_value::<Int>()?),
                        "free" => free = Some(map.next_value::<Int>()?),
                        "h" => holds = Some(map.next_value::<Holds<'de>>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(match (version, free, holds) {
                    (None, _, _) => Stock::Malformed("no \"v\""),
                    (Some(Int::Value(VERSION)), Some(Int::Value(free)), holds) => match holds {
                        None => Stock::Valid {
                            free,
                            holds: Vec::new(),
                        },
                        Some(Holds::Valid(holds)) => Stock::Valid { free, holds },
                        Some(Holds::Other) => {
                            Stock::Malformed("\"h\" is not an object of units >= 0")
                        }
                    },
                    (Some(Int::Value(VERSION)), None, _) => Stock::Malformed("no \"free\""),
                    (Some(Int::Value(VERSION)), Some(Int::Other), _) => {
                        Stock::Malformed("\"free\" is not an integer")
                    }
                    (Some(_), _, _) => Stock::Malformed("unknown \"v\""),
                })
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<Stock<'de>, E> {
                Ok(Stock::Malformed("not an object"))
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<Stock<'de>, E> {
                Ok(Stock::Malformed("not an object"))
            }
            anything_else!(Stock<'de>, Stock::Malformed("not an object"));
        }
        deserializer.deserialize_any(StockVisitor)
    }
}
