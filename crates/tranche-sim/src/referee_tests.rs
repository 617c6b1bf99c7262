//! The referee catches each broken promise from a hand-made order sequence (and stays silent on
//! a clean one), and the new broker behaviours act as Alpaca does: late orders, slow routing
//! and its replace refusals, unrelated activity ids.

use rust_decimal::Decimal;
use tranche_domain::{ClientOrderId, OrderStatus, Qty, RebalancePlan, ReplaceRequest, Side, TradeEvent};

use crate::tests::{config, order, sym};
use crate::{AccountKind, Sim, SimError, ViolationKind};

/// AAPL and EDZ are held (100 and 40 shares); the plan sells AAPL, buys MSFT, holds EDZ.
fn plan() -> RebalancePlan {
    let item = |symbol: &str, action: &str, amount: &str| {
        serde_json::json!({
            "symbol": symbol, "current_weight": "0.1", "target_weight": "0.1", "target_value": "0",
            "current_value": "1000", "trade_amount": amount, "action": action,
        })
    };
    RebalancePlan::from_value(&serde_json::json!({
        "correlation_id": "c", "causation_id": "t", "timestamp": "2026-03-02T14:40:00Z",
        "plan_id": "ref1", "total_portfolio_value": "100000",
        "items": [item("AAPL", "SELL", "-1000"), item("MSFT", "BUY", "1000"), item("EDZ", "HOLD", "0")],
    }))
    .unwrap()
}

fn id(symbol: &str, side: Side, attempt: u16) -> String {
    ClientOrderId::derive("ref1", &sym(symbol), side, attempt).as_str().to_owned()
}

fn watched(sim: Sim) -> Sim {
    let mut sim = sim;
    sim.referee_mut().watch(&plan());
    sim
}

fn sim() -> Sim {
    watched(Sim::new(config(7)).unwrap())
}

fn run_for(sim: &mut Sim, secs: i64) {
    let t = sim.now() + chrono::Duration::seconds(secs);
    sim.advance_to(t);
}

/// The referee saw nothing.
fn assert_clean(sim: &Sim) {
    assert!(sim.referee().violations().is_empty(), "{:?}", sim.referee().violations());
}

/// A replace of an AAPL sell under attempt `attempt`'s id.
fn aapl_replace(attempt: u16, qty: Option<i64>, limit: Option<Decimal>) -> ReplaceRequest {
    ReplaceRequest {
        qty: qty.map(|q| Qty::new(Decimal::from(q))),
        limit_price: limit.map(Into::into),
        time_in_force: None,
        client_order_id: ClientOrderId::from_broker(id("AAPL", Side::Sell, attempt)),
    }
}

fn kinds(sim: &Sim) -> Vec<ViolationKind> {
    sim.referee().violations().iter().map(|v| v.kind).collect()
}

/// A sell limit far above the market: it rests.
fn resting_sell(sim: &Sim, cid: &str, qty: &str) -> tranche_domain::OrderRequest {
    let far = (sim.true_quote(&sym("AAPL")).unwrap().ask.get() * Decimal::from(2)).round_dp(2);
    order(cid, "AAPL", Side::Sell, qty, Some(&far.to_string()))
}

#[test]
fn a_clean_sell_then_buy_sees_nothing() {
    let mut sim = sim();
    sim.submit(&order(&id("AAPL", Side::Sell, 0), "AAPL", Side::Sell, "10", None)).unwrap();
    run_for(&mut sim, 2);
    sim.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "2", None)).unwrap();
    run_for(&mut sim, 2);
    assert_clean(&sim);
    assert_eq!(sim.referee().counts().total(), 0);
    assert_eq!(sim.referee().counts().iter().count(), ViolationKind::ALL.len(), "every kind is listed");
}

#[test]
fn a_second_order_for_an_item_while_the_first_works() {
    let mut sim = sim();
    let first = resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10");
    sim.submit(&first).unwrap();
    run_for(&mut sim, 1);
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "10")).unwrap();
    assert_eq!(kinds(&sim), vec![ViolationKind::TwoWorkingOrders]);
}

#[test]
fn a_replace_is_not_a_second_order_and_a_new_order_after_a_final_cancel_is_fine() {
    let mut sim = sim();
    let first = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    let far = first.limit_price.unwrap().get() + Decimal::ONE;
    let replace = ReplaceRequest {
        qty: None,
        limit_price: Some(far.into()),
        time_in_force: None,
        client_order_id: ClientOrderId::from_broker(id("AAPL", Side::Sell, 1)),
    };
    let second = sim.replace(&first.id, &replace).unwrap();
    run_for(&mut sim, 1);
    sim.cancel(&second.id).unwrap();
    run_for(&mut sim, 1);
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 2), "10")).unwrap();
    assert_clean(&sim);
}

