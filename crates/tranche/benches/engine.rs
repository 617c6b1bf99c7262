//! Engine cost, measured two ways (a plain `main`, not criterion: it reports percentiles).
//!
//! 1. **Decision latency.** The engine's pure core is driven synchronously against the simulator
//!    core while 100 symbols quote every millisecond on average (about 100,000 quotes per second
//!    of virtual time). Every `handle` call is timed on the wall clock: the cost of digesting one
//!    quote, and the cost of a re-peg decision (the timer input whose output carries the
//!    `Replace` or the cancel that re-prices a working order). The quote that causes a re-price
//!    is stored when it arrives and read when the re-peg fires, so the decision latency from a
//!    quote to its replace command is the sum of the two. Percentiles come from every sample,
//!    sorted (exact, no histogram buckets).
//! 2. **A 100-symbol plan** through the real async driver on the simulator with zero latency:
//!    wall time and CPU time of the thread (Linux `schedstat`). Allocations per order are not
//!    counted: a counting global allocator needs `unsafe`, which the workspace forbids.
//!
//! Results print as a table and are written as JSON to `target/bench-results/engine.json`
//! (read by `cargo xtask bench`). `--quick` shortens the decision run and the plan repetitions.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use rust_decimal::Decimal;
use tranche::broker::{BrokerError, StreamEvent};
use tranche::domain::Timestamp;
use tranche::engine::{Command, EngineConfig, EngineCore, Input, PreflightData, TimerId};
use tranche::sim::{LatencyConfig, Sim, SimConfig};
use tranche::simulation::{account_from_plan, run_on_sim};

mod support;
use support::plan_100;

/// The engine core wired synchronously to the simulator core.
struct Harness {
    sim: Sim,
    core: EngineCore,
    timers: Vec<(TimerId, Timestamp)>,
    pending: Vec<Input>,
    replaces: u64,
}

impl Harness {
    fn broker_error(e: tranche::sim::SimError, mutation: bool) -> BrokerError {
        e.into_broker_error(mutation)
    }

    /// Carries out `commands`, queueing the answers as inputs.
    fn apply(&mut self, commands: Vec<Command>) {
        for command in commands {
            let input = match command {
                Command::Preflight { symbols } => {
                    let assets = symbols
                        .iter()
                        .map(|s| (s.clone(), self.sim.asset(s).map_err(|e| Self::broker_error(e, false))))
                        .collect();
                    let open_orders =
                        self.sim.orders().filter(|o| !o.status.is_terminal()).cloned().collect::<Vec<_>>();
                    Input::Preflight(Box::new(PreflightData {
                        account: Ok(self.sim.account()),
                        clock: Ok(self.sim.clock()),
                        positions: Ok(self.sim.positions()),
                        open_orders: Ok(open_orders),
                        assets,
                    }))
                }
                Command::FetchPositions => Input::Positions(Ok(self.sim.positions())),
                Command::FetchPosition { item, symbol } => {
                    Input::ItemPosition { item, result: Ok(self.sim.position(&symbol)) }
                }
                Command::FetchAccount => Input::Account(Ok(self.sim.account())),
                Command::FetchQuote { item, symbol } => Input::RestQuote {
                    item,
                    result: self
                        .sim
                        .published_quote(&symbol)
                        .ok_or_else(|| BrokerError::NotFound { what: format!("quote of {symbol}") }),
                },
                Command::Subscribe(symbols) => {
                    for s in &symbols {
                        self.sim.subscribe(s);
                    }
                    Input::Quotes(symbols.iter().filter_map(|s| self.sim.published_quote(s)).collect())
                }
                Command::Release(symbols) => {
                    for s in &symbols {
                        self.sim.release(s);
                    }
                    continue;
                }
                Command::Submit { item, request, .. } => Input::Submitted {
                    item,
                    client_order_id: request.client_order_id.clone(),
                    result: self.sim.submit(&request).map_err(|e| Self::broker_error(e, true)),
                },
                // No ledger here: the replace is cleared at once (with the old order read back), and sent on
                // the core's last look.
                Command::Replace { item, order, request, .. } => Input::ReplaceCleared {
                    item,
                    current: self.sim.order(&order).map_err(|e| Self::broker_error(e, false)),
                    old: order,
                    request,
                },
                Command::SendReplace { item, order, request } => {
                    self.replaces += 1;
                    Input::Replaced {
                        item,
                        client_order_id: request.client_order_id.clone(),
                        result: self.sim.replace(&order, &request).map_err(|e| Self::broker_error(e, true)),
                        old: order,
                    }
                }
                Command::Cancel { item, order } => Input::Canceled {
                    item,
                    result: self.sim.cancel(&order).map_err(|e| Self::broker_error(e, true)),
                    order,
                },
                Command::LookupClientId { item, client_order_id } => Input::LookedUp {
                    item,
                    result: self.sim.order_by_client_id(&client_order_id).map_err(|e| Self::broker_error(e, false)),
                    client_order_id,
                },
                Command::LookupOrder { item, client_order_id, order } => Input::LookedUp {
                    item,
                    client_order_id,
                    result: self.sim.order(&order).map_err(|e| Self::broker_error(e, false)),
                },
                Command::FetchFills { .. } => Input::Fills(Ok(self.sim.fills().to_vec())),
                Command::SetTimer { id, at } => {
                    self.timers.retain(|(t, _)| *t != id);
                    self.timers.push((id, at));
                    continue;
                }
                Command::CancelTimer(id) => {
                    self.timers.retain(|(t, _)| *t != id);
                    continue;
                }
                Command::Record(_) | Command::Emit(_) | Command::Finish(_) => continue,
            };
            self.pending.push(input);
        }
    }

