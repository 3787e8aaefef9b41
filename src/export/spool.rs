//! An import document copied into a private temporary file and mapped, so that an import can
//! read it twice (validated whole before the store is opened for writing, then imported) and
//! parse it as a slice, without holding it on the heap.
//!
//! Why a copy: parsing in place needs bytes that nobody changes while they are read (serde_json
//! checks a string's UTF-8 once and then borrows it), and a mapped file cut short under its
//! map raises SIGBUS. The copy is an unlinked temporary file (`tempfile`), reachable by no other
//! path, so neither can happen; its pages are page cache (clean, reclaimable), not heap.

use std::fs::File;
use std::io::Read;

use super::IMPORT_BYTES_MAX;
use crate::error::{Error, Result};

/// An import document (at most [`IMPORT_BYTES_MAX`] bytes) in a private temporary file, mapped
/// read-only. See [`import_json_staged_bytes`](super::import_json_staged_bytes).
#[derive(Debug)]
pub struct SpooledDocument {
    /// `None` for an empty document (a file of length 0 cannot be mapped everywhere).
    map: Option<memmap2::Mmap>,
    _file: File,
}

impl SpooledDocument {
    /// Copies `input` into an unlinked temporary file in the system's temporary directory and
    /// maps it. A read error is reported once, as an OS error on `source_name`; an input over
    /// [`IMPORT_BYTES_MAX`] is refused as [`Error::TooLarge`] after reading one byte past it.
    pub fn read_from(input: impl Read, source_name: &str) -> Result<Self> {
        let dir = std::env::temp_dir();
        let mut file = tempfile::tempfile_in(&dir)
            .map_err(|e| Error::io("create a temporary copy in", &dir, e))?;
        let copied = std::io::copy(&mut input.take(IMPORT_BYTES_MAX + 1), &mut file)
            .map_err(|e| Error::io("read", source_name, e))?;
        if copied > IMPORT_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "import document",
                len: copied,
                max: IMPORT_BYTES_MAX,
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
        Ok(SpooledDocument { map, _file: file })
    }

    /// The document's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
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
