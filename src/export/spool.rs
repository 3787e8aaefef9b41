//! An import document copied into a private temporary file and mapped, so that an import can
//! read it twice (validated whole before the store is opened for writing, then imported) and
//! parse it as a slice, without holding it on the heap. A validation that accepts it also keeps
//! its tasks in a validated copy (`validated.rs`), which later readings decode instead.
//!
//! Why a copy: parsing in place needs bytes that nobody changes while they are read (serde_json
//! checks a string's UTF-8 once and then borrows it), and a mapped file cut short under its
//! map raises SIGBUS. The copy is an unlinked temporary file (`tempfile`), reachable by no other
//! path, so neither can happen; its pages are page cache (clean, reclaimable), not heap.

use std::fs::File;
use std::io::{Read, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::IMPORT_BYTES_MAX;
use crate::error::{Error, Result};

/// Pages behind the parser are released in steps of this many bytes (a multiple of every page
/// size in use).
const RELEASE_STEP_BYTES: usize = 8 << 20;

/// An import document (at most [`IMPORT_BYTES_MAX`] bytes) in a private temporary file, mapped
/// read-only. See [`import_json_spooled`](super::import_json_spooled).
#[derive(Debug)]
pub struct SpooledDocument {
    /// `None` for an empty document (a file of length 0 cannot be mapped everywhere).
    map: Option<memmap2::Mmap>,
    /// Bytes at the front of the map whose pages were last released (a multiple of
    /// [`RELEASE_STEP_BYTES`]).
    released: AtomicUsize,
    /// What a validation kept of the document's tasks, once it is known valid
    /// (`validated.rs`): later readings decode it instead of parsing the JSON again.
    validated: parking_lot::Mutex<Option<super::validated::ValidatedCopy>>,
    _file: File,
}

impl SpooledDocument {
    /// Copies `input` into an unlinked temporary file in the system's temporary directory and
    /// maps it. A read error is reported once, as an OS error on `source_name`; an input over
    /// [`IMPORT_BYTES_MAX`] is refused as [`Error::TooLarge`] after reading one byte past it.
    pub fn read_from(input: impl Read, source_name: &str) -> Result<Self> {
        Self::read_at_most(input, source_name, IMPORT_BYTES_MAX)
    }

    /// [`read_from`](Self::read_from) with the size limit given (tests use a small one).
    fn read_at_most(input: impl Read, source_name: &str, max: u64) -> Result<Self> {
        let dir = std::env::temp_dir();
        let mut file = tempfile::tempfile_in(&dir)
            .map_err(|e| Error::io("create the temporary copy of the import in", &dir, e))?;
        let copied = copy(&mut input.take(max + 1), &mut file, source_name, &dir)?;
        if copied > max {
            return Err(Error::TooLarge {
                what: "import document",
                len: copied,
                max,
            });
        }
        let map = if copied == 0 {
            None
        } else {
            Some(
                map_private_copy(&file)
                    .map_err(|e| Error::io("map the copy of", source_name, e))?,
            )
        };
        Ok(SpooledDocument {
            map,
            released: AtomicUsize::new(0),
            validated: parking_lot::Mutex::new(None),
            _file: file,
        })
    }

    /// The document's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// Keeps the validated copy of this document's tasks for later readings.
    pub(crate) fn keep_validated(&self, copy: super::validated::ValidatedCopy) {
        *self.validated.lock() = Some(copy);
    }

    /// The validated copy of this document's tasks, when a validation kept one (locked for
    /// one reading).
    pub(crate) fn validated(
        &self,
    ) -> parking_lot::MutexGuard<'_, Option<super::validated::ValidatedCopy>> {
        self.validated.lock()
    }

    /// Drops the mapped pages wholly before `at` (a pointer into [`bytes`](Self::bytes); any
    /// other is ignored) from this process, in steps of [`RELEASE_STEP_BYTES`]: a reading front
    /// to back then keeps about one step resident instead of the whole document. The pages stay
    /// in the page cache; touching them again reads them back unchanged.
    pub(crate) fn release_behind(&self, at: *const u8) {
        let Some(map) = &self.map else { return };
        let offset = (at as usize).wrapping_sub(map.as_ptr() as usize);
        if offset > map.len() {
            return;
        }
        let upto = offset - offset % RELEASE_STEP_BYTES;
        let from = self.released.load(Ordering::Relaxed);
        if upto > from && release(map, from, upto - from) {
            self.released.store(upto, Ordering::Relaxed);
        }
    }

    /// Drops every mapped page from this process (after a reading), so that the next reading
    /// releases from the front again.
    pub(crate) fn release_all(&self) {
        let Some(map) = &self.map else { return };
        release(map, 0, map.len());
        self.released.store(0, Ordering::Relaxed);
    }
}

