//! Group commit, leader/follower style (okaywal, house style #5).
//!
//! Appenders encode their frames into a shared buffer under one `parking_lot` mutex, which is
//! also where LSNs are assigned, so buffer order is LSN order. A waiter that finds its LSN not
//! yet acknowledged and no leader active becomes the leader: it takes the *whole* buffer,
//! releases the mutex, writes it with one `write_all_at` per segment touched and (when the mode
//! or the caller needs it) one `sync_data`, then publishes the new watermarks and `notify_all`s.
//! Records submitted while a leader is in its fsync accumulate, and the next waiter to wake
//! becomes the next leader and takes all of them: batches form by themselves under load.
//!
//! IMPORTANT: a failed write or fsync poisons the log. We never retry an fsync: after a failure
//! the kernel may have dropped the dirty pages and a second fsync would report success for data
//! that is gone (fsyncgate). Every waiter of the failed batch and every later call gets an error.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::frame::{self, FLAG_BATCH_BEGIN, FLAG_BATCH_END, FLAGS_SINGLE, RECORD_BYTES_MAX};
use super::segment::writer::{ActiveSegment, create_segment};
use super::segment::{SEGMENT_HEADER_LEN, SegmentHeader};
use super::stats::Counters;
use super::storage::{OpenMode, Storage, StorageFile, StorageLock};
use super::{Durability, Lsn, WalOptions};
use crate::error::{Error, Result};

/// Buffered bytes above which `submit` writes the buffer itself instead of waiting for a
/// waiter to (bounds memory in `Buffered` mode).
///
/// NOTE: 1 MiB, not more: the chunk is copied into the page cache right after it was encoded,
/// and while it still fits in the development VM's 1 MiB per-core L2 that copy is cheap. At
/// 4 MiB the kernel's copy took about 40% of the CPU profile of a buffered bulk load (W3)
/// instead of about 8%; 512 KiB was no faster than 1 MiB.
pub const BUFFER_FLUSH_BYTES: usize = 1 << 20;

/// Written buffers at most this large are kept for reuse. A buffer gets past
/// [`BUFFER_FLUSH_BYTES`] only by the last batch appended to it, and one huge batch must not pin
/// its memory for the life of the log.
const BUFFER_REUSE_BYTES_MAX: usize = 2 * BUFFER_FLUSH_BYTES;
/// Written buffers kept for reuse: one being filled while another is being written.
const BUFFERS_REUSED_MAX: usize = 2;

/// Extra rounds a leader may run for others after its own records are durable. One saves a
/// follower wake-up per fsync under load while bounding how long the leader's own caller
/// waits for others (one more fsync at most).
pub const LEADER_EXTRA_ROUNDS: u32 = 1;

/// A segment known to the log.
#[derive(Clone, Debug)]
pub struct SegmentMeta {
    pub first_lsn: Lsn,
    pub path: PathBuf,
    /// A read-only log's handle on this segment, opened with the log: a writer in another
    /// process may remove the segment (compaction below a new snapshot) while this reader still
    /// reads it, and an open handle keeps the bytes readable (an unlinked file lives on while
    /// open on POSIX; on Windows std opens with `FILE_SHARE_DELETE`, so the writer's removal
    /// succeeds and takes effect at the last close). `None` for a writer, which removes only
    /// what it no longer reads.
    pub pinned: Option<Arc<dyn StorageFile>>,
    /// Where batches begin, noted by a writer's open as it checked this segment (the last one
    /// then): a replay from an LSN inside it starts at a mark instead of the segment's start.
    /// Only a writer keeps them: it holds the lock, so no one else cuts or rewrites the bytes.
    pub marks: Option<Arc<super::segment::Marks>>,
}

impl SegmentMeta {
    /// A segment read by its path.
    pub fn new(first_lsn: Lsn, path: PathBuf) -> Self {
        SegmentMeta {
            first_lsn,
            path,
            pinned: None,
            marks: None,
        }
    }

    /// Opens the segment for reading: its pinned handle if it has one.
    pub fn open(&self, storage: &dyn Storage) -> std::io::Result<Arc<dyn StorageFile>> {
        match &self.pinned {
            Some(file) => Ok(Arc::clone(file)),
            None => storage.open(&self.path, OpenMode::Read).map(Arc::from),
        }
    }
}

