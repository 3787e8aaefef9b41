//! Turning mutations into events: validation against the current state (including earlier
//! mutations of the same batch), optimistic-concurrency and fencing checks, idempotency.

use foldhash::HashMap;

use super::mutation::{Change, Mutation};
use super::state::{State, TaskRef};
use crate::error::{Error, Result};
use crate::task::{self, Event, EventKind, NewTask, Task, Timestamp};

/// Longest task id accepted.
pub const TASK_ID_BYTES_MAX: usize = task::limits::TASK_ID_BYTES_MAX;

/// How a batch sees a task it has touched.
#[expect(
    clippy::large_enum_variant,
    reason = "one per task touched by a batch; boxing would add an allocation"
)]
enum Shadow {
    /// Touched once so far, by the event at this index: the state's task with that event
    /// applied, computed only if a later event of the batch needs it.
    FirstAt(usize),
    /// The task after this batch's events so far (None: removed), on a copy.
    Task(Option<Task>),
}

/// Events staged for one batch. Nothing touches the state before the whole batch is known
/// to be valid; then every event is applied to the state in order, in place where it can be.
/// A task touched more than once by a batch is copied once, to validate its later events
/// against; a task touched once is never copied.
#[derive(Default)]
pub struct Staged {
    /// The events, in order.
    pub events: Vec<Event>,
    /// For each event, the slot its task had in the state when it was staged (`None`: the
    /// state had no such id yet), so that applying it looks the id up no more (issue #20:
    /// three hash lookups and id compares per event were about 8 % of a bulk load).
    pub event_slots: Vec<Option<u32>>,
    /// For each mutation in order, where its task id is found.
    pub slots: Vec<Slot>,
    /// Tasks as they stood before this batch removed them (returned to the caller).
    pub removed: HashMap<String, Task>,
    /// Every task this batch touched (unless it holds a single mutation).
    overlay: HashMap<String, Shadow>,
    /// Request ids submitted in this batch.
    requests: HashMap<String, String>,
    /// True when the batch holds one mutation: nothing later in it can need the overlay.
    single: bool,
    /// When known, the only task ids the batch touches more than once: a task outside it is
    /// touched once, so no later event needs its shadow and its id is not copied into the
    /// overlay. `None`: every task touched goes in (a staged import; a batch with request ids,
    /// whose repeated submits can name a task by request id).
    repeated: Option<foldhash::HashSet<String>>,
    /// Events handed over by [`Staged::take_chunk`] (a staged import): the index of
    /// `events[0]` in the whole batch, so indices and LSNs stay those of the whole batch.
    taken: usize,
}

/// Where a mutation's task id is found once the batch is staged.
pub enum Slot {
    /// The id of the event at this index of `events`.
    Event(usize),
    /// A repeated submit: the id of the task it created earlier.
    Existing(String),
}

impl Staged {
    /// An empty batch that will hold `mutations` mutations.
    pub fn new(mutations: &[Mutation]) -> Self {
        let n = mutations.len();
        let repeated = (n > 1).then(|| repeated_ids(mutations)).flatten();
        // NOTE: a batch of more than one mutation records in the overlay every task it touches
        // (or, when the repeated ones are known, those); sized up front, a bulk batch (an import
        // of 1,000,000 tasks) never rehashes it (growing it by doubling was 12 % of such an
        // import's CPU time, see docs/benchmarks.md, "Import: where the time and memory go").
        let overlay_len = repeated.as_ref().map_or(n, |r| r.len());
        let overlay = if n > 1 {
            HashMap::with_capacity_and_hasher(overlay_len, Default::default())
        } else {
            HashMap::default()
        };
        Staged {
            events: Vec::with_capacity(n),
            event_slots: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            single: n == 1,
            overlay,
            repeated,
            ..Staged::default()
        }
    }

    /// An empty batch staged a chunk at a time ([`Staged::take_chunk`]): sized for one chunk,
    /// not for the whole batch, since events and overlay entries leave with each chunk.
    pub fn chunked(chunk: usize) -> Self {
        Staged {
            events: Vec::with_capacity(chunk),
            event_slots: Vec::with_capacity(chunk),
            slots: Vec::with_capacity(chunk),
            ..Staged::default()
        }
    }