#[test]
fn a_new_order_while_the_cancel_of_the_old_is_pending_is_two_working_orders() {
    let mut sim = sim();
    let first = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    sim.cancel(&first.id).unwrap();
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "10")).unwrap();
    assert_eq!(kinds(&sim), vec![ViolationKind::TwoWorkingOrders]);
}

#[test]
fn a_buy_while_a_sell_of_the_plan_works() {
    let mut sim = sim();
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    sim.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "1", None)).unwrap();
    assert_eq!(kinds(&sim), vec![ViolationKind::BuyBeforeSellsFinal]);
}

/// Sells first over the whole plan: with no sell working at the moment (the plan's first sell
/// ended, say, in the gap of a re-peg by cancel then new), a buy passes; a sell of the plan
/// sent after it, new or by replace, is the phases out of order. (An engine that worked its
/// buys first passed every check while its account had the cash.)
#[test]
fn a_sell_sent_once_the_plans_buys_began_is_out_of_order() {
    let mut sim = sim();
    let sell = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    sim.cancel(&sell.id).unwrap();
    run_for(&mut sim, 1);
    sim.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "1", None)).unwrap();
    assert_clean(&sim);
    let _ = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "10"));
    assert_eq!(kinds(&sim), vec![ViolationKind::BuyBeforeSellsFinal]);
}

#[test]
fn a_buy_beyond_cash_on_a_margin_account_is_caught_at_the_attempt_and_at_the_fill() {
    let mut config = config(7);
    config.account.kind = AccountKind::Margin;
    config.account.starting_cash = "1000".parse().unwrap();
    let mut sim = watched(Sim::new(config).unwrap());
    sim.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "5", None)).unwrap();
    run_for(&mut sim, 2);
    assert!(sim.account().cash.get() < Decimal::ZERO, "the margin account let it through");
    assert_eq!(
        kinds(&sim),
        vec![ViolationKind::MarginUsed, ViolationKind::MarginUsed],
        "{:?}",
        sim.referee().violations()
    );
    let mut allowed = Sim::new(self::config(7)).unwrap();
    allowed.referee_mut().watch(&plan());
    allowed.referee_mut().allow_margin(true);
    let _ = allowed.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "100000", None));
    assert!(allowed.referee().violations().is_empty(), "a plan that allows margin");
}

#[test]
fn an_off_tick_price_is_counted_though_the_broker_refuses_it() {
    let mut sim = sim();
    let err = sim.submit(&order(&id("AAPL", Side::Sell, 0), "AAPL", Side::Sell, "1", Some("500.005"))).unwrap_err();
    assert!(matches!(err, SimError::Reject { .. }), "{err:?}");
    assert_eq!(kinds(&sim), vec![ViolationKind::OffTickPrice]);
}

#[test]
fn orders_outside_the_plan_hold_items_wrong_sides_and_foreign_ids() {
    let mut sim = sim();
    let _ = sim.submit(&order(&id("EDZ", Side::Sell, 0), "EDZ", Side::Sell, "1", None)); // HOLD item
    let _ = sim.submit(&order(&id("SPY", Side::Buy, 0), "SPY", Side::Buy, "1", None)); // not in the plan
    let _ = sim.submit(&order(&id("MSFT", Side::Sell, 0), "MSFT", Side::Sell, "1", None)); // wrong side
    let _ = sim.submit(&order(&id("AAPL", Side::Sell, 0), "MSFT", Side::Sell, "1", None)); // id names AAPL
    let _ = sim.submit(&order("my-own-order", "AAPL", Side::Sell, "1", None)); // not a Tranche id
    let outside = kinds(&sim).iter().filter(|k| **k == ViolationKind::OrderOutsidePlan).count();
    assert_eq!(outside, 5, "{:?}", sim.referee().violations());
}

#[test]
fn touching_the_users_own_order_or_another_plans_order() {
    let mut sim = sim();
    let far = resting_sell(&sim, "user-gtc-1", "5");
    let mine = sim.submit_as_user(&far).unwrap();
    let other_plan = ClientOrderId::derive("otherplan", &sym("EDZ"), Side::Sell, 0);
    let theirs = sim.submit_as_user(&order(other_plan.as_str(), "EDZ", Side::Sell, "1", Some("9999"))).unwrap();
    assert!(sim.referee().violations().is_empty(), "the user's own orders are not judged");
    run_for(&mut sim, 1);
    sim.cancel(&mine.id).unwrap();
    let replace = ReplaceRequest {
        qty: None,
        limit_price: Some("9998".parse().unwrap()),
        time_in_force: None,
        client_order_id: ClientOrderId::derive("otherplan", &sym("EDZ"), Side::Sell, 1),
    };
    let _ = sim.replace(&theirs.id, &replace);
    assert_eq!(kinds(&sim), vec![ViolationKind::ForeignOrderTouched, ViolationKind::ForeignOrderTouched]);
}

