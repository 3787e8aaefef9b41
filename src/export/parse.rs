//! Reading an import document: a JSON tree that keeps duplicate keys (serde_json's own maps
//! silently keep the last one) and refuses oversized strings before copying them, then
//! recognising which of the accepted layouts the document uses.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::validate::Problems;
use super::validated;
use super::{
    EXPORT_FORMAT, EXPORT_VERSION, IMPORT_BYTES_MAX, IMPORT_STRING_BYTES_MAX, ImportTask,
    ParsedImport, SourceFormat,
};
use crate::error::{Error, Result};

/// A parsed JSON value whose objects keep every key in order, duplicates included.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    /// Borrowed from the input unless it had escapes.
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The JSON type's name, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// Converts to a `serde_json::Value` (a duplicate key keeps its last value; duplicates are
    /// reported by validation before any conversion matters).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// The value of `key` in an object (the first one, when duplicated).
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn check_len<E: de::Error>(len: usize, what: &str) -> Result<(), E> {
    if len > IMPORT_STRING_BYTES_MAX {
        return Err(E::custom(format!(
            "{what} of {len} bytes is over the limit of {IMPORT_STRING_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// An object key, length-checked before it is copied (if it must be: most are borrowed).
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                check_len(v.len(), "an object key")?;
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                check_len(v.len(), "an object key")?;
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Json<'de>, E> {
        // NOTE: with `from_slice`, a string without escapes arrives here borrowed from the
        // input, so an oversized one is refused without ever being copied.
        check_len(v.len(), "a string")?;
        Ok(Json::String(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json<'de>, E> {
        check_len(v.len(), "a string")?;
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json<'de>, E> {
        check_len(v.len(), "a string")?;
        Ok(Json::String(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(k)) = map.next_key::<Key>()? {
            let v = map.next_value::<Json>()?;
            entries.push((k, v));
        }
        Ok(Json::Object(entries))
    }
}

/// Deepest nesting of an import document: serde_json's own recursion limit, named here so that
/// its message can say so. Free-form values are held to `task::limits::JSON_DEPTH_MAX` (64),
/// so an export never comes near it.
pub(crate) const DOCUMENT_DEPTH_MAX: usize = 128;

/// Parses bytes into a [`Json`] tree; a syntax error names its line and column.
#[cfg(test)]
pub(crate) fn parse_tree(bytes: &[u8]) -> std::result::Result<Json<'_>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let tree = Json::deserialize(&mut de).and_then(|t| de.end().map(|()| t));
    tree.map_err(|e| syntax_message(&e, bytes))
}

/// serde_json's error in tasklog's words, with a hint when the bytes are not UTF-8 JSON at all.
pub(crate) fn syntax_message(e: &serde_json::Error, bytes: &[u8]) -> String {
    let at = format!("line {} column {}", e.line(), e.column());
    let text = e.to_string();
    // NOTE: serde_json has no public error code; these are its stable message texts.
    let what = if text.starts_with("number out of range") {
        "a number out of range (the largest is about 1.8e308)".to_string()
    } else if text.starts_with("recursion limit exceeded") {
        format!("nested deeper than {DOCUMENT_DEPTH_MAX} levels of objects and arrays")
    } else {
        let kind = match e.classify() {
            serde_json::error::Category::Eof => "truncated JSON",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "rejected value",
            serde_json::error::Category::Io => "read error",
        };
        let detail = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(head, _)| head);
        format!("{kind}: {detail}")
    };
    match encoding_hint(bytes) {
        Some(hint) => format!("$: {what} at {at} ({hint})"),
        None => format!("$: {what} at {at}"),
    }
}

/// Why bytes that fail to parse may not be UTF-8 JSON at all: a UTF-16 or UTF-32 encoding (a
/// byte-order mark, or zero bytes among the first ones), or a second UTF-8 byte-order mark.
fn encoding_hint(bytes: &[u8]) -> Option<&'static str> {
    let head = bytes.get(..4.min(bytes.len())).unwrap_or_default();
    if head.starts_with(b"\xEF\xBB\xBF") {
        return Some("the input starts with a second UTF-8 byte-order mark; remove it");
    }
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Some(
            "the input looks like UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8",
        );
    }
    if head.len() >= 2 && head.contains(&0) {
        return Some("the input looks like UTF-16 or UTF-32 (it has zero bytes); save it as UTF-8");
    }
    None
}

/// Parses and validates an import document, without touching any store. On failure the error
/// is [`Error::InvalidDocument`] listing every problem found, each with its JSON path (and line
/// and column for syntax errors). The document is read as a stream (see `stream.rs`): only the
/// validated tasks are kept, never a tree of the whole document.
pub fn parse_import(bytes: &[u8], source_name: &str) -> Result<ParsedImport> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let head = bytes.get(..4.min(bytes.len())).unwrap_or_default();
    let mut tasks = Vec::new();
    let streamed = read_streamed(&mut de, head, source_name, &mut |t| tasks.push(t), None)?;
    Ok(ParsedImport {
        format: streamed.format,
        tasks,
        metadata: streamed.metadata,
    })
}

/// [`parse_import`] reading from `input` (at most [`IMPORT_BYTES_MAX`] bytes), without holding
/// the document: the tasks are parsed and validated one at a time as they arrive.
pub fn parse_import_reader(input: impl std::io::Read, source_name: &str) -> Result<ParsedImport> {
    let mut tasks = Vec::new();
    let (format, metadata) = stream_import(input, source_name, &mut |t| tasks.push(t))?;
    Ok(ParsedImport {
        format,
        tasks,
        metadata,
    })
}

/// Validates a document read from `input` (at most [`IMPORT_BYTES_MAX`] bytes) as
/// [`parse_import_reader`] does, keeping none of its tasks (only the set of ids seen, for
/// duplicates): for a caller that can read its input twice, first to refuse a bad document
/// before opening a store for writing, then to import it with
/// [`import_json_staged`](super::import_json_staged). Returns the number of tasks.
pub fn validate_import_reader(input: impl std::io::Read, source_name: &str) -> Result<u64> {
    let mut count = 0u64;
    stream_import(input, source_name, &mut |_task| count += 1)?;
    Ok(count)
}

/// Validates a document held in memory (e.g. a [`SpooledDocument`](super::SpooledDocument)) as
/// [`validate_import_reader`] does. Parsing a slice is 2–3x faster than parsing a reader:
/// serde_json then scans strings in place and borrows those without escapes.
pub fn validate_import_bytes(bytes: &[u8], source_name: &str) -> Result<u64> {
    let mut count = 0u64;
    stream_import_bytes(bytes, source_name, &mut |_task| count += 1, None)?;
    Ok(count)
}

/// [`validate_import_bytes`] over a [`SpooledDocument`](super::SpooledDocument), releasing its
/// pages behind the parser (see [`import_json_spooled`](super::import_json_spooled)).
///
/// The validated tasks are kept, encoded, in a temporary file beside the spooled copy
/// (`validated.rs`), so that the import that follows ([`import_json_spooled`]) decodes them
/// instead of parsing and validating the JSON a second time. Failing to write that file only
/// costs the second parse.
///
/// [`import_json_spooled`]: super::import_json_spooled
pub fn validate_import_spooled(
    document: &super::SpooledDocument,
    source_name: &str,
) -> Result<u64> {
    if let Some(copy) = document.validated().as_ref() {
        return Ok(copy.tasks);
    }
    let mut writer = validated::CopyWriter::create()
        .inspect_err(|e| kept_no_copy(source_name, e))
        .ok();
    let mut count = 0u64;
    let (format, metadata) = Input::Spooled(document).stream(source_name, &mut |task| {
        count += 1;
        if let Some(w) = &mut writer
            && let Err(e) = w.push(task)
        {
            kept_no_copy(source_name, &e);
            writer = None;
        }
    })?;
    if let Some(w) = writer {
        match w.finish(format, metadata) {
            Ok(copy) => document.keep_validated(copy),
            Err(e) => kept_no_copy(source_name, &e),
        }
    }
    Ok(count)
}

/// Logs why a validation kept no copy of its tasks (the import then parses the document again).
fn kept_no_copy(source_name: &str, e: &Error) {
    tracing::warn!(source_name, error = %e, "no validated copy kept; the import will parse the document again");
}

/// Where a streamed import reads its document from.
pub(crate) enum Input<'a> {
    /// Read as a stream (at most [`IMPORT_BYTES_MAX`] bytes).
    Reader(Box<dyn std::io::Read + 'a>),
    /// Already in memory.
    Bytes(&'a [u8]),
    /// A spooled copy, whose pages are released behind the parser.
    Spooled(&'a super::SpooledDocument),
}

impl Input<'_> {
    /// [`stream_import`] or [`stream_import_bytes`].
    pub(crate) fn stream(
        self,
        source_name: &str,
        sink: &mut dyn FnMut(ImportTask),
    ) -> Result<(SourceFormat, BTreeMap<String, Value>)> {
        match self {
            Input::Reader(reader) => stream_import(reader, source_name, sink),
            Input::Bytes(bytes) => stream_import_bytes(bytes, source_name, sink, None),
            Input::Spooled(document) => {
                if let Some(copy) = document.validated().as_mut() {
                    return copy.replay(source_name, sink);
                }
                let result = stream_import_bytes(
                    document.bytes(),
                    source_name,
                    sink,
                    Some(&|at| document.release_behind(at)),
                );
                // The next reading starts from the front again.
                document.release_all();
                result
            }
        }
    }
}

/// [`stream_import`] over a document in memory: the same checks, limits and messages.
pub(crate) fn stream_import_bytes(
    bytes: &[u8],
    source_name: &str,
    sink: &mut dyn FnMut(ImportTask),
    behind: Option<&super::stream::Behind<'_>>,
) -> Result<(SourceFormat, BTreeMap<String, Value>)> {
    if bytes.len() as u64 > IMPORT_BYTES_MAX {
        return Err(Error::TooLarge {
            what: "import document",
            len: bytes.len() as u64,
            max: IMPORT_BYTES_MAX,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let head = bytes.get(..4.min(bytes.len())).unwrap_or_default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let streamed = read_streamed(&mut de, head, source_name, sink, behind)?;
    Ok((streamed.format, streamed.metadata))
}

/// Reads a document from `input` (at most [`IMPORT_BYTES_MAX`] bytes, a UTF-8 byte-order mark
/// skipped), passing each validated task to `sink` in document order. The sink's tasks only
/// count when this returns `Ok`: a problem anywhere rejects the whole document.
pub(crate) fn stream_import(
    input: impl std::io::Read,
    source_name: &str,
    sink: &mut dyn FnMut(ImportTask),
) -> Result<(SourceFormat, BTreeMap<String, Value>)> {
    let mut input = std::io::BufReader::with_capacity(256 << 10, Counted::new(input));
    let head = {
        use std::io::BufRead;
        if let Err(e) = input.fill_buf() {
            let e = input.get_mut().error.take().unwrap_or(e);
            return Err(Error::io("read", source_name, e));
        }
        let buf = input.buffer();
        let bom = buf.starts_with(b"\xEF\xBB\xBF");
        let skip = if bom { 3 } else { 0 };
        let head = buf
            .get(skip..(skip + 4).min(buf.len()))
            .unwrap_or_default()
            .to_vec();
        input.consume(skip);
        head
    };
    let mut de = serde_json::Deserializer::from_reader(&mut input);
    let result = read_streamed(&mut de, &head, source_name, sink, None);
    drop(de);
    let read = input.get_ref().read;
    if let Some(e) = input.get_mut().error.take() {
        return Err(Error::io("read", source_name, e));
    }
    if read > IMPORT_BYTES_MAX {
        return Err(Error::TooLarge {
            what: "import document",
            len: read,
            max: IMPORT_BYTES_MAX,
        });
    }
    let streamed = result?;
    Ok((streamed.format, streamed.metadata))
}

/// A reader that counts its bytes, stops after [`IMPORT_BYTES_MAX`] + 1 and keeps its I/O
/// error (serde_json would word it as its own; the caller reports it once, as an OS error).
struct Counted<R> {
    inner: R,
    read: u64,
    error: Option<std::io::Error>,
}

impl<R> Counted<R> {
    fn new(inner: R) -> Self {
        Counted {
            inner,
            read: 0,
            error: None,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = (IMPORT_BYTES_MAX + 1).saturating_sub(self.read);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let Some(buf) = buf.get_mut(..want) else {
            return Ok(0);
        };
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), "read error");
                self.error = Some(e);
                Err(copy)
            }
        }
    }
}

fn read_streamed<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    head: &[u8],
    source_name: &str,
    sink: &mut dyn FnMut(ImportTask),
    behind: Option<&super::stream::Behind<'_>>,
) -> Result<super::stream::Streamed> {
    let invalid = |problems: Vec<String>, total: usize| Error::InvalidDocument {
        source_name: source_name.to_string(),
        problems,
        total,
    };
    let mut problems = Problems::default();
    let mut count = 0u64;
    let mut counting = |t: ImportTask| {
        count += 1;
        sink(t);
    };
    let streamed = super::stream::read_stream(de, head, &mut problems, &mut counting, behind)
        .map_err(|p| invalid(vec![p], 1))?;
    match streamed {
        Some(s) if problems.is_empty() => {
            tracing::debug!(source_name, tasks = count, format = ?s.format, "import parsed");
            Ok(s)
        }
        _ => {
            let total = problems.total();
            Err(invalid(problems.into_vec(), total))
        }
    }
}

/// Which layout a top-level object has. A wrapper has a `tasks` object (or array) beside
/// scalar header fields; a plain map of tasks has only objects as values.
pub(crate) fn layout_of(entries: &[(Cow<'_, str>, Json<'_>)]) -> SourceFormat {
    let has = |key: &str| entries.iter().any(|(k, _)| k == key);
    let format_is_ours = entries
        .iter()
        .any(|(k, v)| k == "format" && *v == Json::String(EXPORT_FORMAT.into()));
    if format_is_ours {
        return SourceFormat::Tasklog;
    }
    let tasks_is_container = entries
        .iter()
        .any(|(k, v)| k == "tasks" && matches!(v, Json::Object(_) | Json::Array(_)));
    let has_scalar = entries.iter().any(|(_, v)| !matches!(v, Json::Object(_)));
    if tasks_is_container && (entries.len() == 1 || has_scalar || has("version")) {
        SourceFormat::Wrapped
    } else {
        SourceFormat::Map
    }
}

/// Checks tasklog's own header: the version, and that `task_count` matches (which catches a
/// document cut short or edited by hand).
pub(crate) fn check_header(
    metadata: &BTreeMap<String, Value>,
    found: usize,
    problems: &mut Problems,
) {
    match metadata.get("version").and_then(Value::as_u64) {
        Some(EXPORT_VERSION) => {}
        Some(v) => problems.push(
            "version",
            format!("unsupported export version {v} (this build reads version {EXPORT_VERSION})"),
        ),
        None => problems.push("version", "missing or not a whole number"),
    }
    match metadata.get("task_count").map(Value::as_u64) {
        None => {}
        Some(Some(n)) if n == found as u64 => {}
        Some(Some(n)) => problems.push(
            "task_count",
            format!("says {n} tasks but the document holds {found}"),
        ),
        Some(None) => problems.push("task_count", "not a whole number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_kept() {
        let tree = parse_tree(br#"{"a": 1, "a": 2}"#).expect("should parse");
        assert_eq!(
            tree,
            Json::Object(vec![
                ("a".into(), Json::Number(1.into())),
                ("a".into(), Json::Number(2.into()))
            ])
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse_tree(b"{\n  \"a\": [1, 2\n").expect_err("should fail");
        assert!(err.contains("truncated JSON"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let err = parse_tree(b"{\"a\": tru}").expect_err("should fail");
        assert!(
            err.contains("invalid JSON") && err.contains("column"),
            "{err}"
        );
        assert!(parse_tree(b"{} x").is_err());
    }

    #[test]
    fn layouts_are_recognised() {
        let layout = |text: &str| match parse_tree(text.as_bytes()) {
            Ok(Json::Object(e)) => layout_of(&e),
            _ => SourceFormat::Array,
        };
        assert_eq!(
            layout(r#"{"format":"tasklog","tasks":{}}"#),
            SourceFormat::Tasklog
        );
        assert_eq!(
            layout(r#"{"version":"1.0","tasks":{}}"#),
            SourceFormat::Wrapped
        );
        assert_eq!(layout(r#"{"tasks":[]}"#), SourceFormat::Wrapped);
        assert_eq!(layout(r#"{"t1":{"title":"x"}}"#), SourceFormat::Map);
        assert_eq!(
            layout(r#"{"tasks":{"title":"x"},"t2":{}}"#),
            SourceFormat::Map
        );
        assert_eq!(layout("{}"), SourceFormat::Map);
    }
}
