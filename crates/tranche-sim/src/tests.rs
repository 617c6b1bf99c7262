//! Scenario tests of the simulator core: matching, races, rejects, expiry, determinism.

use rust_decimal::Decimal;
use tranche_broker::RejectReason;
use tranche_domain::{
    ClientOrderId, OrderAmount, OrderRequest, OrderStatus, Qty, ReplaceRequest, Side, Symbol, TimeInForce,
};

use crate::{Sim, SimConfig, SimError, StartPosition};

pub(crate) fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

pub(crate) fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

pub(crate) fn config(seed: u64) -> SimConfig {
    let mut config = SimConfig { seed, record_log: true, ..SimConfig::default() };
    config.account.positions = vec![
        StartPosition { symbol: sym("AAPL"), qty: Qty::new(d("100")), avg_entry_price: None },
        StartPosition { symbol: sym("EDZ"), qty: Qty::new(d("40")), avg_entry_price: None },
    ];
    config
}

pub(crate) fn order(cid: &str, symbol: &str, side: Side, qty: &str, limit: Option<&str>) -> OrderRequest {
    OrderRequest::day(
        ClientOrderId::from_broker(cid),
        sym(symbol),
        side,
        qty.parse().unwrap(),
        limit.map(|l| l.parse().unwrap()),
    )
}

fn run_for(sim: &mut Sim, secs: i64) {
    let t = sim.now() + chrono::Duration::seconds(secs);
    sim.advance_to(t);
}

fn reason(err: &SimError) -> Option<RejectReason> {
    match err {
        SimError::Reject { reason, .. } => Some(reason.clone()),
        _ => None,
    }
}

#[test]
fn market_buy_fills_at_the_ask_and_big_orders_walk_the_book() {
    let mut config = config(1);
    config.account.starting_cash = "10000000".parse().unwrap();
    let mut sim = Sim::new(config).unwrap();
    let quote = sim.true_quote(&sym("AAPL")).unwrap();
    let small = sim.submit(&order("m1", "AAPL", Side::Buy, "1", None)).unwrap();
    assert_eq!(small.status, OrderStatus::Accepted);
    run_for(&mut sim, 1);
    let filled = sim.order(&small.id).unwrap();
    assert_eq!(filled.status, OrderStatus::Filled);
    assert!(filled.filled_avg_price.unwrap() >= quote.ask || filled.filled_avg_price.unwrap().get() > d("200"));

    let big_qty = (quote.ask_size.get() * d("4")).to_string();
    let big = sim.submit(&order("m2", "AAPL", Side::Buy, &big_qty, None)).unwrap();
    let inside = sim.true_quote(&sym("AAPL")).unwrap();
    run_for(&mut sim, 1);
    let big = sim.order(&big.id).unwrap();
    assert_eq!(big.status, OrderStatus::Filled);
    assert!(big.filled_avg_price.unwrap() > inside.ask, "walking the book costs more than the ask");
    let fills: Vec<_> = sim.fills().iter().filter(|f| f.order_id == big.id).collect();
    assert!(fills.len() > 1, "one execution per level");
    assert_eq!(fills.iter().map(|f| f.qty.get()).sum::<Decimal>(), big.filled_qty.get());
}

#[test]
fn marketable_limit_fills_at_the_better_price_and_never_worse_than_its_limit() {
    let mut sim = Sim::new(config(2)).unwrap();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    let limit = (q.ask.get() + d("1.00")).to_string();
    let o = sim.submit(&order("l1", "AAPL", Side::Buy, "5", Some(&limit))).unwrap();
    run_for(&mut sim, 1);
    let o = sim.order(&o.id).unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert!(o.filled_avg_price.unwrap().get() < d(&limit));
}

#[test]
fn resting_limits_fill_over_time_through_the_queue_with_partial_fills() {
    let mut filled_orders = 0;
    let mut partials = 0;
    for seed in 0..20 {
        let mut sim = Sim::new(config(seed)).unwrap();
        let q = sim.true_quote(&sym("AAPL")).unwrap();
        let o = sim.submit(&order("r1", "AAPL", Side::Buy, "300", Some(&q.bid.to_string()))).unwrap();
        run_for(&mut sim, 600);
        let o = sim.order(&o.id).unwrap();
        filled_orders += usize::from(o.status == OrderStatus::Filled);
        let n = sim.fills().iter().filter(|f| f.order_id == o.id).count();
        partials += usize::from(n > 1);
        for f in sim.fills().iter().filter(|f| f.order_id == o.id) {
            assert!(f.price <= q.bid, "a buy limit never fills above its limit");
        }
    }
    assert!(filled_orders > 10, "passive orders fill eventually ({filled_orders}/20)");
    assert!(partials > 3, "some fill in pieces ({partials}/20)");
}

