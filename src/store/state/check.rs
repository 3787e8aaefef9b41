//! A recount of everything the state keeps up as events apply, for tests: the indexes, the
//! number of removed ids and of history events, and the id table.

use super::index::Indexes;
use super::{Head, Held, State};
use crate::task::TaskState;

impl State {
    /// Recounts the indexes, removed ids and history events from the entries and compares
    /// them with those kept as events applied. `Err` describes the first difference.
    #[doc(hidden)]
    pub fn check_indexes(&self) -> Result<(), String> {
        let mut fresh = Indexes::default();
        let (mut removed, mut events) = (0usize, 0u64);
        if self.ids.len() != self.slots.len() {
            return Err(format!(
                "{} ids map to {} slots",
                self.ids.len(),
                self.slots.len()
            ));
        }
        for (slot, e) in (0u32..).zip(&self.slots) {
            let id = &*e.shared_id;
            if self.slot_of(id) != Some(slot) {
                return Err(format!("slot {slot} ({id:?}) is not where its id says"));
            }
            events += e.history.len() as u64;
            match (&e.task, e.get()) {
                (Some(_), Some(t)) if t.id != *id => {
                    return Err(format!("entry {id:?} holds task {:?}", t.id));
                }
                (Some(held), Some(t)) => {
                    // A task is held encoded exactly when it is terminal, and what the indexes
                    // read from the encoded form is what the task says.
                    if matches!(held, Held::Terminal(..)) != t.state.is_terminal() {
                        return Err(format!(
                            "task {id:?} ({:?}) is held in the wrong form",
                            t.state
                        ));
                    }
                    let (held_head, head) = (held.head(), Head::of(&t));
                    if held_head != head {
                        return Err(format!(
                            "task {id:?}: held head {held_head:?}, task {head:?}"
                        ));
                    }
                    fresh.insert(slot, &e.shared_id, head.keys);
                }
                (None, _) => removed += 1,
                (Some(_), None) => unreachable!("a held task reads back"),
            }
        }
        let kept = &self.indexes;
        // Independently of how `Indexes::insert` files a task: every indexed slot holds a live
        // task with the key's creation time and id, and the right state and names.
        for st in TaskState::ALL {
            self.check_set(kept.by_state(st), st.as_str(), |t| t.state == st)?;
        }
        for (role, set) in kept.by_role.sets() {
            self.check_set(set, "role", |t| t.role.as_deref() == Some(role))?;
        }
        for (provider, set) in kept.by_provider.sets() {
            self.check_set(set, "provider", |t| t.provider.as_deref() == Some(provider))?;
        }
        for st in TaskState::ALL {
            let (want, have) = (fresh.by_state(st), kept.by_state(st));
            if want != have {
                let missing = want.iter().filter(|(k, _)| !have.contains_key(*k));
                let extra = have.iter().filter(|(k, _)| !want.contains_key(*k));
                return Err(format!(
                    "{} index: {} kept, {} recounted; missing {:?}, extra {:?}",
                    st.as_str(),
                    have.len(),
                    want.len(),
                    missing.take(3).collect::<Vec<_>>(),
                    extra.take(3).collect::<Vec<_>>(),
                ));
            }
        }
        let figures = [
            ("role index", fresh.by_role == kept.by_role),
            ("provider index", fresh.by_provider == kept.by_provider),
            ("attempts", fresh.attempts == kept.attempts),
            ("failures", fresh.failures == kept.failures),
            ("removed ids", removed == self.removed),
            ("history events", events == self.events),
        ];
        if let Some((name, _)) = figures.iter().find(|(_, same)| !same) {
            let show = |ix: &Indexes, removed: usize, events: u64| {
                format!(
                    "roles {:?}, providers {:?}, attempts {}, failures {}, removed {removed}, events {events}",
                    ix.by_role.counts().collect::<Vec<_>>(),
                    ix.by_provider.counts().collect::<Vec<_>>(),
                    ix.attempts,
                    ix.failures
                )
            };
            return Err(format!(
                "{name} differ: kept {}; recounted {}",
                show(kept, self.removed, self.events),
                show(&fresh, removed, events)
            ));
        }
        Ok(())
    }

    fn check_set(
        &self,
        set: &super::Ordered,
        what: &str,
        belongs: impl Fn(&crate::task::Task) -> bool,
    ) -> Result<(), String> {
        for ((ms, id), &slot) in set {
            let task = self.task_at(slot);
            let task = task.as_deref();
            if !task.is_some_and(|t| t.created_at.0 == *ms && *t.id == **id && belongs(t)) {
                return Err(format!(
                    "{what} index files ({ms}, {id:?}) at slot {slot}, which holds {:?}",
                    task.map(|t| (t.created_at.0, &t.id, t.state, &t.role, &t.provider))
                ));
            }
        }
        Ok(())
    }
}
