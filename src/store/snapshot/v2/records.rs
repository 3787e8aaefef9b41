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

use super::{HEADER_LEN, Header};
use crate::error::{Error, Result};
use crate::store::history::{Arena, History};
use crate::store::state::State;
use crate::task::{Lease, Task, Timestamp, wire};

/// One task id: its history's place in the history section and, while it lives, the task.
#[derive(Serialize, Deserialize)]
pub struct RecordV2<'a> {
    pub id: &'a str,
    pub history_offset: u64,
    pub history_len: u64,
    pub history_count: u32,
    #[serde(borrow)]
    pub task: Option<TaskV2<'a>>,
}

/// A live task: the frozen v1 task DTO plus what the store keeps beside it.
#[derive(Serialize, Deserialize)]
pub struct TaskV2<'a> {
    task: wire::v1::Task,
    version: u64,
    last_lsn: u64,
    session: u64,
    #[serde(borrow)]
    lease: Option<LeaseV2<'a>>,
}

#[derive(Serialize, Deserialize)]
struct LeaseV2<'a> {
    owner: &'a str,
    expires_at_ms: i64,
    claim_lsn: u64,
}

impl<'a> TaskV2<'a> {
    /// The record of a live task.
    pub fn from_task(t: &'a Task) -> Self {
        TaskV2 {
            task: wire::v1::task_to_wire(t),
            version: t.version,
            last_lsn: t.last_lsn,
            session: t.session,
            lease: t.lease.as_ref().map(|l| LeaseV2 {
                owner: &l.owner,
                expires_at_ms: l.expires_at.0,
                claim_lsn: l.claim_lsn,
            }),
        }
    }

    fn into_task(self, id: &str) -> Result<Task> {
        let mut task = wire::v1::task_from_wire(self.task)?;
        task.id = id.to_string();
        task.version = self.version;
        task.last_lsn = self.last_lsn;
        task.session = self.session;
        task.lease = self.lease.map(|l| Box::new(Lease {
            owner: l.owner.to_string(),
            expires_at: Timestamp(l.expires_at_ms),
            claim_lsn: l.claim_lsn,
        }));
        Ok(task)
    }
}

/// What `State::load` takes for one id.
type Loaded = (String, Option<Task>, History);
/// What follows the records: idempotency keys (request id, task id) and closed sessions.
type Tail = (Vec<(String, String)>, Vec<u64>);

/// Decodes the records of a tasks section one by one, checking as it goes that ids ascend
/// strictly and that the histories tile the history section from its start.
struct Records<'a> {
    path: &'a Path,
    header: &'a Header,
    section: &'a [u8],
    rest: &'a [u8],
    arena: &'a Arc<Arena>,
    left: u64,
    history_next: u64,
    previous: Option<&'a str>,
}

impl<'a> Records<'a> {
    fn offset(&self, rest: &[u8]) -> u64 {
        (HEADER_LEN + self.section.len() - rest.len()) as u64
    }

    fn corrupt(&self, at: u64, reason: String) -> Error {
        Error::corrupt(self.path, Some(at), Some(self.header.lsn), reason)
    }

    fn next_record(&mut self) -> Result<Loaded> {
        let at = self.offset(self.rest);
        let (r, rest): (RecordV2<'a>, _) = postcard::take_from_bytes(self.rest)
            .map_err(|e| self.corrupt(at, format!("task record does not decode: {e}")))?;
        self.rest = rest;
        if self.previous.is_some_and(|p| p >= r.id) {
            return Err(self.corrupt(
                at,
                format!("task {:?} is out of order or listed twice", r.id),
            ));
        }
        self.previous = Some(r.id);
        if r.history_offset != self.history_next {
            return Err(self.corrupt(
                at,
                format!(
                    "the history of {:?} starts at {}, the previous one ends at {}",
                    r.id, r.history_offset, self.history_next
                ),
            ));
        }
        let history =
            History::from_shared(self.arena, r.history_offset, r.history_len, r.history_count)
                .map_err(|e| self.corrupt(at, format!("task {:?}: {e}", r.id)))?;
        self.history_next += r.history_len;
        let task = match r.task {
            Some(t) => Some(
                t.into_task(r.id)
                    .map_err(|e| self.corrupt(at, format!("task {:?}: {e}", r.id)))?,
            ),
            None => None,
        };
        Ok((r.id.to_string(), task, history))
    }

    /// After the last record: the histories must cover the whole history section, and the
    /// idempotency keys and closed sessions must end the tasks section exactly.
    fn finish(self) -> Result<Tail> {
        if self.history_next != self.header.history_len {
            return Err(self.corrupt(
                self.header.history_offset(),
                format!(
                    "the histories cover {} bytes of a {}-byte history section",
                    self.history_next, self.header.history_len
                ),
            ));
        }
        let at = self.offset(self.rest);
        let (tail, rest) = postcard::take_from_bytes(self.rest)
            .map_err(|e| self.corrupt(at, format!("request ids or sessions do not decode: {e}")))?;
        if !rest.is_empty() {
            return Err(self.corrupt(
                self.offset(rest),
                format!(
                    "{} unexpected bytes at the end of the tasks section",
                    rest.len()
                ),
            ));
        }
        Ok(tail)
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Loaded>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let record = self.next_record();
        if record.is_err() {
            self.left = 0;
        }
        Some(record)
    }
}

/// Decodes a tasks section (its CRC and the history section's were checked) into a state
/// whose histories point into `arena`.
pub fn decode(path: &Path, header: &Header, section: &[u8], arena: &Arc<Arena>) -> Result<State> {
    let mut records = Records {
        path,
        header,
        section,
        rest: section,
        arena,
        left: header.records,
        history_next: 0,
        previous: None,
    };
    let mut state = State::default();
    state.applied_lsn = header.lsn;
    state.reserve(records_to_reserve(header.records, header.tasks_len));
    // Records come in id order, not creation order: the indexes are built once at the end
    // (see `Indexes::build`) instead of taking one tree insert per task.
    state.suspend_indexes();
    for record in &mut records {
        let (id, task, history) = record?;
        state.load(id, task, history);
    }
    state.rebuild_indexes();
    let (request_ids, closed_sessions) = records.finish()?;
    state.request_ids = request_ids.into_iter().collect();
    state.closed_sessions = closed_sessions.into_iter().collect();
    Ok(state)
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
