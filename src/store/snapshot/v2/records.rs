//! The tasks section of a v2 snapshot: one record per task id (live or removed), in strictly
//! ascending id order, each giving its history's place in the history section; then the
//! idempotency keys and the closed sessions. Decoding turns each record into what
//! `State::load` takes.
//!
//! NOTE: decoding on a second thread while this one fills the map was tried and dropped: on
//! the 2-core machine of docs/benchmarks.md it saved no wall time and cost up to 80% more CPU
//! (most of it kernel time).

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::window::Window;
use super::{HEADER_LEN, Header};
use crate::error::{Error, Result};
use crate::store::history::{Arena, History, Place};
use crate::store::snapshot::{self, TaskVisit, history_checks};
use crate::store::state::{Builder, Given, Held, Keys, State};
use crate::store::task_record::{TaskV2, TaskV2Ref};
use crate::task::{TaskState, wire};

/// One task id: its history's place in the history section, then (docs/format.md) an option
/// tag, 0 for a removed task or 1 followed by the live task's record (`TaskV2`). The two are
/// written and read apart so that a terminal task's record, which the state holds encoded, is
/// copied as it is both ways; together they are exactly the postcard encoding of this head
/// with an `Option<TaskV2>` field after it.
#[derive(Serialize, Deserialize)]
pub struct RecordHeadV2<'a> {
    pub id: &'a str,
    pub history_offset: u64,
    pub history_len: u64,
    pub history_count: u32,
}

/// The option tag before a live task's record.
pub const TASK_PRESENT: u8 = 1;
/// The option tag of a removed task (no record follows).
pub const TASK_ABSENT: u8 = 0;

/// One record decoded: the id, its task in the form the reader asked for (`T`: for an open,
/// the task as the state holds it with what the indexes key it by; for `verify`, its state
/// once checked) or `None` when removed, and where its history lies.
type Loaded<'a, T> = (&'a str, Option<T>, Place);
/// What follows the records: idempotency keys (request id, task id) and closed sessions.
type Tail = (Vec<(String, String)>, Vec<u64>);

/// Decodes the records of a tasks section one by one, checking as it goes that ids ascend
/// strictly and that the histories tile the history section from its start.
struct Records<'a> {
    path: &'a Path,
    header: &'a Header,
    arena: &'a Arc<Arena>,
    left: u64,
    history_next: u64,
    /// The previous record's id (`None` before the first; an empty id is not "none": a damaged
    /// section may list `""` twice).
    previous: Option<String>,
}

/// Why a record was not decoded from the bytes at hand.
enum Miss {
    /// They end inside the record: more of the section may complete it.
    Short(Error),
    /// The record is damaged.
    Bad(Error),
}

impl<'a> Records<'a> {
    /// Before the first record of the tasks section `header` describes.
    fn new(path: &'a Path, header: &'a Header, arena: &'a Arc<Arena>) -> Self {
        Records {
            path,
            header,
            arena,
            left: header.records,
            history_next: 0,
            previous: None,
        }
    }

    fn corrupt(&self, at: u64, reason: String) -> Error {
        Error::corrupt(self.path, Some(at), Some(self.header.lsn), reason)
    }

    /// A postcard error of the record at `at`: short if the bytes ran out, else damage.
    fn undecodable(&self, at: u64, e: postcard::Error) -> Miss {
        let error = self.corrupt(at, format!("task record does not decode: {e}"));
        match e {
            postcard::Error::DeserializeUnexpectedEnd => Miss::Short(error),
            _ => Miss::Bad(error),
        }
    }

