//! A consistent read view: several reads that all see the store at one LSN.
//!
//! A view holds the state's read lock for as long as it lives, so nothing can apply between
//! its reads; that is what makes it consistent without copying the state. The price: writers
//! (and background snapshots) wait while a view is held. Keep views short.
//!
//! IMPORTANT: a write from the thread that holds a view would wait for that view forever (the
//! write lock waits for the view's read lock). The store refuses such a write with
//! [`Error::InvalidInput`] instead of hanging; reads through the [`Store`] on that thread still
//! work (they take the lock recursively).

use std::cell::RefCell;

use parking_lot::RwLockReadGuard;

use super::state::{State, TaskRef};
use super::{HistoryEvent, Page, Query, Stats, Store};
use crate::error::{Error, Result};
use crate::task::Task;

thread_local! {
    /// The stores (by the address of their shared inner part) this thread holds views of.
    static VIEWS_HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Fails when the current thread holds a view of the store at `key`: a write now would wait for
/// the view it is itself holding.
pub(super) fn check_no_view(key: usize) -> Result<()> {
    if VIEWS_HELD.with(|v| v.borrow().contains(&key)) {
        return Err(Error::InvalidInput {
            at: None,
            reason: "this thread holds a read view (Store::read) of the store: drop it before \
                     writing, a write would wait for it forever"
                .into(),
        });
    }
    Ok(())
}

/// A consistent view of a [`Store`] at one LSN, from [`Store::read`]. Every read through it
/// (`get`, `list`, `count`, `stats`, `history`, `len`) sees exactly the changes up to
/// [`ReadView::lsn`], all of them durable under the store's durability mode.
///
/// Writers wait while a view is alive: keep it for a handful of reads, not across slow work.
/// On the thread holding it, writes to the same store fail with [`Error::InvalidInput`]
/// rather than waiting forever.
///
/// ```
/// use tasklog::{NewTask, Query, Store, TaskState};
///
/// # fn main() -> tasklog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.submit(NewTask::new("a").tag("x"))?;
/// let view = store.read()?;
/// let pending = Query::new().state(TaskState::Pending).tag("x");
/// // The count and the listing agree, whatever other threads write meanwhile.
/// assert_eq!(view.count(&pending)?, view.list(&pending)?.tasks.len());
/// assert_eq!(view.stats(None)?.total, view.len());
/// # Ok(())
/// # }
/// ```
pub struct ReadView<'a> {
    store: &'a Store,
    state: RwLockReadGuard<'a, State>,
    key: usize,
}

impl Store {
    /// A consistent view over several reads: everything read through it sees the store at one
    /// LSN. Waits until that LSN is durable (as every read does). See [`ReadView`].
    pub fn read(&self) -> Result<ReadView<'_>> {
        let state = self.inner.state.read_recursive();
        let key = self.view_key();
        // Registered before the wait below, so a failing wait still unregisters (drop).
        VIEWS_HELD.with(|v| v.borrow_mut().push(key));
        let view = ReadView {
            store: self,
            state,
            key,
        };
        // NOTE: waiting for durability while holding the read lock is safe: the log makes
        // records durable without the state lock.
        self.settle(view.state.applied_lsn)?;
        Ok(view)
    }
}

impl ReadView<'_> {
    /// The LSN of the last change this view sees.
    pub fn lsn(&self) -> u64 {
        self.state.applied_lsn
    }
    /// The task with this id.
    pub fn get(&self, id: &str) -> Result<Task> {
        self.state
            .task(id)
            .map(TaskRef::into_owned)
            .ok_or_else(|| Error::NotFound { id: id.to_string() })
    }
    /// Lists tasks matching a query (see [`Store::list`]).
    pub fn list(&self, query: impl Into<Query>) -> Result<Page> {
        Ok(super::query::run(&self.state, &query.into()))
    }
    /// Counts tasks matching a query's filter (see [`Store::count`]).
    pub fn count(&self, query: impl Into<Query>) -> Result<usize> {
        Ok(super::query::count(&self.state, &query.into().filter))
    }
    /// Statistics over the tasks this view sees (see [`Store::stats`]); the health figures
    /// describe the store now.
    pub fn stats(&self, by_key: Option<&str>) -> Result<Stats> {
        let mut stats = super::stats::count(&self.state, by_key);
        self.store.add_health(&mut stats)?;
        Ok(stats)
    }
    /// Every event of the task up to this view's LSN; also for removed tasks.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEvent>> {
        let h = self
            .state
            .history(id)
            .ok_or_else(|| Error::NotFound { id: id.to_string() })?;
        // The view holds the state's read lock, so no snapshot can move these events meanwhile.
        h.events_from(Some(self.store.inner.log.as_ref()))
    }
    /// Number of live tasks.
    pub fn len(&self) -> usize {
        self.state.len()
    }
    /// True when the view holds no live task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ReadView<'_> {
    fn drop(&mut self) {
        VIEWS_HELD.with(|v| {
            let mut v = v.borrow_mut();
            if let Some(i) = v.iter().rposition(|k| *k == self.key) {
                v.swap_remove(i);
            }
        });
    }
}
