//! End-to-end: `tranche account`, `tranche positions` and `tranche orders` with the real binary,
//! on the embedded simulator and through the Alpaca adapter against the emulator on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tranche_tests::example;

const KEY: &str = "EMULATORKEYID";
const SECRET: &str = "emulator-secret-key";

/// The binary with no `TRANCHE_*` or `APCA_*` variable inherited from the caller's shell.
fn tranche() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tranche"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TRANCHE_") || name.starts_with("APCA_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A simulator state with cash and two positions, in a fresh directory.
fn sim_state(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tranche-reads-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.toml");
    std::fs::write(
        &path,
        "seed = 3\n[account]\nstarting_cash = \"50000\"\n\
         positions = [{ symbol = \"AAPL\", qty = \"100\" }, { symbol = \"EDZ\", qty = \"50\" }]\n",
    )
    .unwrap();
    path
}

#[test]
fn account_on_the_simulator_as_a_table_and_as_json() {
    let (code, stdout, stderr) = run(tranche().arg("account"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("broker                       sim\n"), "{stdout}");
    assert!(stdout.contains("equity                       $100000.00"), "the default simulated account: {stdout}");
    assert!(stdout.contains("trading                      allowed"), "{stdout}");

    let state = sim_state("account");
    let (code, stdout, stderr) = run(tranche().args(["account", "--json", "--sim-state", state.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{stderr}");
    let account: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(account["status"], "active");
    assert_eq!(account["cash"], "50000");
    let equity: f64 = account["equity"].as_str().unwrap().parse().unwrap();
    assert!(equity > 50_000.0, "cash plus the positions: {equity}");
}

#[test]
fn positions_on_the_simulator_as_a_table_and_as_json() {
    let state = sim_state("positions");
    let (code, stdout, stderr) = run(tranche().args(["positions", "--sim-state", state.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("SYMBOL"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("AAPL") && l.contains(" 100 ")), "{stdout}");
    assert!(stdout.contains("2 positions worth $"), "{stdout}");

    let (code, stdout, _) = run(tranche().args(["positions", "--json"]).env("TRANCHE_SIM_STATE", &state));
    assert_eq!(code, Some(0));
    let positions: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let symbols: Vec<&str> = positions.as_array().unwrap().iter().map(|p| p["symbol"].as_str().unwrap()).collect();
    assert_eq!(symbols, ["AAPL", "EDZ"], "sorted by symbol");
    assert_eq!(positions[0]["qty"], "100");

    let (code, stdout, _) = run(tranche().arg("positions"));
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "no positions (equity $100000.00)\n");
}

#[test]
fn orders_on_a_fresh_simulator_are_none() {
    let (code, stdout, stderr) = run(tranche().arg("orders"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "no open orders\n");
    let (code, stdout, _) = run(tranche().args(["orders", "--json", "--symbol", "AAPL,MSFT"]));
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), serde_json::json!([]));
    let (code, _, stderr) = run(tranche().args(["orders", "--symbol", "NOT A SYMBOL"]));
    assert_eq!(code, Some(64), "{stderr}");
}

#[test]
fn live_is_only_for_alpaca() {
    let (code, _, stderr) = run(tranche().args(["account", "--live"]));
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--live is for --broker alpaca"), "{stderr}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tranche emulator` on a free loopback port with the account of `examples/plan.json`.
fn start_emulator() -> (Killed, String) {
    let plan = example("plan.json");
    let mut child = tranche()
        .args(["emulator", "--listen", "127.0.0.1:0", "--seed", "5", "--plan", plan.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("alpaca-emulator listening on ").expect("the documented first line").to_owned();
    (Killed(child), url)
}

fn at_alpaca(url: &str, args: &[&str]) -> Command {
    let mut cmd = tranche();
    cmd.args(args)
        .args(["--broker", "alpaca"])
        .env("APCA_API_BASE_URL", url)
        .env("APCA_API_DATA_URL", url)
        .env("APCA_API_KEY_ID", KEY)
        .env("APCA_API_SECRET_KEY", SECRET);
    cmd
}

#[test]
fn positions_and_account_at_alpaca_through_the_emulator_never_show_the_secret() {
    let (_emulator, url) = start_emulator();
    let (code, stdout, stderr) =
        run(&mut at_alpaca(&url, &["positions", "--json", "--log-format", "json", "--log-level", "trace"]));
    assert_eq!(code, Some(0), "{stderr}");
    let positions: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let symbols: Vec<&str> = positions.as_array().unwrap().iter().map(|p| p["symbol"].as_str().unwrap()).collect();
    assert_eq!(symbols, ["AAPL", "EDZ", "MSFT", "QQQ", "SPY"], "the plan's held positions");
    assert!(!stderr.contains(SECRET) && !stdout.contains(SECRET), "the secret is in no output and no log");

    let (code, stdout, stderr) = run(&mut at_alpaca(&url, &["positions"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("5 positions worth $"), "{stdout}");
    let (code, stdout, stderr) = run(&mut at_alpaca(&url, &["account"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("broker                       alpaca\n"), "{stdout}");
    let (code, stdout, _) = run(&mut at_alpaca(&url, &["orders", "--json"]));
    assert_eq!(code, Some(0));
    assert!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap().is_array());

    let (code, _, stderr) = run(at_alpaca(&url, &["account"]).env("APCA_API_SECRET_KEY", "wrong-secret"));
    assert_eq!(code, Some(78), "refused keys are a configuration error: {stderr}");
    assert!(stderr.contains("APCA_API_SECRET_KEY") && !stderr.contains("wrong-secret"), "{stderr}");
}

#[test]
fn alpaca_without_keys_is_bad_configuration_and_unreachable_is_unavailable() {
    let (code, _, stderr) = run(tranche().args(["positions", "--broker", "alpaca"]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("APCA_API_KEY_ID is not set"), "{stderr}");

    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, _, stderr) = run(&mut at_alpaca(&url, &["account"]));
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("alpaca: cannot read the account"), "{stderr}");
}