    /// The task ids of the mutations, in order.
    pub fn ids(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Event(i) => self.events.get(*i).map(|e| e.task_id.clone()),
                Slot::Existing(id) => Some(id.clone()),
            })
            .map(|id| id.expect("slots index staged events"))
            .collect()
    }

    /// The task as this batch currently sees it, for an id whose slot in the state is known
    /// (`State::slot_of`). Call `materialize` for `id` first.
    fn current_at<'a>(
        &'a self,
        state: &'a State,
        id: &str,
        slot: Option<u32>,
    ) -> Option<TaskRef<'a>> {
        match self.overlay.get(id) {
            Some(Shadow::Task(t)) => t.as_ref().map(TaskRef::Borrowed),
            _ => state.task_at(slot?),
        }
    }

    /// The task as this batch currently sees it when it is pending or running, borrowed
    /// (`None` for a terminal one: see `State::active_task`). Call `materialize` for `id` first.
    pub fn current_active<'a>(&'a self, state: &'a State, id: &str) -> Option<&'a Task> {
        match self.overlay.get(id) {
            Some(Shadow::Task(t)) => t.as_ref().filter(|t| !t.state.is_terminal()),
            _ => state.active_task(id),
        }
    }

    /// Whether the task exists as this batch currently sees it (without decoding a terminal
    /// one). Call `materialize` for `id` first.
    fn exists(&self, state: &State, id: &str) -> bool {
        match self.overlay.get(id) {
            Some(Shadow::Task(t)) => t.is_some(),
            _ => state.task_state(id).is_some(),
        }
    }

    /// A second event for a task in this batch must see the first one's effect: compute the
    /// task after the first event on a copy (the state stays untouched until the whole batch
    /// is valid).
    fn materialize(&mut self, state: &State, id: &str, lsn: u64) {
        let Some(shadow) = self.overlay.get_mut(id) else {
            return;
        };
        // NOTE: `take_chunk` leaves no `FirstAt` pointing below `taken` (it materializes or
        // forgets each one), so the subtraction cannot underflow; checked all the same.
        debug_assert!(!matches!(*shadow, Shadow::FirstAt(i) if i < self.taken));
        if let Shadow::FirstAt(i) = *shadow
            && let Some(event) = i.checked_sub(self.taken).and_then(|k| self.events.get(k))
        {
            *shadow = Shadow::Task(state.next_task_state(state.task(id), event, lsn + i as u64));
        }
    }

    /// Stages a submit that returns an existing task (its unique key is held) and writes
    /// nothing.
    pub fn push_existing(&mut self, id: String) {
        self.slots.push(Slot::Existing(id));
    }

    /// Validates one mutation and stages its event (or nothing, for a repeated submit). Takes
    /// the mutation's contents into the event: what is left of it afterwards means nothing.
    pub fn stage(
        &mut self,
        state: &State,
        m: &mut Mutation,
        now: Timestamp,
        session: u64,
        lsn: u64,
    ) -> Result<()> {
        if let Change::Submit(new) = &m.change
            && let Some(existing) = self.existing_request(state, new)
        {
            self.materialize(state, &existing, lsn);
            // A repeated submit writes nothing. If its task was removed since, there is
            // nothing to hand back: say so rather than create it again.
            if !self.exists(state, &existing) {
                return Err(Error::NotFound { id: existing });
            }
            self.slots.push(Slot::Existing(existing));
            return Ok(());
        }
        // The event is built where it stays, at the end of `events`, and checked there (taken
        // back off if refused): an `Event` is 280 bytes, and each move of one is a copy.
        let slot = self.push_event(state, m, now, session, lsn)?;
        let index = self.taken + self.events.len() - 1;
        let event = self.events.last().expect("push_event pushed one");
        let current = self.current_at(state, &event.task_id, slot);
        // NOTE: the transition check first: a change to a task that does not exist is
        // NotFound whatever its id looks like (an id no task can have names no task).
        let checked =
            task::apply::check(current.as_deref(), event).and_then(|()| check_limits(event));
        if let Err(e) = checked {
            self.events.pop();
            return Err(e);
        }
        if let (EventKind::Removed { .. }, Some(t)) = (&event.kind, current) {
            self.removed.insert(event.task_id.clone(), t.into_owned());
        }
        if !self.single {
            let event_lsn = lsn + index as u64;
            match self.overlay.get_mut(&event.task_id) {
                // `push_event` materialized any earlier first touch.
                Some(Shadow::Task(shadow)) => match shadow.as_mut() {
                    Some(t) if !task::apply::reshapes(&event.kind) => {
                        task::apply::apply(t, &mut event.clone(), event_lsn);
                    }
                    _ => {
                        let current = shadow.as_ref().map(TaskRef::Borrowed);
                        *shadow = state.next_task_state(current, event, event_lsn);
                    }
                },
                Some(Shadow::FirstAt(_)) => {
                    unreachable!("push_event materializes a task touched before")
                }
                // A task this batch touches only once needs no shadow: no later event reads it
                // (the id copy and the insert were one allocation per event of a bulk batch).
                None if self
                    .repeated
                    .as_ref()
                    .is_some_and(|r| !r.contains(&event.task_id)) => {}
                None => {
                    self.overlay
                        .insert(event.task_id.clone(), Shadow::FirstAt(index));
                }
            }
        }
        if let EventKind::Created {
            request_id: Some(r),
            ..
        } = &event.kind
        {
            self.requests.insert(r.clone(), event.task_id.clone());
        }
        self.slots.push(Slot::Event(index));
        self.event_slots.push(slot);
        Ok(())
    }

    /// Hands over the events staged since the last call (a staged import writes them to its
    /// staging segment and drops them), keeping what later mutations will need: a task whose
    /// event `k` (counted in these events) is `touched_later` keeps its overlay entry (a first
    /// touch in these events is materialized, since its event goes away); every other task of
    /// these events leaves the overlay, so the overlay holds only tasks with mutations still to
    /// come. `lsn` is the batch's first LSN. Slots and removed tasks (only for a caller that
    /// wants results) are dropped too.
    pub fn take_chunk(
        &mut self,
        state: &State,
        lsn: u64,
        touched_later: impl Fn(usize) -> bool,
    ) -> Vec<Event> {
        for k in 0..self.events.len() {
            let Some(event) = self.events.get(k) else {
                continue;
            };
            if touched_later(k) {
                let id = event.task_id.clone();
                self.materialize(state, &id, lsn);
            } else {
                self.overlay.remove(event.task_id.as_str());
            }
        }
        self.taken += self.events.len();
        self.event_slots.clear();
        self.slots.clear();
        self.removed.clear();
        std::mem::take(&mut self.events)
    }

    fn existing_request(&self, state: &State, new: &NewTask) -> Option<String> {
        let r = new.request_id.as_ref()?;
        self.requests
            .get(r)
            .or_else(|| state.request_ids.get(r))
            .cloned()
    }

    /// Checks `m`'s version and fence, builds its event and pushes it onto `events`; returns
    /// the slot its task id has in the state.
    fn push_event(
        &mut self,
        state: &State,
        m: &mut Mutation,
        now: Timestamp,
        session: u64,
        lsn: u64,
    ) -> Result<Option<u32>> {
        // Taken out of the caller's mutation: moved by value, a `Mutation` (344 bytes) was
        // copied on its way in.
        let change = std::mem::replace(&mut m.change, Change::Retry);
        let (expected_version, actor, fence) = (m.expected_version, m.actor.take(), m.fence.take());
        let task_id = match &change {
            Change::Submit(new) => submit_id(new)?,
            _ => std::mem::take(&mut m.task_id),
        };
        self.materialize(state, &task_id, lsn);
        let slot = state.slot_of(&task_id);
        let current = self.current_at(state, &task_id, slot);
        if let Some(expected) = expected_version {
            let actual = current.as_ref().map_or(0, |t| t.version);
            if actual != expected {
                return Err(Error::Conflict {
                    id: task_id,
                    expected,
                    actual,
                });
            }
        }
        if let Some(f) = &fence {
            check_fence(&task_id, current.as_deref(), f)?;
        }
        if let Change::Historical { kind, at } = change {
            drop(current);
            self.events.push(Event {
                task_id,
                at,
                actor,
                kind: *kind,
            });
            return Ok(slot);
        }
        let kind = event_kind(&task_id, current.as_deref(), change, now, session)?;
        drop(current);
        self.events.push(Event {
            task_id,
            at: now,
            actor,
            kind,
        });
        Ok(slot)
    }
}

