//! Goal: a caller whose records are already durable never becomes a group-commit leader beside
//! one that is still writing (issue #23). The keep-leading test in `Core::drive`
//! (`src/wal/group_commit.rs`) lets a leader whose own records are done run one more round for
//! records others buffered; its conditions were left out of the mutation runs as "performance
//! only". Most are (they decide *who* leads the next round), but four of them, `&&` → `||` in
//! front of `!st.closed`, `st.poisoned.is_none()`, `st.waiters > 0` and `!st.chunks.is_empty()`,
//! skip the `!st.leader` and `rounds_led > 0` checks: a caller that only asks about records
//! already durable (`wait_durable`, and `read_lsns`, which backs history reads) starts a second
//! round while another leader writes, and blocks on the writer's mutex until that leader's write
//! and fsync are done. The writer's mutex keeps the two rounds' I/O apart, so nothing is
//! acknowledged early; what breaks is that a question about durable records waits for a disk
//! that may be stuck.
//!
//! Method: a storage wrapper over the simulated disk holds one write at a barrier (the leader
//! of record 2, inside its write); a second thread appends record 3 and waits for that leader;
//! then a third asks for the durability of record 1, which is already durable. It must answer
//! while the write is still held.

mod common;

use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use common::{all_records, sim_dir};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::storage::StorageFile;
use tasklog::wal::{OpenMode, Storage, Wal, WalOptions};

#[derive(Debug, Default)]
struct GateState {
    armed: bool,
    holding: bool,
    open: bool,
}

/// Holds the first write after [`WriteGate::arm`] until [`WriteGate::open`].
#[derive(Clone, Debug)]
struct WriteGate {
    inner: SimStorage,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

impl WriteGate {
    fn new(inner: SimStorage) -> WriteGate {
        WriteGate {
            inner,
            state: Arc::default(),
        }
    }
    fn arm(&self) {
        self.state.0.lock().unwrap().armed = true;
    }
    /// Waits until a write is held at the gate.
    fn wait_holding(&self) {
        let (m, cv) = &*self.state;
        let mut st = m.lock().unwrap();
        while !st.holding {
            st = cv.wait(st).unwrap();
        }
    }
    fn open(&self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap().open = true;
        cv.notify_all();
    }
    fn pass(&self) {
        let (m, cv) = &*self.state;
        let mut st = m.lock().unwrap();
        if st.armed {
            st.armed = false;
            st.holding = true;
            cv.notify_all();
            while !st.open {
                st = cv.wait(st).unwrap();
            }
            st.holding = false;
        }
    }
}

#[derive(Debug)]
struct GatedFile {
    inner: Box<dyn StorageFile>,
    gate: WriteGate,
}

impl StorageFile for GatedFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.gate.pass();
        self.inner.write_all_at(buf, offset)
    }
    storage_file_passes_to!(inner; read_at, sync_data, sync_all, set_len, len, allocate, preallocate, zeros_from, drop_cache, map_all, read_all, read_prefix);
}

impl Storage for WriteGate {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Box::new(GatedFile {
            inner,
            gate: self.clone(),
        }))
    }
    crate::storage_but_open_passes_to!(inner);
}

/// While the leader of record 2 is inside its write and record 3 waits for it, asking for the
/// durability of record 1 (already durable) answers without waiting for that write, and
/// `durable_lsn` stays 1; once the write goes on, both appends are acknowledged.
///
/// Kills (`src/wal/group_commit.rs`, `Core::drive`, the keep-leading test): `&&` → `||` in front
/// of `!st.closed`, `st.poisoned.is_none()`, `st.waiters > 0` and `!st.chunks.is_empty()` (the
/// caller leads a round for record 3 beside the running leader and waits for the held write).
/// The bug they stand for: a history read or `wait_durable` of durable records hanging behind
/// another caller's stuck write.
#[test]
fn a_caller_with_nothing_to_do_never_leads_beside_a_running_leader() {
    let sim = SimStorage::new(7);
    let gate = WriteGate::new(sim.clone());
    let opts = WalOptions::default()
        .segment_bytes_max(1 << 20)
        .preallocate(false);
    let (wal, _) = Wal::open_with_storage(Arc::new(gate.clone()), sim_dir(), opts).unwrap();
    let wal = Arc::new(wal);
    wal.append(b"one").unwrap();

    gate.arm();
    let leader = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(b"two"))
    };
    gate.wait_holding();
    let follower = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(b"three"))
    };
    while wal.next_lsn() < 4 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // NOTE: time for the follower to go from `submit` to waiting on the leader. Too short a
    // pause can only hide a broken log (the follower not yet counted), never fail a good one.
    std::thread::sleep(Duration::from_millis(300));

    let (tx, rx) = mpsc::channel();
    let asker = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let _ = tx.send(wal.wait_durable(1));
        })
    };
    // A hang guard, not a speed test: the answer needs no I/O at all.
    let answered = rx.recv_timeout(Duration::from_secs(10));
    let durable = wal.durable_lsn();
    gate.open();
    let appended = (leader.join().unwrap(), follower.join().unwrap());
    asker.join().unwrap();

    answered
        .expect("wait_durable(1) waited for another leader's held write")
        .unwrap();
    assert_eq!(
        durable, 1,
        "records named durable while record 2 was being written"
    );
    assert_eq!(appended.0.unwrap(), 2);
    assert_eq!(appended.1.unwrap(), 3);
    assert_eq!(wal.durable_lsn(), 3);
    assert_eq!(all_records(&wal).unwrap().len(), 3);
}
