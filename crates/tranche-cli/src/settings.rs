//! `tranche.toml`: the engine and simulator settings, read with unknown keys refused; every
//! error names the file (and the `TRANCHE_*` variable when the path came from the environment),
//! the key and the fix.

use std::path::Path;

use serde::Deserialize;
use tranche::engine::EngineConfig;
use tranche::sim::SimConfig;

use crate::error::CliError;

/// The configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[engine]`: how orders are worked.
    pub engine: EngineConfig,
    /// `[simulator]`: the simulated market and broker (its account is replaced by the plan's
    /// picture unless `--sim-state` is given).
    pub simulator: SimConfig,
}

/// The fix for a file that cannot be read: name the variable or the flag it came from.
fn unreadable_fix(id: &str, flag: &str) -> String {
    match crate::env::source_of(id) {
        Some(var) => format!("point {} at a readable file, or unset it", var.name),
        None => format!("check the {flag} path"),
    }
}

/// Reads `path` (or the defaults when `None`) and validates the engine settings.
pub fn load(path: Option<&Path>) -> Result<Settings, CliError> {
    let origin = crate::env::origin("config");
    let settings = match path {
        None => Settings::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::config(format!("{}{origin}: cannot read the configuration file: {e}", path.display()))
                    .with_fix(unreadable_fix("config", "--config"))
            })?;
            toml::from_str::<Settings>(&text).map_err(|e| {
                CliError::config(format!("{}{origin}: {}", path.display(), e.to_string().trim_end()))
                    .with_fix("correct or remove the key (see docs/configuration.md for every key and its default)")
            })?
        }
    };
    settings.engine.validate().map_err(|issues| {
        let file = path.map_or_else(|| "defaults".to_owned(), |p| format!("{}{origin}", p.display()));
        let lines: Vec<String> = issues.0.iter().map(|i| format!("  - [engine] {}: {}", i.key, i.message)).collect();
        CliError::config(format!("{file}: invalid engine settings:\n{}", lines.join("\n")))
    })?;
    Ok(settings)
}

/// Reads a simulator state file (the `[simulator]` table's format, as TOML or JSON).
pub fn load_sim_state(path: &Path) -> Result<SimConfig, CliError> {
    let origin = crate::env::origin("sim_state");
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::config(format!("{}{origin}: cannot read the simulator state file: {e}", path.display()))
            .with_fix(unreadable_fix("sim_state", "--sim-state"))
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<SimConfig>(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str::<SimConfig>(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        CliError::config(format!("{}{origin}: {}", path.display(), e.trim_end()))
            .with_fix("see docs/configuration.md for the simulator keys")
    })
}
