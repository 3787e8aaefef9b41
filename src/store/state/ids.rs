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
    /// While deferring (`defer`), the ids given and not yet in `table`.
    deferred: Option<Deferred>,
}

impl IdTable {
    /// The slot of `id`; `id_of` gives a slot's id.
    pub fn get<'s>(&self, id: &str, id_of: impl Fn(u32) -> &'s str) -> Option<u32> {
        debug_assert!(
            self.deferred.is_none(),
            "no id is looked up while ids are deferred"
        );
        let hash = self.hasher.hash_one(id);
        self.table.find(hash, |&slot| id_of(slot) == id).copied()
    }

    /// Maps `id`, which the table does not hold, to `slot`; `id_of` gives the other slots' ids
    /// (to rehash them if the table grows).
    pub fn insert_new<'s>(&mut self, id: &str, slot: u32, id_of: impl Fn(u32) -> &'s str) {
        let hash = self.hasher.hash_one(id);
        if let Some(deferred) = &mut self.deferred {
            let first = *deferred.first_slot.get_or_insert(slot);
            debug_assert_eq!(
                u64::from(slot),
                u64::from(first) + deferred.hashes.len() as u64,
                "deferred ids come in slot order"
            );
            deferred.hashes.push(hash);
            return;
        }
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, slot, |&other| hasher.hash_one(id_of(other)));
    }

    /// Holds back the ids [`IdTable::insert_new`] is given, as hashes, until
    /// [`IdTable::enter_deferred`]; meanwhile they are not found. For ids known distinct that
    /// nothing looks up before they are all in (a snapshot's, which its reader checks to
    /// ascend, loaded into an empty state).
    pub fn defer(&mut self) {
        self.deferred.get_or_insert_default();
    }

    /// Enters the ids held back since [`IdTable::defer`]. Same result as entering each at
    /// once, but the writes sweep the table nearly in order: hashbrown puts an entry at the
    /// position its hash's low bits name, so the entries go in ordered by those bits
    /// (`by_low_bits`). One by one in id order, each landed at random: a cache miss per id,
    /// an eighth of a snapshot open of 200,000 tasks.
    pub fn enter_deferred<'s>(&mut self, id_of: impl Fn(u32) -> &'s str) {
        let Some(Deferred { first_slot, hashes }) = self.deferred.take() else {
            return;
        };
        let first = first_slot.unwrap_or(0);
        self.reserve(hashes.len(), &id_of);
        let hasher = &self.hasher;
        for at in by_low_bits(&hashes) {
            if let Some(&hash) = hashes.get(at as usize) {
                let slot = first + at;
                self.table
                    .insert_unique(hash, slot, |&other| hasher.hash_one(id_of(other)));
            }
        }
    }

    /// Room for `n` more ids without growing; `id_of` as for [`IdTable::insert_new`].
    pub fn reserve<'s>(&mut self, n: usize, id_of: impl Fn(u32) -> &'s str) {
        let hasher = &self.hasher;
        self.table
            .reserve(n, |&other| hasher.hash_one(id_of(other)));
    }

    /// Whether ids are being held back (`defer`).
    pub fn is_deferring(&self) -> bool {
        self.deferred.is_some()
    }

    /// Ids held (deferred ones included).
    pub fn len(&self) -> usize {
        self.table.len() + self.deferred.as_ref().map_or(0, |d| d.hashes.len())
    }

    /// Ids the table holds without growing.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

/// Ids held back by `IdTable::defer`: consecutive slots from the first, each id's hash.
/// (8 bytes an id. With the order they are entered in and the counting sort's table, the
/// deferral adds about 3.4 MB at 200,000 ids, freed once they are entered.)
#[derive(Debug, Default)]
struct Deferred {
    first_slot: Option<u32>,
    hashes: Vec<u64>,
}

/// The positions of `hashes` ordered by the low bits of each hash (about as many bits as the
/// table will have positions, at most 20): a counting sort, two passes, ties kept in their
/// order. The table's positions are the low bits of a hash, so inserting in this order writes
/// it in a few ascending sweeps. (A comparison sort of 200,000 hashes cost more than the
/// random writes it saved.)
fn by_low_bits(hashes: &[u64]) -> Vec<u32> {
    let bits = (usize::BITS - hashes.len().leading_zeros()).clamp(1, 20);
    let mask = (1u64 << bits) - 1;
    let home = |hash: u64| usize::try_from(hash & mask).unwrap_or(0);
    let mut next = vec![0u32; 1 << bits];
    for &hash in hashes {
        if let Some(count) = next.get_mut(home(hash)) {
            *count += 1;
        }
    }
    let mut start = 0;
    for at in &mut next {
        let count = *at;
        *at = start;
        start += count;
    }
    let mut ordered = vec![0u32; hashes.len()];
    for (position, &hash) in (0u32..).zip(hashes) {
        if let Some(at) = next.get_mut(home(hash))
            && let Some(place) = ordered.get_mut(*at as usize)
        {
            *place = position;
            *at += 1;
        }
    }
    ordered
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

    /// The counting sort keeps every entry once, ordered by the hashes' low bits.
    #[test]
    fn by_low_bits_orders_and_keeps_every_entry() {
        let hashes: Vec<u64> = (0u64..5_000)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let ordered = by_low_bits(&hashes);
        let bits = usize::BITS - hashes.len().leading_zeros();
        let mask = (1u64 << bits) - 1;
        assert!(ordered.is_sorted_by_key(|&at| hashes[at as usize] & mask));
        let mut positions = ordered.clone();
        positions.sort_unstable();
        assert_eq!(positions, (0..5_000).collect::<Vec<_>>());
        assert_eq!(by_low_bits(&[]), Vec::<u32>::new());
    }

    /// Ids deferred, then entered at once, are found as ids added one by one are, through
    /// the table's growth, and next to ids added before and after them.
    #[test]
    fn ids_added_all_at_once_are_found_by_slot() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("task-{i}")).collect();
        let id_of = |slot: u32| ids[slot as usize].as_str();
        let mut table = IdTable::default();
        table.insert_new("task-0", 0, id_of);
        table.defer();
        for slot in 1..19_999 {
            table.insert_new(id_of(slot), slot, id_of);
        }
        assert_eq!(table.len(), 19_999, "deferred ids are counted");
        table.enter_deferred(id_of);
        table.insert_new("task-19999", 19_999, id_of);
        assert_eq!(table.len(), ids.len());
        for (slot, id) in (0u32..).zip(&ids) {
            assert_eq!(table.get(id, id_of), Some(slot), "{id}");
        }
        assert_eq!(table.get("task-20000", id_of), None);
    }
}
