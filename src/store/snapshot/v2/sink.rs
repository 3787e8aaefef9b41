//! Where an encoded v2 image goes: a vector (backups, tests) or a file written as it is encoded,
//! so that a snapshot of a large store does not hold a second copy of it in memory (issue #20:
//! 1,000,000 tasks peaked at 1.77 GB while a snapshot was built in one buffer).
//!
//! The encoder appends the header's placeholder, the tasks section and the history section in
//! order, then writes the events that histories keep in the log over the zeros left for them
//! ("patches", in log order, so at scattered offsets), then reads the history section's CRC
//! back and writes the header over its placeholder.

use std::path::Path;

use crate::error::{Error, Result};
use crate::wal::StorageFile;

/// An image being written (see the module documentation).
pub trait Sink {
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// Appends `bytes` at the end.
    fn append(&mut self, bytes: &[u8]) -> Result<()>;
    /// Writes `bytes` over `offset..`, which was appended already; patches must not overlap.
    /// `None` when that range is not inside the image.
    fn patch(&mut self, offset: u64, bytes: &[u8]) -> Result<Option<()>>;
    /// Makes every append and patch visible to [`Sink::crc_from`] and to the file.
    fn flush(&mut self) -> Result<()>;
    /// CRC-32 of the bytes from `from` to the end, as they stand after a flush.
    fn crc_from(&mut self, from: u64) -> Result<u32>;
    /// Fills `buf` with the bytes at `offset..`, as they stand after a flush (the history
    /// section is read back to be compressed).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Cuts the image to `len` bytes (after its history section shrank in place).
    fn truncate(&mut self, len: u64) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn len(&self) -> u64 {
        Vec::len(self) as u64
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn patch(&mut self, offset: u64, bytes: &[u8]) -> Result<Option<()>> {
        let place = usize::try_from(offset)
            .ok()
            .and_then(|at| self.get_mut(at..at.checked_add(bytes.len())?));
        Ok(place.map(|place| place.copy_from_slice(bytes)))
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn crc_from(&mut self, from: u64) -> Result<u32> {
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(crc32fast::hash(self.get(from..).unwrap_or_default()))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|at| self.get(at..at.checked_add(buf.len())?))
            .ok_or_else(|| super::codec(format!("read back past the image's end at {offset}")))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<()> {
        Vec::truncate(self, usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
}

/// Bytes appended before they are written to the file.
const APPEND_BUFFER_BYTES: usize = 1 << 20;
/// Bytes of patches gathered before they are sorted, merged where adjacent and written. The
/// events of one history are adjacent in the file; a bulk load's log holds them a few thousand
/// records apart, well within this.
const PATCH_BUFFER_BYTES: usize = 2 << 20;
/// Largest run of adjacent patches written at once.
const PATCH_RUN_BYTES: usize = 1 << 20;
/// Bytes read at a time to compute a CRC back from the file.
const CRC_READ_BYTES: usize = 1 << 20;

/// A [`Sink`] writing to a file through bounded buffers.
pub struct FileSink<'a> {
    file: &'a dyn StorageFile,
    path: &'a Path,
    /// Bytes in the file plus those in `appending`.
    len: u64,
    appending: Vec<u8>,
    /// Patch bytes back to back, and `(offset in the file, start in patch_bytes, length)`.
    patch_bytes: Vec<u8>,
    patches: Vec<(u64, usize, usize)>,
}

impl<'a> FileSink<'a> {
    /// A sink writing `file` (at `path`, for messages) from offset 0.
    pub fn new(file: &'a dyn StorageFile, path: &'a Path) -> Self {
        FileSink {
            file,
            path,
            len: 0,
            appending: Vec::with_capacity(APPEND_BUFFER_BYTES),
            patch_bytes: Vec::new(),
            patches: Vec::new(),
        }
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> Result<()> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| Error::io("write", self.path, e))
    }

    fn flush_appends(&mut self) -> Result<()> {
        if !self.appending.is_empty() {
            let at = self.len - self.appending.len() as u64;
            self.write_at(&self.appending, at)?;
            self.appending.clear();
        }
        Ok(())
    }

    /// Writes the gathered patches in file order, one write per run of adjacent ones. Patches
    /// never overlap (each logged event has a place of its own), so their order does not
    /// matter.
    fn flush_patches(&mut self) -> Result<()> {
        self.patches.sort_unstable_by_key(|p| p.0);
        debug_assert!(
            self.patches
                .windows(2)
                .all(|w| w[0].0 + w[0].2 as u64 <= w[1].0),
            "patches overlap"
        );
        let mut run: Vec<u8> = Vec::new();
        let mut run_at = 0u64;
        for &(at, start, len) in &self.patches {
            if !run.is_empty() && (run_at + run.len() as u64 != at || run.len() >= PATCH_RUN_BYTES)
            {
                self.write_at(&run, run_at)?;
                run.clear();
            }
            if run.is_empty() {
                run_at = at;
            }
            run.extend_from_slice(self.patch_bytes.get(start..start + len).unwrap_or_default());
        }
        if !run.is_empty() {
            self.write_at(&run, run_at)?;
        }
        self.patches.clear();
        self.patch_bytes.clear();
        Ok(())
    }

    /// Reading back what was written found the file ending at `at`: something else cut it.
    fn ended_early(&self, at: u64) -> Error {
        Error::io(
            "read back",
            self.path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ends at {at}, before the {} bytes written",
                    self.len
                ),
            ),
        )
    }
}