/// Encoded frames waiting to be written, all destined for one segment at one offset.
#[derive(Debug)]
struct Chunk {
    segment_first_lsn: Lsn,
    offset: u64,
    bytes: Vec<u8>,
}

/// What a waiter needs before it may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Written to the OS.
    Written,
    /// Covered by a successful fdatasync.
    Synced,
}

/// Everything behind the log's one mutex.
#[derive(Debug)]
pub struct State {
    pub next_lsn: Lsn,
    pub written_lsn: Lsn,
    pub synced_lsn: Lsn,
    chunks: Vec<Chunk>,
    pending_bytes: usize,
    /// Empty buffers of written chunks, reused so that a steady stream of appends neither
    /// regrows a buffer from nothing nor faults in fresh pages for every chunk.
    free_buffers: Vec<Vec<u8>>,
    /// Segment and offset at which the next submitted frame will land.
    planned_first_lsn: Lsn,
    planned_offset: u64,
    leader: bool,
    /// Threads blocked in `drive` waiting for the leader.
    waiters: usize,
    /// The first failure: its text and a copy of it (`Error::Poisoned`'s source).
    pub poisoned: Option<(String, Arc<Error>)>,
    pub closed: bool,
    pub segments: Vec<SegmentMeta>,
    pub lock: Option<Box<dyn StorageLock>>,
    /// Header and frame bytes of every segment present.
    pub log_bytes: u64,
    /// Records submitted through this handle.
    pub appends: u64,
}

impl State {
    /// The segment (its first LSN) and offset at which the next submitted frame will land.
    pub fn planned_end(&self) -> (Lsn, u64) {
        (self.planned_first_lsn, self.planned_offset)
    }

    /// State for a log whose last segment ends at `data_end` and holds LSNs below `next_lsn`.
    pub fn new(
        next_lsn: Lsn,
        planned: (Lsn, u64),
        segments: Vec<SegmentMeta>,
        log_bytes: u64,
    ) -> State {
        State {
            next_lsn,
            written_lsn: next_lsn.saturating_sub(1),
            synced_lsn: next_lsn.saturating_sub(1),
            chunks: Vec::new(),
            pending_bytes: 0,
            free_buffers: Vec::new(),
            planned_first_lsn: planned.0,
            planned_offset: planned.1,
            leader: false,
            waiters: 0,
            poisoned: None,
            closed: false,
            segments,
            lock: None,
            log_bytes,
            appends: 0,
        }
    }

    /// After a staging segment of `bytes` bytes became live (`staging::Staging::commit`):
    /// its records are written and synced, and the next record lands at the start of the new
    /// active segment beginning at `next_lsn`.
    pub fn set_committed_staging(&mut self, next_lsn: Lsn, bytes: u64) {
        let count = next_lsn.saturating_sub(self.next_lsn);
        self.next_lsn = next_lsn;
        self.written_lsn = next_lsn - 1;
        self.synced_lsn = next_lsn - 1;
        self.planned_first_lsn = next_lsn;
        self.planned_offset = SEGMENT_HEADER_LEN as u64;
        self.log_bytes += bytes + SEGMENT_HEADER_LEN as u64;
        self.appends += count;
    }

    /// The error every call gets once the log is closed or poisoned.
    pub fn refuse(&self) -> Option<Error> {
        if self.closed {
            return Some(Error::Closed);
        }
        self.poisoned.as_ref().map(Error::poisoned_by)
    }
}

