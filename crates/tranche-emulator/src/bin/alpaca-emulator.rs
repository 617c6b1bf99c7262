//! `alpaca-emulator`: an Alpaca-compatible broker on loopback, backed by the simulator.
//! The first line on stdout is exactly `alpaca-emulator listening on http://HOST:PORT`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

/// Serve the Alpaca trading REST API, the trade_updates stream and latest quotes from a
/// simulated market. By default the market is open whatever the wall clock says.
#[derive(Debug, Parser)]
#[command(name = "alpaca-emulator", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed of the simulated market.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The only key id accepted.
    #[arg(long, default_value = DEFAULT_KEY_ID)]
    key_id: String,
    /// The only secret accepted.
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    secret_key: String,
    /// Starting cash of the account.
    #[arg(long, default_value = "100000")]
    cash: String,
    /// Injected faults: dropped, duplicated and delayed updates, dropped sockets, 5xx, 429,
    /// lost answers to submits.
    #[arg(long, value_enum, default_value = "none")]
    faults: Faults,
    /// Extra latency of every trade update, in milliseconds.
    #[arg(long, default_value_t = 15)]
    update_latency_ms: u64,
    /// Alpaca's request budget per minute (0: no limit); past it, requests get 429.
    #[arg(long, default_value_t = 200)]
    requests_per_minute: u32,
    /// Round trip added before every REST answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    round_trip_ms: u64,
    /// Follow the US regular session (09:30-16:00 ET on weekdays) instead of an always-open
    /// market.
    #[arg(long)]
    real_hours: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Faults {
    None,
    Light,
    Heavy,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = EmulatorConfig { key_id: args.key_id, secret_key: args.secret_key, ..EmulatorConfig::default() };
    config.sim.seed = args.seed;
    config.sim.faults = match args.faults {
        Faults::None => tranche_sim::FaultConfig::none(),
        Faults::Light => tranche_sim::FaultConfig::light(),
        Faults::Heavy => tranche_sim::FaultConfig::heavy(),
    };
    config.sim.latency.update_ms = args.update_latency_ms;
    config.requests_per_minute = args.requests_per_minute;
    config.round_trip = std::time::Duration::from_millis(args.round_trip_ms);
    if args.real_hours {
        config.wall_clock_session = false;
        config.sim.session = tranche_emulator::us_regular_session(chrono::Utc::now());
    }
    match args.cash.parse() {
        Ok(cash) => config.sim.account.starting_cash = cash,
        Err(e) => {
            eprintln!("error: --cash: {e}");
            return ExitCode::from(64);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut emulator = match Emulator::start(args.listen, config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(69);
            }
        };
        println!("alpaca-emulator listening on {}", emulator.url());
        let _ = std::io::stdout().flush();
        tokio::select! {
            () = emulator.wait() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        ExitCode::SUCCESS
    })
}
