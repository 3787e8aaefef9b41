//! What the first reading of a spooled import validated, kept encoded beside the spooled copy,
//! so that the second reading (the import itself, under the store's write lock) decodes tasks
//! instead of parsing and validating the JSON again: on a 355 MiB export the second parse was
//! about a quarter of the import's time.
//!
//! The validated copy is an unlinked temporary file (`tempfile`, in the same directory as the
//! spool), written once front to back by [`validate_import_spooled`](super::validate_import_spooled)
//! and read front to back by each later reading of the same
//! [`SpooledDocument`](super::SpooledDocument). It lives as long as the document and is never
//! a store's file. Its layout (docs/format.md, "The validated copy of an import"), all integers
//! little-endian:
//!
//! ```text
//! file   := frame*
//! frame  := len:u32 crc:u32 body[len]             crc = CRC-32 (IEEE) of body
//! body   := path_len:u32 path[path_len]           the task's JSON path, UTF-8
//!           task_len:u32 task[task_len]           the task as a wire event (`imported`)
//!           rebuilt_len:u32 rebuilt[rebuilt_len]  0, or the task its history rebuilds when that
//!                                                 differs from the task (a wire `imported` event)
//!           events:u32 (lsn:u64 len:u32 event[len])*   the history: exported LSN, wire event
//! ```
//!
//! A task's fields pass through the same wire encoding the import then writes to the log, so a
//! task read back is the task the log would hold. What the wire does not keep (a lease, which
//! an import drops anyway) is decided on before encoding: whether the history rebuilds the
//! exported fields is computed in the first reading and kept as the presence of `rebuilt`
//! (read back as `Rebuilt::Differs`, never compared again: a task and its rebuilt task that
//! differ only in their leases decode the same).
//!
//! Writing the copy is an optimisation: if it fails (a full temporary directory), the import
//! logs why and parses the document again, as it did before. Reading it back checks every
//! frame's length and CRC; damage is reported as [`Error::Corrupt`] naming the copy and the
//! offset, and the import (not yet committed) writes nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

use serde_json::Value;

use super::{ImportEvent, ImportTask, Rebuilt, SourceFormat};
use crate::error::{Error, Result};
use crate::task::wire;
use crate::task::{Event, EventKind, Task, Timestamp};

/// Buffer size for writing and reading the copy.
const BUFFER_BYTES: usize = 256 << 10;
/// Bytes of a frame's header: length and CRC.
const FRAME_HEADER_BYTES: usize = 8;

/// A finished validated copy: the tasks of a valid document, in document order, and the rest
/// of what its reading returned.
#[derive(Debug)]
pub(crate) struct ValidatedCopy {
    file: File,
    /// Bytes written (the reader never reads past them).
    len: u64,
    /// Tasks in the copy.
    pub(crate) tasks: u64,
    format: SourceFormat,
    metadata: BTreeMap<String, Value>,
}

/// Writes a validated copy, one task at a time.
pub(crate) struct CopyWriter {
    out: BufWriter<File>,
    len: u64,
    tasks: u64,
    /// The frame being encoded (reused).
    frame: Vec<u8>,
}

impl CopyWriter {
    /// Starts a copy in the system's temporary directory.
    pub(crate) fn create() -> Result<CopyWriter> {
        let dir = std::env::temp_dir();
        #[cfg(test)]
        if tests::REFUSE_COPY.get() {
            let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
            return Err(Error::io(
                "create the validated copy of the import in",
                &dir,
                full,
            ));
        }
        let file = tempfile::tempfile_in(&dir)
            .map_err(|e| Error::io("create the validated copy of the import in", &dir, e))?;
        Ok(CopyWriter {
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            len: 0,
            tasks: 0,
            frame: Vec::new(),
        })
    }

    /// Appends one validated task.
    pub(crate) fn push(&mut self, item: ImportTask) -> Result<()> {
        // The copy keeps a rebuilt task only when it differs (the one decision,
        // `ImportTask::rebuilt_differs`): the import then restores the exported fields after
        // the history (the planner's `fields_restored`).
        let differs = item.rebuilt_differs();
        let ImportTask {
            task,
            history,
            path,
            rebuilt,
        } = item;
        let rebuilt = match (differs, rebuilt) {
            // Only a task without history (or with one that rebuilt nothing) is planned as a
            // plain import: keep that by keeping no history.
            (None, _) => return self.push_parts(&path, task, None, Vec::new()),
            (Some(true), Rebuilt::Task(r) | Rebuilt::Differs(r)) => Some(*r),
            (Some(_), _) => None,
        };
        self.push_parts(&path, task, rebuilt, history.unwrap_or_default())
    }

