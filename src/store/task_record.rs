//! A task's encoded record: the frozen v1 task DTO (`wire::v1::Task`) plus what the store keeps
//! beside it (version, last LSN, session, lease), in postcard. It is the task part of a v2
//! snapshot's record (docs/format.md) and the form in which the state holds a terminal task
//! (`state::Held`), so a snapshot writes a terminal task's bytes as they are and a snapshot
//! open keeps them as they were read. The id is not in it: the snapshot record and the state's
//! slot hold it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::state::Keys;
use crate::task::{Lease, Task, TaskState, Timestamp, wire};

/// A task's record (see the module documentation).
#[derive(Serialize, Deserialize)]
pub struct TaskV2<'a> {
    task: wire::v1::Task,
    version: u64,
    last_lsn: u64,
    session: u64,
    #[serde(borrow)]
    lease: Option<LeaseV2<'a>>,
}

/// A task's record with every string borrowed from the bytes: what a snapshot open reads a
/// finished task with, since it keeps the bytes and needs only a few fields and the checks.
#[derive(Deserialize)]
pub struct TaskV2Ref<'a> {
    #[serde(borrow)]
    task: wire::v1::Task<&'a str>,
    version: u64,
    _last_lsn: u64,
    _session: u64,
    #[serde(borrow)]
    _lease: Option<LeaseV2<'a>>,
}

impl<'a> TaskV2Ref<'a> {
    /// What the indexes key the task by, `state` being its state code checked.
    pub fn keys(&self, state: TaskState) -> Keys<'a> {
        Keys {
            state,
            created_ms: self.task.created_at_ms,
            role: self.task.role,
            provider: self.task.provider,
            attempt: self.task.attempt,
            error_count: self.task.error_count,
        }
    }

    /// The state code (not checked: see [`TaskV2Ref::check`]).
    pub fn state_code(&self) -> u8 {
        self.task.state
    }

    /// The attempt number, error count and version.
    pub fn counts(&self) -> (u32, u32, u64) {
        (self.task.attempt, self.task.error_count, self.version)
    }

    /// Checks that the record decodes into a task ([`TaskV2::into_task`] would succeed).
    pub fn check(&self) -> Result<()> {
        wire::v1::check_task_wire(&self.task)
    }
}

#[derive(Serialize, Deserialize)]
struct LeaseV2<'a> {
    owner: &'a str,
    expires_at_ms: i64,
    claim_lsn: u64,
}

/// What `TaskV2` encodes from, borrowing the task's strings: field for field the same types
/// as `TaskV2` once serialized (`&str` and `String` encode alike), so no string is copied.
#[derive(Serialize)]
struct TaskV2Out<'a> {
    task: wire::v1::Task<&'a str>,
    version: u64,
    last_lsn: u64,
    session: u64,
    lease: Option<LeaseV2<'a>>,
}