/// The shared core of a log handle.
pub struct Core {
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub options: WalOptions,
    pub state: Mutex<State>,
    pub cond: Condvar,
    /// The active segment; only the leader locks it (uncontended).
    pub writer: Mutex<Option<ActiveSegment>>,
    /// Set together with `State::poisoned`: lets an acknowledgement that needs no I/O
    /// (`Buffered`) check for poison without taking the state mutex a second time.
    pub poison_flag: AtomicBool,
    pub counters: Counters,
    pub background: Mutex<Option<super::background::Background>>,
    /// The `Buffered` mode's flusher thread (`flusher.rs`), which writes a full buffer while
    /// appends go on; `None`: the appender writes it itself.
    pub flusher: Mutex<Option<super::flusher::Flusher>>,
    /// How the appender asks the flusher to write; set when the flusher is started.
    pub flush_requests: std::sync::OnceLock<Arc<super::flusher::Requests>>,
    /// The opener holds a good copy of every record up to this LSN (0: none): replay from
    /// above it may pass over damage below it (`scan_segment_covered`).
    pub covered_lsn: Lsn,
    /// Damage that replays passed over under `covered_lsn`: (segment, what is wrong), once each.
    pub covered_seen: Mutex<Vec<(PathBuf, String)>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Assigns LSNs to `payloads` and buffers their frames. Returns (first, last) LSN.
    pub fn submit(&self, payloads: &[&[u8]]) -> Result<(Lsn, Lsn)> {
        if self.options.read_only {
            return Err(Error::ReadOnly);
        }
        let mut total = 0usize;
        for p in payloads {
            if p.len() > RECORD_BYTES_MAX {
                return Err(Error::TooLarge {
                    what: "record",
                    len: p.len() as u64,
                    max: RECORD_BYTES_MAX as u64,
                });
            }
            total = total.saturating_add(frame::encoded_len(p.len()));
        }
        let mut st = self.state.lock();
        if let Some(e) = st.refuse() {
            return Err(e);
        }
        let first = st.next_lsn;
        if payloads.is_empty() {
            return Ok((first, first.saturating_sub(1)));
        }
        // NOTE: `next_lsn` derives from LSNs on disk; refuse rather than wrap.
        if first.checked_add(payloads.len() as u64).is_none() {
            return Err(Error::InvalidInput {
                at: Some("payloads".into()),
                reason: format!("no LSNs left after {first}"),
            });
        }
        // A batch never spans segments: roll before it unless the segment is still empty.
        let seg_max = self.options.segment_bytes_max;
        if st.planned_offset > SEGMENT_HEADER_LEN as u64
            && st.planned_offset.saturating_add(total as u64) > seg_max
        {
            st.planned_first_lsn = first;
            st.planned_offset = SEGMENT_HEADER_LEN as u64;
            st.log_bytes += SEGMENT_HEADER_LEN as u64;
        }
        let (seg, off) = (st.planned_first_lsn, st.planned_offset);
        if st.chunks.last().is_none_or(|c| c.segment_first_lsn != seg) {
            let bytes = st.free_buffers.pop().unwrap_or_default();
            st.chunks.push(Chunk {
                segment_first_lsn: seg,
                offset: off,
                bytes,
            });
        }
        let chunk = st.chunks.last_mut().ok_or(Error::Closed)?;
        chunk.bytes.reserve(total);
        let last_index = payloads.len() - 1;
        for (i, p) in payloads.iter().enumerate() {
            let mut flags = 0;
            if i == 0 {
                flags |= FLAG_BATCH_BEGIN;
            }
            if i == last_index {
                flags |= FLAG_BATCH_END;
            }
            debug_assert!(payloads.len() > 1 || flags == FLAGS_SINGLE);
            frame::encode_into(&mut chunk.bytes, first + i as u64, flags, p);
        }
        let last = first + last_index as u64;
        st.next_lsn = last + 1;
        st.planned_offset += total as u64;
        st.log_bytes += total as u64;
        st.pending_bytes += total;
        st.appends += payloads.len() as u64;
        let flush = st.pending_bytes >= BUFFER_FLUSH_BYTES;
        // A full buffer goes to the flusher thread when there is one, and this appender goes
        // on filling the next. With two buffers' worth pending (the flusher is still writing
        // the one before) it writes itself, after the flusher's round: that bounds memory.
        let flusher = self.flush_requests.get();
        let write_here = flush && (flusher.is_none() || st.pending_bytes >= 2 * BUFFER_FLUSH_BYTES);
        drop(st);
        if write_here {
            self.drive(last, Need::Written)?;
        } else if flush && let Some(requests) = flusher {
            requests.write_up_to(last);
        }
        Ok((first, last))
    }

    /// Waits until `lsn` is acknowledged under the log's durability mode.
    pub fn wait_ack(&self, lsn: Lsn) -> Result<()> {
        match self.options.durability {
            Durability::Sync => self.drive(lsn, Need::Synced),
            Durability::Interval(_) => self.drive(lsn, Need::Written),
            // NOTE: acknowledged once buffered, so no I/O and no second trip through the mutex
            // (`submit` already took it once). A flag set under the mutex still reports a
            // poisoning that happened since `submit` released it.
            _ => {
                if !self.poison_flag.load(Ordering::Acquire) {
                    return Ok(());
                }
                let st = self.state.lock();
                match &st.poisoned {
                    Some(c) => Err(Error::poisoned_by(c)),
                    None => Ok(()),
                }
            }
        }
    }

