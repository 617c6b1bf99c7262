//! Property test of the engine on the simulator: seeded random plans and markets in virtual
//! time (cash and margin accounts, quote anomalies, latency, and on a quarter of the seeds the
//! test bed's faults), every run checked against the engine's invariants and the broker's
//! referee.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rust_decimal::Decimal;
use tranche::domain::{ItemOutcome, Side};
use tranche::engine::{EngineConfig, Strategy};
use tranche::sim::{AccountKind, LatencyConfig, SimConfig};
use tranche::simulation::{check_run, net_traded, run_on_sim, scenario};

const SEEDS: u64 = 2000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// The market and engine variations a seed selects: strategies, account kinds (every Alpaca
/// account is a margin account: multipliers 1, 2 and 4 all occur), quote anomalies.
fn setup(seed: u64) -> (SimConfig, EngineConfig) {
    let mut sim = SimConfig::default();
    if seed.is_multiple_of(3) {
        sim.account.kind = AccountKind::Margin;
        sim.account.multiplier = [1, 2, 4][usize::try_from((seed / 3) % 3).unwrap()];
    }
    if seed.is_multiple_of(5) {
        sim.market.one_sided_ppm = 20_000;
        sim.market.crossed_ppm = 10_000;
        sim.market.zero_ppm = 5_000;
        sim.market.stale_ppm = 5_000;
    }
    if seed.is_multiple_of(7) {
        sim.latency = LatencyConfig { ack_ms: 150, venue_ms: 40, update_ms: 120 };
    }
    if seed % 4 == 1 {
        // A quarter of the seeds on every fault of the test bed: the invariants hold under them
        // too.
        sim.faults = tranche::sim::FaultConfig::heavy();
    }
    let strategy =
        [Strategy::Smart, Strategy::Smart, Strategy::Market, Strategy::Predecessor][usize::try_from(seed % 4).unwrap()];
    (sim, EngineConfig { strategy, ..EngineConfig::default() })
}

/// True for a seed whose account has margin to lend (multiplier 2 or 4).
fn lends_margin(seed: u64) -> bool {
    let (sim, _) = setup(seed);
    sim.account.kind == AccountKind::Margin && sim.account.multiplier > 1
}

/// `margin`: whether the referee's margin check counts.
fn check_seed(seed: u64, margin: bool, filled: &mut usize, attempted: &mut usize) -> Vec<String> {
    let (base, engine) = setup(seed);
    let (plan, sim) = scenario(seed, 8, &base);
    let deadline = engine.run_deadline;
    let (result, record) = runtime().block_on(run_on_sim(plan.clone(), engine, sim, None)).unwrap();
    let mut problems: Vec<String> = check_run(&plan, &result, &record)
        .into_iter()
        .map(|v| v.0)
        .filter(|v| margin || !v.starts_with("referee: margin_used"))
        .collect();
    // The plan's own fills: under heavy faults the account's owner sells beside the run.
    let ours: Vec<_> =
        record.fills.iter().filter(|f| f.client_order_id.belongs_to_plan(&plan.plan_id)).cloned().collect();
    let traded = net_traded(&ours);
    *attempted += result.orders_placed as usize;
    *filled += result.orders.iter().filter(|r| r.reached_target()).count();
    for row in &result.orders {
        if row.reason.as_deref().is_some_and(|r| r.contains("insufficient buying power")) {
            problems.push(format!("{}: refused for buying power: {:?}", row.symbol, row.reason));
        }
        if row.outcome == ItemOutcome::Filled {
            let got = traded.get(&row.symbol).copied().unwrap_or_default().abs();
            let want = row.requested_qty.get();
            // Filled means nothing worth an order is left: less than the $1 minimum of one (a
            // whole share short of a whole-share target at $1 or more is a share too few).
            let price = row.avg_fill_price.map_or(Decimal::ONE, tranche::domain::Price::get);
            if (got - want).abs() * price >= Decimal::ONE {
                problems.push(format!("{}: traded {got} for a target of {want}", row.symbol));
            }
        }
        let side = row.action.side();
        if side == Some(Side::Sell) {
            let before = record.positions_before.get(&row.symbol).copied().unwrap_or_default();
            if row.filled_qty.get() > before {
                problems.push(format!("{}: sold {} of {before} held", row.symbol, row.filled_qty));
            }
        }
    }
    if record.elapsed_secs > deadline.as_secs_f64() + 1.0 {
        problems.push(format!("run took {}s past its {}s deadline", record.elapsed_secs, deadline.as_secs()));
    }
    if problems.is_empty() {
        return problems;
    }
    problems.insert(
        0,
        format!(
            "seed {seed}: {:?}",
            result
                .orders
                .iter()
                .map(|r| (&r.symbol, r.outcome, &r.reason, r.filled_qty, r.requested_qty))
                .collect::<Vec<_>>()
        ),
    );
    problems
}

#[test]
fn engine_invariants_hold_over_thousands_of_random_plans() {
    let mut failures = Vec::new();
    let (mut filled, mut attempted) = (0, 0);
    for seed in 0..SEEDS {
        // Every account, margin ones included, is held to "never margin".
        let problems = check_seed(seed, true, &mut filled, &mut attempted);
        if !problems.is_empty() {
            failures.push(problems.join("\n  "));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {SEEDS} runs broke invariants:\n{}",
        failures.len(),
        failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    // The runs really trade: nearly every item that needed trading completed.
    assert!(attempted > 3 * usize::try_from(SEEDS).unwrap(), "{attempted} items traded");
    assert!(filled * 100 >= attempted * 97, "{filled} of {attempted} items completed");
}

/// Engine core v1 sized buys from `min(buying_power, non_marginable_buying_power)`, but on a
/// margin account (every Alpaca account is one) non-marginable buying power is excess equity,
/// not cash, so the buys of a plan can take cash below zero; re-pegs and escalations are not
/// re-checked against the budget either. Seen by the referee in 57 of the margin seeds, e.g. 24:
/// `margin_used ... tr-...-XF-b0 would commit 11575.72 with 7038.33 cash`, then fills that
/// leave cash below zero. Engine core v2 budgets from cash less open buy reservations unless the user
/// opts into margin, and caps every priced order by the item's budget (hole 9 of the engine issue).
#[test]
fn accounts_that_lend_margin_are_never_used_on_margin() {
    let (mut filled, mut attempted) = (0, 0);
    let failures: Vec<String> = (0..SEEDS)
        .filter(|seed| lends_margin(*seed))
        .map(|seed| check_seed(seed, true, &mut filled, &mut attempted).join("\n  "))
        .filter(|p| !p.is_empty())
        .collect();
    assert!(
        failures.is_empty(),
        "{} runs used margin:\n{}",
        failures.len(),
        failures.iter().take(4).cloned().collect::<Vec<_>>().join("\n")
    );
}