#[test]
fn an_order_for_a_completed_plan() {
    let mut sim = sim();
    sim.referee_mut().plan_completed("ref1");
    sim.submit(&order(&id("AAPL", Side::Sell, 0), "AAPL", Side::Sell, "1", None)).unwrap();
    assert_eq!(kinds(&sim), vec![ViolationKind::CompletedPlanOrdered]);
}

#[test]
fn oversells_and_short_sales_are_counted_though_the_broker_refuses_them() {
    let mut sim = sim();
    assert!(sim.submit(&order(&id("AAPL", Side::Sell, 0), "AAPL", Side::Sell, "100.5", None)).is_err());
    assert!(sim.submit(&order(&id("MSFT", Side::Sell, 0), "MSFT", Side::Sell, "1", None)).is_err());
    let found = kinds(&sim);
    assert!(found.contains(&ViolationKind::Oversell), "{found:?}");
    assert!(found.contains(&ViolationKind::ShortSale), "{found:?}");
    // A resting sell holds its shares: a second sell of the rest plus one more is an oversell too.
    let mut sim = self::sim();
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "60")).unwrap();
    let _ = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "41"));
    assert!(kinds(&sim).contains(&ViolationKind::Oversell), "{:?}", kinds(&sim));
}

#[test]
fn a_reused_client_order_id_unless_it_resends_a_request_whose_answer_was_lost() {
    let mut sim = sim();
    let first = order(&id("AAPL", Side::Sell, 0), "AAPL", Side::Sell, "1", None);
    sim.submit(&first).unwrap();
    run_for(&mut sim, 2);
    assert!(sim.submit(&first).is_err(), "the broker refuses the duplicate");
    assert_eq!(kinds(&sim), vec![ViolationKind::ClientOrderIdReused]);

    let mut lossy = self::config(7);
    lossy.faults.submit_timeout_after_ppm = 1_000_000;
    let mut sim = watched(Sim::new(lossy).unwrap());
    assert!(matches!(sim.submit(&first), Err(SimError::Timeout { applied: true })));
    assert!(sim.submit(&first).is_err(), "the duplicate is refused");
    assert_clean(&sim);
    assert_eq!(sim.faults_fired().get("submit_timeout_after"), 1);
}

#[test]
fn a_late_order_appears_after_its_timeout_and_a_new_id_meanwhile_is_two_working_orders() {
    let mut late = config(7);
    late.faults.late_order_ppm = 1_000_000;
    let mut sim = watched(Sim::new(late).unwrap());
    let first = resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10");
    assert_eq!(sim.submit(&first), Err(SimError::ServerError { status: 504 }));
    assert!(sim.order_by_client_id(&first.client_order_id).is_err(), "not there yet");
    sim.set_faults(crate::FaultConfig::none());
    // What engine core v1 did: a lookup said 404, so it sent the item again under a new id.
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "10")).unwrap();
    assert_eq!(kinds(&sim), vec![ViolationKind::TwoWorkingOrders]);
    run_for(&mut sim, 31);
    let created = sim.order_by_client_id(&first.client_order_id).expect("created late");
    assert!(created.status.is_open(), "{created:?}");
    assert_eq!(sim.faults_fired().get("late_order"), 1);
}

/// A watched simulator whose first AAPL sell was answered with a gateway timeout and will be
/// created late (faults off from then on), and that sell's request.
fn sell_answered_late() -> (Sim, tranche_domain::OrderRequest) {
    let mut late = config(7);
    late.faults.late_order_ppm = 1_000_000;
    let mut sim = watched(Sim::new(late).unwrap());
    let first = resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10");
    assert!(sim.submit(&first).is_err());
    sim.set_faults(crate::FaultConfig::none());
    (sim, first)
}

#[test]
fn an_identical_resend_of_a_late_order_wins_and_the_late_one_never_appears_twice() {
    let (mut sim, first) = sell_answered_late();
    sim.submit(&first).unwrap();
    run_for(&mut sim, 31);
    let ours = sim.orders().filter(|o| o.client_order_id == first.client_order_id).count();
    assert_eq!(ours, 1);
    assert_clean(&sim);
}

