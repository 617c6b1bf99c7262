//! The ledger against the broker, field by field: what a run recorded must be what the broker
//! did. Used by the chaos suite at the end of every seed (each finding goes to the simulator's
//! referee as a `ledger_mismatch`), and by anyone auditing a run against a broker's records.
//!
//! Invariants: only the plan's own orders are compared (client order ids Tranche derived for
//! that plan); every broker order of the plan has a ledger record with the same broker id,
//! symbol, side, final status, filled quantity and average price; every broker fill of those
//! orders is in the ledger once, under its execution id (or, when the ledger learnt it from
//! the account activities, under another id with the same order, side, quantity and price),
//! with the same order, symbol, side, quantity and price; the ledger holds no fill the broker
//! does not, and no order the broker named that the broker does not have.

use std::collections::BTreeMap;

use tranche_domain::{ClientOrderId, Fill, Order};
use tranche_ledger::{FillRecord, OrderRecord};

/// Every difference between what the ledger recorded for `plan_id` and what the broker holds,
/// as readable lines (empty when they agree).
pub fn ledger_mismatches(
    plan_id: &str,
    ledger_orders: &[OrderRecord],
    ledger_fills: &[FillRecord],
    broker_orders: &[Order],
    broker_fills: &[Fill],
) -> Vec<String> {
    let ours = |id: &ClientOrderId| id.belongs_to_plan(plan_id);
    let mut out = Vec::new();
    let recorded: BTreeMap<&ClientOrderId, &OrderRecord> =
        ledger_orders.iter().filter(|o| o.plan_id == plan_id).map(|o| (&o.client_order_id, o)).collect();
    for order in broker_orders.iter().filter(|o| ours(&o.client_order_id)) {
        let id = &order.client_order_id;
        let Some(record) = recorded.get(id) else {
            out.push(format!("order {id} is at the broker but not in the ledger"));
            continue;
        };
        let mut differ = |field: &str, ledger: String, broker: String| {
            if ledger != broker {
                out.push(format!("order {id}: ledger {field} {ledger}, broker {broker}"));
            }
        };
        differ("broker id", format!("{:?}", record.broker_order_id), format!("{:?}", Some(order.id.as_str())));
        differ("symbol", record.symbol.to_string(), order.symbol.to_string());
        differ("side", record.side.to_string(), order.side.to_string());
        differ("status", record.status.to_string(), order.status.to_string());
        differ(
            "filled qty",
            record.filled_qty.get().normalize().to_string(),
            order.filled_qty.get().normalize().to_string(),
        );
        differ(
            "average price",
            format!("{:?}", record.filled_avg_price.map(|p| p.get().normalize())),
            format!("{:?}", order.filled_avg_price.map(|p| p.get().normalize())),
        );
    }
    // The other way: an order the ledger holds as placed (the broker named it) that the broker
    // does not have, e.g. a record written for a submit that never reached it.
    let at_broker: std::collections::BTreeSet<&ClientOrderId> =
        broker_orders.iter().filter(|o| ours(&o.client_order_id)).map(|o| &o.client_order_id).collect();
    for (id, record) in &recorded {
        if let Some(named) = record.broker_order_id.as_deref().filter(|_| !at_broker.contains(id)) {
            out.push(format!("order {id} ({named}) is in the ledger but not at the broker"));
        }
    }
    let mut booked: BTreeMap<&str, Vec<&FillRecord>> = BTreeMap::new();
    for fill in ledger_fills.iter().filter(|f| f.plan_id == plan_id) {
        booked.entry(fill.execution_id.as_str()).or_default().push(fill);
    }
    // An execution the ledger learnt from the account activities may carry the activity's id,
    // which nothing documents as equal to the trade update's execution id: what id matching
    // leaves over on both sides is paired by order, quantity and price before it is reported.
    let mut unmatched: Vec<&Fill> = Vec::new();
    for fill in broker_fills.iter().filter(|f| ours(&f.client_order_id)) {
        let key = fill.execution_id.as_str();
        match booked.remove(key).as_deref() {
            None => unmatched.push(fill),
            Some([record]) => {
                let same = record.client_order_id == fill.client_order_id
                    && record.broker_order_id == fill.order_id.as_str()
                    && record.symbol == fill.symbol
                    && record.side == fill.side
                    && record.qty == fill.qty
                    && record.price == fill.price;
                if !same {
                    out.push(format!(
                        "fill {key}: ledger {} {} {} @ {} on {} ({}), broker {} {} {} @ {} on {} ({})",
                        record.side,
                        record.qty,
                        record.symbol,
                        record.price,
                        record.client_order_id,
                        record.broker_order_id,
                        fill.side,
                        fill.qty,
                        fill.symbol,
                        fill.price,
                        fill.client_order_id,
                        fill.order_id.as_str()
                    ));
                }
            }
            Some(records) => out.push(format!("fill {key} is in the ledger {} times", records.len())),
        }
    }
    let same = |r: &FillRecord, f: &Fill| {
        r.client_order_id == f.client_order_id
            && r.broker_order_id == f.order_id.as_str()
            && r.side == f.side
            && r.qty == f.qty
            && r.price == f.price
    };
    for fill in unmatched {
        let twin = booked.iter().find(|(_, records)| records.len() == 1 && same(records[0], fill)).map(|(k, _)| *k);
        match twin {
            Some(key) => {
                booked.remove(key);
            }
            None => out.push(format!(
                "fill {} of {} is at the broker but not in the ledger",
                fill.execution_id.as_str(),
                fill.client_order_id
            )),
        }
    }
    for (key, records) in booked {
        out.push(format!("fill {key} of {} is in the ledger but not at the broker", records[0].client_order_id));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tranche_domain::{BrokerOrderId, ExecutionId, OrderStatus, Price, Qty, Side, Symbol};

    fn id() -> ClientOrderId {
        ClientOrderId::derive("audit1", &Symbol::parse("AAPL").unwrap(), Side::Sell, 0)
    }

    fn broker() -> (Order, Fill) {
        let t = chrono::DateTime::from_timestamp(1_772_462_000, 0).unwrap();
        let order = Order {
            id: BrokerOrderId::new("b-1"),
            client_order_id: id(),
            symbol: Symbol::parse("AAPL").unwrap(),
            side: Side::Sell,
            order_type: tranche_domain::OrderType::Market,
            time_in_force: tranche_domain::TimeInForce::Day,
            qty: Some(Qty::new(2.into())),
            notional: None,
            limit_price: None,
            stop_price: None,
            status: OrderStatus::Filled,
            filled_qty: Qty::new(2.into()),
            filled_avg_price: Some(Price::new("200.5".parse().unwrap())),
            created_at: t,
            updated_at: Some(t),
            filled_at: Some(t),
            replaces: None,
            replaced_by: None,
            extended_hours: false,
        };
        let fill = Fill {
            execution_id: ExecutionId::new("e-1"),
            order_id: order.id.clone(),
            client_order_id: id(),
            symbol: order.symbol.clone(),
            side: Side::Sell,
            qty: Qty::new(2.into()),
            price: Price::new("200.5".parse().unwrap()),
            time: t,
        };
        (order, fill)
    }

    fn ledger(order: &Order, fill: &Fill) -> (OrderRecord, FillRecord) {
        let record = OrderRecord {
            plan_id: "audit1".into(),
            client_order_id: order.client_order_id.clone(),
            broker_order_id: Some(order.id.as_str().to_owned()),
            symbol: order.symbol.clone(),
            side: order.side,
            status: order.status,
            filled_qty: order.filled_qty,
            filled_avg_price: order.filled_avg_price,
            updated_at: fill.time,
        };
        let booked = FillRecord {
            execution_id: fill.execution_id.as_str().to_owned(),
            plan_id: "audit1".into(),
            run_id: "r".into(),
            client_order_id: fill.client_order_id.clone(),
            broker_order_id: fill.order_id.as_str().to_owned(),
            symbol: fill.symbol.clone(),
            side: fill.side,
            qty: fill.qty,
            price: fill.price,
            bid: None,
            ask: None,
            order_type: None,
            strategy_attribution: None,
            filled_at: fill.time,
        };
        (record, booked)
    }

    #[test]
    fn a_faithful_ledger_agrees_and_every_tampering_is_named() {
        let (order, fill) = broker();
        let (record, booked) = ledger(&order, &fill);
        let check = |orders: &[OrderRecord], fills: &[FillRecord]| {
            ledger_mismatches("audit1", orders, fills, std::slice::from_ref(&order), std::slice::from_ref(&fill))
        };
        assert!(check(std::slice::from_ref(&record), std::slice::from_ref(&booked)).is_empty());
        // Learnt from the activities under the activity's own id: the same execution.
        let by_activity = FillRecord { execution_id: "20260302144000000::act-1".into(), ..booked.clone() };
        assert!(check(std::slice::from_ref(&record), std::slice::from_ref(&by_activity)).is_empty());
        let other_qty = FillRecord { qty: Qty::new(1.into()), ..by_activity.clone() };
        let found = check(std::slice::from_ref(&record), &[other_qty]);
        assert!(found.iter().any(|f| f.contains("not in the ledger")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("not at the broker")), "{found:?}");
        let cases: Vec<(&str, Vec<OrderRecord>, Vec<FillRecord>)> = vec![
            ("not in the ledger", vec![], vec![booked.clone()]),
            ("ledger status", vec![OrderRecord { status: OrderStatus::New, ..record.clone() }], vec![booked.clone()]),
            (
                "ledger filled qty",
                vec![OrderRecord { filled_qty: Qty::new(1.into()), ..record.clone() }],
                vec![booked.clone()],
            ),
            ("is at the broker but not in the ledger", vec![record.clone()], vec![]),
            (
                "(never-placed) is in the ledger but not at the broker",
                vec![
                    record.clone(),
                    OrderRecord {
                        client_order_id: ClientOrderId::derive("audit1", &order.symbol, Side::Sell, 1),
                        broker_order_id: Some("never-placed".into()),
                        ..record.clone()
                    },
                ],
                vec![booked.clone()],
            ),
            ("in the ledger 2 times", vec![record.clone()], vec![booked.clone(), booked.clone()]),
            ("ledger sell 3", vec![record.clone()], vec![FillRecord { qty: Qty::new(3.into()), ..booked.clone() }]),
            (
                "in the ledger but not at the broker",
                vec![record.clone()],
                vec![booked.clone(), FillRecord { execution_id: "act-1".into(), ..booked.clone() }],
            ),
        ];
        for (expected, orders, fills) in cases {
            let found = check(&orders, &fills);
            assert!(found.iter().any(|f| f.contains(expected)), "{expected}: {found:?}");
        }
    }

    #[test]
    fn orders_of_other_plans_and_of_the_user_are_not_compared() {
        let (mut order, mut fill) = broker();
        order.client_order_id = ClientOrderId::from_broker("user-0");
        fill.client_order_id = order.client_order_id.clone();
        assert!(ledger_mismatches("audit1", &[], &[], &[order], &[fill]).is_empty());
    }
}
