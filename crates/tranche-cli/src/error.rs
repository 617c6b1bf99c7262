//! The CLI's one error type: every failure of every command, phrased for the user, with its
//! documented exit code (see [`crate::exit`]) and, where there is one, the fix.
//!
//! Invariants: a `CliError` is built once, where the failure is understood, and reported once,
//! by `main` (`error: ...` and `fix: ...` on stderr, or one ERROR event with a `fix` field in JSON
//! mode); its message never holds a credential (URLs are shown by `AlpacaConfig::trading_url_shown`).

use std::fmt;
use std::process::ExitCode;

use crate::exit;

/// A failure of a command, with its exit code and the fix when one can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The documented exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
    /// The fix, when one can be named.
    pub fix: Option<String>,
}

/// What every command returns: its exit code (success can be partial) or a failure.
pub type CliResult<T = ExitCode> = Result<T, CliError>;

impl CliError {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), fix: None }
    }

    /// Exit 64: the command line asks for something that cannot be done as asked.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// Exit 65: the plan (or the targets a plan is made from) is invalid.
    pub fn invalid_plan(message: impl Into<String>) -> Self {
        Self::new(exit::INVALID_PLAN, message)
    }

    /// Exit 66: an input file (or a ledger to read) is not there.
    pub fn no_input(message: impl Into<String>) -> Self {
        Self::new(exit::NO_INPUT, message)
    }

    /// Exit 69: the broker cannot be used now.
    pub fn broker_unavailable(message: impl Into<String>) -> Self {
        Self::new(exit::BROKER_UNAVAILABLE, message)
    }

    /// Exit 75: try again later (the plan is busy elsewhere, or the ledger is unreachable).
    pub fn try_later(message: impl Into<String>) -> Self {
        Self::new(exit::PLAN_BUSY, message)
    }

    /// Exit 78: the configuration (a file, a variable, a flag's value) is wrong.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(exit::BAD_CONFIG, message)
    }

    /// Exit 3: the command failed for a reason none of the above names.
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(exit::FAILURE, message)
    }

    /// The same failure with the fix the user should apply.
    #[must_use]
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// The same failure with `context` before its message (`context: message`).
    #[must_use]
    pub fn context(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Reports the failure on stderr (text or a JSON event) and returns its exit code.
    pub fn report(&self) -> ExitCode {
        crate::logging::error_with_fix(&self.message, self.fix.as_deref());
        exit::code(self.code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\nfix: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// The exit code of a command's outcome, reporting a failure first.
pub fn exit_code(outcome: CliResult) -> ExitCode {
    outcome.unwrap_or_else(|e| e.report())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_carries_its_documented_exit_code() {
        let cases = [
            (CliError::usage("u"), exit::USAGE),
            (CliError::invalid_plan("p"), exit::INVALID_PLAN),
            (CliError::no_input("n"), exit::NO_INPUT),
            (CliError::broker_unavailable("b"), exit::BROKER_UNAVAILABLE),
            (CliError::try_later("t"), exit::PLAN_BUSY),
            (CliError::config("c"), exit::BAD_CONFIG),
            (CliError::failure("f"), exit::FAILURE),
        ];
        for (error, code) in cases {
            assert_eq!(error.code, code, "{error}");
        }
    }

    #[test]
    fn the_fix_is_its_own_line_and_context_goes_first() {
        let error = CliError::config("bad value").context("--ledger").with_fix("pass sqlite:PATH");
        assert_eq!(error.to_string(), "--ledger: bad value\nfix: pass sqlite:PATH");
        assert_eq!(error.message, "--ledger: bad value");
        assert_eq!(error.fix.as_deref(), Some("pass sqlite:PATH"));
        assert_eq!(CliError::failure("plain").to_string(), "plain");
    }
}
