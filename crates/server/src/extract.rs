//! Extractors that reject bad input with a [`Problem`] (`application/problem+json`, 4xx) naming
//! where the problem is, instead of axum's `text/plain` rejections:
//!
//! - [`Json<T>`]: a JSON body (`Content-Type: application/json` or `application/*+json`). A
//!   malformed document is 400 `bad_request` with its line and column; a document of the wrong
//!   shape (a missing field, a wrong type, an unknown enum value or field) is 400
//!   `invalid_input` with the JSON path in `at` (`$.mutations[2].percent`). As a response it
//!   is plain `axum::Json`. `Option<Json<T>>` accepts an empty body (or `null`) as `None`.
//! - [`Query<T>`]: the query string through `serde_urlencoded`; 400 `invalid_input` with the
//!   parameter's name in `at`. [`query_pairs`] gives the raw pairs for repeatable parameters.
//! - [`Path<T>`]: path parameters; 400 `invalid_input`.
//!
//! A body over the server's limit is 413 `too_large`; a body that is not JSON by its
//! content type is 415 `unsupported_media_type`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::Problem;

/// A JSON request body (or response) that rejects with a [`Problem`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// Query parameters that reject with a [`Problem`] naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// Path parameters that reject with a [`Problem`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let declared_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_json_content_type(v.to_str().unwrap_or("")));
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            // No body at all and no JSON content type: the request sends no JSON (415), as a
            // body of another type would; declared JSON but empty is a malformed document.
            if !declared_json {
                return Err(not_json());
            }
            return Err(Problem::bad_request(
                "bad_request",
                "the request needs a JSON body",
            ));
        }
        parse_json(&bytes).map(Json)
    }
}

impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Problem> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(parse_json::<Option<T>>(&bytes)?.map(Json))
    }
}

/// Checks the content type and reads the whole body (within the server's limit).
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| is_json_content_type(v.to_str().unwrap_or("")));
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e| body_problem(e.status(), e.body_text()))?;
    let blank = bytes.iter().all(u8::is_ascii_whitespace);
    if !blank && json_type != Some(true) {
        return Err(not_json());
    }
    Ok(bytes)
}

/// 415: the body is not declared JSON.
fn not_json() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the body must be JSON: send `Content-Type: application/json`",
    )
    .at("Content-Type")
}

/// The problem for a body that could not be read.
pub fn body_problem(status: StatusCode, text: String) -> Problem {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            status,
            "too_large",
            "the request body is larger than the server accepts",
        )
    } else {
        Problem::bad_request("bad_request", format!("could not read the body: {text}"))
    }
}

/// True for `application/json`, `application/*+json`, with or without parameters.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON document into `T`, naming the JSON path of a document of the wrong shape.
/// A document whose top level is a struct must be a JSON object (serde also reads a struct
/// from an array of its fields in order, which no client means).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(ObjectsOnly(&mut de))
        .map_err(|e| json_problem(&e, "$"))?;
    de.end()
        .map_err(|e| Problem::bad_request("bad_request", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Converts a JSON value into `T`; `prefix` is the JSON path of `value` in the request.
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| json_problem(&e, prefix))
}

/// A deserializer that reads a struct only from a map, never from a sequence.
struct ObjectsOnly<D>(D);

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
                self.0.$method(v)
            }
        )*
    };
}

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_option<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_option(SomeObjects(v))
    }
    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, v)
    }
    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, v)
    }
    fn deserialize_tuple<V: serde::de::Visitor<'de>>(
        self,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, v)
    }
    fn deserialize_tuple_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, v)
    }
    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(v)
    }
    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, v)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The visitor of an `Option` whose `Some` is read through [`ObjectsOnly`].
struct SomeObjects<V>(V);

impl<'de, V: serde::de::Visitor<'de>> serde::de::Visitor<'de> for SomeObjects<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.expecting(f)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.0.visit_some(ObjectsOnly(d))
    }
}

