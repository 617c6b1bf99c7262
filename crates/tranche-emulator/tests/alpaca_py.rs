//! Conformance with Alpaca's official Python SDK: `conformance/alpaca_py_conformance.py` drives
//! the emulator through `TradingClient`, `TradingStream`, `StockHistoricalDataClient` and
//! `StockDataStream` (MessagePack) and a raw JSON market-data session, as an application built
//! on the SDK would with only its URLs changed, and fails on any exception or mismatched field.
//!
//! The interpreter is `TRANCHE_ALPACA_PY` (`cargo xtask ci` installs a pinned alpaca-py into a
//! virtualenv and sets it), else `python3` when it can import alpaca-py. Without either the
//! test is skipped, except under `CI`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

/// How long the whole script may take before it is killed and the test fails.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn interpreter() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TRANCHE_ALPACA_PY") {
        return Some(PathBuf::from(path));
    }
    let importable = Command::new("python3")
        .args(["-c", "import alpaca.trading.client, alpaca.data.live"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    importable.then(|| PathBuf::from("python3"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_finds_every_call_it_makes_answered_as_alpaca_answers_it() {
    let Some(python) = interpreter() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the SDK conformance test: cargo xtask ci installs alpaca-py"
        );
        eprintln!("SKIPPED: no Python with alpaca-py (set TRANCHE_ALPACA_PY or run cargo xtask ci)");
        return;
    };
    let mut config = EmulatorConfig {
        start_at: Some(Utc.with_ymd_and_hms(2026, 3, 2, 14, 30, 0).unwrap()),
        // The SDK's polling of order states is not what this test measures.
        requests_per_minute: 0,
        data_requests_per_minute: 0,
        ..EmulatorConfig::default()
    };
    config.sim.market.quote_interval_ms = 100;
    // Like Alpaca: a name outside the universe is no asset (by default the simulator invents it).
    config.sim.symbols.invent = Some(false);
    let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let url = emulator.url();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/alpaca_py_conformance.py");
    let (code, output) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&python)
            .arg(&script)
            .args([url.as_str(), DEFAULT_KEY_ID, DEFAULT_SECRET_KEY])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the interpreter starts");
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > SCRIPT_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = format!("{}\n{}", out.join().unwrap_or_default(), err.join().unwrap_or_default());
        (status.and_then(|s| s.code()), output)
    })
    .await
    .unwrap();
    println!("{output}");
    assert_eq!(code, Some(0), "alpaca-py against the emulator:\n{output}");
    assert!(output.contains("all checks passed"), "{output}");
    assert!(!output.contains("FAILED"), "{output}");
}