impl Sink for FileSink<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if self.appending.len() + bytes.len() > APPEND_BUFFER_BYTES {
            self.flush_appends()?;
        }
        self.len += bytes.len() as u64;
        if bytes.len() >= APPEND_BUFFER_BYTES {
            // A huge piece (a long history) goes straight to the file.
            return self.write_at(bytes, self.len - bytes.len() as u64);
        }
        self.appending.extend_from_slice(bytes);
        Ok(())
    }

    fn patch(&mut self, offset: u64, bytes: &[u8]) -> Result<Option<()>> {
        if offset
            .checked_add(bytes.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Ok(None);
        }
        // Patches go to the file, so everything appended must be there first (the encoder
        // appends everything before it patches; this keeps the order safe regardless).
        self.flush_appends()?;
        self.patches
            .push((offset, self.patch_bytes.len(), bytes.len()));
        self.patch_bytes.extend_from_slice(bytes);
        if self.patch_bytes.len() >= PATCH_BUFFER_BYTES {
            self.flush_patches()?;
        }
        Ok(Some(()))
    }

    fn flush(&mut self) -> Result<()> {
        self.flush_appends()?;
        self.flush_patches()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.flush()?;
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(super::codec(format!(
                "read back past the image's end at {offset}"
            )));
        }
        let done = self
            .file
            .read_full_at(buf, offset)
            .map_err(|e| Error::io("read back", self.path, e))?;
        if done < buf.len() {
            return Err(self.ended_early(offset + done as u64));
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<()> {
        self.flush()?;
        self.file
            .set_len(len)
            .map_err(|e| Error::io("truncate", self.path, e))?;
        self.len = len;
        Ok(())
    }

    fn crc_from(&mut self, from: u64) -> Result<u32> {
        self.flush()?;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; CRC_READ_BYTES];
        let mut at = from;
        while at < self.len {
            let want = usize::try_from(self.len - at).map_or(buf.len(), |n| n.min(buf.len()));
            let chunk = buf.get_mut(..want).unwrap_or_default();
            let n = self
                .file
                .read_at(chunk, at)
                .map_err(|e| Error::io("read back", self.path, e))?;
            if n == 0 {
                return Err(self.ended_early(at));
            }
            crc.update(chunk.get(..n).unwrap_or_default());
            at += n as u64;
        }
        Ok(crc.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{OpenMode, StdStorage, Storage};

    /// Any mix of appends (small, and larger than the append buffer) and patches (enough to
    /// flush the patch buffer several times, adjacent runs longer than a run's limit, out of
    /// order) leaves the file byte for byte equal to the same writes into a vector, with the
    /// same CRCs; a patch outside the image is refused by both.
    #[test]
    fn a_file_sink_writes_what_a_vector_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..4 {
            let path = dir.path().join(format!("image-{round}"));
            let file = StdStorage.open(&path, OpenMode::CreateNew).unwrap();
            let mut sink = FileSink::new(file.as_ref(), &path);
            let mut vec: Vec<u8> = Vec::new();
            for i in 0..300 {
                let len = match i % 50 {
                    0 => APPEND_BUFFER_BYTES + rng.usize(..1000),
                    1 => APPEND_BUFFER_BYTES - 1,
                    _ => rng.usize(..5000),
                };
                let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                sink.append(&bytes).unwrap();
                Sink::append(&mut vec, &bytes).unwrap();
            }
            assert_eq!(Sink::len(&sink), Sink::len(&vec));
            let total = vec.len() as u64;
            // Patches never overlap (each logged event has its own place): cut the image into
            // pieces, patch every other one in a shuffled order, and a long stretch of
            // adjacent ones (runs longer than a run's limit).
            let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut at = 0u64;
            let mut n = 0;
            while at < total {
                let len = rng.u64(1..2000).min(total - at);
                if n % 2 == 0 || (total / 3..total / 2).contains(&at) {
                    patches.push((at, (0..len).map(|_| rng.u8(..)).collect()));
                }
                at += len;
                n += 1;
            }
            rng.shuffle(&mut patches);
            for (at, bytes) in &patches {
                assert_eq!(sink.patch(*at, bytes).unwrap(), Some(()));
                assert_eq!(vec.patch(*at, bytes).unwrap(), Some(()));
            }
            assert_eq!(sink.patch(total - 1, &[0, 0]).unwrap(), None);
            assert_eq!(vec.patch(total - 1, &[0, 0]).unwrap(), None);
            assert_eq!(sink.patch(u64::MAX, &[0]).unwrap(), None);
            assert_eq!(vec.patch(u64::MAX, &[0]).unwrap(), None);
            for from in [0, 64, total / 3, total] {
                assert_eq!(sink.crc_from(from).unwrap(), vec.crc_from(from).unwrap());
            }
            sink.flush().unwrap();
            drop(sink);
            assert_eq!(std::fs::read(&path).unwrap(), vec, "round {round}");
        }
    }

    /// A file that returns at most 7 bytes a read, as `pread` may.
    #[derive(Debug)]
    struct ShortReads(Box<dyn StorageFile>);

    impl StorageFile for ShortReads {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read_at(&mut buf[..n], offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.0.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.0.sync_data()
        }
        fn sync_all(&self) -> std::io::Result<()> {
            self.0.sync_all()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.0.set_len(len)
        }
        fn len(&self) -> std::io::Result<u64> {
            self.0.len()
        }
        fn allocate(&self, len: u64) -> std::io::Result<()> {
            self.0.allocate(len)
        }
    }

    /// Reading back (what the v3 compression does, a block at a time) gives the bytes written,
    /// also through short reads, patches included; a read past the end is refused; a cut
    /// image reads and writes on from its new end, as a vector does.
    #[test]
    fn a_file_sink_reads_back_through_short_reads_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        let file = ShortReads(StdStorage.open(&path, OpenMode::CreateNew).unwrap());
        let mut sink = FileSink::new(&file, &path);
        let mut vec: Vec<u8> = Vec::new();
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for piece in [&bytes[..], &bytes[..1234]] {
            sink.append(piece).unwrap();
            Sink::append(&mut vec, piece).unwrap();
        }
        for (at, piece) in [(100u64, &[1u8, 2, 3][..]), (4999, &[9])] {
            sink.patch(at, piece).unwrap().unwrap();
            vec.patch(at, piece).unwrap().unwrap();
        }
        for (at, len) in [(0u64, 6234usize), (97, 10), (4000, 2234)] {
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            sink.read_at(at, &mut a).unwrap();
            Sink::read_at(&mut vec, at, &mut b).unwrap();
            assert_eq!(a, b, "{len} bytes at {at}");
        }
        let mut past = [0u8; 2];
        assert!(sink.read_at(6233, &mut past).is_err());
        assert!(Sink::read_at(&mut vec, 6233, &mut past).is_err());
        sink.truncate(3000).unwrap();
        Sink::truncate(&mut vec, 3000).unwrap();
        sink.append(&[5, 5]).unwrap();
        Sink::append(&mut vec, &[5, 5]).unwrap();
        assert_eq!(Sink::len(&sink), 3002);
        sink.flush().unwrap();
        drop(sink);
        assert_eq!(std::fs::read(&path).unwrap(), vec);
    }

    /// Two patches that are not adjacent are written each at its own offset, also where the
    /// second starts at a product of the first's offset and length (a run merged by a wrong
    /// adjacency test, `run_at * len` for `run_at + len`, lands the second patch right after the
    /// first: bytes at the wrong place, which the history CRC, read back from the file, would
    /// not notice). The random mix above never hits that coincidence.
    #[test]
    fn patches_apart_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        let file = StdStorage.open(&path, OpenMode::CreateNew).unwrap();
        let mut sink = FileSink::new(file.as_ref(), &path);
        let mut vec: Vec<u8> = Vec::new();
        let zeros = vec![0u8; 300];
        sink.append(&zeros).unwrap();
        Sink::append(&mut vec, &zeros).unwrap();
        for (at, bytes) in [(100u64, [1u8, 2]), (200, [3, 4])] {
            assert_eq!(sink.patch(at, &bytes).unwrap(), Some(()));
            assert_eq!(vec.patch(at, &bytes).unwrap(), Some(()));
        }
        sink.flush().unwrap();
        drop(sink);
        assert_eq!(std::fs::read(&path).unwrap(), vec);
    }
}
