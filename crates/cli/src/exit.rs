//! Exit codes and the mapping from errors to them. The codes are part of the CLI contract and
//! are listed in `--help` and the README.

use std::fmt;

use tasklog::Error;

/// Success.
pub const SUCCESS: u8 = 0;
/// An operation failed: task not found, invalid transition, conflict, invalid input, I/O.
pub const OPERATION: u8 = 1;
/// Usage error (clap's own code for usage errors).
#[allow(dead_code, reason = "documents the code clap uses")]
pub const USAGE: u8 = 2;
/// Damage found on disk.
pub const CORRUPTION: u8 = 3;
/// Another process holds the store's write lock.
pub const LOCKED: u8 = 4;
/// `serve --jetstream`: this server stopped writing: another took the writer's lease, or its
/// log refused its appends (fenced, or the stream could not be written).
#[cfg_attr(
    not(feature = "jetstream"),
    allow(dead_code, reason = "only `serve --jetstream` exits with it")
)]
pub const LEADERSHIP_LOST: u8 = 5;

/// An error that carries its own exit code. With `message: None` the command already said
/// everything (e.g. `verify` printed its findings) and only the code remains.
#[derive(Debug)]
pub struct Exit {
    /// The process exit code.
    pub code: u8,
    /// One sentence for stderr, if not said already.
    pub message: Option<String>,
}

impl Exit {
    /// An error with a code and a message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: Some(message.into()),
        }
    }

    /// Only an exit code; the command has printed its findings.
    pub fn silent(code: u8) -> Self {
        Exit {
            code,
            message: None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.as_deref().unwrap_or("failed"))
    }
}

impl std::error::Error for Exit {}

/// The exit code for a library error.
pub fn code_of(e: &Error) -> u8 {
    if e.is_corruption() {
        return CORRUPTION;
    }
    match e {
        Error::Locked { .. } => LOCKED,
        _ => OPERATION,
    }
}

/// The exit code for any error the commands return: an [`Exit`] or a library error anywhere in
/// the chain decides; everything else is an operation error.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(exit) = cause.downcast_ref::<Exit>() {
            return exit.code;
        }
        if let Some(e) = cause.downcast_ref::<Error>() {
            return code_of(e);
        }
    }
    OPERATION
}

/// True when the error is only a closed stdout (`tasklog list | head`), which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(broken)
            // JSON output written with serde_json wraps the write error in its own.
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}

/// The message for stderr, or None when the command already printed it.
pub fn message_for(err: &anyhow::Error) -> Option<String> {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        return exit.message.clone();
    }
    // NOTE: not `{err:#}`: an error whose own text already ends with its cause (a library
    // `Error::Io` shows the OS error) would print that cause twice.
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    if code_for(err) == CORRUPTION && !text.contains("tasklog repair") {
        // A refusal on a damaged store says what to do next, not only what is wrong.
        text.push_str(REPAIR_HINT);
    }
    Some(text)
}

/// Appended to every refusal because of damage on disk.
pub const REPAIR_HINT: &str = "\n  the store is damaged: `tasklog verify` lists the damage, \
`tasklog repair` shows what a repair would cut, and `tasklog repair --yes` cuts it (keeping the \
damaged bytes in quarantine/)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_their_codes() {
        let corrupt = anyhow::Error::new(Error::corrupt("x", Some(1), Some(2), "bad crc"));
        assert_eq!(code_for(&corrupt), CORRUPTION);
        let locked = anyhow::Error::new(Error::Locked {
            path: "a".into(),
            lock_file: "a/LOCK".into(),
            holder: None,
            waited_ms: 0,
        });
        assert_eq!(code_for(&locked.context("opening")), LOCKED);
        let missing = anyhow::Error::new(Error::NotFound { id: "t".into() });
        assert_eq!(code_for(&missing), OPERATION);
        assert_eq!(code_for(&anyhow::Error::new(Exit::silent(3))), CORRUPTION);
    }

    #[test]
    fn a_refusal_because_of_damage_names_the_repair() {
        let corrupt = anyhow::Error::new(Error::corrupt("x", Some(1), Some(2), "bad crc"))
            .context("cannot open the store at d");
        let msg = message_for(&corrupt).unwrap();
        assert!(msg.contains("tasklog repair --yes"), "{msg}");
        let missing = anyhow::Error::new(Error::NotFound { id: "t".into() });
        assert!(!message_for(&missing).unwrap().contains("repair"));
    }
}