#[test]
fn a_slowly_routed_order_reports_accepted_and_pending_new_and_refuses_a_replace_until_it_works() {
    let mut slow = config(7);
    slow.faults.slow_routing_ppm = 1_000_000;
    let mut sim = watched(Sim::new(slow).unwrap());
    let placed = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    let replace = aapl_replace(1, Some(9), None);
    match sim.replace(&placed.id, &replace) {
        Err(SimError::Reject { status: 422, code: 40_010_001, message, .. }) => {
            assert_eq!(message, "unable to replace order, order isn't sent to exchange yet");
        }
        other => panic!("{other:?}"),
    }
    run_for(&mut sim, 6);
    let mut events = Vec::new();
    while let Some(event) = sim.pop_event() {
        if let tranche_broker::StreamEvent::Update(u) = event {
            events.push(u.event);
        }
    }
    assert_eq!(events, vec![TradeEvent::Accepted, TradeEvent::PendingNew, TradeEvent::New]);
    assert_eq!(sim.order(&placed.id).unwrap().status, OrderStatus::New);
    sim.replace(&placed.id, &replace).expect("working now");
    run_for(&mut sim, 1);
    sim.cancel(&sim.order(&placed.id).unwrap().replaced_by.unwrap()).unwrap();
    run_for(&mut sim, 1);
    let again = ClientOrderId::from_broker(id("AAPL", Side::Sell, 2));
    let closed = sim.replace(&placed.id, &ReplaceRequest { client_order_id: again, ..replace });
    match closed {
        Err(SimError::Reject { message, .. }) => assert_eq!(message, "unable to replace order, order is not open"),
        other => panic!("{other:?}"),
    }
    assert!(
        sim.referee().violations().is_empty(),
        "a refused replace of a closed order commits nothing: {:?}",
        sim.referee().violations()
    );
}

#[test]
fn activity_ids_can_be_unrelated_to_execution_ids() {
    let mut unrelated = config(7);
    unrelated.faults.activity_ids_unrelated = true;
    let mut sim = Sim::new(unrelated).unwrap();
    sim.submit(&order("a1", "AAPL", Side::Sell, "3", None)).unwrap();
    run_for(&mut sim, 2);
    let executions: Vec<_> = sim.fills().iter().map(|f| f.execution_id.clone()).collect();
    let activities = sim.fill_activities(sim.now() - chrono::Duration::minutes(1));
    assert_eq!(activities.len(), executions.len());
    assert!(activities.iter().all(|a| !executions.contains(&a.execution_id)), "{activities:?}");
    assert_eq!(sim.faults_fired().get("activity_id_unrelated"), activities.len() as u64);
}

#[test]
fn the_users_own_orders_rest_stops_trigger_and_the_wash_trade_rule_fires_against_them() {
    let mut config = config(7);
    let q = Sim::new(config.clone()).unwrap().true_quote(&sym("AAPL")).unwrap();
    let below = (q.bid.get() - Decimal::from(30)).round_dp(2);
    config.account.open_orders = vec![
        crate::UserOrder {
            symbol: sym("AAPL"),
            side: Side::Buy,
            qty: Qty::new(Decimal::ONE),
            limit_price: Some(below.into()),
            stop_price: None,
        },
        crate::UserOrder {
            symbol: sym("EDZ"),
            side: Side::Sell,
            qty: Qty::new(Decimal::from(5)),
            limit_price: None,
            stop_price: Some("0.01".parse().unwrap()),
        },
    ];
    let mut sim = watched(Sim::new(config).unwrap());
    run_for(&mut sim, 1);
    let open = sim.open_orders();
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(open.iter().all(|o| o.client_order_id.as_str().starts_with("user-")));
    assert_eq!(open[1].order_type, tranche_domain::OrderType::Stop);
    // Tranche's market sell would trade with the user's buy limit; its buy with the user's stop.
    let sell = sim.submit(&order(&id("AAPL", Side::Sell, 0), "AAPL", Side::Sell, "1", None)).unwrap_err();
    assert!(sell.to_string().contains("potential wash trade detected"), "{sell}");
    let buy = sim.submit(&order(&id("EDZ", Side::Buy, 0), "EDZ", Side::Buy, "1", Some("1.00"))).unwrap_err();
    assert!(buy.to_string().contains("potential wash trade detected"), "{buy}");
    let reasons = |e: &SimError| match e {
        SimError::Reject { detail: Some(d), .. } => d.reject_reason,
        _ => "",
    };
    assert_eq!(reasons(&sell), "opposite side limit order exists");
    assert_eq!(reasons(&buy), "opposite side market/stop order exists");
    // A sell that cannot cross the user's buy is fine.
    let above = (q.ask.get() + Decimal::from(30)).round_dp(2).to_string();
    sim.submit(&order(&id("AAPL", Side::Sell, 1), "AAPL", Side::Sell, "1", Some(&above))).unwrap();
    // The stop rests untriggered unless EDZ's bid falls to a cent: it never filled here.
    run_for(&mut sim, 60);
    assert!(sim.fills().iter().all(|f| !f.client_order_id.as_str().starts_with("user-")), "{:?}", sim.fills());
}