    /// Decodes the record at the front of `bytes` (section offset `at`); returns it and its
    /// length. Nothing of `self` changes unless it succeeds, so a short read can be retried
    /// with more bytes. Postcard reads a record front to back, so bytes cut short either
    /// decode exactly as the whole record would or end it with `DeserializeUnexpectedEnd`.
    fn next_record<'b, T>(
        &mut self,
        bytes: &'b [u8],
        at: u64,
        form: impl FnOnce(&str, &TaskV2Ref<'b>, &'b [u8]) -> Result<T>,
    ) -> std::result::Result<(Loaded<'b, T>, usize), Miss> {
        let at = HEADER_LEN as u64 + at;
        let (r, rest): (RecordHeadV2<'b>, _) =
            postcard::take_from_bytes(bytes).map_err(|e| self.undecodable(at, e))?;
        let (task, rest) = match rest.split_first() {
            Some((&TASK_ABSENT, rest)) => (None, rest),
            Some((&TASK_PRESENT, rest)) => {
                // Borrowed: a finished task keeps its bytes, so only what the checks and the
                // state's prefix need is read here (no string is copied).
                let (task, after): (TaskV2Ref<'b>, _) =
                    postcard::take_from_bytes(rest).map_err(|e| self.undecodable(at, e))?;
                let record = rest.get(..rest.len() - after.len()).unwrap_or_default();
                (Some((task, record)), after)
            }
            Some((tag, _)) => {
                return Err(Miss::Bad(self.corrupt(
                    at,
                    format!("task record does not decode: option tag {tag} is neither 0 nor 1"),
                )));
            }
            None => {
                return Err(Miss::Short(self.corrupt(
                    at,
                    "task record does not decode: it ends before its option tag".into(),
                )));
            }
        };
        let bad = |reason: String| Miss::Bad(self.corrupt(at, reason));
        if self.previous.as_deref().is_some_and(|p| p >= r.id) {
            return Err(bad(format!(
                "task {:?} is out of order or listed twice",
                r.id
            )));
        }
        if r.history_offset != self.history_next {
            return Err(bad(format!(
                "the history of {:?} starts at {}, the previous one ends at {}",
                r.id, r.history_offset, self.history_next
            )));
        }
        let history = Place::new(self.arena, r.history_offset, r.history_len, r.history_count)
            .map_err(|e| bad(format!("task {:?}: {e}", r.id)))?;
        let task = match task {
            Some((t, record)) => {
                Some(form(r.id, &t, record).map_err(|e| bad(format!("task {:?}: {e}", r.id)))?)
            }
            None => None,
        };
        self.history_next += r.history_len;
        match &mut self.previous {
            Some(previous) => {
                previous.clear();
                previous.push_str(r.id);
            }
            None => self.previous = Some(r.id.to_owned()),
        }
        Ok(((r.id, task, history), bytes.len() - rest.len()))
    }

    /// After the last record: the histories must cover the whole history section, and the
    /// idempotency keys and closed sessions must end the tasks section exactly (`window`
    /// holds the rest of it).
    fn finish(&self, window: &Window<'_>) -> Result<Tail> {
        let histories_len = self.arena.len() as u64;
        if self.history_next != histories_len {
            return Err(self.corrupt(
                self.header.history_offset(),
                format!(
                    "the histories cover {} bytes of a {}-byte history section",
                    self.history_next, histories_len
                ),
            ));
        }
        let at = HEADER_LEN as u64 + window.at();
        let rest = window.bytes();
        let (tail, after) = postcard::take_from_bytes(rest)
            .map_err(|e| self.corrupt(at, format!("request ids or sessions do not decode: {e}")))?;
        if !after.is_empty() {
            return Err(self.corrupt(
                at + (rest.len() - after.len()) as u64,
                format!(
                    "{} unexpected bytes at the end of the tasks section",
                    after.len()
                ),
            ));
        }
        Ok(tail)
    }
}

/// The task of record `record` (read borrowed as `t`) in the form the state holds it: a
/// finished task as these bytes, once checked to decode (issue #20: building each finished
/// task only to drop it was a fifth of a snapshot open); a live one decoded. With it, what
/// the indexes key it by, read here once rather than back from the held task.
fn held<'a>(id: &str, t: &TaskV2Ref<'a>, record: &[u8]) -> Result<(Held, Keys<'a>)> {
    let state = wire::v1::state_from_code(t.state_code())?;
    let held = if state.is_terminal() {
        t.check()?;
        let (attempt, error_count, version) = t.counts();
        Held::terminal_record(state, attempt, error_count, version, record)
    } else {
        Held::new(TaskV2::decode(record, id)?)
    };
    Ok((held, t.keys(state)))
}