/// The task ids `mutations` touch more than once, or `None` when that cannot be known before
/// staging: a submit with a request id may turn out to name an earlier task (of this batch or
/// of the state) by that request id.
fn repeated_ids(mutations: &[Mutation]) -> Option<foldhash::HashSet<String>> {
    let mut seen: foldhash::HashSet<&str> =
        foldhash::HashSet::with_capacity_and_hasher(mutations.len(), Default::default());
    let mut repeated = foldhash::HashSet::default();
    for m in mutations {
        let id = match &m.change {
            Change::Submit(new) if new.request_id.is_some() => return None,
            // Without an id a submit gets a fresh UUID, which no other mutation can name.
            Change::Submit(new) => match &new.id {
                Some(id) => id.as_str(),
                None => continue,
            },
            _ => m.task_id.as_str(),
        };
        if !seen.insert(id) {
            repeated.insert(id.to_string());
        }
    }
    Some(repeated)
}

fn check_fence(id: &str, current: Option<&Task>, f: &super::mutation::Fence) -> Result<()> {
    let task = current.ok_or_else(|| Error::NotFound { id: id.to_string() })?;
    let owner = task.lease.as_ref().map(|l| l.owner.as_str());
    let claim = task.lease.as_ref().map(|l| l.claim_lsn);
    let stale_claim = f.claim_lsn.is_some_and(|c| claim != Some(c));
    if owner != Some(f.owner.as_str()) || task.attempt != f.attempt || stale_claim {
        return Err(Error::LeaseMismatch {
            id: id.to_string(),
            reason: format!(
                "stale attempt: the caller holds attempt {} as {:?}, the task is at attempt {} leased to {:?}",
                f.attempt, f.owner, task.attempt, owner
            ),
        });
    }
    Ok(())
}

