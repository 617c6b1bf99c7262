//! The engine asks REST market data for the quotes one step needs in one multi-symbol request:
//! with no quote stream at all, the 30-symbol example sizes each phase's items from one request,
//! and a symbol the answer leaves out (the broker has no quote for it) fails alone, with a clear
//! reason and no order, while every other item trades. The plan's thirty assets come from one
//! read of the broker's asset list, none read alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tranche::broker::{Broker, BrokerError, NoQuoteFeed};
use tranche::domain::{
    Account, Asset, BrokerOrderId, ClientOrderId, Fill, ItemOutcome, MarketClock, Order, OrderRequest, Position, Quote,
    RebalancePlan, ReplaceRequest, Symbol, Timestamp,
};
use tranche::engine::{execute, EngineConfig, Ports};
use tranche::sim::{SimBroker, SimConfig};
use tranche::simulation::{account_from_plan, check_run, start_sim, SimRecord};
use tranche_tests::example;

/// The simulator's broker, counting the market-data reads and leaving `hidden` out of every
/// multi-symbol answer.
struct Counting {
    inner: SimBroker,
    single: AtomicU64,
    batches: Mutex<Vec<usize>>,
    hidden: Symbol,
    /// Assets read one by one.
    asset_reads: AtomicU64,
    /// Asset lists read.
    asset_lists: AtomicU64,
}

#[async_trait::async_trait]
impl Broker for Counting {
    async fn account(&self) -> Result<Account, BrokerError> {
        self.inner.account().await
    }
    async fn positions(&self) -> Result<Vec<Position>, BrokerError> {
        self.inner.positions().await
    }
    async fn position(&self, symbol: &Symbol) -> Result<Option<Position>, BrokerError> {
        self.inner.position(symbol).await
    }
    async fn asset(&self, symbol: &Symbol) -> Result<Asset, BrokerError> {
        self.asset_reads.fetch_add(1, Ordering::Relaxed);
        self.inner.asset(symbol).await
    }
    async fn assets(&self) -> Result<Vec<Asset>, BrokerError> {
        self.asset_lists.fetch_add(1, Ordering::Relaxed);
        self.inner.assets().await
    }
    async fn clock(&self) -> Result<MarketClock, BrokerError> {
        self.inner.clock().await
    }
    async fn latest_quote(&self, symbol: &Symbol) -> Result<Quote, BrokerError> {
        self.single.fetch_add(1, Ordering::Relaxed);
        self.inner.latest_quote(symbol).await
    }
    async fn latest_quotes(&self, symbols: &[Symbol]) -> Result<Vec<Quote>, BrokerError> {
        self.batches.lock().unwrap().push(symbols.len());
        let quotes = self.inner.latest_quotes(symbols).await?;
        Ok(quotes.into_iter().filter(|q| q.symbol != self.hidden).collect())
    }
    async fn submit_order(&self, request: &OrderRequest) -> Result<Order, BrokerError> {
        self.inner.submit_order(request).await
    }
    async fn replace_order(&self, id: &BrokerOrderId, request: &ReplaceRequest) -> Result<Order, BrokerError> {
        self.inner.replace_order(id, request).await
    }
    async fn cancel_order(&self, id: &BrokerOrderId) -> Result<(), BrokerError> {
        self.inner.cancel_order(id).await
    }
    async fn order(&self, id: &BrokerOrderId) -> Result<Order, BrokerError> {
        self.inner.order(id).await
    }
    async fn order_by_client_id(&self, id: &ClientOrderId) -> Result<Order, BrokerError> {
        self.inner.order_by_client_id(id).await
    }
    async fn open_orders(&self) -> Result<Vec<Order>, BrokerError> {
        self.inner.open_orders().await
    }
    async fn fill_activities(&self, since: Timestamp) -> Result<Vec<Fill>, BrokerError> {
        self.inner.fill_activities(since).await
    }
}

#[tokio::test(start_paused = true)]
async fn each_phase_sizes_its_items_from_one_request_and_a_symbol_without_a_quote_fails_alone() {
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(example("plan-30.json")).unwrap()).unwrap();
    let hidden = plan.items.iter().find(|i| i.action.side().is_some()).unwrap().symbol.clone();
    let hidden_symbol = hidden.clone();
    let (sim, clock) = start_sim(account_from_plan(&plan, &SimConfig::default())).unwrap();
    let counting = Arc::new(Counting {
        inner: sim.broker(),
        single: AtomicU64::new(0),
        batches: Mutex::default(),
        hidden,
        asset_reads: AtomicU64::new(0),
        asset_lists: AtomicU64::new(0),
    });
    let ports = Ports {
        broker: Arc::clone(&counting) as Arc<dyn Broker>,
        events: Box::new(sim.order_events()),
        // No stream: every price comes from REST.
        quotes: Arc::new(NoQuoteFeed::default()),
        clock: Arc::clone(&clock),
    };
    let orders_before = sim.with_sim(|s| s.orders().count());
    let positions_before = sim.with_sim(|s| s.positions().into_iter().map(|p| (p.symbol, p.qty.get())).collect());
    sim.with_sim(|s| s.referee_mut().watch(&plan));
    let start = clock.now();
    let result = execute(plan.clone(), EngineConfig::default(), ports, None).await;
    clock.sleep_until(clock.now() + chrono::Duration::seconds(2)).await;

    let batches = counting.batches.lock().unwrap().clone();
    let sells = plan.items.iter().filter(|i| i.action.side() == Some(tranche::domain::Side::Sell)).count();
    let buys = plan.items.iter().filter(|i| i.action.side() == Some(tranche::domain::Side::Buy)).count();
    assert!(batches.contains(&sells) && batches.contains(&buys), "one request per phase: {batches:?}");
    let single = counting.single.load(Ordering::Relaxed);
    let batched: usize = batches.iter().sum();
    assert!(batched >= sells + buys, "every item's sizing quote came batched: {batches:?}");
    println!("{} multi-symbol requests for {batched} quotes, {single} single reads", batches.len());
    // Thirty symbols: their assets come from one read of the list, none alone.
    assert_eq!(counting.asset_lists.load(Ordering::Relaxed), 1, "the asset list once");
    assert_eq!(counting.asset_reads.load(Ordering::Relaxed), 0, "no asset read alone");

    let record = sim.with_sim(|s| SimRecord {
        orders: s.orders().skip(orders_before).cloned().collect(),
        fills: s.fills().to_vec(),
        positions_before,
        positions_after: s.positions().into_iter().map(|p| (p.symbol, p.qty.get())).collect(),
        cash_after: s.account().cash.get(),
        elapsed_secs: (result.execution_timestamp - start).num_milliseconds() as f64 / 1000.0,
        requests: 0,
        request_kinds: tranche::sim::Tally::default(),
        referee: s.referee().violations().iter().map(ToString::to_string).collect(),
        referee_counts: tranche::sim::count_violations(s.referee().violations()),
        faults_fired: s.faults_fired(),
        refused_transitions: s.refused_transitions(),
    });
    let violations = check_run(&plan, &result, &record);
    assert!(violations.is_empty(), "{violations:?}");
    for row in &result.orders {
        if row.symbol == hidden_symbol {
            assert_eq!(row.outcome, ItemOutcome::Failed);
            assert!(row.reason.as_deref().is_some_and(|r| r.contains("no usable quote")), "{:?}", row.reason);
            assert_eq!(row.orders, 0, "nothing was placed without a price");
        } else if row.action.side().is_some() {
            assert_eq!(row.outcome, ItemOutcome::Filled, "{}: {:?}", row.symbol, row.reason);
        }
    }
}