    fn push_parts(
        &mut self,
        path: &str,
        task: Task,
        rebuilt: Option<Task>,
        history: Vec<ImportEvent>,
    ) -> Result<()> {
        let frame = &mut self.frame;
        frame.clear();
        frame.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        put_bytes(frame, path.as_bytes())?;
        let mut event = imported(task);
        put_event(frame, &event)?;
        match rebuilt {
            Some(r) => {
                // The same event with the rebuilt task in place of the exported one.
                event.kind = EventKind::Imported { task: Box::new(r) };
                put_event(frame, &event)?;
            }
            None => frame.extend_from_slice(&0u32.to_le_bytes()),
        }
        frame.extend_from_slice(&len_u32(history.len())?.to_le_bytes());
        for e in history {
            frame.extend_from_slice(&e.lsn.to_le_bytes());
            let event = Event {
                task_id: String::new(),
                at: e.at,
                actor: e.actor,
                kind: e.kind,
            };
            put_event(frame, &event)?;
        }
        let body_len = len_u32(frame.len() - FRAME_HEADER_BYTES)?;
        let crc = crc32fast::hash(frame.get(FRAME_HEADER_BYTES..).unwrap_or_default());
        if let Some(header) = frame.get_mut(..FRAME_HEADER_BYTES) {
            let (len_slot, crc_slot) = header.split_at_mut(4);
            len_slot.copy_from_slice(&body_len.to_le_bytes());
            crc_slot.copy_from_slice(&crc.to_le_bytes());
        }
        self.out.write_all(frame).map_err(|e| {
            Error::io(
                "write the validated copy of the import in",
                std::env::temp_dir(),
                e,
            )
        })?;
        self.len += frame.len() as u64;
        self.tasks += 1;
        Ok(())
    }

    /// Finishes the copy of a document read as `format` with `metadata`.
    pub(crate) fn finish(
        self,
        format: SourceFormat,
        metadata: BTreeMap<String, Value>,
    ) -> Result<ValidatedCopy> {
        let file = self.out.into_inner().map_err(|e| {
            Error::io(
                "write the validated copy of the import in",
                std::env::temp_dir(),
                e.into_error(),
            )
        })?;
        Ok(ValidatedCopy {
            file,
            len: self.len,
            tasks: self.tasks,
            format,
            metadata,
        })
    }
}

/// The task as an `imported` wire event carries it (its id moved beside it).
fn imported(mut task: Task) -> Event {
    Event {
        task_id: std::mem::take(&mut task.id),
        at: Timestamp(0),
        actor: None,
        kind: EventKind::Imported {
            task: Box::new(task),
        },
    }
}

fn len_u32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::TooLarge {
        what: "a task in the validated copy of an import",
        len: len as u64,
        max: u32::MAX.into(),
    })
}

fn put_bytes(frame: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    frame.extend_from_slice(&len_u32(bytes.len())?.to_le_bytes());
    frame.extend_from_slice(bytes);
    Ok(())
}

/// Appends an event as its length and wire bytes.
fn put_event(frame: &mut Vec<u8>, event: &Event) -> Result<()> {
    let at = frame.len();
    frame.extend_from_slice(&[0; 4]);
    wire::encode_event_into(frame, event)?;
    let len = len_u32(frame.len() - at - 4)?;
    if let Some(slot) = frame.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
    Ok(())
}

impl ValidatedCopy {
    /// Reads the copy front to back, passing each task to `sink`, and returns the document's
    /// format and metadata. `source_name` names the document in errors.
    pub(crate) fn replay(
        &mut self,
        source_name: &str,
        sink: &mut dyn FnMut(ImportTask),
    ) -> Result<(SourceFormat, BTreeMap<String, Value>)> {
        let name = format!("the validated copy of {source_name}");
        let io = |e| Error::io("read", name.as_str(), e);
        self.file.rewind().map_err(io)?;
        let mut input = BufReader::with_capacity(BUFFER_BYTES, &self.file);
        let mut offset = 0u64;
        let mut body = Vec::new();
        let mut read = 0u64;
        while offset < self.len {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            input.read_exact(&mut header).map_err(io)?;
            let (len_bytes, crc_bytes) = header.split_at(4);
            let len = u32::from_le_bytes(len_bytes.try_into().unwrap_or_default());
            let crc = u32::from_le_bytes(crc_bytes.try_into().unwrap_or_default());
            let end = offset + FRAME_HEADER_BYTES as u64 + u64::from(len);
            if end > self.len {
                return Err(Error::corrupt(
                    &name,
                    Some(offset),
                    None,
                    format!(
                        "a frame of {len} bytes runs past the copy's end ({})",
                        self.len
                    ),
                ));
            }
            body.resize(len as usize, 0);
            input.read_exact(&mut body).map_err(io)?;
            if crc32fast::hash(&body) != crc {
                return Err(Error::corrupt(
                    &name,
                    Some(offset),
                    None,
                    "checksum mismatch",
                ));
            }
            let task = decode(&body)
                .map_err(|reason| Error::corrupt(&name, Some(offset), None, reason))?;
            sink(task);
            read += 1;
            offset = end;
        }
        if read != self.tasks {
            return Err(Error::corrupt(
                &name,
                Some(offset),
                None,
                format!("{read} task(s) read back, {} written", self.tasks),
            ));
        }
        tracing::debug!(
            source_name,
            tasks = read,
            bytes = self.len,
            "import read back from its validated copy"
        );
        Ok((self.format, self.metadata.clone()))
    }
}