#[test]
fn a_sell_stop_triggers_when_the_bid_reaches_it_and_then_fills() {
    let mut config = config(7);
    let q = Sim::new(config.clone()).unwrap().true_quote(&sym("AAPL")).unwrap();
    let stop = q.bid.get().round_dp(2); // at the bid: triggers on the first quote at or below
    config.account.open_orders = vec![crate::UserOrder {
        symbol: sym("AAPL"),
        side: Side::Sell,
        qty: Qty::new(Decimal::from(3)),
        limit_price: None,
        stop_price: Some((stop + Decimal::ONE).into()),
    }];
    let mut sim = Sim::new(config).unwrap();
    run_for(&mut sim, 30);
    let filled: Decimal =
        sim.fills().iter().filter(|f| f.client_order_id.as_str() == "user-0").map(|f| f.qty.get()).sum();
    assert_eq!(filled, Decimal::from(3), "{:?}", sim.log().iter().rev().take(5).collect::<Vec<_>>());
}

#[test]
fn a_stop_answered_by_a_timeout_or_placed_late_is_still_a_stop() {
    // A sell stop far below the market must rest untriggered, whichever way its answer went.
    let mut sim = sim();
    let q = sim.true_quote(&sym("AAPL")).unwrap();
    let stop: tranche_domain::Price = (q.bid.get() / Decimal::from(2)).round_dp(2).into();
    let faults = [
        (
            "submit_timeout_after",
            crate::FaultConfig { submit_timeout_after_ppm: 1_000_000, ..crate::FaultConfig::none() },
        ),
        (
            "late_order",
            crate::FaultConfig { late_order_ppm: 1_000_000, late_order_max_ms: 2_000, ..crate::FaultConfig::none() },
        ),
    ];
    for (n, (fault, config)) in faults.into_iter().enumerate() {
        sim.set_faults(config);
        let cid = format!("stop-{n}");
        assert!(sim.submit_stop(&order(&cid, "AAPL", Side::Sell, "1", None), stop).is_err(), "{fault}");
        sim.set_faults(crate::FaultConfig::none());
        run_for(&mut sim, 5);
        let placed = sim.order_by_client_id(&ClientOrderId::from_broker(cid.clone())).unwrap();
        assert_eq!(placed.order_type, tranche_domain::OrderType::Stop, "{fault}: {placed:?}");
        assert_eq!(placed.stop_price, Some(stop), "{fault}");
        assert_eq!(placed.status, OrderStatus::New, "{fault}: a stop far from the market rests");
        assert!(sim.fills().iter().all(|f| f.client_order_id.as_str() != cid), "{fault}: it traded");
    }
}

#[test]
fn odd_fractional_positions_of_non_fractionable_assets_and_the_one_dollar_minimum() {
    let mut config = config(7);
    config.account.positions[1].qty = Qty::new("40.37".parse().unwrap()); // EDZ, not fractionable
    let mut sim = Sim::new(config).unwrap();
    assert_eq!(sim.position(&sym("EDZ")).unwrap().qty, Qty::new("40.37".parse().unwrap()));
    let all = sim.submit(&order("e1", "EDZ", Side::Sell, "40.37", None)).unwrap_err();
    assert!(all.to_string().contains("is not fractionable"), "{all}");
    sim.submit(&order("e2", "EDZ", Side::Sell, "40", None)).expect("the whole shares sell");
    let tiny = sim.submit(&order("a1", "AAPL", Side::Sell, "0.001", None)).unwrap_err();
    assert!(tiny.to_string().contains("minimal amount of order 1"), "{tiny}");
}