    /// Feeds queued inputs (and the commands they cause) until none is left.
    fn drain(&mut self, now: Timestamp) {
        while !self.pending.is_empty() {
            let inputs = std::mem::take(&mut self.pending);
            for input in inputs {
                let commands = self.core.handle(input, now);
                self.apply(commands);
            }
        }
    }
}

/// Exact percentiles of nanosecond samples.
#[derive(Debug, serde::Serialize)]
struct Percentiles {
    samples: usize,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
}

impl Percentiles {
    fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[index]
        };
        Self { samples: samples.len(), p50_ns: at(0.5), p99_ns: at(0.99), p999_ns: at(0.999), max_ns: at(1.0) }
    }
}

#[derive(Debug, serde::Serialize)]
struct DecisionReport {
    virtual_seconds: i64,
    quotes_per_virtual_second: f64,
    quote: Percentiles,
    repeg: Percentiles,
    replace_commands: u64,
}

fn decision_latency(virtual_seconds: i64) -> DecisionReport {
    let plan = plan_100();
    let mut config = account_from_plan(&plan, &SimConfig::default());
    config.latency = LatencyConfig::zero();
    config.market.quote_interval_ms = 1;
    // Quotes every millisecond but little trade flow (about two trades a second per symbol), so
    // resting orders wait and the engine keeps re-pricing them.
    config.market.trade_ppm = 2_000;
    config.seed = 11;
    let sim = Sim::new(config).expect("the bench simulator starts");
    // The longest re-peg ladder the configuration allows at a fast pace, so items keep re-pricing.
    let engine = EngineConfig {
        max_repegs: 50,
        repeg_interval: std::time::Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let core = EngineCore::new(plan, engine);
    let mut h = Harness { sim, core, timers: Vec::new(), pending: Vec::new(), replaces: 0 };
    let start = h.sim.now();
    let commands = h.core.handle(Input::Start, start);
    h.apply(commands);
    h.pending.push(Input::StreamUp);
    h.drain(start);

    let (mut quote_ns, mut repeg_ns, mut quotes) = (Vec::new(), Vec::new(), 0_u64);
    let end = start + chrono::Duration::seconds(virtual_seconds);
    let mut now = start;
    while now < end && !h.core.is_finished() {
        now += chrono::Duration::milliseconds(1);
        h.sim.advance_to(now);
        while let Some(event) = h.sim.pop_event() {
            h.pending.push(match event {
                StreamEvent::Update(update) => Input::Update(update),
                StreamEvent::Up => Input::StreamUp,
                StreamEvent::Down { .. } => Input::StreamDown,
                StreamEvent::Gap { since } => Input::StreamGap { since },
            });
        }
        h.drain(now);
        for symbol in h.sim.take_quote_changes() {
            let Some(quote) = h.sim.published_quote(&symbol) else { continue };
            quotes += 1;
            let began = Instant::now();
            let commands = h.core.handle(Input::Quote(quote), now);
            quote_ns.push(nanos(began));
            h.apply(commands);
        }
        h.drain(now);
        let due: Vec<TimerId> = h.timers.iter().filter(|(_, at)| *at <= now).map(|(id, _)| *id).collect();
        h.timers.retain(|(_, at)| *at > now);
        for id in due {
            let began = Instant::now();
            let commands = h.core.handle(Input::Timer(id), now);
            let spent = nanos(began);
            let repriced = commands.iter().any(|c| matches!(c, Command::Replace { .. } | Command::Cancel { .. }));
            if matches!(id, TimerId::Repeg(_)) && repriced {
                repeg_ns.push(spent);
            }
            h.apply(commands);
        }
        h.drain(now);
    }
    let elapsed = (now - start).num_milliseconds().max(1);
    #[allow(clippy::cast_precision_loss)]
    let rate = quotes as f64 * 1000.0 / elapsed as f64;
    DecisionReport {
        virtual_seconds: elapsed / 1000,
        quotes_per_virtual_second: rate,
        quote: Percentiles::of(quote_ns),
        repeg: Percentiles::of(repeg_ns),
        replace_commands: h.replaces,
    }
}

fn nanos(began: Instant) -> u64 {
    u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time of the calling thread in nanoseconds (Linux only).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[derive(Debug, serde::Serialize)]
struct PlanReport {
    runs: usize,
    orders_per_run: u64,
    filled_items: usize,
    wall_ms_median: f64,
    cpu_ms_median: Option<f64>,
}

fn plan_run(runs: usize) -> PlanReport {
    let plan = plan_100();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let (mut wall, mut cpu, mut orders, mut filled) = (Vec::new(), Vec::new(), 0_u64, 0);
    for seed in 0..runs {
        let mut config = account_from_plan(&plan, &SimConfig::default());
        config.latency = LatencyConfig::zero();
        config.seed = seed as u64 + 1;
        let cpu_before = thread_cpu_ns();
        let began = Instant::now();
        let (result, _) =
            runtime.block_on(run_on_sim(plan.clone(), EngineConfig::default(), config, None)).expect("the plan runs");
        wall.push(began.elapsed().as_secs_f64() * 1000.0);
        if let (Some(before), Some(after)) = (cpu_before, thread_cpu_ns()) {
            #[allow(clippy::cast_precision_loss)]
            cpu.push((after - before) as f64 / 1e6);
        }
        orders = result.orders.iter().map(|r| u64::from(r.orders)).sum();
        filled = result.orders.iter().filter(|r| r.filled_qty.get() > Decimal::ZERO).count();
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    PlanReport {
        runs,
        orders_per_run: orders,
        filled_items: filled,
        wall_ms_median: median(wall).unwrap_or_default(),
        cpu_ms_median: median(cpu),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; a filter or other flags are accepted and ignored.
    let quick = args.iter().any(|a| a == "--quick");
    let decision = decision_latency(if quick { 20 } else { 60 });
    let plan = plan_run(if quick { 3 } else { 10 });
    println!(
        "engine/decision_latency ({:.0} quotes per virtual second, {} s)",
        decision.quotes_per_virtual_second, decision.virtual_seconds
    );
    for (name, p) in [("quote handling", &decision.quote), ("re-peg decision", &decision.repeg)] {
        println!(
            "  {name:16} samples {:>8}  p50 {:>7} ns  p99 {:>7} ns  p99.9 {:>8} ns  max {:>9} ns",
            p.samples, p.p50_ns, p.p99_ns, p.p999_ns, p.max_ns
        );
    }
    println!("  replace commands {}", decision.replace_commands);
    println!(
        "engine/plan_100_symbols_zero_latency: {} runs, median wall {:.1} ms, median CPU {}, {} orders, {} items filled",
        plan.runs,
        plan.wall_ms_median,
        plan.cpu_ms_median.map_or("n/a".into(), |c| format!("{c:.1} ms")),
        plan.orders_per_run,
        plan.filled_items
    );
    let report = serde_json::json!({ "decision": decision, "plan_100": plan });
    support::write_results("engine", &report);
}
