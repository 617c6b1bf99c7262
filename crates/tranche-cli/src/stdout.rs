//! The command's stdout (results, tables, JSON): written line by line, and once a write fails
//! (the reader went away: `tranche ... | head`), nothing more is written and the command goes
//! on to its own end and exit code.
//!
//! Invariant: a write error never panics and never ends the command.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout could not be written to.
static GONE: AtomicBool = AtomicBool::new(false);

/// Writes one line (`args` and a newline) to stdout, unless stdout is gone.
pub fn line(args: std::fmt::Arguments<'_>) {
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{args}").and_then(|()| out.flush()).is_err() {
        GONE.store(true, Ordering::Relaxed);
    }
}
