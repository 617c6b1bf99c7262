//! The real function binary driven through Lambda's runtime API as AWS runs it, locally:
//! `cargo lambda watch --only-lambda-apis` (cargo-lambda, installed from PyPI) serves the runtime
//! and invoke APIs, the test starts `tranche-lambda` processes against it as Lambda starts
//! instances, with the S3 test server (moto) and the Alpaca emulator. One event executes the plan
//! and answers `TradeExecuted`; the same event twice at the same time (two instances) trades once;
//! the same event after completion answers the recorded result and sends no order; an invocation
//! whose remaining time is short leaves the plan resumable and the next completes it. Under
//! `CI=true` a missing cargo-lambda or moto is a failure, not a skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use tranche::domain::RebalancePlan;
use tranche::emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};
use tranche::sim::SimConfig;
use tranche_tests::{example, Moto};

const BUCKET: &str = "tranche-lambda-runtime";

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cargo lambda watch --only-lambda-apis` on a free port; `None` when cargo-lambda is missing.
fn runtime_api() -> Option<(Killed, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let mut child = Command::new("cargo-lambda")
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let ready = lines.by_ref().take(40).map_while(Result::ok).any(|l| l.contains("starting Runtime server"));
    std::thread::spawn(move || lines.for_each(drop));
    let killed = Killed(child);
    ready.then_some((killed, port))
}

/// One function instance polling the runtime API at `port`.
fn instance(port: u16, moto: &Moto, emulator: &str, prefix: &str, extra: &[(&str, &str)]) -> Killed {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tranche-lambda"));
    cmd.env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("TRANCHE_LEDGER", format!("s3://{BUCKET}/{prefix}"))
        .env("TRANCHE_LEDGER_LEASE", "6")
        .env("TRANCHE_LEDGER_CLOCK_SKEW", "1")
        .env("TRANCHE_DEADLINE_MARGIN", "5")
        .env("APCA_API_BASE_URL", emulator)
        .env("APCA_API_DATA_URL", emulator)
        .env("APCA_API_KEY_ID", DEFAULT_KEY_ID)
        .env("APCA_API_SECRET_KEY", DEFAULT_SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in moto.env() {
        cmd.env(name, value);
    }
    for (name, value) in extra {
        cmd.env(name, value);
    }
    Killed(cmd.spawn().unwrap())
}

/// Invokes the function through the invoke API, as `aws lambda invoke` would; its answer. (A
/// plain HTTP/1.1 request over loopback: no client to install.)
fn invoke(port: u16, event: &Value) -> Value {
    use std::io::{Read, Write};
    let body = event.to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /2015-03-31/functions/_/invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let payload =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_owned() };
    let answer: Value = serde_json::from_str(&payload).unwrap_or_else(|e| panic!("not a JSON answer ({e}): {text}"));
    // A single event to deliver again is a function error whose message is the answer.
    match answer.get("errorType").and_then(Value::as_str) {
        Some("TrancheDeliverAgain") => {
            let message = answer["errorMessage"].as_str().unwrap_or_default();
            let mut inner: Value = serde_json::from_str(message).unwrap_or_else(|e| panic!("{e}: {message}"));
            inner["delivered_again"] = true.into();
            inner
        }
        _ => answer,
    }
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

fn planned(file: &str, event_id: &str) -> Value {
    let text = std::fs::read_to_string(example(file)).unwrap();
    json!({
        "event_type": "RebalancePlanned", "event_id": event_id, "correlation_id": format!("corr-{event_id}"),
        "schema_version": "1.0", "rebalance_plan": serde_json::from_str::<Value>(&text).unwrap(),
    })
}

async fn emulator(file: &str) -> Emulator {
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(example(file)).unwrap()).unwrap();
    let sim = tranche::simulation::account_from_plan(&plan, &SimConfig::default());
    let config =
        EmulatorConfig { sim, requests_per_minute: 0, data_requests_per_minute: 0, ..EmulatorConfig::default() };
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

fn client_ids(emulator: &Emulator) -> Vec<String> {
    emulator.with_sim(|s| s.orders().map(|o| o.client_order_id.to_string()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_binary_through_the_lambda_runtime_api() {
    let Some(moto) = Moto::require(BUCKET) else { return };
    let Some((_api, port)) = runtime_api() else {
        assert!(std::env::var("CI").is_err(), "CI must run this test: pip install cargo-lambda");
        eprintln!("SKIPPED: cargo-lambda is not installed (pip install cargo-lambda)");
        return;
    };
    // Two instances, as Lambda scales out for two deliveries at once.
    let small = emulator("plan.json").await;
    let _one = instance(port, &moto, &small.url(), "runtime", &[]);
    let _two = instance(port, &moto, &small.url(), "runtime", &[]);
    let event = planned("plan.json", "evt-rt-1");
    let (first, second) = tokio::join!(
        tokio::task::spawn_blocking({
            let e = event.clone();
            move || invoke(port, &e)
        }),
        tokio::task::spawn_blocking({
            let e = event.clone();
            move || invoke(port, &e)
        })
    );
    let answers = [first.unwrap(), second.unwrap()];
    let executed: Vec<&Value> = answers.iter().filter(|a| a["metadata"]["disposition"] == "executed").collect();
    assert_eq!(executed.len(), 1, "one delivery traded: {answers:#?}");
    let other = answers.iter().find(|a| a["metadata"]["disposition"] != "executed").unwrap();
    assert_eq!(other["delivered_again"], true, "the duplicate is a function error, delivered again: {other:#}");
    assert_eq!(executed[0]["event_type"], "TradeExecuted");
    assert_eq!(executed[0]["causation_id"], "evt-rt-1");
    let ids = client_ids(&small);
    assert!(!ids.is_empty());
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "client order ids unique");

    // After completion: the recorded result, no order sent.
    let again = invoke(port, &event);
    assert_eq!(again["metadata"]["disposition"], "replayed", "{again:#}");
    assert_eq!(client_ids(&small).len(), ids.len(), "nothing sent for a completed plan");

    // An invocation whose remaining time is short (the local runtime gives 600 s; 599.6 are kept
    // back) leaves the 30-symbol plan resumable; the next invocation completes it.
    let Some((_api, port)) = runtime_api() else { panic!("cargo-lambda started once already") };
    let large = emulator("plan-30.json").await;
    let event = planned("plan-30.json", "evt-rt-30");
    let short = instance(
        port,
        &moto,
        &large.url(),
        "short",
        &[("TRANCHE_DEADLINE_MARGIN", "599.6"), ("TRANCHE_LEAST_RUN", "0")],
    );
    let first = invoke(port, &event);
    assert_eq!(first["metadata"]["disposition"], "resumable", "{first:#}");
    assert_eq!(first["delivered_again"], true, "a plan left resumable is a function error: {first:#}");
    assert!(large.with_sim(|s| s.orders().all(|o| o.status.is_terminal())), "its orders were cancelled");
    drop(short);
    let _normal = instance(port, &moto, &large.url(), "short", &[]);
    let next = invoke(port, &event);
    assert_eq!(next["metadata"]["disposition"], "executed", "{next:#}");
    assert!(next["metadata"]["notes"].to_string().contains("resumed an interrupted run"), "{next:#}");
    let ids = client_ids(&large);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "client order ids unique");
}
