//! What the CLI's end-to-end tests share: the real binary with a clean environment, its exit
//! code and output, fresh temporary directories, and `tranche emulator` on a free loopback port.

// Each test file uses a different part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The emulator's key pair (it refuses any other).
pub const KEY: &str = "EMULATORKEYID";
/// The emulator's secret: no output may contain it.
pub const SECRET: &str = "emulator-secret-key";

/// The binary with no `TRANCHE_*` or `APCA_*` variable inherited from the caller's shell.
pub fn tranche() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tranche"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TRANCHE_") || name.starts_with("APCA_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `cmd` to the end: its exit code, stdout and stderr.
pub fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh, empty directory for one test of this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tranche-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The path as text (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A child process killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tranche emulator` (seed 5, no request budget) on a free loopback port, its account from
/// `plan`'s picture;
/// returns it and its base URL, read from the documented first line.
pub fn start_emulator(plan: &Path) -> (Killed, String) {
    start_emulator_with(plan, &[])
}

/// As [`start_emulator`], with more of the emulator's arguments (`--sim-config`, ...).
pub fn start_emulator_with(plan: &Path, more: &[&str]) -> (Killed, String) {
    let mut child = tranche()
        .args(["emulator", "--listen", "127.0.0.1:0", "--seed", "5", "--plan", s(plan)])
        // Two processes of one test may share its key; the budget has tests of its own.
        .args(["--requests-per-minute", "0"])
        .args(more)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("alpaca-emulator listening on ").expect("the documented first line").to_owned();
    (Killed(child), url)
}

/// Points `cmd` at the emulator at `url` with its key pair (`--broker alpaca` is the caller's).
pub fn at_emulator<'a>(cmd: &'a mut Command, url: &str) -> &'a mut Command {
    cmd.env("APCA_API_BASE_URL", url)
        .env("APCA_API_DATA_URL", url)
        .env("APCA_API_KEY_ID", KEY)
        .env("APCA_API_SECRET_KEY", SECRET)
}

/// The S3 test server (moto), shared with the workspace's other tests.
pub use tranche_tests::Moto;

/// moto for a test that needs it: under CI its absence is a failure, elsewhere a skip.
pub fn require_moto(bucket: &str) -> Option<Moto> {
    Moto::require(bucket)
}

/// Points `cmd`'s S3 client at `moto`.
pub fn with_moto<'a>(cmd: &'a mut Command, moto: &Moto) -> &'a mut Command {
    cmd.envs(moto.env())
}
