//! The documented exit codes of `tranche`.

use std::process::ExitCode;

/// The plan is invalid (EX_DATAERR).
pub const INVALID_PLAN: u8 = 65;
/// An input file cannot be read (EX_NOINPUT).
pub const NO_INPUT: u8 = 66;

/// An exit code from one of the constants above.
pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}
