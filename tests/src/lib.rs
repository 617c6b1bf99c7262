//! Workspace-level tests for Tranche: the example plans, and (as the crates land) end-to-end runs
//! through the simulator and the Alpaca emulator. The tests live in `tests/tests/`; this library
//! holds helpers they share.

use std::path::PathBuf;

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map_or(here.clone(), PathBuf::from)
}

/// The path of a file under `examples/`.
pub fn example(name: &str) -> PathBuf {
    workspace_root().join("examples").join(name)
}