#[test]
fn a_late_replace_is_applied_after_its_timeout_or_dropped_when_the_order_closed_meanwhile() {
    let mut sim = sim();
    let first = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    sim.set_faults(crate::FaultConfig {
        late_replace_ppm: 1_000_000,
        late_order_max_ms: 5_000,
        ..crate::FaultConfig::none()
    });
    let replace = aapl_replace(1, Some(9), None);
    assert_eq!(sim.replace(&first.id, &replace), Err(SimError::ServerError { status: 504 }));
    assert!(sim.order_by_client_id(&replace.client_order_id).is_err(), "not applied yet");
    assert_eq!(sim.order(&first.id).unwrap().status, OrderStatus::New);
    sim.set_faults(crate::FaultConfig::none());
    run_for(&mut sim, 6);
    assert_eq!(sim.order(&first.id).unwrap().status, OrderStatus::Replaced, "applied late");
    assert!(sim.order_by_client_id(&replace.client_order_id).unwrap().status.is_open());
    assert_eq!(sim.faults_fired().get("late_replace"), 1);

    // The same, but the order is canceled before the replace arrives: the replace is dropped.
    let second = sim.order_by_client_id(&replace.client_order_id).unwrap();
    sim.set_faults(crate::FaultConfig {
        late_replace_ppm: 1_000_000,
        late_order_max_ms: 5_000,
        ..crate::FaultConfig::none()
    });
    let again = ReplaceRequest {
        client_order_id: ClientOrderId::from_broker(id("AAPL", Side::Sell, 2)),
        qty: Some(Qty::new(Decimal::from(8))),
        ..replace
    };
    assert!(sim.replace(&second.id, &again).is_err());
    sim.set_faults(crate::FaultConfig::none());
    sim.cancel(&second.id).unwrap();
    run_for(&mut sim, 6);
    assert!(sim.order_by_client_id(&again.client_order_id).is_err(), "never applied");
    assert_eq!(sim.order(&second.id).unwrap().status, OrderStatus::Canceled);
}

#[test]
fn a_late_order_whose_id_a_resend_took_never_counts_as_a_second_order() {
    let (mut sim, first) = sell_answered_late();
    let placed = sim.submit(&first).unwrap(); // the identical re-send wins the id
    run_for(&mut sim, 1);
    sim.cancel(&placed.id).unwrap();
    run_for(&mut sim, 1);
    // The late original can never be created now (its id is taken): a new attempt is fine.
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "10")).unwrap();
    assert_clean(&sim);
}

#[test]
fn a_buy_while_a_late_sell_of_the_plan_is_about_to_be_created() {
    let (mut sim, _) = sell_answered_late();
    sim.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "1", None)).unwrap();
    assert_eq!(kinds(&sim), vec![ViolationKind::BuyBeforeSellsFinal]);
}

/// A submit whose answer was lost and that the broker will create late: the identical request
/// may go again under its id (how a client finds out); another request under that id, before
/// the late creation, is a reuse, seen at the attempt (it was seen only when sent after it).
#[test]
fn another_request_under_the_id_of_a_late_order_is_a_reuse() {
    let (mut sim, first) = sell_answered_late();
    let mut other = first.clone();
    other.limit_price = other.limit_price.map(|p| tranche_domain::Price::new(p.get() + Decimal::ONE));
    let _ = sim.submit(&other);
    assert_eq!(kinds(&sim), vec![ViolationKind::ClientOrderIdReused]);
}

#[test]
fn replaces_are_held_to_the_plan_and_an_identical_resend_of_a_lost_replace_is_allowed() {
    let mut sim = sim();
    let first = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    let replace = |attempt| aapl_replace(attempt, Some(9), None);
    sim.set_faults(crate::FaultConfig { late_replace_ppm: 1_000_000, ..crate::FaultConfig::none() });
    assert!(sim.replace(&first.id, &replace(1)).is_err(), "answered 504");
    sim.set_faults(crate::FaultConfig::none());
    run_for(&mut sim, 31);
    assert!(sim.replace(&first.id, &replace(1)).is_err(), "the order was replaced meanwhile");
    assert!(sim.referee().violations().is_empty(), "an identical re-send: {:?}", sim.referee().violations());

    // A replacement under another item's id, and one for a completed plan.
    let second = sim.order_by_client_id(&replace(1).client_order_id).unwrap();
    let wrong = ReplaceRequest { client_order_id: ClientOrderId::from_broker(id("MSFT", Side::Buy, 0)), ..replace(2) };
    let _ = sim.replace(&second.id, &wrong);
    sim.referee_mut().plan_completed("ref1");
    let _ = sim.replace(&second.id, &replace(3));
    assert_eq!(kinds(&sim), vec![ViolationKind::OrderOutsidePlan, ViolationKind::CompletedPlanOrdered]);
}

#[test]
fn replacing_an_order_the_broker_cannot_replace_yet_is_no_second_order() {
    let mut sim = sim();
    let first = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    let replace = |attempt: u16| aapl_replace(attempt, Some(9 - i64::from(attempt)), None);
    sim.replace(&first.id, &replace(1)).unwrap();
    // The first is pending_replace: the broker refuses a second replace of it.
    assert!(sim.replace(&first.id, &replace(2)).is_err());
    assert_clean(&sim);
}

