//! `SimStorage`: an in-memory disk for crash and fault tests.
//!
//! Each file keeps its *live* bytes (what reads return) apart from its *synced* bytes (what
//! survives a power cut), and the directory keeps its live entries apart from its durable ones
//! (a create, rename or remove becomes durable only after `sync_dir` of its parent). `crash()`
//! returns a fresh disk holding only the durable state, optionally with a torn prefix of the
//! unsynced appends kept at sector granularity, chosen by a seeded RNG, so every run is
//! reproducible. Faults: fail the Nth write or fsync with EIO, fail writes with ENOSPC after N
//! bytes, tear the Nth write (a prefix lands, then EIO). Locks are per-path and in memory.
//! A new directory is durable only once its parent was synced (`sync_dir`); a power cut loses
//! a directory that is not, with everything in it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::storage::{OpenMode, Storage, StorageFile, StorageLock};

#[derive(Clone, Debug, Default)]
struct Inode {
    live: Vec<u8>,
    synced: Vec<u8>,
    /// Linux after a failed writeback: the pages that were dirty are marked clean with their
    /// new contents in the cache while the disk keeps the old. `Some(live at the failure)`:
    /// every byte still equal to it is clean-but-unwritten, never written back by a later
    /// fsync, gone at a power cut, and read from the disk once the cache is dropped.
    failed_writeback: Option<Vec<u8>>,
}

impl Inode {
    /// What writeback can still bring to disk: the live bytes, except those a failed
    /// writeback marked clean (the disk's bytes there).
    fn writable_image(&self) -> Vec<u8> {
        let mut out = self.live.clone();
        if let Some(failed) = &self.failed_writeback {
            for (i, b) in out.iter_mut().enumerate() {
                if failed.get(i) == Some(b) {
                    *b = self.synced.get(i).copied().unwrap_or(0);
                }
            }
        }
        out
    }
}

#[derive(Clone, Debug, Default)]
struct Faults {
    /// Writes from now until the failing one (1 = the next write fails).
    write_fail_in: Option<u64>,
    sync_fail_in: Option<u64>,
    torn_write_in: Option<u64>,
    enospc_bytes_left: Option<u64>,
}

#[derive(Debug)]
struct Disk {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    /// Directories whose entry in their parent was synced (roots always count as synced).
    durable_dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    faults: Faults,
    rng: fastrand::Rng,
    /// Sector size for torn crash images; `None` keeps exactly the synced bytes.
    torn_granularity: Option<usize>,
    writes: u64,
    syncs: u64,
}

/// An in-memory, fault-injecting [`Storage`]. Clones share one disk.
#[derive(Clone, Debug)]
pub struct SimStorage {
    disk: Arc<Mutex<Disk>>,
    gate: Arc<Gate>,
}

