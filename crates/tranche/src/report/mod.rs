//! `tranche execute --report FILE`: a self-contained HTML report of a run (summary, one table
//! row per plan item, one SVG chart per traded symbol of the bid/ask band, the limit-price steps
//! and the fills), or of a dry run's preview.
//!
//! Invariants: the file is created before anything is sent (a path that cannot be written stops
//! the run early) and holds a "run in progress" page until the report replaces it; the page loads
//! nothing from anywhere (inline CSS and SVG, no script); every text is escaped; nothing secret
//! is handed to it (results, progress events and quotes only).

mod chart;
mod html;
mod svg;
mod tape;

use std::path::{Path, PathBuf};

use tranche_domain::{ExecutionResult, Timestamp};
use tranche_engine::Preview;

pub use tape::{Recording, RecordingFeed};

/// Facts about the run shown at the top of the page.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Where orders went, e.g. "embedded simulator, seed 1 (virtual time)". Never a URL or a key.
    pub broker: String,
    /// When the report was written (wall clock).
    pub generated: Timestamp,
}

impl RunInfo {
    /// Facts for a run at `broker`, stamped now.
    pub fn new(broker: impl Into<String>) -> Self {
        Self { broker: broker.into(), generated: chrono::Utc::now() }
    }

    /// The same facts, stamped now.
    fn now(&self) -> Self {
        Self { broker: self.broker.clone(), generated: chrono::Utc::now() }
    }
}

/// The report file of one `tranche execute`.
#[derive(Debug, Clone)]
pub struct Target {
    path: PathBuf,
}

impl Target {
    /// Creates (or truncates) `path` with a "run in progress" page, so that an unwritable path
    /// is found before anything is sent.
    pub fn create(path: &Path, plan_id: &str, info: &RunInfo) -> Result<Self, String> {
        std::fs::write(path, html::pending_page(plan_id, info))
            .map_err(|e| format!("cannot write the report to {}: {e}", path.display()))?;
        Ok(Self { path: path.to_owned() })
    }

    /// Where the report goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the report of a finished run from its result and what was recorded.
    pub fn write_run(&self, result: &ExecutionResult, recording: &Recording, info: &RunInfo) -> Result<(), String> {
        self.write(&html::run_page(result, &recording.trace(), &info.now()))
    }

    /// Writes the report of a dry run.
    pub fn write_preview(&self, plan_id: &str, preview: &Preview, info: &RunInfo) -> Result<(), String> {
        self.write(&html::preview_page(plan_id, preview, &info.now()))
    }

    fn write(&self, page: &str) -> Result<(), String> {
        // Write beside the target, then rename: a reader never sees half a report.
        let partial = self.path.with_extension("html.partial");
        std::fs::write(&partial, page)
            .and_then(|()| std::fs::rename(&partial, &self.path))
            .map_err(|e| format!("cannot write the report to {}: {e}", self.path.display()))
    }
}