    /// Makes sure every record up to `target` is written (and synced, if `need` says so or
    /// the mode is `Sync`), becoming the leader when nobody else is.
    ///
    /// NOTE: a leader whose own records are done keeps leading (up to
    /// [`LEADER_EXTRA_ROUNDS`] more rounds) while others wait and records arrived during its
    /// fsync: the next fsync starts at once instead of after a follower wakes up.
    pub fn drive(&self, target: Lsn, need: Need) -> Result<()> {
        let mut st = self.state.lock();
        let mut rounds_led = 0u32;
        loop {
            let done = match need {
                Need::Written => st.written_lsn >= target,
                Need::Synced => st.synced_lsn >= target,
            };
            // NOTE: `done` before `poisoned`: records acknowledged before a later round failed
            // stay acknowledged. Reporting them as failed could make a caller retry a
            // mutation that is already durable.
            if !done && let Some(c) = &st.poisoned {
                return Err(Error::poisoned_by(c));
            }
            let for_others = done;
            if done {
                // NOTE: never lead for others once the log is closed: `close()` waits for the
                // active leader and then releases the LOCK, and a round started after that
                // would write into files another writer may own.
                let keep_leading = rounds_led > 0
                    && rounds_led <= LEADER_EXTRA_ROUNDS
                    && !st.leader
                    && !st.closed
                    && st.poisoned.is_none()
                    && st.waiters > 0
                    && !st.chunks.is_empty();
                if !keep_leading {
                    return Ok(());
                }
            } else if st.closed {
                return Err(Error::Closed);
            } else if st.leader {
                st.waiters += 1;
                self.cond.wait(&mut st);
                st.waiters -= 1;
                continue;
            }
            rounds_led += 1;
            let result = self.lead_round(&mut st, need);
            if for_others {
                // Our records were durable before this round: its failure is not ours to
                // report (its own waiters get it, and every later call sees the poison).
                if result.is_err() {
                    return Ok(());
                }
                continue;
            }
            result?;
        }
    }

    /// Waits until no leader is writing. With `closed` set, none can start after this.
    pub fn wait_no_leader(&self, st: &mut parking_lot::MutexGuard<'_, State>) {
        while st.leader {
            self.cond.wait(st);
        }
    }

    /// One leader round: take the buffer, write (and sync) it outside the lock, publish.
    fn lead_round(&self, st: &mut parking_lot::MutexGuard<'_, State>, need: Need) -> Result<()> {
        st.leader = true;
        let mut chunks = std::mem::take(&mut st.chunks);
        st.pending_bytes = 0;
        let last = st.next_lsn - 1;
        let sync = need == Need::Synced || self.options.durability == Durability::Sync;
        let (result, reusable) = parking_lot::MutexGuard::unlocked(st, || {
            let result = self.write_chunks(&chunks, sync);
            (result, reusable_buffers(&mut chunks))
        });
        st.leader = false;
        for b in reusable {
            if st.free_buffers.len() < BUFFERS_REUSED_MAX {
                st.free_buffers.push(b);
            }
        }
        match &result {
            Ok(()) => {
                st.written_lsn = last;
                if sync {
                    st.synced_lsn = last;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "log write failed; the log is poisoned until reopened");
                st.poisoned = Some((e.to_string(), Arc::new(e.duplicate())));
                self.poison_flag.store(true, Ordering::Release);
            }
        }
        self.cond.notify_all();
        result
    }

    /// The leader's I/O, outside the state lock.
    fn write_chunks(&self, chunks: &[Chunk], sync: bool) -> Result<()> {
        let mut guard = self.writer.lock();
        let active = guard.as_mut().ok_or(Error::ReadOnly)?;
        for chunk in chunks {
            if chunk.segment_first_lsn != active.first_lsn {
                self.roll(active, chunk.segment_first_lsn)?;
            }
            if chunk.bytes.is_empty() {
                continue;
            }
            let end = chunk.offset + chunk.bytes.len() as u64;
            if self.options.preallocate && end >= active.reserved_to {
                active.reserved_to = super::segment::writer::reserve(
                    &*active.file,
                    end,
                    self.options.segment_bytes_max,
                )
                .map_err(|e| Error::io("preallocate segment", active.path.clone(), e))?;
            }
            active
                .file
                .write_all_at(&chunk.bytes, chunk.offset)
                .map_err(|e| Error::io("write", active.path.clone(), e))?;
            self.counters
                .bytes_written
                .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
        }
        if sync {
            let t = Instant::now();
            active
                .file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", active.path.clone(), e))?;
            self.counters.record_fsync(t.elapsed());
        }
        Ok(())
    }