fn json_problem(e: &serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> Problem {
    let inner = e.inner();
    let mut at = json_path(prefix, e.path());
    if inner.is_syntax() || inner.is_eof() {
        // Malformed: `at` names the value being read where it broke, when inside the document.
        let p = Problem::bad_request("bad_request", format!("malformed JSON: {inner}"));
        return if at == prefix { p } else { p.at(at) };
    }
    // A missing field is reported at the object that lacks it: name the field itself.
    let text = inner.to_string();
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
    {
        at = format!("{at}.{field}");
    }
    Problem::bad_request("invalid_input", format!("{at}: {inner}")).at(at)
}

/// `$.a.b[3]["odd key"]`.
fn json_path(prefix: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = prefix.to_string();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                let plain =
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if plain {
                    out.push('.');
                    out.push_str(key);
                } else {
                    out.push_str(&format!("[{key:?}]"));
                }
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// Whole numbers as JSON Schema's `integer` has them: `3` and `3.0` alike (serde's integers
/// refuse `3.0`, which a schema-valid client may send). Use with
/// `#[serde(deserialize_with = "crate::extract::int::u64")]`.
pub mod int {
    use serde::de::{Deserialize, Deserializer, Error};

    /// The largest whole number accepted: the document's `int64`.
    pub const INT64_MAX: u64 = i64::MAX as u64;

    /// `n` as a whole number from 0 to `max`.
    pub fn of<E: Error>(n: &serde_json::Number, max: u64) -> Result<u64, E> {
        let v = match n.as_u64() {
            Some(v) => Some(v),
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=INT64_MAX as f64).contains(f))
                .map(|f| f as u64),
        };
        v.filter(|v| *v <= max)
            .ok_or_else(|| E::custom(format!("{n} is not a whole number from 0 to {max}")))
    }

    /// A whole number from 0 to `int64`'s maximum.
    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        of(&serde_json::Number::deserialize(d)?, INT64_MAX)
    }

    /// An optional [`u64`](prim@u64) (`null`: none).
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(|n| of(&n, INT64_MAX))
            .transpose()
    }

    /// A whole number from 0 to `u32::MAX`.
    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let v = of(&serde_json::Number::deserialize(d)?, u32::MAX.into())?;
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    }

    /// An optional [`u32`](prim@u32) (`null`: none).
    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(|n| of(&n, u32::MAX.into()).map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
            .transpose()
    }

    /// A whole number from 0 to 255 (the route checks its own narrower range).
    pub fn u8<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        let v = of(&serde_json::Number::deserialize(d)?, u8::MAX.into())?;
        Ok(u8::try_from(v).unwrap_or(u8::MAX))
    }

    /// An optional [`u8`](prim@u8) (`null`: none).
    pub fn opt_u8<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(|n| of(&n, u8::MAX.into()).map(|v| u8::try_from(v).unwrap_or(u8::MAX)))
            .transpose()
    }
}

/// The query string's `(name, value)` pairs, percent-decoded, in order (repeated names kept).
pub fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let name = e.path().to_string();
                let p = Problem::bad_request("invalid_input", format!("query: {}", e.inner()));
                if name == "." { p } else { p.at(name) }
            })
    }
}

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(Problem::bad_request(
                "invalid_input",
                format!("path: {}", e.body_text()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        n: u8,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        list: Vec<Inner>,
    }

    #[test]
    fn names_the_json_path_of_a_wrong_type() {
        let p = parse_json::<Outer>(br#"{"list": [{"n": 1}, {"n": 300}]}"#).unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.code, "invalid_input");
        assert_eq!(p.at.as_deref(), Some("$.list[1].n"), "{p:?}");
    }

    #[test]
    fn a_struct_is_never_read_from_an_array() {
        let p = parse_json::<Inner>(b"[1]").unwrap_err();
        assert_eq!(p.code, "invalid_input", "{p:?}");
        assert_eq!(parse_json::<Inner>(br#"{"n": 1}"#).unwrap().n, 1);
        assert_eq!(
            parse_json::<Option<Inner>>(b"null").unwrap().map(|i| i.n),
            None
        );
        assert!(parse_json::<Option<Inner>>(b"[1]").is_err());
        assert_eq!(
            parse_json::<Option<Inner>>(br#"{"n": 2}"#)
                .unwrap()
                .map(|i| i.n),
            Some(2)
        );
        assert_eq!(parse_json::<Vec<u8>>(b"[1, 2]").unwrap(), [1, 2]);
    }

    #[test]
    fn malformed_json_is_bad_request() {
        let p = parse_json::<Outer>(br#"{"list": [}"#).unwrap_err();
        assert_eq!(p.code, "bad_request");
        let p = parse_json::<Outer>(br#"{"list": []} x"#).unwrap_err();
        assert_eq!(p.code, "bad_request");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type(""));
    }
}
