//! `alpaca-emulator`: an Alpaca-compatible broker on loopback, backed by the simulator.
//! The first line on stdout is exactly `alpaca-emulator listening on http://HOST:PORT`.

use std::process::ExitCode;

use clap::Parser;
use tranche_emulator::options::{serve, EmulatorArgs, ServeError};

/// Serve the Alpaca trading REST API, the trade_updates stream, the market-data stream and
/// latest quotes from a simulated market. By default the market is open whatever the wall
/// clock says.
#[derive(Debug, Parser)]
#[command(name = "alpaca-emulator", version, about)]
struct Args {
    #[command(flatten)]
    emulator: EmulatorArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.emulator.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    match serve(args.emulator.listen, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ServeError::Listen { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(69)
        }
        Err(e @ ServeError::Runtime(_)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
