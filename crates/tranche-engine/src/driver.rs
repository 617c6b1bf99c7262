//! The async driver: runs the core's commands against the ports and feeds the answers back.
//!
//! Invariants: time comes only from the `Clock` port; broker calls run concurrently as tasks and
//! each answer returns as exactly one input; the `select!` is biased (order events, then broker
//! answers, then quotes, then timers) so a fill is always seen before a quote or timer that
//! could act on stale state; reads are retried with backoff, mutations never.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tranche_broker::{Broker, BrokerError, Clock, OrderEvents, QuoteFeed, StreamEvent};
use tranche_domain::{ExecutionResult, RebalancePlan, Symbol, Timestamp};

use crate::config::EngineConfig;
use crate::core::EngineCore;
use crate::events::ProgressEvent;
use crate::io::{Command, Input, PreflightData, TimerId};

/// The ports the engine runs on.
pub struct Ports {
    /// Trading REST.
    pub broker: Arc<dyn Broker>,
    /// The trade-update stream (one consumer: the engine).
    pub events: Box<dyn OrderEvents>,
    /// Live quotes.
    pub quotes: Arc<dyn QuoteFeed>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Attempts of a read before its error is handed to the core.
const READ_ATTEMPTS: u32 = 4;

async fn read<T, F, Fut>(clock: &Arc<dyn Clock>, mut call: F) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if e.is_retryable() && attempt < READ_ATTEMPTS => {
                let wait = match &e {
                    BrokerError::RateLimited { retry_after: Some(d) } => *d,
                    _ => Duration::from_millis(250 << attempt),
                };
                let at = clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                clock.sleep_until(at).await;
            }
            other => return other,
        }
    }
}