/// Copies `input` to `file`, telling a read error (of `source_name`) from a write error (of the
/// temporary copy in `dir`, e.g. a full temporary directory). Returns the bytes copied.
fn copy(
    input: &mut impl Read,
    file: &mut File,
    source_name: &str,
    dir: &std::path::Path,
) -> Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut copied = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", source_name, e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        file.write_all(chunk)
            .map_err(|e| Error::io("write the temporary copy of the import in", dir, e))?;
        copied += n as u64;
    }
}

/// `madvise(MADV_DONTNEED)` over `len` bytes at `offset` of the map; false where not done.
#[allow(unsafe_code)]
fn release(map: &memmap2::Mmap, offset: usize, len: usize) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: the map is a shared (not private) read-only mapping of a file that nothing
        // writes or truncates (see `map_private_copy`). MADV_DONTNEED on such a mapping only
        // unmaps the pages from this process: a later access faults them back in from the page
        // cache or the file, with the same bytes, so every `&[u8]` or `&str` borrowed from the
        // map (the parser's borrowed strings) keeps reading what it read before. memmap2 marks
        // the call unsafe for private mappings, where the pages would read back as zeros.
        unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
                .is_ok()
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (map, offset, len);
        false
    }
}

/// Maps the spool file read-only.
// SAFETY: the file is an unlinked temporary file that only this process holds (no path leads
// to it), written completely before it is mapped and never written or truncated afterwards, so
// the mapped bytes cannot change or vanish while the map (which lives as long as the file
// handle beside it) is read.
#[allow(unsafe_code)]
fn map_private_copy(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see above.
    let map = unsafe { memmap2::Mmap::map(file) }?;
    #[cfg(unix)]
    {
        // A hint only (read ahead, drop behind): an import reads the copy front to back, twice.
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::SpooledDocument;
    use crate::error::Error;

    /// A full temporary directory is reported as a failure to write the copy there, not as a
    /// read error of the input (here the copy is a read-only handle: every write fails).
    #[test]
    fn a_failed_write_of_the_copy_is_not_blamed_on_the_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("copy");
        std::fs::write(&path, b"").expect("create");
        let mut read_only = std::fs::File::open(&path).expect("open");
        let err = super::copy(&mut &b"{}"[..], &mut read_only, "input.json", dir.path())
            .expect_err("a read-only copy cannot be written");
        assert!(
            matches!(&err, Error::Io { op: "write the temporary copy of the import in", path, .. } if path == dir.path()),
            "{err:?}"
        );
        let mut failing = std::io::repeat(b'x').take(0).chain(Failing);
        let err = super::copy(&mut failing, &mut read_only, "input.json", dir.path())
            .expect_err("a failing input");
        assert!(
            matches!(&err, Error::Io { op: "read", path, .. } if path.as_os_str() == "input.json"),
            "{err:?}"
        );
    }

    /// A read interrupted by a signal (`EINTR`) is retried, not reported.
    #[test]
    fn an_interrupted_read_is_retried() {
        struct InterruptedOnce(bool);
        impl std::io::Read for InterruptedOnce {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                if std::mem::replace(&mut self.0, false) {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                Ok(0)
            }
        }
        let mut input = InterruptedOnce(true).chain(&b"{}"[..]);
        let document = SpooledDocument::read_from(&mut input, "signalled").expect("retried");
        assert_eq!(document.bytes(), b"{}");
    }

    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("the disk went away"))
        }
    }

    #[test]
    fn a_document_of_exactly_the_limit_is_kept_and_one_byte_more_refused() {
        let at_limit = SpooledDocument::read_at_most(&[b'x'; 10][..], "ten", 10).expect("fits");
        assert_eq!(at_limit.bytes(), b"xxxxxxxxxx");
        let over = SpooledDocument::read_at_most(&[b'x'; 11][..], "eleven", 10);
        assert!(
            matches!(
                over,
                Err(Error::TooLarge {
                    len: 11,
                    max: 10,
                    ..
                })
            ),
            "{over:?}"
        );
    }
}
