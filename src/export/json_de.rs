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

/// Deserializes a `T` from a node.
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
        assert!(e.to_string().contains("u8"), "{e}");
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