/// Decodes one frame's body; an error says what is wrong.
fn decode(body: &[u8]) -> std::result::Result<ImportTask, String> {
    let mut at = Cursor { bytes: body };
    let path = std::str::from_utf8(at.bytes()?)
        .map_err(|_| "a path that is not UTF-8".to_string())?
        .to_string();
    let task = imported_task(at.bytes()?)?;
    let rebuilt = match at.bytes()? {
        [] => None,
        bytes => Some(imported_task(bytes)?),
    };
    let count = at.u32()?;
    let mut history = Vec::new();
    for _ in 0..count {
        let lsn = at.u64()?;
        let event = wire::decode_event_ref(at.bytes()?)
            .map_err(|e| e.to_string())?
            .event;
        history.push(ImportEvent {
            lsn,
            at: event.at,
            actor: event.actor,
            kind: event.kind,
        });
    }
    if !at.bytes.is_empty() {
        return Err(format!("{} stray byte(s) after a task", at.bytes.len()));
    }
    // A task with a history was validated with it: its history rebuilds it (a rebuilt task
    // kept means the fields differ); one without is a plain import.
    let (history, rebuilt) = match (count, rebuilt) {
        (0, _) => (None, Rebuilt::None),
        (_, Some(r)) => (Some(history), Rebuilt::Differs(Box::new(r))),
        (_, None) => (Some(history), Rebuilt::SameAsTask),
    };
    Ok(ImportTask {
        task,
        history,
        path,
        rebuilt,
    })
}

/// The task of a wire `imported` event, with its id.
fn imported_task(bytes: &[u8]) -> std::result::Result<Task, String> {
    let event = wire::decode_event(bytes).map_err(|e| e.to_string())?;
    match event.kind {
        EventKind::Imported { task } => Ok(Task {
            id: event.task_id,
            ..*task
        }),
        other => Err(format!("a {} event where a task belongs", other.name())),
    }
}

