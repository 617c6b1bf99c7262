//! What a run is recorded with for its report: the progress events and, per symbol, the quotes
//! the engine read, taken by a [`RecordingFeed`] wrapped around the run's `QuoteFeed`.
//!
//! Invariants: memory is bounded per symbol ([`MAX_SAMPLES`]; older detail is merged, never the
//! whole tape dropped); recording never changes what the engine sees (the decorator returns the
//! inner feed's answers untouched and asks it nothing more); times come from the run's own clock,
//! the same one that stamps the progress events, so virtual and real time both line up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rust_decimal::prelude::ToPrimitive;
use tokio::sync::broadcast;
use tranche_broker::{BrokerError, Clock, QuoteFeed};
use tranche_domain::{Price, Quote, Symbol, Timestamp};
use tranche_engine::ProgressEvent;

/// Most samples kept per symbol; past it, neighbouring samples are merged two by two.
pub const MAX_SAMPLES: usize = 2048;

/// The market for one symbol from `at` until the next sample: after merging, the envelope (lowest
/// bid, highest ask) of the quotes merged into it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the engine read the quote (run clock).
    pub at: Timestamp,
    /// Best bid.
    pub bid: f64,
    /// Best ask.
    pub ask: f64,
}

impl Sample {
    fn merge(self, later: Sample) -> Sample {
        Sample { at: self.at, bid: self.bid.min(later.bid), ask: self.ask.max(later.ask) }
    }
}

/// One symbol's quotes, downsampled to at most `cap` samples at an even stride: once full, every
/// pair of samples is merged and from then on each kept sample stands for twice as many quotes.
#[derive(Debug, Clone)]
pub struct QuoteTape {
    cap: usize,
    stride: usize,
    samples: Vec<Sample>,
    /// The bucket being filled: its envelope and how many quotes it holds.
    pending: Option<(Sample, usize)>,
    last: Option<(f64, f64)>,
}

impl QuoteTape {
    /// An empty tape keeping at most `cap` samples (at least 2).
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(2), stride: 1, samples: Vec::new(), pending: None, last: None }
    }

    /// Adds a quote; one equal to the previous one (same bid and ask) adds nothing.
    pub fn push(&mut self, sample: Sample) {
        if self.last == Some((sample.bid, sample.ask)) {
            return;
        }
        self.last = Some((sample.bid, sample.ask));
        let (bucket, count) = match self.pending.take() {
            Some((bucket, count)) => (bucket.merge(sample), count + 1),
            None => (sample, 1),
        };
        if count < self.stride {
            self.pending = Some((bucket, count));
            return;
        }
        self.samples.push(bucket);
        if self.samples.len() >= self.cap {
            self.samples =
                self.samples.chunks(2).filter_map(|pair| pair.iter().copied().reduce(Sample::merge)).collect();
            self.stride *= 2;
        }
    }

    /// The samples in time order, the bucket being filled included.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = self.samples.clone();
        out.extend(self.pending.map(|(bucket, _)| bucket));
        out
    }
}

/// Everything recorded about a run, as handed to the report.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The progress events, in the order the engine emitted them.
    pub events: Vec<ProgressEvent>,
    /// The quotes the engine read, per symbol.
    pub quotes: BTreeMap<Symbol, Vec<Sample>>,
}

/// The recorder shared by the progress task and the [`RecordingFeed`].
#[derive(Debug, Default)]
pub struct Recording {
    events: Mutex<Vec<ProgressEvent>>,
    tapes: Mutex<BTreeMap<Symbol, QuoteTape>>,
}

fn to_f64(price: Price) -> Option<f64> {
    price.get().to_f64().filter(|p| p.is_finite() && *p > 0.0)
}

impl Recording {
    /// A new, empty recording.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records a progress event.
    pub fn event(&self, event: &ProgressEvent) {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).push(event.clone());
    }

    /// Records a quote read at `at`. A one-sided or empty quote is not a band and is left out.
    pub fn quote(&self, at: Timestamp, quote: &Quote) {
        let (Some(bid), Some(ask)) = (to_f64(quote.bid), to_f64(quote.ask)) else {
            return;
        };
        let mut tapes = self.tapes.lock().unwrap_or_else(PoisonError::into_inner);
        tapes.entry(quote.symbol.clone()).or_insert_with(|| QuoteTape::new(MAX_SAMPLES)).push(Sample { at, bid, ask });
    }

    /// A copy of what has been recorded so far.
    pub fn trace(&self) -> Trace {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let tapes = self.tapes.lock().unwrap_or_else(PoisonError::into_inner);
        Trace { events, quotes: tapes.iter().map(|(s, tape)| (s.clone(), tape.samples())).collect() }
    }
}

/// A `QuoteFeed` that passes everything through to `inner` and records each quote the engine
/// reads with `latest`, stamped with the run's clock.
pub struct RecordingFeed {
    inner: Arc<dyn QuoteFeed>,
    clock: Arc<dyn Clock>,
    recording: Arc<Recording>,
}