/// The state of the task of record `record`, after the same checks as [`held`] (a finished
/// task's record checked to decode, a live one decoded), keeping nothing.
fn checked_state(id: &str, t: &TaskV2Ref<'_>, record: &[u8]) -> Result<TaskState> {
    let state = wire::v1::state_from_code(t.state_code())?;
    if state.is_terminal() {
        t.check()?;
    } else {
        drop(TaskV2::decode(record, id)?);
    }
    Ok(state)
}

/// Decodes the tasks section read through `window` into a state whose histories point into
/// `arena`, checking the section's CRC (`history_checked` checks the history section's) with
/// the same precedence as when both were checked before decoding: a section that fails its
/// CRC is reported as such, whatever the decoding made of its bytes.
pub fn decode(
    path: &Path,
    header: &Header,
    mut window: Window<'_>,
    arena: &Arc<Arena>,
    history_checked: impl FnOnce() -> Result<()>,
) -> Result<State> {
    let decoded = decode_records(path, header, &mut window, arena);
    after_crcs(path, header, window, history_checked, decoded)
}

/// What reading the records gave (`read`), once both sections' CRCs are checked: a section
/// that fails its CRC is reported as such, whatever the decoding made of its bytes.
fn after_crcs<T>(
    path: &Path,
    header: &Header,
    window: Window<'_>,
    history_checked: impl FnOnce() -> Result<()>,
    read: Result<T>,
) -> Result<T> {
    let crc = window.finish_crc()?;
    header.check_tasks_crc(path, crc)?;
    history_checked()?;
    read
}

fn decode_records(
    path: &Path,
    header: &Header,
    window: &mut Window<'_>,
    arena: &Arc<Arena>,
) -> Result<State> {
    let mut records = Records::new(path, header, arena);
    let mut state = State::default();
    state.applied_lsn = header.lsn;
    state.reserve(records_to_reserve(header.records, header.tasks_len));
    // Records come in id order, not creation order: the indexes are built once at the end
    // (see `index::Builder`) instead of taking one tree insert per task.
    state.suspend_indexes();
    // Ids ascend (checked per record), so they are distinct: entered in the id table at the
    // end, all at once, in the table's order rather than one random write per record.
    state.defer_ids();
    let mut indexes = Builder::with_capacity(records_to_reserve(header.records, header.tasks_len));
    while records.left > 0 {
        match records.next_record(window.bytes(), window.at(), held) {
            Ok(((id, task, place), len)) => {
                let (task, keys) = task.unzip();
                let slot = state.load(id, task, History::from_place(arena, place));
                if let Some(keys) = keys {
                    indexes.push(slot, keys);
                }
                window.consume(len);
                records.left -= 1;
            }
            Err(Miss::Short(_)) if !window.all_read() => window.more()?,
            Err(Miss::Short(e) | Miss::Bad(e)) => return Err(e),
        }
    }
    // The state was empty and the records ascend by id, so slots ascend with ids.
    // Before the index build, which frees far larger buffers: allocations made after it come
    // from heap the allocator then keeps, and this one's would stay resident.
    state.enter_ids();
    state.build_indexes(indexes, Given::SlotAndIdOrder);
    window.fill()?;
    let (request_ids, closed_sessions) = records.finish(window)?;
    state.request_ids = request_ids.into_iter().collect();
    state.closed_sessions = closed_sessions.into_iter().collect();
    Ok(state)
}

/// Reads the tasks section through `window` as [`decode`] does, with the same checks and the
/// same precedence of the sections' CRCs, but builds no state: each record's id and state go
/// to `visit` (what `verify` keeps of a snapshot), then are dropped. Every history is checked
/// too, on a second thread as the records name them (`history_checks`). An error from `visit`
/// stops the read; it is reported after the CRC checks, as a record's error is, and a damaged
/// history after both.
pub fn visit(
    path: &Path,
    header: &Header,
    mut window: Window<'_>,
    arena: &Arc<Arena>,
    history_checked: impl FnOnce() -> Result<()>,
    visit: &mut TaskVisit<'_>,
) -> Result<()> {
    let visited = history_checks::beside(
        |id, place| {
            History::check_place(arena, place)
                .map_err(|e| snapshot::history_error(path, header.lsn, id, e))
        },
        |hand_over| visit_records(path, header, &mut window, arena, hand_over, visit),
    );
    after_crcs(path, header, window, history_checked, visited)
}

