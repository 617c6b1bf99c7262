//! Delivery of trade updates to the client, with latency and injected faults: drop, duplicate,
//! delay (which reorders), and stream disconnects with explicit gap markers.
//!
//! Invariants: an update is delivered no earlier than its event time plus the update latency;
//! while the stream is down nothing is delivered and what falls due is lost (as on Alpaca, which
//! has no replay); every outage is announced by `Down` and closed by `Gap { since }` then `Up`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use tranche_broker::StreamEvent;
use tranche_domain::{Timestamp, TradeUpdate};

use crate::config::{FaultConfig, LatencyConfig};
use crate::rng::Rng;

#[derive(Debug)]
enum Delivery {
    Update(Box<TradeUpdate>),
    Reconnect { since: Timestamp },
}

#[derive(Debug)]
struct Pending {
    at: Timestamp,
    seq: u64,
    delivery: Delivery,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What happened to an update handed to the outbox (for the event log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Queued for delivery (possibly twice).
    Queued {
        /// Delivered twice.
        duplicated: bool,
        /// Extra delay in milliseconds.
        delayed_ms: u64,
    },
    /// Lost.
    Dropped,
}

/// The trade-update channel between the simulated broker and its client.
#[derive(Debug)]
pub struct Outbox {
    rng: Rng,
    pending: BinaryHeap<Reverse<Pending>>,
    ready: VecDeque<StreamEvent>,
    down_since: Option<Timestamp>,
    /// Consumers that connected so far.
    connections: u32,
    seq: u64,
    /// Updates lost to drops and outages.
    pub lost: u64,
    /// How often each delivery fault fired.
    pub fired: crate::tally::Tally,
}

fn ms(value: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::try_from(value).unwrap_or(i64::MAX / 1_000_000))
}

impl Outbox {
    /// A connected channel with its own random stream.
    pub fn new(seed: u64) -> Self {
        let mut ready = VecDeque::new();
        ready.push_back(StreamEvent::Up);
        Self {
            rng: Rng::derive(seed, "outbox"),
            pending: BinaryHeap::new(),
            ready,
            down_since: None,
            connections: 0,
            seq: 0,
            lost: 0,
            fired: crate::tally::Tally::default(),
        }
    }

    /// A new consumer connects (a restarted process): it hears `listening` at once, unless
    /// an outage is in progress (then the reconnect that ends it says so).
    pub fn connect(&mut self) {
        // The channel starts connected (its first `Up` is queued at creation): the first
        // consumer hears that one.
        self.connections += 1;
        if self.connections > 1 && self.down_since.is_none() {
            self.ready.push_back(StreamEvent::Up);
        }
    }

    fn push(&mut self, at: Timestamp, delivery: Delivery) {
        self.seq += 1;
        self.pending.push(Reverse(Pending { at, seq: self.seq, delivery }));
    }

    /// Hands an update that happened at `now` to the channel.
    pub fn send(&mut self, update: TradeUpdate, now: Timestamp, latency: &LatencyConfig, faults: &FaultConfig) -> Fate {
        if self.rng.chance_ppm(faults.drop_update_ppm) {
            self.lost += 1;
            self.fired.hit("update_dropped");
            return Fate::Dropped;
        }
        let delayed_ms = if self.rng.chance_ppm(faults.delay_update_ppm) {
            self.fired.hit("update_delayed");
            self.rng.below(faults.max_delay_ms + 1)
        } else {
            0
        };
        let at = now + ms(latency.update_ms + delayed_ms);
        let duplicated = self.rng.chance_ppm(faults.duplicate_update_ppm);
        if duplicated {
            self.fired.hit("update_duplicated");
            let again = at + ms(1 + self.rng.below(faults.max_delay_ms + 1));
            self.push(again, Delivery::Update(Box::new(update.clone())));
        }
        self.push(at, Delivery::Update(Box::new(update)));
        Fate::Queued { duplicated, delayed_ms }
    }

    /// Moves everything due by `now` to the ready queue, applying outages.
    pub fn advance(&mut self, now: Timestamp, faults: &FaultConfig) {
        while self.pending.peek().is_some_and(|p| p.0.at <= now) {
            let Some(Reverse(item)) = self.pending.pop() else { break };
            match item.delivery {
                Delivery::Reconnect { since } => {
                    self.down_since = None;
                    self.ready.push_back(StreamEvent::Gap { since });
                    self.ready.push_back(StreamEvent::Up);
                }
                Delivery::Update(update) => {
                    if self.down_since.is_some() {
                        self.lost += 1;
                        continue;
                    }
                    if self.rng.chance_ppm(faults.disconnect_ppm) {
                        self.fired.hit("stream_disconnect");
                        self.down_since = Some(item.at);
                        self.lost += 1;
                        self.ready.push_back(StreamEvent::Down { reason: "injected disconnect".into() });
                        self.push(item.at + ms(faults.reconnect_ms.max(1)), Delivery::Reconnect { since: item.at });
                        continue;
                    }
                    self.ready.push_back(StreamEvent::Update(update));
                }
            }
        }
    }

    /// The next delivered event, if any.
    pub fn pop(&mut self) -> Option<StreamEvent> {
        self.ready.pop_front()
    }

    /// True when something is ready.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// When the next pending delivery falls due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.pending.peek().map(|p| p.0.at)
    }
}
