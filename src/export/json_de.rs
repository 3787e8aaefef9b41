//! Deserializing typed values (events, progress, outputs, ...) straight from the parsed
//! [`Json`] tree, without first building a `serde_json::Value` (which would copy every string
//! and hash every key a second time).

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};

use super::parse::Json;

/// A deserialization error: its message only (the caller adds the JSON path).
#[derive(Debug)]
pub(crate) struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
    // NOTE: serde's default wording names Rust types ("expected struct Progress", "expected
    // u8"); these say the same in terms of the JSON document.
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError(format!(
            "expected {}, found {}",
            expected(exp),
            found(&unexp)
        ))
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError(format!(
            "expected {}, found {}",
            expected(exp),
            found(&unexp)
        ))
    }
    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError(format!("expected {}, found {len} item(s)", expected(exp)))
    }
    fn unknown_variant(variant: &str, known: &'static [&'static str]) -> Self {
        DeError(format!(
            "unknown variant {:?} (expected one of: {})",
            crate::task::limits::excerpt(variant),
            known.join(", ")
        ))
    }
    fn unknown_field(field: &str, known: &'static [&'static str]) -> Self {
        DeError(format!(
            "unknown field {:?} (known fields: {})",
            crate::task::limits::excerpt(field),
            known.join(", ")
        ))
    }
    fn missing_field(field: &'static str) -> Self {
        DeError(format!("missing field {field:?}"))
    }
    fn duplicate_field(field: &'static str) -> Self {
        DeError(format!("duplicate field {field:?}"))
    }
}

/// What serde expected, in JSON terms.
fn expected(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    let range = |max: u128| format!("a whole number from 0 to {max}");
    match text.as_str() {
        "u8" => range(u8::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u32" => range(u32::MAX.into()),
        "u64" | "usize" => range(u64::MAX.into()),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        "a map" => "an object".into(),
        "option" => "a value or null".into(),
        "a boolean" | "a string" => text,
        t if t.starts_with("struct ") || t.starts_with("internally tagged enum") => {
            "an object".into()
        }
        t if t.starts_with("enum ") || t.starts_with("variant identifier") => "a name".into(),
        t if t.starts_with("tuple") => "an array".into(),
        _ => text,
    }
}

/// What was found, in JSON terms.
fn found(unexp: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match unexp {
        U::Bool(_) => "a boolean".into(),
        U::Unsigned(n) => n.to_string(),
        U::Signed(n) => n.to_string(),
        U::Float(f) => f.to_string(),
        U::Char(c) => format!("the string {:?}", c.to_string()),
        U::Str(s) => format!("the string {:?}", crate::task::limits::excerpt(s)),
        U::Unit | U::Option => "null".into(),
        U::Seq => "an array".into(),
        U::Map => "an object".into(),
        other => other.to_string(),
    }
}

/// A deserializer over a node of the tree, or over an object given as its entries.
pub(crate) enum JsonDe<'a> {
    /// One node.
    Node(&'a Json<'a>),
    /// An object's entries (used to add the `kind` tag to an event's details).
    Entries(Vec<(&'a str, &'a Json<'a>)>),
}

impl<'de> IntoDeserializer<'de, DeError> for JsonDe<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn visit_entries<'de, 'a, V: Visitor<'de>>(
    entries: impl Iterator<Item = (&'a str, &'a Json<'a>)>,
    visitor: V,
) -> Result<V::Value, DeError> {
    let mut map = MapDeserializer::new(entries.map(|(k, v)| (k, JsonDe::Node(v))));
    let out = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(out)
}

impl<'de> de::Deserializer<'de> for JsonDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = match self {
            JsonDe::Entries(entries) => return visit_entries(entries.into_iter(), visitor),
            JsonDe::Node(node) => node,
        };
        match node {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(*b),
            Json::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Json::String(s) => visitor.visit_str(s),
            Json::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(JsonDe::Node));
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Json::Object(entries) => visit_entries(entries.iter().map(|(k, v)| (&**k, v)), visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            JsonDe::Node(Json::Null) => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self {
            JsonDe::Node(Json::String(s)) => visitor.visit_enum((&**s).into_deserializer()),
            JsonDe::Node(other) => Err(de::Error::custom(format!(
                "expected a name, found {}",
                other.type_name()
            ))),
            JsonDe::Entries(_) => Err(de::Error::custom("expected a name, found an object")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Deserializes a `T` from a node (import itself goes through `serde_path_to_error`).
#[cfg(test)]
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(node: &Json) -> Result<T, DeError> {
    T::deserialize(JsonDe::Node(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{EventKind, Output, Progress};

    fn tree(text: &str) -> Json<'_> {
        super::super::parse::parse_tree(text.as_bytes()).expect("should parse")
    }

    #[test]
    fn typed_values_read_like_serde_json() {
        let p: Progress = from_json(&tree(r#"{"percent": 40, "step": "s"}"#)).expect("progress");
        assert_eq!(
            (p.percent, p.step.as_deref(), p.message),
            (40, Some("s"), None)
        );
        let o: Vec<Output> = from_json(&tree(
            r#"[{"kind": "stdout", "content": "c", "at": "2026-01-01T00:00:00Z", "path": null}]"#,
        ))
        .expect("outputs");
        assert_eq!(o.len(), 1);
        let e = from_json::<Progress>(&tree(r#"{"percent": 300}"#)).expect_err("out of range");
        assert_eq!(
            e.to_string(),
            "expected a whole number from 0 to 255, found 300"
        );
        let e = from_json::<Progress>(&tree("true")).expect_err("not an object");
        assert_eq!(e.to_string(), "expected an object, found a boolean");
        let v: serde_json::Value =
            from_json(&tree(r#"{"a": [1, -2, 0.5, null, true]}"#)).expect("value");
        assert_eq!(v, serde_json::json!({"a": [1, -2, 0.5, null, true]}));
    }

    #[test]
    fn internally_tagged_events_read_from_entries() {
        let details = tree(r#"{"percent": 5, "step": null, "message": "m"}"#);
        let kind = Json::String("progress".into());
        let Json::Object(entries) = &details else {
            panic!("an object")
        };
        let mut all = vec![("kind", &kind)];
        all.extend(entries.iter().map(|(k, v)| (&**k, v)));
        let e: EventKind = serde::Deserialize::deserialize(JsonDe::Entries(all)).expect("event");
        assert_eq!(
            e,
            EventKind::Progress {
                percent: 5,
                step: None,
                message: Some("m".into())
            }
        );
    }
}