impl<'a> TaskV2Out<'a> {
    fn of(t: &'a Task) -> Self {
        TaskV2Out {
            task: wire::v1::Task::from(t),
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
}

impl TaskV2<'_> {
    /// The task this record holds, under `id`.
    pub fn into_task(self, id: &str) -> Result<Task> {
        let mut task = wire::v1::task_from_wire(self.task)?;
        task.id = id.to_string();
        task.version = self.version;
        task.last_lsn = self.last_lsn;
        task.session = self.session;
        task.lease = self.lease.map(|l| {
            Box::new(Lease {
                owner: l.owner.to_string(),
                expires_at: Timestamp(l.expires_at_ms),
                claim_lsn: l.claim_lsn,
            })
        });
        Ok(task)
    }

    /// `t`'s record, encoded.
    #[cfg(test)]
    pub fn encode(t: &Task) -> Vec<u8> {
        let mut out = Vec::new();
        Self::encode_into(t, &mut out);
        out
    }

    /// Appends `t`'s record to `out`.
    pub fn encode_into(t: &Task, out: &mut Vec<u8>) {
        // Encoding into a vector fails only when serde reports an error, which none of these
        // types does (JSON values are rendered to text first). Appended in place
        // (`wire::AppendTo`: `to_io` went through `io::Write` per field, measurably slower on
        // the path that makes a task terminal).
        postcard::serialize_with_flavor(&TaskV2Out::of(t), wire::AppendTo(out))
            .unwrap_or_else(|e| panic!("task {:?} should encode: {e}", t.id));
    }

    /// Decodes a whole record (nothing may follow it) into the task `id`.
    pub fn decode(bytes: &[u8], id: &str) -> Result<Task> {
        let (record, rest): (TaskV2<'_>, _) =
            postcard::take_from_bytes(bytes).map_err(|e| bad_record(id, &e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad_record(id, &format!("{} bytes follow it", rest.len())));
        }
        record.into_task(id)
    }
}

/// A task with most fields set (role, provider, tags, metadata, result, error, lease,
/// version...), in `state`, with id `t-1`: for the tests of the encoded forms.
#[cfg(test)]
pub(crate) fn sample_task(state: crate::task::TaskState) -> Task {
    let mut t = wire::v1::task_from_wire(wire::v1::Task {
        title: "title".into(),
        description: "d".into(),
        role: Some("writer".into()),
        state: wire::v1::state_code(state),
        progress_percent: 100,
        progress_step: Some("done".into()),
        progress_message: None,
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_500,
        started_at_ms: Some(1_700_000_000_100),
        completed_at_ms: state.is_terminal().then_some(1_700_000_000_500),
        provider: Some("anthropic".into()),
        model: Some("m".into()),
        tags: vec!["a".into(), "b".into()],
        metadata: vec![("k".into(), "[1,2]".into())],
        result: Some("{\"ok\":true}".into()),
        last_error: Some("once".into()),
        error_count: 2,
        attempt: 3,
        priority: 4,
        checkpoint: None,
        outputs: Vec::new(),
    })
    .expect("the sample decodes");
    t.id = "t-1".into();
    t.lease = Some(Box::new(Lease {
        owner: "w".into(),
        expires_at: Timestamp(5),
        claim_lsn: 9,
    }));
    t.version = u64::MAX - 1;
    t.last_lsn = 11;
    t.session = 13;
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskState;

    fn task() -> Task {
        sample_task(TaskState::Completed)
    }

    /// A record decodes to the task it was encoded from (id aside, which it does not hold).
    #[test]
    fn a_record_round_trips() {
        let t = task();
        let bytes = TaskV2::encode(&t);
        assert_eq!(TaskV2::decode(&bytes, "t-1").unwrap(), t);
    }

    /// The borrowed encoder writes what the owned `TaskV2` decodes, byte for byte.
    #[test]
    fn the_borrowed_encoder_matches_the_owned_record() {
        let t = task();
        let bytes = TaskV2::encode(&t);
        let (owned, rest): (TaskV2<'_>, _) = postcard::take_from_bytes(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(postcard::to_allocvec(&owned).unwrap(), bytes);
    }

    /// The head reads role, creation time and provider from the front of a record.
    #[test]
    fn the_head_names_role_created_and_provider() {
        let t = task();
        let bytes = TaskV2::encode(&t);
        let head = RecordHead::decode(&bytes).unwrap();
        assert_eq!(head.role, Some("writer"));
        assert_eq!(head.provider, Some("anthropic"));
        assert_eq!(head.created_at_ms, t.created_at.0);
        let mut bare = t.clone();
        bare.role = None;
        bare.provider = None;
        let bytes = TaskV2::encode(&bare);
        let head = RecordHead::decode(&bytes).unwrap();
        assert_eq!((head.role, head.provider), (None, None));
    }

    /// A record with bytes after it, or cut short, is an error naming the task.
    #[test]
    fn a_bad_record_is_an_error_naming_the_task() {
        let mut bytes = TaskV2::encode(&task());
        bytes.push(0);
        let e = TaskV2::decode(&bytes, "t-1").unwrap_err().to_string();
        assert!(e.contains("t-1") && e.contains("1 bytes follow"), "{e}");
        bytes.truncate(bytes.len() - 10);
        let e = TaskV2::decode(&bytes, "t-1").unwrap_err().to_string();
        assert!(e.contains("t-1"), "{e}");
    }
}

fn bad_record(id: &str, reason: &str) -> Error {
    Error::Codec {
        what: format!("record of task {id:?}"),
        reason: reason.to_string(),
        source: None,
    }
}

/// The fields of a record that the state's indexes need (`state::index::Keys`), read from the
/// front of a record without decoding the rest: the v1 task DTO's fields up to `provider`, in
/// its order, strings borrowed.
#[derive(Deserialize)]
pub struct RecordHead<'a> {
    _title: &'a str,
    _description: &'a str,
    /// The task's role.
    pub role: Option<&'a str>,
    _state: u8,
    _progress_percent: u8,
    _progress_step: Option<&'a str>,
    _progress_message: Option<&'a str>,
    /// The task's creation time (ms since the epoch).
    pub created_at_ms: i64,
    /// When the task last changed.
    pub updated_at_ms: i64,
    /// When it started.
    pub started_at_ms: Option<i64>,
    /// When it finished.
    pub completed_at_ms: Option<i64>,
    /// The task's provider.
    pub provider: Option<&'a str>,
}

impl<'a> RecordHead<'a> {
    /// The head of the record `bytes` (which may go on).
    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        let (head, _) = postcard::take_from_bytes(bytes).map_err(|e| Error::Codec {
            what: "task record head".into(),
            reason: e.to_string(),
            source: None,
        })?;
        Ok(head)
    }
}
