//! Where the state's memory goes, counted from the sizes and capacities of its structures (no
//! allocator hooks needed): what `examples/open_store --memory` prints per task, next to what
//! a counting allocator measures for the parts that cannot be counted this way (the tasks'
//! own strings, the ordered indexes' tree nodes).

use std::mem::size_of;

use super::{Entry, State};

/// Bytes of the state's structures, by part (heap only; the `State` value itself is small).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct MemoryUse {
    /// Task ids ever seen (one slot each, live or removed).
    pub slots: usize,
    /// Live tasks.
    pub live: usize,
    /// Events in all histories.
    pub events: u64,
    /// The id -> slot hash table (buckets and control bytes).
    pub id_table: usize,
    /// The shared `Arc<str>` ids (counts and bytes), one per slot.
    pub id_shared: usize,
    /// The slot vector (an `Entry` per slot, by capacity).
    pub slot_vec: usize,
    /// The tasks: a pending or running task's `Arc<Task>` allocation (counts and the
    /// fixed-size `Task`, without the strings and collections it owns), a terminal task's
    /// encoded record (which has everything).
    pub task_values: usize,
    /// History bytes held in memory (events not in a snapshot on disk), by capacity.
    pub history_heap: usize,
    /// Entries in all the ordered indexes (per state, role and provider: three per live task).
    pub index_entries: usize,
}

impl MemoryUse {
    /// Sum of the parts counted here.
    pub fn counted(&self) -> usize {
        self.id_table + self.id_shared + self.slot_vec + self.task_values + self.history_heap
    }
}

/// Bytes of a hashbrown table holding `capacity` items of `item` bytes: its buckets (a power
/// of two, at most 7/8 full) and one control byte per bucket plus a group's worth.
fn table_bytes(capacity: usize, item: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (item + 1) + 16
}

/// Bytes of an `Arc` allocation holding `len` bytes of payload (two counts, then the value).
const fn arc_bytes(len: usize) -> usize {
    2 * size_of::<usize>() + len
}

impl State {
    /// Where the state's memory goes (see [`MemoryUse`]). Walks every slot.
    pub fn memory_use(&self) -> MemoryUse {
        let mut m = MemoryUse {
            slots: self.slots.len(),
            live: self.len(),
            events: self.events,
            id_table: table_bytes(self.ids.capacity(), size_of::<u32>()),
            slot_vec: self.slots.capacity() * size_of::<Entry>(),
            ..MemoryUse::default()
        };
        for entry in &self.slots {
            m.id_shared += arc_bytes(entry.shared_id.len());
            m.history_heap += entry.history.heap_bytes();
            if let Some(held) = &entry.task {
                m.task_values += held.heap_bytes();
            }
        }
        m.index_entries = self.indexes.by_state.iter().map(|s| s.len()).sum::<usize>()
            + self
                .indexes
                .by_role
                .sets()
                .map(|(_, s)| s.len())
                .sum::<usize>()
            + self
                .indexes
                .by_provider
                .sets()
                .map(|(_, s)| s.len())
                .sum::<usize>();
        m
    }
}