#[test]
fn a_fill_can_beat_a_cancel_and_the_cancel_is_then_rejected() {
    let mut config = config(3);
    config.latency.venue_ms = 2_000; // a slow cancel
    let mut sim = Sim::new(config).unwrap();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    // A buy at the ask rests only if the ask moves; a sell of the position at the bid fills fast.
    let o = sim.submit(&order("c1", "AAPL", Side::Sell, "1", Some(&q.bid.to_string()))).unwrap();
    sim.cancel(&o.id).unwrap();
    run_for(&mut sim, 5);
    let o = sim.order(&o.id).unwrap();
    assert_eq!(o.status, OrderStatus::Filled, "the order reached the venue and filled before the cancel");
    let events: Vec<String> = std::iter::from_fn(|| sim.pop_event()).map(|e| format!("{e:?}")).collect();
    assert!(events.iter().any(|e| e.contains("OrderCancelRejected")), "{events:?}");
    assert_eq!(reason(&sim.cancel(&o.id).unwrap_err()), Some(RejectReason::NotCancelable));
}

#[test]
fn replace_goes_to_the_back_of_the_queue_and_keeps_fills_of_the_old_order() {
    let mut sim = Sim::new(config(4)).unwrap();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    let passive = (q.bid.get() - d("0.50")).to_string();
    let o = sim.submit(&order("p1", "AAPL", Side::Buy, "10", Some(&passive))).unwrap();
    run_for(&mut sim, 1);
    let new_limit = (q.bid.get() - d("0.40")).to_string();
    let replace = ReplaceRequest {
        client_order_id: ClientOrderId::from_broker("p1-r1"),
        qty: Some(Qty::new(d("10"))),
        limit_price: Some(new_limit.parse().unwrap()),
        time_in_force: None,
    };
    let new = sim.replace(&o.id, &replace).unwrap();
    assert_eq!(new.replaces.as_ref(), Some(&o.id));
    assert_eq!(sim.order(&o.id).unwrap().status, OrderStatus::PendingReplace);
    assert_eq!(
        reason(&sim.cancel(&o.id).unwrap_err()),
        Some(RejectReason::NotCancelable),
        "pending_replace rejects cancels"
    );
    run_for(&mut sim, 1);
    let old = sim.order(&o.id).unwrap();
    assert_eq!(old.status, OrderStatus::Replaced);
    assert_eq!(old.replaced_by.as_ref(), Some(&new.id));
    assert!(sim.order(&new.id).unwrap().status.is_open() || sim.order(&new.id).unwrap().status == OrderStatus::Filled);
    // Reusing either client order id is refused forever.
    assert_eq!(
        reason(&sim.submit(&order("p1-r1", "AAPL", Side::Buy, "1", None)).unwrap_err()),
        Some(RejectReason::DuplicateClientOrderId)
    );
    assert_eq!(reason(&sim.replace(&o.id, &replace).unwrap_err()), Some(RejectReason::NotCancelable));
}

