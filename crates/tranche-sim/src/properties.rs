//! Property tests of the simulator over thousands of seeds: random order flow (submits, cancels,
//! replaces of every kind, fractional and whole, marketable and passive) with faults on and off,
//! checked against the accounting and lifecycle invariants.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rust_decimal::Decimal;
use tranche_broker::StreamEvent;
use tranche_domain::{ClientOrderId, OrderAmount, OrderRequest, Qty, ReplaceRequest, Side, Symbol};

use crate::config::{AccountKind, FaultConfig, SimConfig, StartPosition};
use crate::rng::Rng;
use crate::tests::{d, order, sym};
use crate::Sim;

const SYMBOLS: [&str; 4] = ["AAPL", "EDZ", "PLUG", "Z42"];

fn short_day(seed: u64) -> SimConfig {
    let mut config = SimConfig { seed, ..SimConfig::default() };
    config.session.close = config.session.open + chrono::Duration::minutes(30);
    config.session.start = config.session.open + chrono::Duration::minutes(5);
    config.account.kind = if seed.is_multiple_of(3) { AccountKind::Margin } else { AccountKind::Cash };
    config.account.starting_cash = Decimal::from(20_000 + (seed % 7) * 10_000).into();
    config.account.positions = SYMBOLS
        .iter()
        .enumerate()
        .map(|(i, s)| StartPosition {
            symbol: sym(s),
            qty: Qty::new(Decimal::new(50 + i64::try_from(i).unwrap_or(0) * 25, 0)),
            avg_entry_price: None,
        })
        .collect();
    if seed % 2 == 1 {
        config.faults = FaultConfig::heavy();
    }
    config
}

struct Run {
    sim: Sim,
    delivered: Vec<StreamEvent>,
    min_cash_bp: Decimal,
}

fn random_request(sim: &Sim, rng: &mut Rng, n: usize) -> OrderRequest {
    let symbol = SYMBOLS[usize::try_from(rng.below(SYMBOLS.len() as u64)).unwrap_or(0)];
    let side = if rng.below(2) == 0 { Side::Buy } else { Side::Sell };
    let quote = sim.true_quote(&sym(symbol));
    let whole = rng.range_i64(1, 60);
    let qty = if rng.below(4) == 0 { format!("{whole}.{}", rng.range_i64(1, 99)) } else { whole.to_string() };
    let limit = match (rng.below(3), quote) {
        (0, _) | (_, None) => None,
        (k, Some(q)) => {
            let (inside, step) = match side {
                Side::Buy => (q.bid.get(), -1),
                Side::Sell => (q.ask.get(), 1),
            };
            let ticks = if k == 1 { rng.range_i64(-3, 3) } else { step * rng.range_i64(0, 20) };
            let tick = tranche_domain::tick_size(q.bid).get();
            Some((inside + tick * Decimal::from(ticks)).max(tick).to_string())
        }
    };
    let mut req = order(&format!("o{n}"), symbol, side, &qty, limit.as_deref());
    if limit.is_none() && rng.below(6) == 0 {
        req.amount = OrderAmount::Notional(Decimal::from(rng.range_i64(1, 800)).into());
    }
    req
}