#[test]
fn every_fill_of_an_order_on_margin_is_one_finding() {
    let mut config = config(7);
    config.account.kind = AccountKind::Margin;
    config.account.starting_cash = "100".parse().unwrap();
    let mut sim = watched(Sim::new(config).unwrap());
    let placed = sim.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "10", Some("1.00"))).unwrap();
    run_for(&mut sim, 1);
    // Two executions at a price the account cannot pay in cash, forced at the venue.
    let index = sim.by_id[&placed.id];
    sim.fill(index, Decimal::from(4), Decimal::from(300));
    sim.fill(index, Decimal::from(4), Decimal::from(300));
    assert!(sim.account().cash.get() < Decimal::ZERO);
    let margin = kinds(&sim).iter().filter(|k| **k == ViolationKind::MarginUsed).count();
    assert_eq!(margin, 1, "{:?}", sim.referee().violations());
}

#[test]
fn durations_longer_than_a_day_are_refused_not_overflowed() {
    let mut config = config(7);
    config.faults.late_order_max_ms = u64::MAX;
    let err = Sim::new(config).unwrap_err();
    assert!(err.contains("faults.late_order_max_ms"), "{err}");
}

#[test]
fn an_order_or_replace_sent_after_the_close_is_flagged_at_the_attempt() {
    let mut cfg = config(7);
    cfg.session.start = cfg.session.close - chrono::Duration::seconds(5);
    let mut sim = watched(Sim::new(cfg).unwrap());
    // Before the close: a resting sell, and nothing to see.
    let resting = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    assert_clean(&sim);
    run_for(&mut sim, 10);
    // After it: a replace of the expired sell is refused, and the broker queues a buy for the
    // next open; both attempts are seen.
    let far = resting.limit_price.unwrap().get() + Decimal::ONE;
    let _ = sim.replace(&resting.id, &aapl_replace(1, None, Some(far)));
    let _ = sim.submit(&order(&id("MSFT", Side::Buy, 0), "MSFT", Side::Buy, "2", None));
    assert_eq!(kinds(&sim), vec![ViolationKind::OrderWhileClosed, ViolationKind::OrderWhileClosed]);
}

#[test]
fn a_replace_refused_as_not_yet_routed_can_take_effect_once_the_order_works() {
    let mut slow = config(7);
    slow.faults.slow_routing_ppm = 1_000_000;
    slow.faults.refused_replace_applied_ppm = 1_000_000;
    let mut sim = watched(Sim::new(slow).unwrap());
    let placed = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    let replace = aapl_replace(1, Some(9), None);
    let refused = sim.replace(&placed.id, &replace);
    assert!(matches!(refused, Err(SimError::Reject { status: 422, .. })), "{refused:?}");
    run_for(&mut sim, 6);
    let old = sim.order(&placed.id).unwrap();
    assert_eq!(old.status, OrderStatus::Replaced, "{old:?}");
    let new = sim.order(&old.replaced_by.unwrap()).unwrap();
    assert_eq!(new.client_order_id, replace.client_order_id);
    assert_eq!(new.qty.map(Qty::get), Some(Decimal::from(9)));
    assert_eq!(sim.faults_fired().iter().find(|(k, _)| *k == "refused_replace_applied").map(|(_, n)| n), Some(1));
}

#[test]
fn an_order_whose_cancel_is_pending_cannot_be_replaced_even_once_a_fill_shows_it_partially_filled() {
    let mut stuck = config(7);
    stuck.faults.stuck_cancel_ppm = 1_000_000;
    let mut sim = watched(Sim::new(stuck).unwrap());
    let placed = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    sim.cancel(&placed.id).unwrap();
    run_for(&mut sim, 1);
    // A fill while the cancel is on its way (orders stuck in pending_cancel fill on Alpaca): the
    // order shows partially filled, and its cancel is still pending.
    let i = sim.index_of(&placed.id).unwrap();
    sim.orders[i].order.status = OrderStatus::PartiallyFilled;
    match sim.replace(&placed.id, &aapl_replace(1, Some(9), None)) {
        Err(SimError::Reject { status: 422, message, .. }) => {
            assert_eq!(message, "unable to replace order, order is pending cancel");
        }
        other => panic!("{other:?}"),
    }
    run_for(&mut sim, 120);
    assert_eq!(sim.order(&placed.id).unwrap().status, OrderStatus::Canceled, "the cancel lands in the end");
}