/// Holds file fsyncs back while closed, so a test can act while a sync is in flight.
#[derive(Debug, Default)]
struct Gate {
    held: Mutex<GateState>,
    cond: parking_lot::Condvar,
    waiting: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct GateState {
    held: bool,
    /// `Some(n)`: `n` more fsyncs pass, then the gate closes (a barrier on one given fsync).
    pass_then_hold: Option<u64>,
}

impl Gate {
    fn pass(&self) {
        let mut st = self.held.lock();
        loop {
            if !st.held {
                match st.pass_then_hold {
                    Some(0) => {
                        st.held = true;
                        st.pass_then_hold = None;
                        continue;
                    }
                    Some(n) => st.pass_then_hold = Some(n - 1),
                    None => {}
                }
                return;
            }
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.cond.wait(&mut st);
            self.waiting
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO on {what}"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

/// Counts down a fault; true when it fires now.
fn fire(slot: &mut Option<u64>) -> bool {
    match slot {
        Some(1) => {
            *slot = None;
            true
        }
        Some(n) => {
            *n -= 1;
            false
        }
        None => false,
    }
}

impl SimStorage {
    /// An empty disk; `seed` drives every random choice (torn crash images).
    pub fn new(seed: u64) -> SimStorage {
        SimStorage {
            disk: Arc::new(Mutex::new(Disk {
                inodes: HashMap::new(),
                next_inode: 1,
                live: BTreeMap::new(),
                durable: BTreeMap::new(),
                dirs: BTreeSet::new(),
                durable_dirs: BTreeSet::new(),
                locks: BTreeSet::new(),
                faults: Faults::default(),
                rng: fastrand::Rng::with_seed(seed),
                torn_granularity: None,
                writes: 0,
                syncs: 0,
            })),
            gate: Arc::default(),
        }
    }

    /// File fsyncs (`sync_data`, `sync_all`) block from now until [`SimStorage::release_syncs`].
    pub fn hold_syncs(&self) {
        let mut st = self.gate.held.lock();
        st.held = true;
        st.pass_then_hold = None;
    }
    /// Lets held fsyncs go on (they then succeed or fail as the faults say).
    pub fn release_syncs(&self) {
        let mut st = self.gate.held.lock();
        st.held = false;
        st.pass_then_hold = None;
        self.gate.cond.notify_all();
    }
    /// Lets the next `n` file fsyncs through (those held now first), then holds every later
    /// one as [`SimStorage::hold_syncs`] does: a barrier on one chosen fsync, so a test can act
    /// while, say, a group-commit leader is in its *second* round.
    pub fn release_syncs_then_hold_after(&self, n: u64) {
        let mut st = self.gate.held.lock();
        st.held = false;
        st.pass_then_hold = Some(n);
        self.gate.cond.notify_all();
    }
    /// How many fsyncs are blocked by [`SimStorage::hold_syncs`] now.
    pub fn syncs_held(&self) -> usize {
        self.gate.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Crash images keep a random prefix of each file's unsynced appends, in whole sectors of
    /// `granularity` bytes (512 or 4096); `None` keeps only synced bytes.
    pub fn set_torn_crash(&self, granularity: Option<usize>) {
        self.disk.lock().torn_granularity = granularity.filter(|g| *g > 0);
    }
    /// The `n`th write from now (1 = the next) fails with EIO and writes nothing.
    pub fn fail_nth_write(&self, n: u64) {
        self.disk.lock().faults.write_fail_in = Some(n.max(1));
    }
    /// The `n`th fsync/fdatasync from now fails with EIO.
    pub fn fail_nth_sync(&self, n: u64) {
        self.disk.lock().faults.sync_fail_in = Some(n.max(1));
    }
    /// The `n`th write from now writes a random prefix of its bytes, then fails with EIO.
    pub fn tear_nth_write(&self, n: u64) {
        self.disk.lock().faults.torn_write_in = Some(n.max(1));
    }
    /// Writes fail with ENOSPC once `bytes` more bytes have been written (the failing write
    /// writes nothing); so does a preallocation that would grow a file by more than what is
    /// left.
    pub fn enospc_after_bytes(&self, bytes: u64) {
        self.disk.lock().faults.enospc_bytes_left = Some(bytes);
    }
    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.disk.lock().faults = Faults::default();
    }
    /// Writes and syncs performed so far.
    pub fn op_counts(&self) -> (u64, u64) {
        let d = self.disk.lock();
        (d.writes, d.syncs)
    }

    /// Power cut: a new disk holding only durable directory entries and synced bytes (plus,
    /// with [`SimStorage::set_torn_crash`], a seeded torn prefix of unsynced appends).
    pub fn crash(&self) -> SimStorage {
        let mut d = self.disk.lock();
        let mut inodes = HashMap::new();
        let dirs: BTreeSet<PathBuf> = d
            .dirs
            .iter()
            .filter(|dir| d.dir_survives(dir))
            .cloned()
            .collect();
        let mut durable = d.durable.clone();
        durable.retain(|p, _| p.parent().is_some_and(|parent| dirs.contains(parent)));
        for ino in durable.values() {
            let Some(node) = d.inodes.get(ino).cloned() else {
                continue;
            };
            let mut image = node.synced.clone();
            if let Some(g) = d.torn_granularity {
                let pending = node.writable_image();
                image = torn_image(&node.synced, &pending, g, &mut d.rng);
            }
            inodes.insert(
                *ino,
                Inode {
                    live: image.clone(),
                    synced: image,
                    failed_writeback: None,
                },
            );
        }
        let seed = d.rng.u64(..);
        SimStorage {
            disk: Arc::new(Mutex::new(Disk {
                inodes,
                next_inode: d.next_inode,
                live: durable.clone(),
                durable,
                durable_dirs: dirs.clone(),
                dirs,
                locks: BTreeSet::new(),
                faults: Faults::default(),
                rng: fastrand::Rng::with_seed(seed),
                torn_granularity: d.torn_granularity,
                writes: 0,
                syncs: 0,
            })),
            gate: Arc::default(),
        }
    }

    /// Same as [`SimStorage::crash`].
    pub fn power_cut(&self) -> SimStorage {
        self.crash()
    }

    /// Overwrites a file's live and synced bytes (for tests that damage files); its directory
    /// and their parents become durable.
    pub fn put_file(&self, path: &Path, bytes: Vec<u8>) {
        let mut d = self.disk.lock();
        for a in path.ancestors().skip(1) {
            d.dirs.insert(a.to_path_buf());
            d.durable_dirs.insert(a.to_path_buf());
        }
        let ino = match d.live.get(path) {
            Some(i) => *i,
            None => {
                let i = d.next_inode;
                d.next_inode += 1;
                d.live.insert(path.to_path_buf(), i);
                d.durable.insert(path.to_path_buf(), i);
                i
            }
        };
        d.inodes.insert(
            ino,
            Inode {
                live: bytes.clone(),
                synced: bytes,
                failed_writeback: None,
            },
        );
    }
    /// A file's live bytes.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let d = self.disk.lock();
        let ino = d.live.get(path)?;
        d.inodes.get(ino).map(|n| n.live.clone())
    }
}

impl Disk {
    /// True when a power cut keeps `dir`: it and every ancestor were synced into their parent.
    fn dir_survives(&self, dir: &Path) -> bool {
        dir.ancestors().all(|a| match a.parent() {
            None => true,
            Some(p) if p.as_os_str().is_empty() => true,
            Some(_) => self.durable_dirs.contains(a),
        })
    }
}

#[derive(Debug)]
struct SimFile {
    disk: Arc<Mutex<Disk>>,
    gate: Arc<Gate>,
    ino: u64,
    writable: bool,
}

impl SimFile {
    fn with<R>(&self, f: impl FnOnce(&mut Inode) -> R) -> io::Result<R> {
        let mut d = self.disk.lock();
        let node = d
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("stale inode"))?;
        Ok(f(node))
    }
}

/// A power cut's image of one file: the synced bytes, plus a random prefix, in whole sectors
/// of `g` bytes from the first one that differs, of what was pending (written, not synced).
/// Works inside preallocated space too (where the length does not change).
fn torn_image(synced: &[u8], pending: &[u8], g: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let n = synced.len().max(pending.len());
    let differs = |i: usize| synced.get(i) != pending.get(i);
    let Some(first) = (0..n).find(|&i| differs(i)) else {
        return synced.to_vec();
    };
    let last = (first..n).rev().find(|&i| differs(i)).unwrap_or(first) + 1;
    let start = first / g * g;
    let sectors = (last - start).div_ceil(g);
    let end = start + rng.usize(0..=sectors) * g;
    if end >= last {
        return pending.to_vec();
    }
    let mut image = synced.to_vec();
    let kept = end.min(pending.len());
    if image.len() < kept {
        image.resize(kept, 0);
    }
    if let (Some(dst), Some(src)) = (image.get_mut(start..kept), pending.get(start..kept)) {
        dst.copy_from_slice(src);
    }
    image
}

fn write_into(node: &mut Inode, buf: &[u8], offset: u64) {
    let at = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = at.saturating_add(buf.len());
    if node.live.len() < end {
        node.live.resize(end, 0);
    }
    if let Some(dst) = node.live.get_mut(at..end) {
        dst.copy_from_slice(buf);
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|n| {
            let at = usize::try_from(offset).unwrap_or(usize::MAX);
            let src = n.live.get(at..).unwrap_or_default();
            let k = src.len().min(buf.len());
            if let (Some(d), Some(s)) = (buf.get_mut(..k), src.get(..k)) {
                d.copy_from_slice(s);
            }
            k
        })
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only file",
            ));
        }
        let mut d = self.disk.lock();
        d.writes += 1;
        if fire(&mut d.faults.write_fail_in) {
            return Err(eio("write"));
        }
        if let Some(left) = d.faults.enospc_bytes_left {
            if (buf.len() as u64) > left {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            d.faults.enospc_bytes_left = Some(left - buf.len() as u64);
        }
        let torn = fire(&mut d.faults.torn_write_in);
        let keep = if torn {
            d.rng.usize(0..buf.len().max(1))
        } else {
            buf.len()
        };
        let node = d
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("stale inode"))?;
        write_into(node, buf.get(..keep).unwrap_or_default(), offset);
        if torn { Err(eio("torn write")) } else { Ok(()) }
    }
    fn sync_data(&self) -> io::Result<()> {
        self.gate.pass();
        let mut d = self.disk.lock();
        d.syncs += 1;
        let failed = fire(&mut d.faults.sync_fail_in);
        let node = d
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("stale inode"))?;
        if failed {
            // Linux: the dirty pages are now clean, new in the cache, old on the disk.
            node.failed_writeback = Some(node.live.clone());
            return Err(eio("fsync"));
        }
        node.synced = node.writable_image();
        Ok(())
    }
    fn drop_cache(&self) -> io::Result<()> {
        self.with(|n| {
            if n.failed_writeback.is_some() {
                n.live = n.writable_image();
                n.failed_writeback = None;
            }
        })
    }
    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("too large"))?;
        self.with(|n| n.live.resize(len, 0))
    }
    fn len(&self) -> io::Result<u64> {
        self.with(|n| n.live.len() as u64)
    }
    fn allocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// As `fallocate`: with [`SimStorage::enospc_after_bytes`] set, growing the file by more
    /// than the bytes left fails with ENOSPC (and reserves nothing); the space it does reserve
    /// is not counted, since the writes into it are.
    fn preallocate(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if current >= len {
            return Ok(());
        }
        let left = self.disk.lock().faults.enospc_bytes_left;
        if left.is_some_and(|left| len - current > left) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.set_len(len)
    }
}