#[test]
fn a_replace_that_loses_the_race_to_a_fill_is_rejected_and_the_fill_stands() {
    let mut sim = Sim::new(config(5)).unwrap();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    // A sell of 2 resting far above the ask; replaced once it works (Alpaca refuses a replace
    // before the order is at the venue), and filled while the replace is on its way.
    let far = q.ask.get() + d("20");
    let o = sim.submit(&order("x1", "AAPL", Side::Sell, "2", Some(&far.to_string()))).unwrap();
    run_for(&mut sim, 1);
    let replace = ReplaceRequest {
        client_order_id: ClientOrderId::from_broker("x1-r"),
        qty: None,
        limit_price: Some((far + d("1")).to_string().parse().unwrap()),
        time_in_force: None,
    };
    sim.config.latency.venue_ms = 3_000;
    let new = sim.replace(&o.id, &replace).unwrap();
    let index = sim.by_id[&o.id];
    sim.fill(index, d("2"), far);
    run_for(&mut sim, 5);
    let old = sim.order(&o.id).unwrap();
    assert_eq!(old.status, OrderStatus::Filled, "the fill won the race");
    assert_eq!(old.filled_qty, Qty::new(d("2")));
    assert_eq!(sim.order(&new.id).unwrap().status, OrderStatus::Rejected);
    let events: Vec<String> = std::iter::from_fn(|| sim.pop_event()).map(|e| format!("{e:?}")).collect();
    assert!(events.iter().any(|e| e.contains("OrderReplaceRejected")), "{events:?}");
    assert_eq!(sim.position(&sym("AAPL")).unwrap().qty, Qty::new(d("98")), "only the old order traded");
}

#[test]
fn rejects_are_alpacas() {
    let mut config = config(6);
    config.symbols.unknown.push(sym("NOPE"));
    config.symbols.non_tradable.push(sym("HALT"));
    config.account.starting_cash = "1000".parse().unwrap();
    let mut sim = Sim::new(config).unwrap();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    let cases: Vec<(&str, OrderRequest, u16, RejectReason)> = vec![
        ("buying_power", order("bp", "AAPL", Side::Buy, "100", None), 403, RejectReason::InsufficientBuyingPower),
        ("insufficient_qty", order("iq", "AAPL", Side::Sell, "101", None), 403, RejectReason::InsufficientQty),
        ("short_sale", order("ss", "MSFT", Side::Sell, "1", None), 403, RejectReason::NotShortable),
        ("not_fractionable", order("nf", "EDZ", Side::Sell, "0.5", None), 403, RejectReason::NotFractionable),
        ("sub_penny", order("sp", "AAPL", Side::Sell, "1", Some("250.123")), 422, RejectReason::SubPennyPrice),
        ("unknown_symbol", order("us", "NOPE", Side::Buy, "1", None), 422, RejectReason::NotTradable),
        ("not_tradable", order("nt", "HALT", Side::Buy, "1", None), 422, RejectReason::NotTradable),
        (
            "notional_limit",
            OrderRequest {
                amount: OrderAmount::Notional("10".parse().unwrap()),
                ..order("nl", "AAPL", Side::Buy, "1", Some("1.00"))
            },
            422,
            RejectReason::InvalidRequest,
        ),
        (
            "fractional_gtc",
            OrderRequest { time_in_force: TimeInForce::Gtc, ..order("fg", "AAPL", Side::Sell, "0.5", None) },
            422,
            RejectReason::InvalidRequest,
        ),
    ];
    for (name, req, status, want) in cases {
        let err = sim.submit(&req).unwrap_err();
        match &err {
            SimError::Reject { status: s, reason, .. } => {
                assert_eq!((*s, reason.clone()), (status, want), "{name}: {err}");
            }
            other => panic!("{name}: {other}"),
        }
    }
    // Wash trade: a resting sell at the ask, then a buy that would cross it.
    sim.submit(&order("w1", "AAPL", Side::Sell, "1", Some(&(q.ask.get() + d("5")).to_string()))).unwrap();
    let err = sim.submit(&order("w2", "AAPL", Side::Buy, "1", None)).unwrap_err();
    assert_eq!(reason(&err), Some(RejectReason::WashTrade));
    assert_eq!(err.to_string(), "403 40310000: potential wash trade detected. use complex orders");
    // A buy below the resting sell does not cross: accepted.
    assert!(sim.submit(&order("w3", "AAPL", Side::Buy, "1", Some(&(q.bid.get() - d("5")).to_string()))).is_ok());
    // Shares held by the open sell are not available.
    assert_eq!(
        reason(&sim.submit(&order("w4", "AAPL", Side::Sell, "100", Some("999.00"))).unwrap_err()),
        Some(RejectReason::InsufficientQty)
    );
    assert_eq!(sim.position(&sym("AAPL")).unwrap().qty_available, Qty::new(d("99")));
    // Nothing was placed by any refused request.
    assert_eq!(sim.orders().count(), 2);
}