    /// Seals the active segment (fdatasync) and makes a new one starting at `first_lsn`.
    ///
    /// IMPORTANT: the seal syncs in every mode, `Buffered` and `Interval` included. Once the next
    /// segment's name exists the file system may make it durable at any moment (nothing orders
    /// a create after another file's data but an fsync), and a power cut would then leave the
    /// old segment as a sealed segment missing its tail: corruption under the format's
    /// invariants, so a crashed bulk load would need `repair` instead of reopening. Deferring the
    /// sync would not speed a bulk load up either: `sync()` must then flush the same bytes (a W3
    /// probe, medians of 5: 0.204 s deferred against 0.212 s, within the noise).
    fn roll(&self, active: &mut ActiveSegment, first_lsn: Lsn) -> Result<()> {
        let t = Instant::now();
        active
            .file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", active.path.clone(), e))?;
        self.counters.record_fsync(t.elapsed());
        let header = SegmentHeader {
            first_lsn,
            prev_first_lsn: active.first_lsn,
            segment_bytes_max: self.options.segment_bytes_max,
        };
        let next = create_segment(&*self.storage, &self.dir, header, self.options.preallocate)?;
        self.state
            .lock()
            .segments
            .push(SegmentMeta::new(first_lsn, next.path.clone()));
        *active = next;
        Ok(())
    }
}

/// Empties the written chunks and returns the buffers worth keeping (the rest are freed here,
/// outside the state mutex).
fn reusable_buffers(chunks: &mut Vec<Chunk>) -> Vec<Vec<u8>> {
    chunks
        .drain(..)
        .map(|c| c.bytes)
        .filter(|b| b.capacity() <= BUFFER_REUSE_BYTES_MAX)
        .take(BUFFERS_REUSED_MAX)
        .map(|mut b| {
            b.clear();
            b
        })
        .collect()
}