fn visit_records(
    path: &Path,
    header: &Header,
    window: &mut Window<'_>,
    arena: &Arc<Arena>,
    hand_over: &mut dyn FnMut(&str, Place),
    visit: &mut TaskVisit<'_>,
) -> Result<()> {
    let mut records = Records::new(path, header, arena);
    while records.left > 0 {
        match records.next_record(window.bytes(), window.at(), checked_state) {
            Ok(((id, state, place), len)) => {
                hand_over(id, place);
                visit(id, state)?;
                window.consume(len);
                records.left -= 1;
            }
            Err(Miss::Short(_)) if !window.all_read() => window.more()?,
            Err(Miss::Short(e) | Miss::Bad(e)) => return Err(e),
        }
    }
    window.fill()?;
    records.finish(window)?;
    Ok(())
}

/// Bytes of tasks section per record reserved for up front. The header's record count is only
/// bounded by `tasks_len / RECORD_BYTES_MIN` (5), and a reserved slot costs far more than 5
/// bytes, so trusting the count could reserve about 20 times the file; real records are
/// rarely under 64 bytes, and a count beyond this bound just grows the maps as it loads.
const RESERVE_BYTES_PER_RECORD: u64 = 64;

/// How many records to reserve for: the header's count, bounded by the section's size.
fn records_to_reserve(records: u64, tasks_len: u64) -> usize {
    usize::try_from(records.min(tasks_len / RESERVE_BYTES_PER_RECORD)).unwrap_or(0)
}

#[cfg(test)]
mod record_tests {
    use super::*;

    /// The same record as one struct, as versions before the split wrote it.
    #[derive(Serialize)]
    struct Whole<'a> {
        id: &'a str,
        history_offset: u64,
        history_len: u64,
        history_count: u32,
        task: Option<TaskV2<'a>>,
    }

    /// Head, option tag and task record written apart are, byte for byte, the postcard
    /// encoding of the whole record (docs/format.md), for a live and for a removed task.
    #[test]
    fn a_record_written_in_parts_is_the_whole_record() {
        let head = RecordHeadV2 {
            id: "task-1",
            history_offset: 300,
            history_len: 70_000,
            history_count: 5,
        };
        let mut task_bytes = Vec::new();
        let t = crate::store::task_record::sample_task(crate::task::TaskState::Completed);
        TaskV2::encode_into(&t, &mut task_bytes);
        let (record, _): (TaskV2<'_>, _) = postcard::take_from_bytes(&task_bytes).unwrap();
        for task in [Some(record), None] {
            let present = task.is_some();
            let whole = postcard::to_allocvec(&Whole {
                id: head.id,
                history_offset: head.history_offset,
                history_len: head.history_len,
                history_count: head.history_count,
                task,
            })
            .unwrap();
            let mut parts = postcard::to_allocvec(&head).unwrap();
            if present {
                parts.push(TASK_PRESENT);
                parts.extend_from_slice(&task_bytes);
            } else {
                parts.push(TASK_ABSENT);
            }
            assert_eq!(parts, whole, "present: {present}");
        }
    }
}

#[cfg(test)]
mod reserve_tests {
    use super::*;

    /// Issue #24 (11): a header claiming the most records its section can hold (one per 5
    /// bytes) reserves at most one per 64 bytes, so memory stays proportional to the file.
    #[test]
    fn reservation_is_bounded_by_the_section_size() {
        let tasks_len = 1 << 20;
        assert_eq!(records_to_reserve(tasks_len / 5, tasks_len), (1 << 20) / 64);
        assert_eq!(records_to_reserve(10, tasks_len), 10);
        assert_eq!(records_to_reserve(u64::MAX, 0), 0);
    }
}
