//! Connecting the read-only commands (`account`, `positions`, `orders`, `plan new`) to a broker:
//! the embedded simulator or Alpaca, chosen by the same options as `tranche execute`.
//!
//! Invariants: nothing here sends an order; Alpaca's keys come only from `APCA_*` and never
//! appear in a message; every failure is phrased for the user with its documented exit code
//! (69 broker unavailable, 78 bad configuration, 64 usage).

use std::path::PathBuf;
use std::sync::Arc;

use tranche::broker::{Broker, BrokerError};
use tranche::sim::SimulatedBroker;

use crate::exit;
use crate::settings;
use crate::BrokerArg;

/// Which broker to read and how to reach it (the options `tranche execute` has too).
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerOptions {
    /// The broker: the embedded simulator (default) or Alpaca (keys and URLs from
    /// `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`, `APCA_API_BASE_URL`, `APCA_API_DATA_URL`).
    #[arg(long, value_enum, env = "TRANCHE_BROKER", default_value = "sim")]
    pub broker: BrokerArg,
    /// Settings file (`[simulator]` gives the simulated account; see docs/configuration.md).
    #[arg(long, value_name = "FILE", env = "TRANCHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Simulator state to read instead of the configuration's `[simulator]` (TOML or JSON).
    #[arg(long, value_name = "FILE", env = "TRANCHE_SIM_STATE")]
    pub sim_state: Option<PathBuf>,
    /// Seed of the simulated market.
    #[arg(long, env = "TRANCHE_SEED")]
    pub seed: Option<u64>,
    /// Read the live Alpaca account (Alpaca's live URL unless `APCA_API_BASE_URL` is set).
    /// Reading needs no confirmation: these commands never send an order.
    #[arg(long)]
    pub live: bool,
}

/// A failure already phrased for the user, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The documented exit code.
    pub code: u8,
    /// What went wrong and the fix.
    pub message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// Reports the failure on stderr and returns its exit code.
    pub fn report(&self) -> std::process::ExitCode {
        crate::logging::error(&self.message);
        exit::code(self.code)
    }
}

/// A connected broker and the runtime its calls run on.
pub struct Connection {
    /// The `Broker` port.
    pub broker: Arc<dyn Broker>,
    /// What the broker is, for messages and logs (`sim`, `alpaca paper`, `alpaca live`).
    pub label: &'static str,
    /// Keeps the simulator running (`None` at Alpaca); dropped before the runtime.
    _sim: Option<SimulatedBroker>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("label", &self.label).finish_non_exhaustive()
    }
}

impl Connection {
    /// Runs one broker call to completion, mapping its error for the user.
    pub fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, Failure> {
        self.runtime.block_on(call).map_err(|e| broker_failure(self.label, what, &e))
    }
}

/// The user's words for a failed read: refused keys are configuration (78), anything else means
/// the broker cannot be used now (69).
fn broker_failure(label: &str, what: &str, error: &BrokerError) -> Failure {
    match error {
        BrokerError::Auth { .. } => Failure::new(
            exit::BAD_CONFIG,
            format!(
                "{label}: cannot read the {what}: {error}\nfix: check APCA_API_KEY_ID and APCA_API_SECRET_KEY \
                 (paper keys work only with the paper URL, live keys only with --live)"
            ),
        ),
        _ => Failure::new(exit::BROKER_UNAVAILABLE, format!("{label}: cannot read the {what}: {error}")),
    }
}

/// Connects to the broker `options` name.
pub fn connect(options: &BrokerOptions) -> Result<Connection, Failure> {
    match options.broker {
        BrokerArg::Sim if options.live => Err(Failure::new(exit::USAGE, "--live is for --broker alpaca")),
        BrokerArg::Sim => connect_sim(options),
        BrokerArg::Alpaca => connect_alpaca(options.live),
    }
}

fn connect_sim(options: &BrokerOptions) -> Result<Connection, Failure> {
    let settings = settings::load(options.config.as_deref()).map_err(|e| Failure::new(exit::BAD_CONFIG, e.0))?;
    let mut sim = match &options.sim_state {
        Some(path) => settings::load_sim_state(path).map_err(|e| Failure::new(exit::BAD_CONFIG, e.0))?,
        None => settings.simulator,
    };
    if let Some(seed) = options.seed {
        sim.seed = seed;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot start the runtime: {e}")))?;
    let (sim, _clock) = runtime
        .block_on(async { tranche::simulation::start_sim(sim) })
        .map_err(|e| Failure::new(exit::BAD_CONFIG, format!("simulator: {e}")))?;
    tracing::info!(broker = "sim", "simulated broker started");
    Ok(Connection { broker: Arc::new(sim.broker()), label: "sim", _sim: Some(sim), runtime })
}

fn connect_alpaca(live: bool) -> Result<Connection, Failure> {
    let config = tranche::alpaca::AlpacaConfig::from_env(live).map_err(|e| match e {
        tranche::alpaca::ConfigError::Missing(name) => Failure::new(
            exit::BAD_CONFIG,
            format!("{name} is not set\nfix: export {name} (Alpaca's key; see docs/configuration.md)"),
        ),
        bad @ (tranche::alpaca::ConfigError::BadUrl { .. } | tranche::alpaca::ConfigError::BadFeed(_)) => {
            Failure::new(exit::BAD_CONFIG, bad.to_string())
        }
    })?;
    let label =
        if config.trading_url.trim_end_matches('/') == tranche::alpaca::LIVE_URL { "alpaca live" } else { "alpaca" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot start the runtime: {e}")))?;
    let broker = tranche::alpaca::AlpacaBroker::new(config)
        .map_err(|e| Failure::new(exit::BROKER_UNAVAILABLE, e.to_string()))?;
    tracing::info!(broker = label, "Alpaca client ready");
    Ok(Connection { broker: Arc::new(broker), label, _sim: None, runtime })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_keys_are_configuration_and_the_rest_is_unavailability() {
        let auth = broker_failure("alpaca", "account", &BrokerError::Auth { message: "forbidden".into() });
        assert_eq!(auth.code, exit::BAD_CONFIG);
        assert!(auth.message.contains("APCA_API_KEY_ID"), "{}", auth.message);
        let down = broker_failure("alpaca", "account", &BrokerError::Transient { message: "refused".into() });
        assert_eq!(down.code, exit::BROKER_UNAVAILABLE);
        assert!(down.message.starts_with("alpaca: cannot read the account"), "{}", down.message);
    }
}
