//! `tranche.toml`: the engine and simulator settings, read with unknown keys refused; every
//! error names the file (and the `TRANCHE_*` variable when the path came from the environment),
//! the key and the fix.

use std::path::Path;

use serde::Deserialize;
use tranche::engine::EngineConfig;
use tranche::sim::SimConfig;

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

/// A configuration problem, already phrased for the user.
#[derive(Debug)]
pub struct SettingsError(pub String);

/// The fix for a file that cannot be read: name the variable or the flag it came from.
fn unreadable_fix(id: &str, flag: &str) -> String {
    match crate::env::source_of(id) {
        Some(var) => format!("fix: point {} at a readable file, or unset it", var.name),
        None => format!("fix: check the {flag} path"),
    }
}

/// Reads `path` (or the defaults when `None`) and validates the engine settings.
pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
    let origin = crate::env::origin("config");
    let settings = match path {
        None => Settings::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SettingsError(format!(
                    "{}{origin}: cannot read the configuration file: {e}\n{}",
                    path.display(),
                    unreadable_fix("config", "--config")
                ))
            })?;
            toml::from_str::<Settings>(&text).map_err(|e| {
                SettingsError(format!(
                    "{}{origin}: {}fix: correct or remove the key (see docs/configuration.md for every key and its default)",
                    path.display(),
                    e
                ))
            })?
        }
    };
    settings.engine.validate().map_err(|issues| {
        let file = path.map_or_else(|| "defaults".to_owned(), |p| format!("{}{origin}", p.display()));
        let lines: Vec<String> = issues.0.iter().map(|i| format!("  - [engine] {}: {}", i.key, i.message)).collect();
        SettingsError(format!("{file}: invalid engine settings:\n{}", lines.join("\n")))
    })?;
    Ok(settings)
}

/// Reads a simulator state file (the `[simulator]` table's format, as TOML or JSON).
pub fn load_sim_state(path: &Path) -> Result<SimConfig, SettingsError> {
    let origin = crate::env::origin("sim_state");
    let text = std::fs::read_to_string(path).map_err(|e| {
        SettingsError(format!(
            "{}{origin}: cannot read the simulator state file: {e}\n{}",
            path.display(),
            unreadable_fix("sim_state", "--sim-state")
        ))
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<SimConfig>(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str::<SimConfig>(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        SettingsError(format!("{}{origin}: {e}\nfix: see docs/configuration.md for the simulator keys", path.display()))
    })
}
