//! `tranche sim run`: many seeded simulated rebalances and their execution quality.

use std::process::ExitCode;

use tranche::engine::{EngineConfig, Strategy};
use tranche::sim::MarketModel;
use tranche::simulation::{run_scenarios, Faults};

use crate::error::{CliError, CliResult};
use crate::exit;

/// Runs `tranche sim run`: `scenarios` seeds from `seed` with `strategy` (the other engine
/// settings from the configuration's `[engine]`, its market from `[simulator.market]` with
/// `market` as its model).
pub fn run(
    scenarios: u64,
    seed: u64,
    (strategy, market): (Strategy, MarketModel),
    faults: Faults,
    config: Option<&std::path::Path>,
    json: bool,
) -> CliResult {
    let settings = crate::settings::load(config)?;
    let engine = EngineConfig { strategy, ..settings.engine };
    let market = tranche::sim::MarketConfig { model: market, ..settings.simulator.market };
    let report = run_scenarios(seed, scenarios, &engine, &market, faults).map_err(CliError::failure)?;
    if json {
        let text =
            serde_json::to_string(&report).map_err(|e| CliError::failure(format!("cannot write the report: {e}")))?;
        outln!("{text}");
    } else {
        outln!("strategy               {:?}", report.strategy);
        outln!("scenarios              {} (seeds {seed}..{})", report.scenarios, seed.saturating_add(scenarios));
        outln!("market                 {}", report.market.name());
        outln!("faults                 {:?}", report.faults);
        outln!("slippage (bps)         mean {:.2}, p95 {:.2}", report.slippage_bps.mean, report.slippage_bps.p95);
        outln!("completion             {:.2} %", report.completion_rate * 100.0);
        outln!("time to complete       {:.1} s (virtual, mean)", report.mean_completion_secs);
        outln!("requests per order     {:.2}", report.requests_per_order);
        outln!("invariant violations   {}", report.invariant_violations);
        for example in &report.violation_examples {
            outln!("                       {example}");
        }
        let fired: Vec<String> = report.faults_fired.iter().map(|(name, n)| format!("{name} {n}")).collect();
        outln!("faults fired           {}", if fired.is_empty() { "none".to_owned() } else { fired.join(", ") });
        let seen: Vec<String> =
            report.referee.iter().filter(|(_, n)| *n > 0).map(|(name, n)| format!("{name} {n}")).collect();
        outln!("referee                {}", if seen.is_empty() { "nothing seen".to_owned() } else { seen.join(", ") });
    }
    if report.invariant_violations > 0 {
        // The violations are listed above (or in the JSON): the exit code flags them for scripts.
        return Ok(exit::code(exit::FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}
