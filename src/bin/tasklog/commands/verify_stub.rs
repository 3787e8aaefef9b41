//! Stand-in for `verify.rs` until the WAL (with `verify` and `repair`) is merged.

use std::io::Write;

use super::Ctx;
use crate::exit::{Exit, OPERATION};

pub fn verify(_ctx: &Ctx, _out: &mut dyn Write, _json: bool) -> anyhow::Result<()> {
    Err(Exit::new(OPERATION, "verify needs the WAL merge").into())
}

pub fn repair(_ctx: &Ctx, _out: &mut dyn Write, _yes: bool) -> anyhow::Result<()> {
    eprintln!("tasklog: error: repair needs the WAL merge");
    Err(Exit::silent(OPERATION).into())
}

pub fn refuse_damage(_dir: &std::path::Path) -> tasklog::Result<()> {
    Ok(())
}
