//! Cold start of the Lambda function beside the predecessor's stack, for `cargo xtask bench`:
//! the release binary's size; the time from process start to the function's first poll of
//! Lambda's runtime API (its init phase: configuration read, runtime up), against a loopback
//! listener standing in for the runtime API; and the time a Python process takes to start and
//! import alpaca-py's trading and market-data clients (the predecessor's init before any code of
//! its own). Medians over several runs.
//!
//! Invariants: every process started here is killed before the next starts; nothing reaches the
//! network beyond loopback (the function is given placeholder keys and never gets an event).

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What was measured.
pub struct ColdStart {
    size_bytes: u64,
    runs: usize,
    rust_ms: f64,
    python_ms: Result<f64, String>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Milliseconds from spawning the function to its first connection to the runtime API.
fn function_init(binary: &Path) -> Result<f64, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "tranche")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("TRANCHE_LEDGER", "s3://cold-start/bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "placeholder")
        .env("AWS_SECRET_ACCESS_KEY", "placeholder")
        .env("APCA_API_KEY_ID", "placeholder")
        .env("APCA_API_SECRET_KEY", "placeholder")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let polled = loop {
        match listener.accept() {
            Ok(_) => break Ok(started.elapsed().as_secs_f64() * 1000.0),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() > Duration::from_secs(20) {
                    break Err("the function never polled the runtime API".to_owned());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    polled
}

/// Milliseconds for a Python process to start and import alpaca-py's clients.
fn python_init(python: &Path) -> Result<f64, String> {
    let started = Instant::now();
    let status = Command::new(python)
        .args(["-c", "import alpaca.trading.client, alpaca.data.live, alpaca.data.historical"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !status.success() {
        return Err(format!("importing alpaca-py failed ({status})"));
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Builds the function in release and measures both (`quick`: fewer runs).
pub fn measure(root: &Path, target: &Path, quick: bool) -> Result<ColdStart, String> {
    let status = Command::new("cargo")
        .args(["build", "--release", "--locked", "-p", "tranche-lambda"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p tranche-lambda failed ({status})"));
    }
    let binary = target.join("release").join("tranche-lambda");
    let size_bytes = std::fs::metadata(&binary).map_err(|e| format!("{}: {e}", binary.display()))?.len();
    let runs = if quick { 3 } else { 9 };
    let rust = (0..runs).map(|_| function_init(&binary)).collect::<Result<Vec<_>, _>>()?;
    let python_ms = crate::alpaca_py::interpreter(target)
        .and_then(|python| (0..runs).map(|_| python_init(&python)).collect::<Result<Vec<_>, _>>())
        .map(median);
    Ok(ColdStart { size_bytes, runs, rust_ms: median(rust), python_ms })
}

/// The page's section.
pub fn render(page: &mut String, measured: &Result<ColdStart, String>) {
    page.push_str("## Cold start of the Lambda function\n\n");
    let m = match measured {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(page, "Not measured: {e}\n");
            return;
        }
    };
    let python = match &m.python_ms {
        Ok(ms) => format!("{ms:.0} ms"),
        Err(e) => format!("not measured ({e})"),
    };
    let _ = writeln!(
        page,
        "Median of {} runs on this machine. Tranche: process start to its first poll of Lambda's runtime API \
         (configuration read, runtime up), against a loopback listener standing in for the API. The \
         predecessor's stack: a Python process started and alpaca-py's trading and market-data clients \
         imported, before any code of its own.\n\n\
         | figure | Tranche (`tranche-lambda`, release) | Python + alpaca-py |\n|---|---|---|\n\
         | init time | {:.1} ms | {python} |\n\
         | deployed size | {:.1} MB (one binary) | the interpreter, alpaca-py and its dependencies (a layer) |\n",
        m.runs,
        m.rust_ms,
        m.size_bytes as f64 / 1_000_000.0
    );
}
