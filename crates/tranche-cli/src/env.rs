//! The `TRANCHE_*` environment: which variable stands for which flag, which values of this run
//! came from the environment, and errors that name the variable and the fix.
//!
//! Precedence is flags > environment > `tranche.toml` > defaults: clap reads a variable only
//! when its flag is absent, and a file value applies only when neither is given. Invariants: the
//! record of sources is written once, at start-up; no variable holds a credential (Alpaca's keys
//! stay in Alpaca's own `APCA_*` variables, read by the adapter), so values may be echoed.

use std::sync::OnceLock;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::error::CliError;

/// A `TRANCHE_*` variable and the flag it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable, e.g. `TRANCHE_SEED`.
    pub name: &'static str,
    /// The flag it stands for, e.g. `--seed`.
    pub flag: &'static str,
    /// The clap argument id behind the flag.
    pub id: &'static str,
    /// What a valid value looks like.
    pub expects: &'static str,
}

/// Every variable the CLI reads (besides Alpaca's `APCA_*` and the object store's `AWS_*`).
pub const VARS: &[EnvVar] = &[
    EnvVar { name: "TRANCHE_CONFIG", flag: "--config", id: "config", expects: "the path of a tranche.toml file" },
    EnvVar { name: "TRANCHE_BROKER", flag: "--broker", id: "broker", expects: "sim or alpaca" },
    EnvVar {
        name: "TRANCHE_SIM_STATE",
        flag: "--sim-state",
        id: "sim_state",
        expects: "the path of a simulator state file (TOML, or JSON with a .json extension)",
    },
    EnvVar { name: "TRANCHE_SEED", flag: "--seed", id: "seed", expects: "a whole number such as 7" },
    EnvVar { name: "TRANCHE_LEDGER", flag: "--ledger", id: "ledger", expects: "sqlite:PATH or s3://BUCKET/PREFIX" },
    EnvVar {
        name: "TRANCHE_LEDGER_LEASE",
        flag: "--ledger-lease",
        id: "ledger_lease",
        expects: "a number of seconds from 3 to 3600, such as 60",
    },
    EnvVar {
        name: "TRANCHE_LEDGER_CLOCK_SKEW",
        flag: "--ledger-clock-skew",
        id: "ledger_clock_skew",
        expects: "a number of seconds from 0 to 600, such as 5",
    },
    EnvVar { name: "TRANCHE_LOG_FORMAT", flag: "--log-format", id: "log_format", expects: "text or json" },
    EnvVar {
        name: "TRANCHE_LOG_LEVEL",
        flag: "--log-level",
        id: "log_level",
        expects: "a level (off, error, warn, info, debug, trace) or directives such as warn,tranche_engine=debug",
    },
];

/// Argument ids whose value this run took from the environment.
static FROM_ENV: OnceLock<Vec<&'static str>> = OnceLock::new();

/// Records which values of the parsed command line came from the environment (the top level
/// and every subcommand level), and checks the ones no later step checks with the variable's
/// name (the ledger specification). Call once, right after parsing.
pub fn record(matches: &ArgMatches) -> Result<(), CliError> {
    let mut used = Vec::new();
    let mut problem = None;
    let mut level = Some(matches);
    while let Some(m) = level {
        for id in m.ids() {
            let Some(var) = VARS.iter().find(|v| v.id == id.as_str()) else { continue };
            if m.value_source(var.id) != Some(ValueSource::EnvVariable) || used.contains(&var.id) {
                continue;
            }
            used.push(var.id);
            if var.id == "ledger" {
                let value = m.get_one::<String>(var.id).map_or("", String::as_str);
                if !ledger_spec_is_well_formed(value) {
                    problem = Some(invalid(var, value, ""));
                }
            }
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    let _ = FROM_ENV.set(used);
    problem.map_or(Ok(()), Err)
}

/// `sqlite:PATH` with a path, or `s3://BUCKET/PREFIX` with a bucket (what `--ledger` accepts).
fn ledger_spec_is_well_formed(spec: &str) -> bool {
    spec.parse::<tranche::ledger::LedgerSpec>().is_ok()
}

fn invalid(var: &EnvVar, value: &str, reason: &str) -> CliError {
    CliError::config(format!("environment variable {}=`{value}` is not a valid {}{reason}", var.name, var.flag))
        .with_fix(format!("set {} to {}, or unset it", var.name, var.expects))
}

/// The variable that supplied argument `id` in this run, when it came from the environment.
pub fn source_of(id: &str) -> Option<&'static EnvVar> {
    let used = FROM_ENV.get()?;
    if !used.contains(&id) {
        return None;
    }
    VARS.iter().find(|v| v.id == id)
}

/// How to name where argument `id`'s value came from: ` (from TRANCHE_X)` or nothing.
pub fn origin(id: &str) -> String {
    source_of(id).map(|v| format!(" (from {})", v.name)).unwrap_or_default()
}

/// When a command-line parse error is about a value that came from a `TRANCHE_*` variable (its
/// flag was not given), the message naming the variable, the value and the fix.
pub fn clap_error(error: &clap::Error, args: &[String]) -> Option<CliError> {
    if !matches!(error.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else { return None };
    let var = VARS.iter().find(|v| arg.split([' ', '=']).next() == Some(v.flag))?;
    let flag_given = args.iter().any(|a| a == var.flag || a.starts_with(&format!("{}=", var.flag)));
    let value = std::env::var(var.name).ok()?;
    if flag_given {
        return None;
    }
    let reason = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) if *v != value => return None,
        _ => std::error::Error::source(error).map(|e| format!(": {e}")).unwrap_or_default(),
    };
    Some(invalid(var, &value, &reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_tranche_prefixed_and_names_a_long_flag() {
        for var in VARS {
            assert!(var.name.starts_with("TRANCHE_"), "{var:?}");
            assert!(var.flag.starts_with("--"), "{var:?}");
            assert_eq!(var.flag.trim_start_matches("--").replace('-', "_"), var.id, "{var:?}");
        }
    }

    #[test]
    fn ledger_specs_need_a_path_or_a_bucket() {
        for good in ["sqlite:l.sqlite", "s3://bucket", "s3://bucket/prefix/x"] {
            assert!(ledger_spec_is_well_formed(good), "{good}");
        }
        for bad in ["", "sqlite:", "s3://", "s3:///prefix", "ftp://host", "ledger.sqlite"] {
            assert!(!ledger_spec_is_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn nothing_recorded_means_nothing_from_the_environment() {
        assert_eq!(origin("config"), "");
    }
}