#[test]
fn day_orders_expire_at_the_close_and_the_market_reopens_next_day() {
    let mut sim = Sim::new(config(7)).unwrap();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    let o = sim
        .submit(&order("d1", "AAPL", Side::Buy, "1", Some(&(q.bid.get() / d("2")).round_dp(2).to_string())))
        .unwrap();
    let close = sim.config().session.close;
    sim.advance_to(close + chrono::Duration::seconds(1));
    assert_eq!(sim.order(&o.id).unwrap().status, OrderStatus::Expired);
    assert!(!sim.clock().is_open);
    assert_eq!(sim.clock().next_open, sim.config().session.open + chrono::Duration::days(1));
    assert!(sim.open_orders().is_empty());
}

#[test]
fn buying_power_is_held_by_open_buys_and_freed_only_by_fills_of_sells() {
    let mut sim = Sim::new(config(8)).unwrap();
    let bp0 = sim.account().buying_power.get();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    let low = (q.bid.get() - d("10")).round_dp(2);
    let buy = sim.submit(&order("b1", "AAPL", Side::Buy, "10", Some(&low.to_string()))).unwrap();
    assert_eq!(sim.account().buying_power.get(), bp0 - low * d("10"), "an open buy holds buying power");
    sim.cancel(&buy.id).unwrap();
    run_for(&mut sim, 1);
    assert_eq!(sim.account().buying_power.get(), bp0, "a canceled buy releases it");
    let sell = sim.submit(&order("s1", "AAPL", Side::Sell, "10", None)).unwrap();
    assert_eq!(sim.account().buying_power.get(), bp0, "an open sell frees nothing");
    run_for(&mut sim, 1);
    let sell = sim.order(&sell.id).unwrap();
    assert_eq!(sell.status, OrderStatus::Filled);
    let proceeds = sell.filled_avg_price.unwrap().get() * d("10");
    let fees = sim.fees_paid();
    assert!(fees > Decimal::ZERO);
    assert_eq!(sim.account().buying_power.get(), bp0 + proceeds - fees, "a filled sell frees its proceeds minus fees");
}

fn scripted_run(seed: u64) -> Vec<String> {
    let mut config = config(seed);
    config.faults = crate::FaultConfig::heavy();
    let mut sim = Sim::new(config).unwrap();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    let _ = sim.submit(&order("a", "AAPL", Side::Sell, "30", Some(&q.ask.to_string())));
    let _ = sim.submit(&order("b", "MSFT", Side::Buy, "10", None));
    run_for(&mut sim, 30);
    if let Ok(o) = sim.order_by_client_id(&ClientOrderId::from_broker("a")) {
        let _ = sim.cancel(&o.id);
    }
    run_for(&mut sim, 300);
    let mut log = sim.log().to_vec();
    log.extend(std::iter::from_fn(|| sim.pop_event()).map(|e| format!("{e:?}")));
    log
}

#[test]
fn same_seed_same_config_byte_identical_event_log() {
    let a = scripted_run(11);
    let b = scripted_run(11);
    assert!(a.len() > 300, "the log records quotes, orders, fills and updates ({} lines)", a.len());
    assert_eq!(a.join("\n"), b.join("\n"));
    assert_ne!(a, scripted_run(12));
}

#[test]
fn without_invented_symbols_an_unlisted_symbol_is_answered_as_alpaca_answers_an_unknown_one() {
    let mut config = config(8);
    config.symbols.invent = Some(false);
    config.symbols.prices.insert(sym("XNAMED"), "12.34".parse().unwrap());
    let mut sim = Sim::new(config).unwrap();
    let err = sim.asset(&sym("ZZZZQ")).unwrap_err();
    assert!(err.to_string().contains("asset not found for ZZZZQ"), "{err}");
    let refused = sim.submit(&order("z1", "ZZZZQ", Side::Buy, "1", None)).unwrap_err();
    assert!(refused.to_string().contains("asset \"ZZZZQ\" not found"), "{refused}");
    assert!(sim.latest_quote(&sym("ZZZZQ")).is_err());
    assert!(sim.asset(&sym("AAPL")).is_ok(), "the universe's names are known");
    assert!(sim.asset(&sym("XNAMED")).is_ok(), "so is a symbol a rule names");
    let mut inventing = self::config(8);
    inventing.symbols.invent = Some(true);
    assert!(Sim::new(inventing).unwrap().asset(&sym("ZZZZQ")).is_ok(), "invented when asked");
}