#[derive(Debug)]
struct SimLock {
    disk: Arc<Mutex<Disk>>,
    path: PathBuf,
}

impl StorageLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.lock().locks.remove(&self.path);
    }
}

impl Storage for SimStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut d = self.disk.lock();
        let ino = match (mode, d.live.get(path).copied()) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
            }
            (OpenMode::CreateNew, None) => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !d.dirs.contains(parent) {
                    return Err(not_found(parent));
                }
                let i = d.next_inode;
                d.next_inode += 1;
                d.inodes.insert(i, Inode::default());
                d.live.insert(path.to_path_buf(), i);
                i
            }
            (_, Some(i)) => i,
            (_, None) => return Err(not_found(path)),
        };
        let writable = mode != OpenMode::Read;
        Ok(Box::new(SimFile {
            disk: self.disk.clone(),
            gate: self.gate.clone(),
            ino,
            writable,
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut d = self.disk.lock();
        for a in path.ancestors() {
            d.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let d = self.disk.lock();
        if !d.dirs.contains(path) {
            return Err(not_found(path));
        }
        Ok(d.live
            .keys()
            .filter(|p| p.parent() == Some(path))
            .cloned()
            .collect())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut d = self.disk.lock();
        let ino = d.live.remove(from).ok_or_else(|| not_found(from))?;
        d.live.insert(to.to_path_buf(), ino);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut d = self.disk.lock();
        d.live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut d = self.disk.lock();
        d.syncs += 1;
        if fire(&mut d.faults.sync_fail_in) {
            return Err(eio("directory fsync"));
        }
        let live: Vec<(PathBuf, u64)> = d
            .live
            .iter()
            .filter(|(p, _)| p.parent() == Some(path))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        d.durable.retain(|p, _| p.parent() != Some(path));
        d.durable.extend(live);
        let subdirs: Vec<PathBuf> = d
            .dirs
            .iter()
            .filter(|p| p.parent() == Some(path))
            .cloned()
            .collect();
        d.durable_dirs.extend(subdirs);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        let d = self.disk.lock();
        d.live.contains_key(path) || d.dirs.contains(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        let mut d = self.disk.lock();
        if !d.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock {
            disk: self.disk.clone(),
            path: path.to_path_buf(),
        })))
    }
}
