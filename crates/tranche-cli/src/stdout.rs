//! The command's stdout (results, tables, JSON) and the lines it writes itself on stderr
//! (errors, notes, progress): written line by line, and once a write fails (the reader went
//! away: `tranche ... | head`, a closed stderr), nothing more is written there and the command
//! goes on to its own end and exit code.
//!
//! Invariant: a write error never panics and never ends the command.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout could not be written to.
static GONE: AtomicBool = AtomicBool::new(false);

/// Set once stderr could not be written to.
static ERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes one line (`args` and a newline) to stdout, unless stdout is gone.
pub fn line(args: std::fmt::Arguments<'_>) {
    write_line(&mut std::io::stdout().lock(), &GONE, args);
}

/// Writes one line (`args` and a newline) to stderr, unless stderr is gone (`eprintln!`
/// panicked there: exit 101 in place of the command's own code).
pub fn err_line(args: std::fmt::Arguments<'_>) {
    write_line(&mut std::io::stderr().lock(), &ERR_GONE, args);
}

/// Writes `args` and a newline to `out`, unless `gone` says it failed before; a failure sets it.
fn write_line(out: &mut impl Write, gone: &AtomicBool, args: std::fmt::Arguments<'_>) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if writeln!(out, "{args}").and_then(|()| out.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}
