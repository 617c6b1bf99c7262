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
    let mut child = tranche()
        .args(["emulator", "--listen", "127.0.0.1:0", "--seed", "5", "--plan", s(plan)])
        // Two processes of one test may share its key; the budget has tests of its own.
        .args(["--requests-per-minute", "0"])
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

/// An S3 test server (moto) on a free loopback port with one bucket, stopped when dropped;
/// `None` when moto is not installed (CI installs it and must not skip: see `require_moto`).
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto and creates `bucket`.
    pub fn start(bucket: &str) -> Option<Self> {
        use std::io::{Read, Write};
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stderr.take()?).lines();
        if !lines.by_ref().take(50).map_while(Result::ok).any(|l| l.contains("Running on")) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        // Keep draining the server's log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let moto = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        let address = format!("127.0.0.1:{port}");
        let mut stream = std::net::TcpStream::connect(&address).ok()?;
        write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.1 200").then_some(moto)
    }

    /// The AWS variables that point the S3 client at this server.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test-only-key-id")
            .env("AWS_SECRET_ACCESS_KEY", "test-only-secret");
    }
}

/// moto for a test that needs it: under CI its absence is a failure, elsewhere a skip.
pub fn require_moto(bucket: &str) -> Option<Moto> {
    let moto = Moto::start(bucket);
    if moto.is_none() {
        assert!(std::env::var("CI").is_err(), "CI must run the S3 tests: pip install 'moto[server]'");
        eprintln!("SKIPPED: moto is not installed (pip install 'moto[server]')");
    }
    moto
}
