//! After the tests: no process a test started is still running. A test that spawns a binary of
//! this workspace (the emulator, the CLI, the ledger's crash writer) must end it, pass or fail;
//! one left behind holds ports and memory and hides a hang. Linux only (it reads `/proc`);
//! elsewhere nothing is checked.
//!
//! Invariant: only processes whose executable lives under this workspace's target directory
//! count, and never the process doing the check.

use std::path::{Path, PathBuf};

/// One running process: its id, its executable and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub pid: u32,
    pub exe: PathBuf,
    pub cmdline: String,
}

/// The processes of `running` that a test of the workspace left behind: an executable under
/// `target`, other than `me`.
pub fn left_behind(running: &[Running], target: &Path, me: u32) -> Vec<Running> {
    running.iter().filter(|p| p.pid != me && p.exe.starts_with(target)).cloned().collect()
}

/// Every process this user can see (empty where `/proc` does not exist).
pub fn running() -> Vec<Running> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok().unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_owned();
            Some(Running { pid, exe, cmdline })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, exe: &str) -> Running {
        Running { pid, exe: PathBuf::from(exe), cmdline: exe.to_owned() }
    }

    #[test]
    fn only_the_workspaces_binaries_other_than_the_checker_count() {
        let target = Path::new("/repo/target");
        let running = [
            p(1, "/usr/lib/systemd/systemd"),
            p(10, "/repo/target/debug/xtask"),
            p(11, "/repo/target/debug/alpaca-emulator"),
            p(12, "/repo/target/debug/deps/execute-0123abcd"),
            p(13, "/usr/bin/python3"),
            p(14, "/repo/target-other/debug/tranche"),
        ];
        let found: Vec<u32> = left_behind(&running, target, 10).iter().map(|r| r.pid).collect();
        assert_eq!(found, vec![11, 12]);
    }

    #[test]
    fn this_process_is_seen_and_never_counted() {
        let me = std::process::id();
        let all = running();
        if std::path::Path::new("/proc").exists() {
            assert!(all.iter().any(|r| r.pid == me), "the scan sees this test");
        }
        let exe = std::env::current_exe().unwrap_or_default();
        let target = exe.parent().unwrap_or(Path::new("/"));
        assert!(left_behind(&all, target, me).iter().all(|r| r.pid != me));
    }
}