/// The simulator's orders move through the domain's status table: an edge the table refuses is
/// counted and dropped (the order keeps its status), never a panic.
#[test]
fn a_status_edge_the_table_refuses_is_counted_and_dropped() {
    let mut sim = Sim::new(config(5)).unwrap();
    let placed = sim.submit(&order("edge-1", "AAPL", Side::Buy, "1", Some("1.00"))).unwrap();
    let i = sim.index_of(&placed.id).unwrap();
    sim.finish(i, tranche_domain::TradeEvent::Canceled);
    assert_eq!(sim.refused_transitions(), 0);
    // A canceled order cannot become new again.
    assert!(!sim.transition(i, tranche_domain::TradeEvent::New));
    assert_eq!(sim.refused_transitions(), 1);
    assert_eq!(sim.order(&placed.id).unwrap().status, tranche_domain::OrderStatus::Canceled);
}

#[test]
fn the_tape_prints_the_markets_own_flow_at_the_inside_and_builds_bars_from_it() {
    let mut listed_only = config(11);
    listed_only.symbols.invent = Some(false);
    let mut sim = Sim::new(listed_only).unwrap();
    assert!(sim.take_prints().is_empty(), "nothing is kept before anyone listens");
    sim.keep_prints();
    let aapl = sym("AAPL");
    sim.latest_quote(&aapl).unwrap();
    let mut prints = Vec::new();
    for _ in 0..600 {
        run_for(&mut sim, 1);
        for print in sim.take_prints().into_iter().filter(|p| p.symbol == aapl) {
            assert!(print.price.get() > Decimal::ZERO && print.size.get() > Decimal::ZERO, "{print:?}");
            prints.push(print);
        }
    }
    assert!(prints.len() > 20, "ten minutes of flow print: {}", prints.len());
    assert!(prints.windows(2).all(|w| w[0].id < w[1].id && w[0].time <= w[1].time));
    let tape = sim.tape(&aapl).unwrap();
    assert_eq!(tape.last(), prints.last());
    let bar = tape.minute_bar().unwrap().clone();
    let in_minute: Vec<_> = prints.iter().filter(|p| p.time >= bar.start).collect();
    let volume: Decimal = in_minute.iter().map(|p| p.size.get()).sum();
    assert_eq!((bar.volume.get(), bar.trades), (volume, in_minute.len() as u64));
    assert!(bar.low <= bar.vwap && bar.vwap <= bar.high);
    assert!(sim.tape(&sym("NOPE1")).is_err(), "an unlisted symbol has no tape");
}

#[test]
fn in_the_realistic_market_every_share_a_crossed_order_takes_moves_the_price() {
    let mut config = config(5);
    config.market.model = crate::MarketModel::Realistic;
    config.account.starting_cash = "10000000".parse().unwrap();
    let mut sim = Sim::new(config).unwrap();
    sim.subscribe(&sym("PLUG"));
    let q = sim.true_quote(&sym("PLUG")).unwrap();
    // At the ask, for far more than is displayed: the displayed size fills at once, the rest
    // rests at the ask and is crossed by the market update after update.
    let qty = (q.ask_size.get() * d("30")).to_string();
    let limit = q.ask.get().to_string();
    let o = sim.submit(&order("x1", "PLUG", Side::Buy, &qty, Some(&limit))).unwrap();
    run_for(&mut sim, 30);
    let filled = sim.order(&o.id).unwrap().filled_qty.get();
    assert!(filled > q.ask_size.get(), "crossed by later updates too: {filled}");
    let slot = sim.symbols[&sym("PLUG")];
    let taken = sim.slots[slot].market.micro.taken_shares;
    // What the market's own sellers gave it passively does not count; what it took does.
    assert!(Decimal::from(taken) * d("10") >= filled * d("8"), "took {taken} of {filled}: the crossings count");
    // Crossed, it bought at the ask of the moment, never above its limit.
    let worst = sim.fills().iter().filter(|f| f.order_id == o.id).map(|f| f.price.get()).max().unwrap();
    assert!(worst <= d(&limit), "{worst} above the limit {limit}");
}