impl Drop for Core {
    fn drop(&mut self) {
        // Best effort: the last handle went away without `close()`.
        let (closed, last) = {
            let st = self.state.lock();
            (st.closed || st.poisoned.is_some(), st.next_lsn - 1)
        };
        if !closed
            && !self.options.read_only
            && let Err(e) = self.drive(last, Need::Synced)
        {
            tracing::warn!(error = %e, "could not sync the log on drop");
        }
        if let Some(bg) = self.background.lock().take() {
            bg.stop(false);
        }
        if let Some(flusher) = self.flusher.lock().take() {
            flusher.stop(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use crate::wal::sim::SimStorage;
    use crate::wal::{Durability, Lsn, Wal, WalOptions};

    fn buffered() -> WalOptions {
        WalOptions::default()
            .segment_bytes_max(4096)
            .preallocate(false)
            .durability(Durability::Buffered)
    }

    fn open(sim: &SimStorage) -> Wal {
        Wal::open_with_storage(Arc::new(sim.clone()), Path::new("/sim/log"), buffered())
            .expect("open should succeed")
            .0
    }

    fn payload(i: Lsn) -> Vec<u8> {
        (0..200 + i % 100).map(|k| (i * 31 + k) as u8).collect()
    }

    /// How many records `wal` replays, each checked to be `payload` of its LSN, from LSN 1 on.
    fn replayed(wal: &Wal) -> Lsn {
        let mut next = 1;
        wal.replay(1, &mut |lsn, p| {
            assert_eq!((lsn, p), (next, &payload(lsn)[..]));
            next += 1;
            Ok(())
        })
        .expect("replay should succeed");
        next - 1
    }

    /// A roll in `Buffered` mode still makes the old segment durable before the new segment can
    /// be: after a power cut with no `sync()` every segment but the last is complete, so the log
    /// replays a contiguous prefix instead of failing with a gap between segments. Would fail if
    /// the roll stopped syncing the segment it seals.
    #[test]
    fn buffered_roll_seals_the_old_segment_before_making_the_next() {
        for seed in 0..4u64 {
            let sim = SimStorage::new(seed);
            sim.set_torn_crash(Some(if seed % 2 == 0 { 512 } else { 4096 }));
            let wal = open(&sim);
            // Past one flush of the buffer: hundreds of 4 KiB segments are written and rolled.
            let n = 2 * super::BUFFER_FLUSH_BYTES as u64 / 250;
            for i in 1..=n {
                wal.append(&payload(i)).expect("append should succeed");
            }
            // The flusher thread writes a full buffer while appends go on: wait for the
            // round that wrote the first one (the appender wrote it itself before it).
            wal.core
                .drive(n / 2, super::Need::Written)
                .expect("the first buffer should be written");
            let image = sim.power_cut();
            drop(wal);
            let wal = open(&image);
            let mut next = 1;
            wal.replay(1, &mut |lsn, p| {
                assert_eq!((lsn, p), (next, &payload(lsn)[..]), "seed {seed}");
                next += 1;
                Ok(())
            })
            .expect("a buffered log should replay after a power cut");
            // Everything of the first flush but its last segment was sealed, hence synced.
            assert!(next > n / 3, "seed {seed}: only {} records back", next - 1);
        }
    }

    /// In `Buffered` mode a full buffer goes to the flusher thread, but what is pending stays
    /// bounded when the flusher cannot keep up: with its round held up (the segment writer
    /// locked here), the appender stops at two buffers' worth, waiting to write itself, instead
    /// of buffering everything. Once released, every record is written and replays. Would fail
    /// if the appender always left the writing to the flusher.
    #[test]
    fn buffered_appends_wait_when_the_flusher_falls_two_buffers_behind() {
        let sim = SimStorage::new(7);
        let wal = open(&sim);
        assert!(
            wal.core.flush_requests.get().is_some(),
            "a buffered log has a flusher"
        );
        let n = 5 * super::BUFFER_FLUSH_BYTES as u64 / 250;
        let held = wal.core.writer.lock();
        let appender = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 1..=n {
                    wal.append(&payload(i)).expect("append should succeed");
                }
            })
        };
        // Long enough for an unbounded appender to have buffered all of it (5 MiB).
        std::thread::sleep(std::time::Duration::from_millis(300));
        let pending = wal.core.state.lock().pending_bytes;
        assert!(
            pending < 2 * super::BUFFER_FLUSH_BYTES + 4096,
            "{pending} bytes pending while the flusher is held up"
        );
        assert!(
            !appender.is_finished(),
            "the appender waits for the flusher's round"
        );
        drop(held);
        appender.join().expect("the appender should finish");
        wal.sync().expect("sync should succeed");
        assert_eq!(replayed(&wal), n, "every record replays");
    }

    /// A write that fails on the flusher thread poisons the log for the appender: its later
    /// appends and its `sync()` fail (they do not go on as if the buffer had been written),
    /// and a reopened log holds only a prefix of what was appended.
    #[test]
    fn a_failed_write_on_the_flusher_reaches_the_appender() {
        let sim = SimStorage::new(3);
        let wal = open(&sim);
        sim.fail_nth_write(1);
        let n = 6 * super::BUFFER_FLUSH_BYTES as u64 / 250;
        let failed_at = (1..=n).find(|&i| wal.append(&payload(i)).is_err());
        let failed_at = failed_at.expect("an append fails once the flusher's write failed");
        assert!(
            failed_at < 4 * super::BUFFER_FLUSH_BYTES as u64 / 250,
            "appends went on to record {failed_at}"
        );
        assert!(wal.sync().is_err(), "sync reports the failed write");
        drop(wal);
        let back = replayed(&open(&sim.power_cut()));
        assert!(back < failed_at, "{back} records back");
    }

    /// In `Buffered` mode an acknowledgement needs no I/O and skips the mutex, but a poisoning
    /// since the submit is still reported, as before.
    #[test]
    fn buffered_ticket_reports_a_poisoning_after_its_submit() {
        let sim = SimStorage::new(1);
        let wal = open(&sim);
        let ticket = wal.submit(&[b"first"]).expect("submit should succeed");
        sim.fail_nth_write(1);
        assert!(wal.sync().is_err(), "the failed write should fail sync");
        assert!(matches!(ticket.wait(), Err(crate::Error::Poisoned { .. })));
        assert!(matches!(
            wal.append(b"later"),
            Err(crate::Error::Poisoned { .. })
        ));
    }
}