/// Executes `plan` with `config` on `ports`; progress events go to `progress` when given.
/// Never panics on broker behaviour: every failure ends up in the result.
pub async fn execute(
    plan: RebalancePlan,
    config: EngineConfig,
    mut ports: Ports,
    progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
) -> ExecutionResult {
    let span = tracing::info_span!("run", plan_id = %plan.plan_id, correlation_id = %plan.correlation_id);
    let _guard = span.enter();
    let mut core = EngineCore::new(plan, config);
    let mut tasks: JoinSet<Input> = JoinSet::new();
    let mut timers: BTreeMap<TimerId, Timestamp> = BTreeMap::new();
    let mut quote_rx = ports.quotes.changes();
    let mut subscribed: BTreeSet<Symbol> = BTreeSet::new();
    let mut queue: VecDeque<Input> = VecDeque::from([Input::Start]);
    let mut events_open = true;
    let mut quotes_open = true;
    loop {
        while let Some(input) = queue.pop_front() {
            let now = ports.clock.now();
            for command in core.handle(input, now) {
                if let Some(result) =
                    dispatch(command, &ports, &mut tasks, &mut timers, &mut subscribed, progress.as_ref())
                {
                    tasks.abort_all();
                    return result;
                }
            }
        }
        let next_timer = timers.iter().min_by_key(|(_, at)| **at).map(|(id, at)| (*id, *at));
        let clock = Arc::clone(&ports.clock);
        let sleep = async move {
            match next_timer {
                Some((_, at)) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            event = ports.events.next_event(), if events_open => match event {
                Some(StreamEvent::Update(update)) => queue.push_back(Input::Update(update)),
                Some(StreamEvent::Up) => queue.push_back(Input::StreamUp),
                Some(StreamEvent::Down { reason }) => {
                    tracing::warn!(%reason, "trade-update stream down");
                    queue.push_back(Input::StreamDown);
                }
                Some(StreamEvent::Gap { since }) => queue.push_back(Input::StreamGap { since }),
                None => {
                    events_open = false;
                    queue.push_back(Input::StreamDown);
                }
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => match joined {
                Ok(input) => queue.push_back(input),
                Err(e) => tracing::error!(error = %e, "a broker task failed"),
            },
            changed = quote_rx.recv(), if quotes_open => match changed {
                Ok(symbol) => {
                    if subscribed.contains(&symbol) {
                        if let Some(quote) = ports.quotes.latest(&symbol) {
                            queue.push_back(Input::Quote(quote));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for symbol in &subscribed {
                        if let Some(quote) = ports.quotes.latest(symbol) {
                            queue.push_back(Input::Quote(quote));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => quotes_open = false,
            },
            () = sleep => {
                if let Some((id, _)) = next_timer {
                    timers.remove(&id);
                    queue.push_back(Input::Timer(id));
                }
            }
        }
    }
}

/// Runs one command; returns the result when the run is over.
fn dispatch(
    command: Command,
    ports: &Ports,
    tasks: &mut JoinSet<Input>,
    timers: &mut BTreeMap<TimerId, Timestamp>,
    subscribed: &mut BTreeSet<Symbol>,
    progress: Option<&mpsc::UnboundedSender<ProgressEvent>>,
) -> Option<ExecutionResult> {
    let broker = Arc::clone(&ports.broker);
    let clock = Arc::clone(&ports.clock);
    match command {
        Command::Preflight { symbols } => {
            tasks.spawn(async move {
                let account = read(&clock, || broker.account()).await;
                let market = read(&clock, || broker.clock()).await;
                let positions = read(&clock, || broker.positions()).await;
                let open_orders = read(&clock, || broker.open_orders()).await;
                let mut assets = Vec::with_capacity(symbols.len());
                for symbol in symbols {
                    let asset = read(&clock, || broker.asset(&symbol)).await;
                    assets.push((symbol, asset));
                }
                Input::Preflight(Box::new(PreflightData { account, clock: market, positions, open_orders, assets }))
            });
        }
        Command::FetchPositions => {
            tasks.spawn(async move { Input::Positions(read(&clock, || broker.positions()).await) });
        }
        Command::FetchAccount => {
            tasks.spawn(async move { Input::Account(read(&clock, || broker.account()).await) });
        }
        Command::FetchQuote { item, symbol } => {
            tasks.spawn(async move {
                Input::RestQuote { item, result: read(&clock, || broker.latest_quote(&symbol)).await }
            });
        }
        Command::Subscribe(symbols) => {
            subscribed.extend(symbols.iter().cloned());
            let feed = Arc::clone(&ports.quotes);
            tasks.spawn(async move {
                if let Err(e) = feed.subscribe(&symbols).await {
                    tracing::warn!(error = %e, "quote subscription failed; prices will come from REST");
                }
                // Prime the core with whatever the feed already holds.
                let quotes: Vec<_> = symbols.iter().filter_map(|s| feed.latest(s)).collect();
                match quotes.into_iter().next() {
                    Some(q) => Input::Quote(q),
                    None => Input::StreamUp,
                }
            });
        }
        Command::Release(symbols) => {
            for s in &symbols {
                subscribed.remove(s);
            }
            let feed = Arc::clone(&ports.quotes);
            // Released in the background; the run does not wait for it.
            tokio::spawn(async move { feed.release(&symbols).await });
        }
        Command::Submit { item, request } => {
            tasks.spawn(async move {
                let result = broker.submit_order(&request).await;
                Input::Submitted { item, client_order_id: request.client_order_id, result }
            });
        }
        Command::Replace { item, order, request } => {
            tasks.spawn(async move {
                let result = broker.replace_order(&order, &request).await;
                Input::Replaced { item, old: order, client_order_id: request.client_order_id, result }
            });
        }
        Command::Cancel { item, order } => {
            tasks.spawn(async move {
                let result = broker.cancel_order(&order).await;
                Input::Canceled { item, order, result }
            });
        }
        Command::LookupClientId { item, client_order_id } => {
            tasks.spawn(async move {
                let result = read(&clock, || broker.order_by_client_id(&client_order_id)).await;
                Input::LookedUp { item, client_order_id, result }
            });
        }
        Command::LookupOrder { item, client_order_id, order } => {
            tasks.spawn(async move {
                let result = read(&clock, || broker.order(&order)).await;
                Input::LookedUp { item, client_order_id, result }
            });
        }
        Command::FetchFills { since } => {
            tasks.spawn(async move { Input::Fills(read(&clock, || broker.fill_activities(since)).await) });
        }
        Command::SetTimer { id, at } => {
            timers.insert(id, at);
        }
        Command::CancelTimer(id) => {
            timers.remove(&id);
        }
        Command::Emit(event) => {
            tracing::debug!(?event, "progress");
            if let Some(tx) = progress {
                // A receiver that went away only stops the progress display.
                let _ = tx.send(event);
            }
        }
        Command::Finish(result) => return Some(*result),
    }
    None
}