/// Reads a frame's body.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!(
                "a field of {n} bytes where {} remain",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::{ImportOptions, ImportTask, SpooledDocument, import_json_spooled};
    use super::super::{parse_import, validate_import_spooled};
    use super::CopyWriter;
    use crate::store::Store;

    std::thread_local! {
        /// Makes `CopyWriter::create` fail on this thread, as in a full temporary directory.
        pub(super) static REFUSE_COPY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A validation that cannot write its validated copy still accepts the document (keeping
    /// no copy), and the import then parses the document again, to the same result.
    #[test]
    fn without_a_validated_copy_the_import_parses_again() {
        let doc = include_bytes!("../../tests/fixtures/import/tasklog_v1.json");
        let document = SpooledDocument::read_from(&doc[..], "fixture").unwrap();
        REFUSE_COPY.set(true);
        let validated = validate_import_spooled(&document, "fixture");
        REFUSE_COPY.set(false);
        assert_eq!(validated.unwrap(), 2);
        assert!(document.validated().is_none(), "no copy was kept");
        let (_dir, _store, report) = import_fresh(&document);
        let report = report.unwrap();
        assert_eq!((report.imported, report.events_replayed), (2, 6));
    }

    /// Whether an import task's history rebuilds other fields than its own (None: no history
    /// the import replays).
    fn differs(t: &ImportTask) -> Option<bool> {
        let replayed = t.history.as_ref().is_some_and(|h| !h.is_empty());
        t.rebuilt_differs().filter(|_| replayed)
    }

    /// Documents with histories that rebuild their task, one that does not (an edited title),
    /// tasks without history, a lease (which the wire does not keep and an import drops) and
    /// a wrapper's metadata.
    fn documents() -> Vec<(&'static str, String)> {
        let tasklog = include_str!("../../tests/fixtures/import/tasklog_v1.json");
        let edited = tasklog.replacen("\"title\":\"Index\"", "\"title\":\"Index (edited)\"", 1);
        assert_ne!(edited, tasklog, "the fixture has the title edited here");
        // Only a lease differs from what the history rebuilds: the wire keeps no lease, so
        // the copy must keep the decision, not recompute it from what it decodes.
        let leased = tasklog.replacen(
            "\"lease\":null",
            "\"lease\":{\"owner\":\"w\",\"expires_at\":\"2026-01-01T00:00:09.000Z\"}",
            1,
        );
        assert_ne!(leased, tasklog, "the fixture has a lease added here");
        vec![
            ("tasklog", tasklog.to_string()),
            ("edited", edited),
            ("leased", leased),
            (
                "wrapped",
                include_str!("../../tests/fixtures/import/wrapped_v1.json").to_string(),
            ),
            (
                "aliases",
                include_str!("../../tests/fixtures/import/aliases.json").to_string(),
            ),
            (
                "array",
                include_str!("../../tests/fixtures/import/array.json").to_string(),
            ),
        ]
    }

    #[test]
    fn a_copy_reads_back_the_tasks_the_document_holds() {
        for (name, doc) in documents() {
            let parsed = parse_import(doc.as_bytes(), name).unwrap();
            let mut writer = CopyWriter::create().unwrap();
            for t in &parsed.tasks {
                writer.push(t.clone()).unwrap();
            }
            let mut copy = writer
                .finish(parsed.format, parsed.metadata.clone())
                .unwrap();
            let mut back = Vec::new();
            let (format, metadata) = copy.replay(name, &mut |t| back.push(t)).unwrap();
            assert_eq!(format, parsed.format, "{name}");
            assert_eq!(metadata, parsed.metadata, "{name}");
            assert_eq!(back.len(), parsed.tasks.len(), "{name}");
            for (read, want) in back.iter().zip(&parsed.tasks) {
                let id = &want.task.id;
                assert_eq!(read.path, want.path, "{name} {id}");
                assert_eq!(read.history, want.history, "{name} {id}");
                assert_eq!(differs(read), differs(want), "{name} {id}");
                let mut expected = super::super::apply::persistable(want.task.clone());
                expected.id.clone_from(id);
                assert_eq!(read.task, expected, "{name} {id}");
            }
            if name == "edited" {
                assert!(back.iter().any(|t| differs(t) == Some(true)), "{name}");
            }
            // Read twice: every reading starts from the front.
            let mut again = 0;
            copy.replay(name, &mut |_| again += 1).unwrap();
            assert_eq!(again, back.len(), "{name}");
        }
    }

    /// A validated spooled document of the tasklog fixture, with its copy kept.
    fn validated_document() -> SpooledDocument {
        let doc = include_bytes!("../../tests/fixtures/import/tasklog_v1.json");
        let document = SpooledDocument::read_from(&doc[..], "fixture").unwrap();
        assert_eq!(validate_import_spooled(&document, "fixture").unwrap(), 2);
        assert!(document.validated().is_some(), "a validation keeps a copy");
        document
    }

    /// Imports `document` into a new store.
    fn import_fresh(
        document: &SpooledDocument,
    ) -> (
        tempfile::TempDir,
        Store,
        crate::Result<super::super::ImportReport>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let result = import_json_spooled(
            &store,
            document,
            "fixture",
            &ImportOptions::new(),
            |_, _| {},
        );
        (dir, store, result)
    }

    /// Overwrites bytes of a document's validated copy.
    #[cfg(unix)]
    fn damage(document: &SpooledDocument, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt as _;
        let guard = document.validated();
        let copy = guard.as_ref().unwrap();
        copy.file.write_all_at(bytes, offset).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_damaged_copy_is_refused_naming_where_and_nothing_is_imported() {
        use crate::error::Error;
        // A flipped bit in the first task's body, then a length running past the end.
        let flipped = {
            let document = validated_document();
            let byte = {
                use std::os::unix::fs::FileExt as _;
                let guard = document.validated();
                let mut b = [0u8];
                guard
                    .as_ref()
                    .unwrap()
                    .file
                    .read_exact_at(&mut b, 20)
                    .unwrap();
                b[0] ^ 0x10
            };
            damage(&document, 20, &[byte]);
            document
        };
        let long = validated_document();
        damage(&long, 0, &u32::MAX.to_le_bytes());
        for (document, reason) in [(flipped, "checksum mismatch"), (long, "runs past")] {
            let (_dir, store, result) = import_fresh(&document);
            let err = result.expect_err("a damaged copy is refused");
            match &err {
                Error::Corrupt {
                    file,
                    offset: Some(0),
                    reason: why,
                    ..
                } => {
                    assert_eq!(file.to_str(), Some("the validated copy of fixture"));
                    assert!(why.contains(reason), "{err}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(store.last_lsn(), 0, "nothing was written");
            assert_eq!(store.read_state(|st| st.live_ids().count()).unwrap(), 0);
        }
    }

    /// An import that reads the copy reports and stores exactly what an import of the
    /// document's bytes does (fields restored after an edited history included).
    #[test]
    fn an_import_from_the_copy_equals_one_from_the_bytes() {
        use super::super::{ExportOptions, export_json, import_json_bytes};
        // Times the import stamps itself (its own events; `created_at` where a document has
        // none) differ between two imports, and tasks are exported in creation order.
        fn blank_recent(v: &mut serde_json::Value, since: &str) {
            match v {
                serde_json::Value::String(s) if s.len() == since.len() && s.as_str() >= since => {
                    *v = serde_json::Value::Null;
                }
                serde_json::Value::Array(items) => {
                    items.iter_mut().for_each(|i| blank_recent(i, since));
                }
                serde_json::Value::Object(map) => {
                    map.values_mut().for_each(|i| blank_recent(i, since));
                }
                _ => {}
            }
        }
        let since = crate::task::Timestamp::now().to_rfc3339();
        let export = |store: &Store, by_title: bool| {
            let mut out = Vec::new();
            export_json(store, &ExportOptions::new(), &mut out, |_, _| {}).unwrap();
            let mut doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
            blank_recent(&mut doc, &since);
            // An array's tasks without an id get generated ones: keyed by title, without ids.
            let tasks: std::collections::BTreeMap<String, serde_json::Value> =
                serde_json::from_value(doc["tasks"].take()).unwrap();
            let count = tasks.len();
            let keyed: std::collections::BTreeMap<String, serde_json::Value> = tasks
                .into_values()
                .map(|mut t| {
                    let key = if by_title { &t["title"] } else { &t["id"] };
                    let key = key.as_str().unwrap().to_string();
                    t["id"] = serde_json::Value::Null;
                    (key, t)
                })
                .collect();
            assert_eq!(keyed.len(), count, "keys are unique");
            (doc, keyed)
        };
        for (name, doc) in documents() {
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let (from_bytes, from_copy) = (
                Store::open(a.path()).unwrap(),
                Store::open(b.path()).unwrap(),
            );
            let want = import_json_bytes(
                &from_bytes,
                doc.as_bytes(),
                name,
                &ImportOptions::new(),
                |_, _| {},
            )
            .unwrap();
            let document = SpooledDocument::read_from(doc.as_bytes(), name).unwrap();
            validate_import_spooled(&document, name).unwrap();
            assert!(document.validated().is_some(), "{name}");
            let got = import_json_spooled(
                &from_copy,
                &document,
                name,
                &ImportOptions::new(),
                |_, _| {},
            )
            .unwrap();
            assert_eq!(got, want, "{name}");
            let by_title = name == "array";
            assert_eq!(
                export(&from_copy, by_title),
                export(&from_bytes, by_title),
                "{name}"
            );
            if name == "edited" || name == "leased" {
                assert_eq!(got.fields_restored, 1, "{name}");
            }
        }
    }

    /// A frame's body decodes or is refused, whatever its bytes: every single-byte change and
    /// every cut of real bodies, and random bytes (the CRC stops damage before it gets here;
    /// this is what would stand behind it).
    #[test]
    fn any_body_decodes_or_is_refused_without_panicking() {
        use std::io::{Read as _, Seek as _};
        let document = validated_document();
        let mut bytes = Vec::new();
        {
            let mut guard = document.validated();
            let file = &mut guard.as_mut().unwrap().file;
            file.rewind().unwrap();
            file.read_to_end(&mut bytes).unwrap();
        }
        let mut bodies = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            bodies.push(bytes[at + 8..at + 8 + len].to_vec());
            at += 8 + len;
        }
        assert_eq!(bodies.len(), 2);
        let mut rng = fastrand::Rng::with_seed(15);
        for body in &bodies {
            assert!(super::decode(body).is_ok());
            for cut in 0..body.len() {
                assert!(super::decode(&body[..cut]).is_err(), "cut at {cut}");
            }
            for i in 0..body.len() {
                for _ in 0..4 {
                    let mut changed = body.clone();
                    changed[i] = rng.u8(..);
                    let _ = super::decode(&changed);
                }
            }
        }
        for _ in 0..2000 {
            let len = rng.usize(..64);
            let random: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            let _ = super::decode(&random);
        }
    }
}