fn run(seed: u64) -> Run {
    let mut sim = Sim::new(short_day(seed)).unwrap();
    for s in SYMBOLS {
        sim.subscribe(&sym(s));
    }
    let mut rng = Rng::derive(seed, "script");
    let mut delivered = Vec::new();
    let mut min_cash_bp = Decimal::MAX;
    let close = sim.config().session.close;
    for n in 0..40 {
        let step = chrono::Duration::milliseconds(i64::try_from(rng.below(20_000)).unwrap_or(0));
        sim.advance_to(sim.now() + step);
        match rng.below(5) {
            0 | 1 => {
                let req = random_request(&sim, &mut rng, n);
                let _ = sim.submit(&req);
            }
            2 => {
                let open = sim.open_orders();
                if let Some(o) = open.get(usize::try_from(rng.below(open.len() as u64 + 1)).unwrap_or(0)) {
                    let _ = sim.cancel(&o.id);
                }
            }
            3 => {
                let open = sim.open_orders();
                if let Some(o) = open.get(usize::try_from(rng.below(open.len() as u64 + 1)).unwrap_or(0)) {
                    let leaves = o.leaves_qty().unwrap_or_default();
                    let tick =
                        o.limit_price.map(tranche_domain::tick_size).map_or(Decimal::ZERO, tranche_domain::Price::get);
                    let req = ReplaceRequest {
                        client_order_id: ClientOrderId::from_broker(format!("o{n}-r")),
                        qty: Some(Qty::new(leaves.get().floor().max(Decimal::ONE))),
                        limit_price: o
                            .limit_price
                            .map(|p| (p.get() + tick * Decimal::from(rng.range_i64(-2, 4))).max(tick).into()),
                        time_in_force: None,
                    };
                    let _ = sim.replace(&o.id, &req);
                }
            }
            _ => {}
        }
        if sim.account().multiplier == 1 {
            min_cash_bp = min_cash_bp.min(sim.account().buying_power.get());
        }
        delivered.extend(std::iter::from_fn(|| sim.pop_event()));
    }
    sim.advance_to(close + chrono::Duration::seconds(30));
    delivered.extend(std::iter::from_fn(|| sim.pop_event()));
    Run { sim, delivered, min_cash_bp }
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let Run { sim, delivered, min_cash_bp } = run(seed);
    let config = short_day(seed);
    // Every status change went along an edge of the domain's table.
    prop_assert_eq!(sim.refused_transitions(), 0, "seed {} moved an order along a refused edge", seed);

    // Cash and positions change exactly by fills minus fees.
    let mut cash = config.account.starting_cash.get();
    let mut positions: BTreeMap<Symbol, Decimal> =
        config.account.positions.iter().map(|p| (p.symbol.clone(), p.qty.get())).collect();
    for f in sim.fills() {
        let notional = f.qty.get() * f.price.get();
        let signed = if f.side == Side::Buy { f.qty.get() } else { -f.qty.get() };
        cash += if f.side == Side::Buy { -notional } else { notional };
        *positions.entry(f.symbol.clone()).or_default() += signed;
    }
    cash -= sim.fees_paid();
    prop_assert_eq!(sim.account().cash.get(), cash, "seed {}", seed);
    for (symbol, qty) in &positions {
        let held = sim.position(symbol).map_or(Decimal::ZERO, |p| p.qty.get());
        prop_assert_eq!(held, *qty, "seed {} {}", seed, symbol);
        prop_assert!(*qty >= Decimal::ZERO, "no short is ever opened");
    }

    // No order fills beyond its quantity; fills add up to each order's filled quantity,
    // including replaced orders; every order is final after the close.
    let placed: BTreeSet<_> = sim.orders().map(|o| o.id.clone()).collect();
    for o in sim.orders() {
        let filled: Decimal = sim.fills().iter().filter(|f| f.order_id == o.id).map(|f| f.qty.get()).sum();
        prop_assert_eq!(filled, o.filled_qty.get(), "seed {} order {}", seed, o.client_order_id);
        if let Some(q) = o.qty {
            prop_assert!(o.filled_qty <= q, "seed {} overfill {}", seed, o.client_order_id);
        }
        prop_assert!(o.status.is_terminal(), "seed {} {} still {}", seed, o.client_order_id, o.status);
        if o.status == tranche_domain::OrderStatus::Replaced {
            prop_assert!(o.replaced_by.as_ref().is_some_and(|r| placed.contains(r)));
        }
    }
    // No fill for an order that was never placed, in the fill log or on the stream.
    for f in sim.fills() {
        prop_assert!(placed.contains(&f.order_id));
    }
    for e in &delivered {
        if let StreamEvent::Update(u) = e {
            prop_assert!(placed.contains(&u.order.id), "seed {} update for unknown order", seed);
        }
    }
    // A cash account's buying power never goes negative.
    prop_assert!(min_cash_bp >= Decimal::ZERO, "seed {} buying power {}", seed, min_cash_bp);
    prop_assert!(sim.account().buying_power.get() >= Decimal::ZERO || config.account.kind == AccountKind::Margin);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn accounting_and_lifecycle_invariants_hold_for_any_seed(seed in any::<u64>()) {
        check(seed)?;
    }
}

#[test]
fn the_random_flow_really_trades() {
    let mut fills = 0;
    let mut replaced = 0;
    let mut canceled = 0;
    for seed in 0..50 {
        let r = run(seed);
        fills += r.sim.fills().len();
        replaced += r.sim.orders().filter(|o| o.status == tranche_domain::OrderStatus::Replaced).count();
        canceled += r.sim.orders().filter(|o| o.status == tranche_domain::OrderStatus::Canceled).count();
    }
    assert!(fills > 200 && replaced > 10 && canceled > 10, "fills {fills}, replaced {replaced}, canceled {canceled}");
    let _ = d("0");
}
