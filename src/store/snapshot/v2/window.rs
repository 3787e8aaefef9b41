//! A window over a snapshot section read a chunk at a time, with the section's CRC computed as
//! it is read: what a snapshot open decodes the tasks section through, so that it never holds
//! the whole section (a 60 MB buffer for 200,000 tasks, whose first touch alone was 8 % of a
//! snapshot open: docs/benchmarks.md, "Snapshot open: keys read once, the tasks section
//! streamed, ids held by slot"). The history section's CRC is checked through one too.

use std::path::Path;

use crate::error::{Error, Result};
use crate::wal::StorageFile;

/// Bytes of a section a snapshot open reads at a time.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Where a section's bytes come from.
pub enum Source<'f> {
    /// An image in memory (tests, fuzzing): the section itself.
    Memory(&'f [u8]),
    /// An open snapshot file, the section starting at byte `at`.
    File {
        /// The file.
        file: &'f dyn StorageFile,
        /// Where the section starts in it.
        at: u64,
    },
}

/// The unread part of a section: `buf[start..end]` holds its bytes from `window_at` on.
pub struct Window<'f> {
    path: &'f Path,
    source: Source<'f>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Offset in the section of `buf[start]`.
    window_at: u64,
    /// Bytes of the section read so far.
    read: u64,
    /// The section's length.
    len: u64,
    crc: crc32fast::Hasher,
}

impl<'f> Window<'f> {
    /// A window over the `len`-byte section of `source` (in the snapshot at `path`), reading
    /// `chunk_bytes` at a time; nothing is read yet.
    pub fn new(path: &'f Path, source: Source<'f>, len: u64, chunk_bytes: usize) -> Window<'f> {
        let first = usize::try_from(len).map_or(chunk_bytes, |len| len.min(chunk_bytes));
        Window {
            path,
            source,
            buf: vec![0; first.max(1)],
            start: 0,
            end: 0,
            window_at: 0,
            read: 0,
            len,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// The bytes read and not yet consumed.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// The section offset of the first unconsumed byte.
    pub fn at(&self) -> u64 {
        self.window_at
    }

    /// Marks the first `n` unconsumed bytes consumed.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start, "consumes only what was read");
        self.start += n;
        self.window_at += n as u64;
    }

    /// True once every byte of the section was read (not necessarily consumed).
    pub fn all_read(&self) -> bool {
        self.read == self.len
    }

    /// Reads more of the section after the unconsumed bytes, moving them to the front of the
    /// buffer first and doubling the buffer when they fill it (a record longer than a
    /// chunk). Call only while `!all_read()`.
    pub fn more(&mut self) -> Result<()> {
        debug_assert!(!self.all_read(), "more of a section read whole");
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let left = self.len - self.read;
        if self.end == self.buf.len() {
            let unread = usize::try_from(left).unwrap_or(usize::MAX);
            let grown = self
                .buf
                .len()
                .saturating_mul(2)
                .min(self.end.saturating_add(unread));
            self.buf.resize(grown, 0);
        }
        let room = self.buf.get_mut(self.end..).unwrap_or_default();
        let want = usize::try_from(left).map_or(room.len(), |left| left.min(room.len()));
        let chunk = room.get_mut(..want).unwrap_or_default();
        let n = match &self.source {
            Source::Memory(section) => {
                let from = usize::try_from(self.read).unwrap_or(usize::MAX);
                let bytes = section.get(from..).unwrap_or_default();
                let n = bytes.len().min(chunk.len());
                chunk
                    .get_mut(..n)
                    .unwrap_or_default()
                    .copy_from_slice(bytes.get(..n).unwrap_or_default());
                n
            }
            Source::File { file, at } => file
                .read_at(chunk, at + self.read)
                .map_err(|e| Error::io("read", self.path, e))?,
        };
        if n == 0 {
            let at = match self.source {
                Source::Memory(_) => self.read,
                Source::File { at, .. } => at + self.read,
            };
            return Err(Error::corrupt(
                self.path,
                Some(at),
                None,
                "file ended before the section the header describes",
            ));
        }
        self.crc.update(chunk.get(..n).unwrap_or_default());
        self.end += n;
        self.read += n as u64;
        Ok(())
    }

    /// Reads the whole rest of the section into the window.
    pub fn fill(&mut self) -> Result<()> {
        while !self.all_read() {
            self.more()?;
        }
        Ok(())
    }

    /// Reads the rest of the section without keeping it (only its CRC is wanted), then gives
    /// the CRC of the whole section.
    pub fn finish_crc(mut self) -> Result<u32> {
        while !self.all_read() {
            self.start = self.end;
            self.more()?;
        }
        Ok(self.crc.finalize())
    }
}