impl std::fmt::Debug for RecordingFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingFeed").finish_non_exhaustive()
    }
}

impl RecordingFeed {
    /// Wraps `inner`, recording into `recording` at `clock`'s time.
    pub fn new(inner: Arc<dyn QuoteFeed>, clock: Arc<dyn Clock>, recording: Arc<Recording>) -> Self {
        Self { inner, clock, recording }
    }
}

#[async_trait]
impl QuoteFeed for RecordingFeed {
    async fn subscribe(&self, symbols: &[Symbol]) -> Result<(), BrokerError> {
        self.inner.subscribe(symbols).await
    }

    fn release(&self, symbols: &[Symbol]) {
        self.inner.release(symbols);
    }

    fn latest(&self, symbol: &Symbol) -> Option<Quote> {
        let quote = self.inner.latest(symbol);
        if let Some(q) = &quote {
            self.recording.quote(self.clock.now(), q);
        }
        quote
    }

    fn changes(&self) -> broadcast::Receiver<Symbol> {
        self.inner.changes()
    }

    fn symbol_limit(&self) -> Option<usize> {
        self.inner.symbol_limit()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    fn sample(ms: i64, bid: f64, ask: f64) -> Sample {
        Sample { at: at(ms), bid, ask }
    }

    #[test]
    fn repeated_quotes_add_nothing() {
        let mut tape = QuoteTape::new(16);
        tape.push(sample(0, 10.0, 10.1));
        tape.push(sample(5, 10.0, 10.1));
        tape.push(sample(9, 10.0, 10.2));
        assert_eq!(tape.samples(), vec![sample(0, 10.0, 10.1), sample(9, 10.0, 10.2)]);
    }

    #[test]
    fn a_full_tape_merges_pairs_into_envelopes_and_stays_bounded() {
        let mut tape = QuoteTape::new(8);
        for i in 0..1000_i32 {
            let bid = 100.0 + f64::from(i % 7);
            tape.push(sample(i64::from(i), bid, bid + 0.5));
            assert!(tape.samples().len() <= 8, "bounded at {i}");
        }
        let samples = tape.samples();
        assert!(samples.len() >= 4, "still detailed: {}", samples.len());
        assert_eq!(samples[0].at, at(0), "the first sample keeps its time");
        assert!(samples.windows(2).all(|w| w[0].at < w[1].at), "time order");
        let lowest = samples.iter().map(|s| s.bid).fold(f64::MAX, f64::min);
        let highest = samples.iter().map(|s| s.ask).fold(f64::MIN, f64::max);
        assert!((lowest - 100.0).abs() < 1e-9 && (highest - 106.5).abs() < 1e-9, "the envelope keeps the extremes");
    }

    #[test]
    fn one_sided_quotes_are_not_recorded() {
        let recording = Recording::new();
        let symbol = Symbol::parse("AAPL").unwrap();
        let quote = |bid: &str, ask: &str| Quote {
            symbol: symbol.clone(),
            bid: bid.parse().unwrap(),
            bid_size: tranche_domain::Qty::ZERO,
            ask: ask.parse().unwrap(),
            ask_size: tranche_domain::Qty::ZERO,
            time: at(0),
        };
        recording.quote(at(0), &quote("0", "10.01"));
        recording.quote(at(1), &quote("10", "10.01"));
        let trace = recording.trace();
        assert_eq!(trace.quotes[&symbol], vec![sample(1, 10.0, 10.01)]);
    }

    /// A feed that always answers one quote.
    struct FixedFeed(Quote, broadcast::Sender<Symbol>);

    #[async_trait]
    impl QuoteFeed for FixedFeed {
        async fn subscribe(&self, _symbols: &[Symbol]) -> Result<(), BrokerError> {
            Ok(())
        }

        fn release(&self, _symbols: &[Symbol]) {}

        fn latest(&self, _symbol: &Symbol) -> Option<Quote> {
            Some(self.0.clone())
        }

        fn changes(&self) -> broadcast::Receiver<Symbol> {
            self.1.subscribe()
        }

        fn symbol_limit(&self) -> Option<usize> {
            None
        }
    }

    #[test]
    fn the_feed_passes_quotes_through_and_records_them() {
        let symbol = Symbol::parse("MSFT").unwrap();
        let q = Quote {
            symbol: symbol.clone(),
            bid: "400".parse().unwrap(),
            bid_size: tranche_domain::Qty::ZERO,
            ask: "400.10".parse().unwrap(),
            ask_size: tranche_domain::Qty::ZERO,
            time: at(0),
        };
        let inner = FixedFeed(q.clone(), broadcast::channel(1).0);
        let recording = Recording::new();
        let clock: Arc<dyn Clock> = Arc::new(tranche_broker::ManualClock::new(at(42)));
        let feed = RecordingFeed::new(Arc::new(inner), clock, Arc::clone(&recording));
        assert_eq!(feed.latest(&symbol), Some(q));
        assert_eq!(recording.trace().quotes[&symbol], vec![sample(42, 400.0, 400.1)]);
    }
}
