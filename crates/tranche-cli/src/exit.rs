//! The documented exit codes of `tranche` (sysexits-style, stable for scripts).

use std::process::ExitCode;

use tranche::domain::ExecutionStatus;

/// Some items completed, some did not.
pub const PARTIAL: u8 = 2;
/// Nothing that needed trading completed.
pub const FAILURE: u8 = 3;
/// Command-line usage error (clap's own code).
pub const USAGE: u8 = 64;
/// The plan is invalid (EX_DATAERR).
pub const INVALID_PLAN: u8 = 65;
/// An input file cannot be read (EX_NOINPUT).
pub const NO_INPUT: u8 = 66;
/// The broker cannot be used (EX_UNAVAILABLE).
pub const BROKER_UNAVAILABLE: u8 = 69;
/// The plan is being executed by another worker right now (EX_TEMPFAIL: try again later).
pub const PLAN_BUSY: u8 = 75;
/// Bad configuration (EX_CONFIG).
pub const BAD_CONFIG: u8 = 78;

/// An exit code from one of the constants above.
pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}

/// The exit code of a finished run.
pub fn for_status(status: ExecutionStatus) -> ExitCode {
    match status {
        ExecutionStatus::Success => ExitCode::SUCCESS,
        ExecutionStatus::PartialSuccess => code(PARTIAL),
        ExecutionStatus::Failure => code(FAILURE),
    }
}
