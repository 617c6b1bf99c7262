//! Connecting the read-only commands (`account`, `positions`, `orders`, `plan new`) to a broker:
//! the embedded simulator or Alpaca, chosen by the same options as `tranche execute`.
//!
//! Also the Alpaca configuration every command shares ([`alpaca_config`], with the live-trading
//! safety checks) and the user's words for a broker's refusal ([`broker_failure`]).
//!
//! Invariants: nothing here sends an order; Alpaca's keys come only from `APCA_*` and never
//! appear in a message; every failure is phrased for the user with its documented exit code
//! (69 broker unavailable, 78 bad configuration, 64 usage).

use std::path::PathBuf;
use std::sync::Arc;

use tranche::broker::{Broker, BrokerError};
use tranche::sim::SimulatedBroker;

use crate::error::CliError;
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
    ) -> Result<T, CliError> {
        self.runtime
            .block_on(call)
            .map_err(|e| broker_failure(&e).context(&format!("{}: cannot read the {what}", self.label)))
    }
}

/// The user's words for a broker's refusal: refused keys are configuration (78), anything else
/// means the broker cannot be used now (69).
pub fn broker_failure(error: &BrokerError) -> CliError {
    match error {
        BrokerError::Auth { .. } => CliError::config(error.to_string()).with_fix(
            "check APCA_API_KEY_ID and APCA_API_SECRET_KEY (paper keys work only with the paper URL, live keys \
             only with --live)",
        ),
        _ => CliError::broker_unavailable(error.to_string()),
    }
}

/// Connects to the broker `options` name.
pub fn connect(options: &BrokerOptions) -> Result<Connection, CliError> {
    match options.broker {
        BrokerArg::Sim if options.live => Err(CliError::usage("--live is for --broker alpaca")),
        BrokerArg::Sim => connect_sim(options),
        BrokerArg::Alpaca => connect_alpaca(options.live),
    }
}

fn connect_sim(options: &BrokerOptions) -> Result<Connection, CliError> {
    let settings = settings::load(options.config.as_deref())?;
    let mut sim = match &options.sim_state {
        Some(path) => settings::load_sim_state(path)?,
        None => settings.simulator,
    };
    if let Some(seed) = options.seed {
        sim.seed = seed;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the runtime: {e}")))?;
    let (sim, _clock) = runtime
        .block_on(async { tranche::simulation::start_sim(sim) })
        .map_err(|e| CliError::config(format!("simulator: {e}")))?;
    tracing::info!(broker = "sim", "simulated broker started");
    Ok(Connection { broker: Arc::new(sim.broker()), label: "sim", _sim: Some(sim), runtime })
}

/// What a command does at Alpaca, for the live-trading safety checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlpacaUse {
    /// Reads only: no confirmation needed, whatever the URL.
    Read,
    /// Sends orders: real money needs `--live` and `--confirm-live` both.
    Trade {
        /// `--confirm-live` was given.
        confirm_live: bool,
    },
}

/// The Alpaca configuration from `APCA_*`: paper unless `live`. Trading real money needs `live`
/// and the confirmation both, and a live URL without `live` is refused rather than traded on.
pub fn alpaca_config(live: bool, usage: AlpacaUse) -> Result<tranche::alpaca::AlpacaConfig, CliError> {
    if usage == (AlpacaUse::Trade { confirm_live: false }) && live {
        return Err(CliError::usage("live trading needs both --live and --confirm-live; nothing was sent"));
    }
    let config = tranche::alpaca::AlpacaConfig::from_env(live).map_err(|e| match e {
        tranche::alpaca::ConfigError::Missing(name) => CliError::config(format!("{name} is not set"))
            .with_fix(format!("export {name} (Alpaca's key; see docs/configuration.md)")),
        bad @ (tranche::alpaca::ConfigError::BadUrl { .. }
        | tranche::alpaca::ConfigError::BadFeed(_)
        | tranche::alpaca::ConfigError::BadSymbolLimit(_)) => CliError::config(bad.to_string()),
    })?;
    if usage != AlpacaUse::Read && !live && config.is_live() {
        return Err(CliError::usage("APCA_API_BASE_URL points at the live API; nothing was sent")
            .with_fix("pass --live --confirm-live to trade real money"));
    }
    Ok(config)
}

fn connect_alpaca(live: bool) -> Result<Connection, CliError> {
    let config = alpaca_config(live, AlpacaUse::Read)?;
    let label = if config.is_live() { "alpaca live" } else { "alpaca" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the runtime: {e}")))?;
    let broker = tranche::alpaca::AlpacaBroker::new(config).map_err(|e| CliError::broker_unavailable(e.to_string()))?;
    tracing::info!(broker = label, "Alpaca client ready");
    Ok(Connection { broker: Arc::new(broker), label, _sim: None, runtime })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_keys_are_configuration_and_the_rest_is_unavailability() {
        let auth = broker_failure(&BrokerError::Auth { message: "forbidden".into() }).context("alpaca");
        assert_eq!(auth.code, crate::exit::BAD_CONFIG);
        assert!(auth.fix.as_deref().is_some_and(|fix| fix.contains("APCA_API_KEY_ID")), "{auth}");
        let down = broker_failure(&BrokerError::Transient { message: "refused".into() }).context("alpaca");
        assert_eq!(down.code, crate::exit::BROKER_UNAVAILABLE);
        assert!(down.message.starts_with("alpaca: "), "{down}");
    }
}
