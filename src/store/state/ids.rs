//! Task id -> slot. The table holds slot numbers only (4 bytes each); the ids themselves are
//! the slots' shared ids, which a lookup compares through the slot it finds. A map keyed by
//! the `Arc<str>` held 24 bytes per id, and filling its 200,000 scattered entries at a snapshot
//! open was an eighth of the open (docs/benchmarks.md, "Snapshot open: keys read once, the
//! tasks section streamed, ids held by slot").

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Task id -> slot (see the module documentation).
#[derive(Debug, Default)]
pub struct IdTable {
    table: HashTable<u32>,
    /// Seeded per table, as `foldhash::HashMap` is: ids come from outside.
    hasher: foldhash::fast::RandomState,
}

impl IdTable {
    /// The slot of `id`; `id_of` gives a slot's id.
    pub fn get<'s>(&self, id: &str, id_of: impl Fn(u32) -> &'s str) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.table.find(hash, |&slot| id_of(slot) == id).copied()
    }

    /// Maps `id`, which the table does not hold, to `slot`; `id_of` gives the other slots' ids
    /// (to rehash them if the table grows).
    pub fn insert_new<'s>(&mut self, id: &str, slot: u32, id_of: impl Fn(u32) -> &'s str) {
        let hash = self.hasher.hash_one(id);
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, slot, |&other| hasher.hash_one(id_of(other)));
    }

    /// Room for `n` more ids without growing; `id_of` as for [`IdTable::insert_new`].
    pub fn reserve<'s>(&mut self, n: usize, id_of: impl Fn(u32) -> &'s str) {
        let hasher = &self.hasher;
        self.table.reserve(n, |&other| hasher.hash_one(id_of(other)));
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Ids the table holds without growing.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids map to their slots through growth (every rehash reads the ids by slot), and an id
    /// not held is not found even when its hash's bucket is taken.
    #[test]
    fn ids_are_found_by_slot_through_growth() {
        let ids: Vec<String> = (0..5_000).map(|i| format!("task-{i}")).collect();
        let id_of = |slot: u32| ids[slot as usize].as_str();
        let mut table = IdTable::default();
        for (slot, id) in (0u32..).zip(&ids) {
            assert_eq!(table.get(id, id_of), None, "{id} before its insert");
            table.insert_new(id, slot, id_of);
        }
        assert_eq!(table.len(), ids.len());
        for (slot, id) in (0u32..).zip(&ids) {
            assert_eq!(table.get(id, id_of), Some(slot));
        }
        assert_eq!(table.get("task-5000", id_of), None);
        table.reserve(10_000, id_of);
        assert!(table.capacity() >= 15_000);
        assert_eq!(table.get("task-4999", id_of), Some(4999));
    }
}