#[test]
fn fill_activities_lag_the_fills_by_the_configured_time() {
    let mut lagging = config(7);
    lagging.faults.activity_lag_ms = 5_000;
    let mut sim = watched(Sim::new(lagging).unwrap());
    let since = sim.now();
    sim.submit(&order(&id("AAPL", Side::Sell, 0), "AAPL", Side::Sell, "10", None)).unwrap();
    run_for(&mut sim, 1);
    assert_eq!(sim.fills().len(), 1, "the market sell filled");
    assert!(sim.fill_activities(since).is_empty(), "not in the activities yet");
    run_for(&mut sim, 5);
    assert_eq!(sim.fill_activities(since).len(), 1, "there after the lag");
    assert_eq!(sim.faults_fired().iter().find(|(k, _)| *k == "activity_lagged").map(|(_, n)| n), Some(1));
}

/// The events of the stream so far, in order.
fn stream_events(sim: &mut Sim) -> Vec<TradeEvent> {
    let mut events = Vec::new();
    while let Some(event) = sim.pop_event() {
        if let tranche_broker::StreamEvent::Update(u) = event {
            events.push(u.event);
        }
    }
    events
}

#[test]
fn an_order_the_venue_rejects_was_accepted_first_and_holds_nothing_after() {
    let mut rejecting = config(7);
    rejecting.faults.venue_reject_ppm = 1_000_000;
    let mut sim = watched(Sim::new(rejecting).unwrap());
    let placed = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    assert_eq!(placed.status, OrderStatus::Accepted, "the submit's answer is a 200");
    run_for(&mut sim, 1);
    assert_eq!(stream_events(&mut sim), vec![TradeEvent::Rejected]);
    assert_eq!(sim.order(&placed.id).unwrap().status, OrderStatus::Rejected);
    // The shares it held are free again: a second sell of all of them is accepted.
    sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "10")).expect("nothing held");
    assert_eq!(
        sim.faults_fired().iter().find(|(k, _)| *k == "venue_reject").map(|(_, n)| n),
        Some(1),
        "the second has not reached the venue yet"
    );
    assert_clean(&sim);
}

#[test]
fn an_order_the_broker_cancels_unasked_works_first_then_ends_canceled_with_no_request() {
    let mut cancelling = config(7);
    cancelling.faults.broker_cancel_ppm = 1_000_000;
    let mut sim = watched(Sim::new(cancelling).unwrap());
    let placed = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
    run_for(&mut sim, 1);
    assert_eq!(sim.order(&placed.id).unwrap().status, OrderStatus::New);
    run_for(&mut sim, 20);
    assert_eq!(stream_events(&mut sim), vec![TradeEvent::New, TradeEvent::Canceled], "no pending_cancel: unasked");
    assert_eq!(sim.order(&placed.id).unwrap().status, OrderStatus::Canceled);
    assert_eq!(sim.faults_fired().iter().find(|(k, _)| *k == "broker_cancel").map(|(_, n)| n), Some(1));
    assert_clean(&sim);
}

/// The owner closes AAPL from outside the run while our sell of 10 works: ours ends `canceled`
/// with no request of ours, the owner's market sell takes all or half of the 100 shares, and a
/// sell of ours placed again for its 10 as if nothing happened is an oversell when the owner
/// took them all (counted at the attempt, whatever the broker then does).
#[test]
fn the_owner_selling_mid_run_cancels_our_sell_and_shrinks_the_position() {
    let mut selling = config(7);
    selling.faults.owner_sale_ppm = 1_000_000;
    let mut sold_all = false;
    for seed in 0..8 {
        selling.seed = seed;
        let mut sim = watched(Sim::new(selling.clone()).unwrap());
        let placed = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 0), "10")).unwrap();
        run_for(&mut sim, 25);
        assert_eq!(sim.order(&placed.id).unwrap().status, OrderStatus::Canceled, "seed {seed}");
        assert_eq!(sim.faults_fired().iter().find(|(k, _)| *k == "owner_sale").map(|(_, n)| n), Some(1));
        let left = sim.position(&sym("AAPL")).map(|p| p.qty.get());
        assert!(matches!(left.map(|q| q.to_string()).as_deref(), None | Some("50")), "seed {seed}: {left:?}");
        assert_clean(&sim);
        if left.is_none() {
            sold_all = true;
            let _ = sim.submit(&resting_sell(&sim, &id("AAPL", Side::Sell, 1), "10"));
            assert!(kinds(&sim).contains(&ViolationKind::ShortSale) || kinds(&sim).contains(&ViolationKind::Oversell));
        }
    }
    assert!(sold_all, "some seed's owner sells every share");
}
