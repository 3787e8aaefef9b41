//! The buffers a snapshot's sections are read into. Small sections go on the heap. Large ones
//! go into an anonymous memory mapping (not a mapping of the file) that Linux is asked to back
//! with transparent huge pages: reading a 100 MB history section then costs ~50 page faults
//! instead of ~25,000, which was a third of the time to load a snapshot. Once filled, the
//! mapping is made read-only, so the bytes whose CRC was checked at load are the bytes read
//! later, whatever happens to the file.

use std::ops::Deref;
use std::path::Path;

use crate::error::{Error, Result};
use crate::wal::StorageFile;

/// Sections at least this large go into an anonymous mapping.
const MAPPED_BYTES_MIN: usize = 4 << 20;

/// The bytes of one section, read once.
#[derive(Debug)]
pub struct SectionBuf(Repr);

#[derive(Debug)]
enum Repr {
    Heap(Box<[u8]>),
    Mapped(memmap2::Mmap),
}

impl SectionBuf {
    /// Reads `len` bytes at offset `at` of `file` (`path` is for error messages). The caller
    /// has checked `len` against the file's size and the snapshot size limit.
    pub fn read(path: &Path, file: &dyn StorageFile, at: u64, len: u64) -> Result<Self> {
        let len = usize::try_from(len).map_err(|_| Error::TooLarge {
            what: "snapshot section",
            len,
            max: usize::MAX as u64,
        })?;
        if len >= MAPPED_BYTES_MIN
            && let Ok(mut map) = memmap2::MmapMut::map_anon(len)
        {
            #[cfg(target_os = "linux")]
            {
                // Only a hint: without huge pages this is an ordinary allocation.
                let _ = map.advise(memmap2::Advice::HugePage);
            }
            fill(path, file, at, &mut map)?;
            if let Ok(map) = map.make_read_only() {
                return Ok(SectionBuf(Repr::Mapped(map)));
            }
            // Could not protect the pages; fall back to the heap and read again.
        }
        let mut buf = vec![0u8; len].into_boxed_slice();
        fill(path, file, at, &mut buf)?;
        Ok(SectionBuf(Repr::Heap(buf)))
    }

    /// A copy of bytes already in memory.
    pub fn copy_of(bytes: &[u8]) -> Self {
        SectionBuf(Repr::Heap(bytes.into()))
    }
}

impl Deref for SectionBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Heap(b) => b,
            Repr::Mapped(m) => m,
        }
    }
}

/// Fills `buf` from `file` at `at`; a file shorter than the header said is corruption.
fn fill(path: &Path, file: &dyn StorageFile, at: u64, buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        let n = file
            .read_at(rest, at + done as u64)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            return Err(Error::corrupt(
                path,
                Some(at + done as u64),
                None,
                "file ended before the section the header describes",
            ));
        }
        done += n;
    }
    Ok(())
}