/// Refuses an event holding a value over one of the task limits (`task::limits`): whatever is
/// stored must export and re-import to the same state, whichever entry it came through.
fn check_limits(event: &Event) -> Result<()> {
    validate_id(&event.task_id)?;
    let found = task::limits::event_violations(event.at, event.actor.as_deref(), &event.kind);
    match found.into_iter().next() {
        None => Ok(()),
        Some((field, reason)) => Err(invalid(&event.task_id, &field, reason)),
    }
}

fn submit_id(new: &NewTask) -> Result<String> {
    let id = match &new.id {
        Some(id) => id.clone(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    validate_id(&id)?;
    Ok(id)
}

/// Checks a task id: non-empty, at most 256 bytes, no control characters.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidInput {
            at: Some("id".into()),
            reason: format!("task id {:?} {reason}", task::limits::excerpt(id)),
        })
    };
    if id.is_empty() {
        return bad("is empty");
    }
    if id.len() > TASK_ID_BYTES_MAX {
        return bad("is longer than 256 bytes");
    }
    if id.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    Ok(())
}

fn invalid(id: &str, field: &str, reason: String) -> Error {
    Error::InvalidInput {
        at: Some(format!("task {:?}: {field}", task::limits::excerpt(id))),
        reason,
    }
}

fn event_kind(
    id: &str,
    current: Option<&Task>,
    change: Change,
    now: Timestamp,
    session: u64,
) -> Result<EventKind> {
    Ok(match change {
        Change::Submit(new) => {
            if new.title.trim().is_empty() {
                return Err(invalid(
                    id,
                    "title",
                    "a task needs a non-empty title".into(),
                ));
            }
            if new.priority > 10 {
                return Err(invalid(
                    id,
                    "priority",
                    format!("{} is above 10", new.priority),
                ));
            }
            let mut tags: Vec<String> = Vec::with_capacity(new.tags.len());
            for t in new.tags {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            EventKind::Created {
                title: new.title,
                description: new.description,
                role: new.role,
                provider: new.provider,
                model: new.model,
                tags,
                metadata: new.metadata,
                priority: new.priority,
                request_id: new.request_id,
            }
        }
        Change::Update(u) => {
            if u.priority.is_some_and(|p| p > 10) {
                return Err(invalid(id, "priority", "priority is above 10".into()));
            }
            if u.title.as_ref().is_some_and(|t| t.trim().is_empty()) {
                return Err(invalid(
                    id,
                    "title",
                    "a task needs a non-empty title".into(),
                ));
            }
            EventKind::Updated(u)
        }
        Change::Start { owner, lease_ms } => EventKind::Started {
            lease_expires_at: owner
                .as_ref()
                .and(lease_ms)
                .map(|ms| now.plus_millis(ms as i64)),
            owner,
            session,
        },
        Change::Heartbeat { owner, lease_ms } => {
            let held = current
                .and_then(|t| t.lease.as_ref())
                .map(|l| l.owner.as_str());
            if current.is_some_and(|t| t.state == task::TaskState::Running)
                && held != Some(owner.as_str())
            {
                return Err(Error::LeaseMismatch {
                    id: id.to_string(),
                    reason: format!("heartbeat from {owner:?} but the lease is held by {held:?}"),
                });
            }
            EventKind::Heartbeat {
                owner,
                lease_expires_at: now.plus_millis(lease_ms as i64),
            }
        }
        Change::Progress {
            percent,
            step,
            message,
        } => {
            if percent > 100 {
                return Err(invalid(id, "progress", format!("{percent} is above 100")));
            }
            EventKind::Progress {
                percent,
                step,
                message,
            }
        }
        Change::Checkpoint {
            name,
            data,
            progress,
        } => {
            if progress.is_some_and(|p| p > 100) {
                return Err(invalid(id, "checkpoint.progress", "above 100".into()));
            }
            let progress = progress.unwrap_or_else(|| current.map_or(0, |t| t.progress.percent));
            EventKind::Checkpoint {
                name,
                progress,
                data,
            }
        }
        Change::Output {
            kind,
            content,
            path,
            size_bytes,
            mime,
        } => EventKind::Output {
            output_kind: kind,
            content,
            path,
            size_bytes,
            mime,
        },
        Change::Complete { result } => EventKind::Completed { result },
        Change::Fail { error } => EventKind::Failed { error },
        Change::Cancel { reason } => EventKind::Cancelled { reason },
        Change::Requeue { reason } => EventKind::Requeued { reason },
        Change::Retry => EventKind::Retried,
        Change::Discard { reason } => EventKind::Discarded { reason },
        Change::Remove { reason } => EventKind::Removed { reason },
        Change::Historical { kind, .. } => *kind,
        Change::Interrupt { reason, to } => {
            if !matches!(to, task::TaskState::Failed | task::TaskState::Pending) {
                return Err(invalid(
                    id,
                    "to",
                    format!("an interrupted task goes to failed or pending, not {to}"),
                ));
            }
            EventKind::Interrupted { reason, to }
        }
        Change::Import(task) => {
            if task.title.trim().is_empty() {
                return Err(invalid(
                    id,
                    "title",
                    "a task needs a non-empty title".into(),
                ));
            }
            EventKind::Imported { task }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused mutation leaves nothing staged: its event is built in place at the end of
    /// `events` and must be taken back off, or the batch would write it.
    #[test]
    fn a_refused_mutation_leaves_no_event_staged() {
        let state = State::default();
        let mut batch = vec![
            Mutation::submit(NewTask::new("first").id("a")),
            // Starting a task that does not exist is refused (NotFound) by the transition
            // check, after its event was built.
            Mutation::new("nobody", Change::Retry),
            // Too long a title is refused by the limits, after the transition check passed.
            Mutation::submit(NewTask::new("x".repeat(task::limits::TEXT_BYTES_MAX + 1)).id("b")),
        ];
        let mut staged = Staged::new(&batch);
        let now = Timestamp(1);
        staged
            .stage(&state, &mut batch[0], now, 1, 1)
            .expect("a submit stages");
        let refused = staged.stage(&state, &mut batch[1], now, 1, 1);
        assert!(
            matches!(refused, Err(Error::NotFound { .. })),
            "{refused:?}"
        );
        let refused = staged.stage(&state, &mut batch[2], now, 1, 1);
        assert!(refused.is_err(), "an oversized title is refused");
        assert_eq!(
            staged.events.len(),
            1,
            "only the accepted event stays staged"
        );
        assert_eq!(staged.event_slots.len(), 1);
        assert_eq!(staged.events[0].task_id, "a");
    }
}
