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

/// An S3 test server (moto) on a free loopback port with one bucket, stopped when dropped; the
/// one place tests start it from (the CLI's and the ledger's tests still carry older copies).
pub struct Moto {
    child: std::process::Child,
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
    /// Starts moto and creates `bucket`; `None` when moto is not installed. Under `CI` its
    /// absence is a failure (CI installs it), not a skip.
    pub fn require(bucket: &str) -> Option<Self> {
        let moto = Self::start(bucket);
        if moto.is_none() {
            assert!(std::env::var("CI").is_err(), "CI must run the S3 tests: pip install 'moto[server]'");
            eprintln!("SKIPPED: moto is not installed (pip install 'moto[server]')");
        }
        moto
    }

    fn start(bucket: &str) -> Option<Self> {
        use std::io::{BufRead, BufReader, Read, Write};
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
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

    /// The AWS variables that point an S3 client at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test-only-key-id".into()),
            ("AWS_SECRET_ACCESS_KEY", "test-only-secret".into()),
        ]
    }
}
