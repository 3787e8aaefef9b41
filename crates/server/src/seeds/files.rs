//! Server-side paths of seed 000's export and import, confined to
//! [`crate::ServerOptions::files_dir`].
//!
//! Rules, in order:
//! 1. no `files_dir`: refused, 403 `files_disabled`;
//! 2. the path must be relative: names of 1 to 63 characters separated by single `/`, none
//!    `..`, no NUL, at most 1,024 characters ([`PATH_PATTERN`]): 400 `invalid_input` at
//!    `$.path` otherwise;
//! 3. it is resolved under the canonical `files_dir` and canonicalized (following every
//!    symlink); a result outside `files_dir` is refused, 403 `path_not_allowed`; a missing
//!    file to read, or a missing directory to write in, is 404 `not_found`.
//!
//! NOTE: a symlink swapped between the check and the use could still redirect one request;
//! `files_dir` is the operator's directory, and clients cannot create links in it through
//! this API.

use std::path::{Component, Path, PathBuf};

use axum::http::StatusCode;

use crate::error::{ApiResult, Problem};

/// Longest path accepted (characters).
pub const PATH_CHARS_MAX: usize = 1024;
/// Longest name of one path component (characters; at most 4 bytes each in UTF-8, so within
/// the common 255-byte file name limit).
pub const NAME_CHARS_MAX: usize = 63;
/// The paths accepted, as the OpenAPI document states them.
pub const PATH_PATTERN: &str = r"^(?!\.\.(/|$))(?!.*/\.\.(/|$))[^/\x00]{1,63}(/[^/\x00]{1,63})*$";

/// The path does not exist (a name in it missing, or a file where a directory should be).
fn missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

fn disabled() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "files_disabled",
        "this server reads and writes no server-side files (it was started without a files directory)",
    )
    .at("$.path")
}

fn outside(p: &str) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "path_not_allowed",
        format!("{p:?} leads outside the server's files directory"),
    )
    .at("$.path")
}

fn invalid(detail: String) -> Problem {
    Problem::bad_request("invalid_input", detail).at("$.path")
}

/// The canonical files directory.
fn root(files_dir: Option<&Path>) -> ApiResult<PathBuf> {
    let dir = files_dir.ok_or_else(disabled)?;
    dir.canonicalize().map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "files_dir_unavailable",
            format!(
                "the server's files directory {} cannot be used: {e}",
                dir.display()
            ),
        )
    })
}

/// Checks the text of a requested path (rule 2): names of 1 to [`NAME_CHARS_MAX`] characters
/// separated by single `/`, none `..`, no NUL, at most [`PATH_CHARS_MAX`] characters: exactly
/// what [`PATH_PATTERN`] says in the OpenAPI document.
fn relative(requested: &str) -> ApiResult<&Path> {
    if requested.is_empty() {
        return Err(invalid("the path is empty".into()));
    }
    if requested.chars().count() > PATH_CHARS_MAX {
        return Err(invalid(format!(
            "the path is longer than {PATH_CHARS_MAX} characters"
        )));
    }
    if requested.starts_with('/') {
        return Err(invalid(format!(
            "{requested:?}: an absolute path is not allowed; name a file relative to the server's files directory"
        )));
    }
    for name in requested.split('/') {
        if name.contains('\0') {
            return Err(invalid("the path contains a NUL character".into()));
        }
        if name == ".." {
            return Err(invalid(format!(
                "{requested:?}: `..` is not allowed; name a file inside the server's files directory"
            )));
        }
        if name.is_empty() {
            return Err(invalid(format!(
                "{requested:?}: empty name (a `/` at the end or doubled)"
            )));
        }
        if name.chars().count() > NAME_CHARS_MAX {
            return Err(invalid(format!(
                "{requested:?}: a name is longer than {NAME_CHARS_MAX} characters"
            )));
        }
    }
    let p = Path::new(requested);
    // NOTE: the checks above exclude these already; kept as the last word on what is joined.
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid(format!(
            "{requested:?} is not a plain relative path"
        )));
    }
    Ok(p)
}

/// `path` as `files_dir` shows it to clients: relative to it.
pub fn shown(files_dir: &Path, path: &Path) -> String {
    let root = files_dir
        .canonicalize()
        .unwrap_or_else(|_| files_dir.to_path_buf());
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// An existing file to read.
pub fn for_read(files_dir: Option<&Path>, requested: &str) -> ApiResult<PathBuf> {
    let root = root(files_dir)?;
    let rel = relative(requested)?;
    let full = root.join(rel).canonicalize().map_err(|e| {
        if missing(&e) {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no file {requested:?} in the server's files directory"),
            )
            .at("$.path")
        } else {
            invalid(format!("{requested:?}: {e}"))
        }
    })?;
    if !full.starts_with(&root) {
        return Err(outside(requested));
    }
    if !full.is_file() {
        return Err(invalid(format!("{requested:?} is not a file")));
    }
    Ok(full)
}

/// Where to write: `requested` (a file, or a directory to put `default_name` in) or
/// `default_name` in `files_dir`. The directory must exist.
pub fn for_write(
    files_dir: Option<&Path>,
    requested: Option<&str>,
    default_name: &str,
) -> ApiResult<PathBuf> {
    let root = root(files_dir)?;
    let Some(requested) = requested else {
        return Ok(root.join(default_name));
    };
    let rel = relative(requested)?;
    let candidate = root.join(rel);
    // An existing entry (file, directory or link): resolve it whole.
    if candidate.symlink_metadata().is_ok() {
        // A dangling link cannot be resolved, so where it leads cannot be checked: refused.
        let full = candidate.canonicalize().map_err(|_| outside(requested))?;
        if !full.starts_with(&root) {
            return Err(outside(requested));
        }
        return Ok(if full.is_dir() {
            full.join(default_name)
        } else {
            full
        });
    }
    let name = candidate
        .file_name()
        .ok_or_else(|| invalid(format!("{requested:?} names no file")))?
        .to_owned();
    let parent = candidate.parent().unwrap_or(&root);
    let parent = parent.canonicalize().map_err(|e| {
        if missing(&e) {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "{requested:?}: its directory does not exist in the server's files directory"
                ),
            )
            .at("$.path")
        } else {
            invalid(format!("{requested:?}: {e}"))
        }
    })?;
    if !parent.starts_with(&root) {
        return Err(outside(requested));
    }
    Ok(parent.join(name))
}
