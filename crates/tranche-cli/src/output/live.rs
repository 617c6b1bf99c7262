//! Live progress on a terminal: a header line (phase, items done, run clock) and one indicatif
//! bar per symbol showing its side, filled of ordered shares, re-pegs, the working price and its
//! state, redrawn in place as the engine's progress events arrive.
//!
//! Invariants: drawing goes to stderr only (stdout stays the result); a finished item keeps its
//! last line on screen; the display is fed only by events, never polled, so virtual time works.

use std::collections::BTreeMap;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tranche::domain::{ItemOutcome, Price, Qty, Side, Symbol, Timestamp};
use tranche::engine::{Phase, ProgressEvent};

/// Bar resolution: positions are thousandths of the ordered quantity.
const SCALE: u64 = 1000;

/// The price an item is working at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Working {
    Limit(Price),
    Market,
}

/// Where an item is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Starting,
    Working,
    Escalated,
    Done(ItemOutcome, Option<String>),
}

/// What one symbol's line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemLine {
    side: Option<Side>,
    ordered: Option<Qty>,
    filled: Qty,
    repegs: u32,
    working: Option<Working>,
    last_fill: Option<Price>,
    state: State,
}

fn num(value: impl Into<Decimal>) -> String {
    value.into().normalize().to_string()
}

impl ItemLine {
    fn new(side: Option<Side>, ordered: Option<Qty>) -> Self {
        Self { side, ordered, filled: Qty::ZERO, repegs: 0, working: None, last_fill: None, state: State::Starting }
    }

    /// Applies `event` (already known to be about this line's symbol).
    fn apply(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::ItemStarted { side, qty, .. } => {
                self.side = Some(*side);
                self.ordered = Some(*qty);
            }
            ProgressEvent::OrderPlaced { limit, .. } => {
                self.working = Some(limit.map_or(Working::Market, Working::Limit));
                if self.state == State::Starting {
                    self.state = State::Working;
                }
            }
            ProgressEvent::Repegged { limit, repegs, .. } => {
                self.working = Some(Working::Limit(*limit));
                self.repegs = *repegs;
            }
            ProgressEvent::Escalated { limit, .. } => {
                self.working = Some(limit.map_or(Working::Market, Working::Limit));
                self.state = State::Escalated;
            }
            ProgressEvent::Filled { price, filled, target, .. } => {
                self.filled = *filled;
                self.ordered = Some(*target);
                self.last_fill = Some(*price);
            }
            ProgressEvent::ItemDone { outcome, reason, .. } => self.state = State::Done(*outcome, reason.clone()),
            ProgressEvent::PhaseStarted { .. } | ProgressEvent::PhaseDone { .. } | ProgressEvent::Warning { .. } => {}
        }
    }

    /// Filled as thousandths of ordered (0 when nothing is ordered).
    fn permille(&self) -> u64 {
        let Some(ordered) = self.ordered.filter(|q| q.is_positive()) else {
            return 0;
        };
        let ratio = (self.filled.get() / ordered.get()).min(Decimal::ONE);
        (ratio * Decimal::from(SCALE)).round().to_u64().unwrap_or(0)
    }

    /// The text after the bar.
    fn message(&self) -> String {
        let side = match self.side {
            Some(Side::Buy) => "BUY ",
            Some(Side::Sell) => "SELL",
            None => "HOLD",
        };
        let mut parts = vec![match self.ordered {
            Some(ordered) => format!("{side} {} of {}", num(self.filled), num(ordered)),
            None => side.to_owned(),
        }];
        if self.working.is_some() || self.repegs > 0 {
            parts.push(format!("re-pegs {}", self.repegs));
        }
        match self.working {
            Some(Working::Limit(p)) => parts.push(format!("limit {}", num(p))),
            Some(Working::Market) => parts.push("market".to_owned()),
            None => {}
        }
        if let Some(p) = self.last_fill {
            parts.push(format!("last fill {}", num(p)));
        }
        parts.push(match &self.state {
            State::Starting => "starting".to_owned(),
            State::Working => "working".to_owned(),
            State::Escalated => "escalated".to_owned(),
            State::Done(outcome, reason) => {
                let name = crate::output::outcome_name(*outcome);
                reason.as_ref().map_or_else(|| name.to_owned(), |r| format!("{name}: {r}"))
            }
        });
        parts.join(" · ")
    }
}

/// The live display.
pub struct Live {
    multi: MultiProgress,
    header: ProgressBar,
    style: ProgressStyle,
    items: BTreeMap<Symbol, (ProgressBar, ItemLine)>,
    phase: Option<(Phase, bool)>,
    clock: Option<Timestamp>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("items", &self.items.len()).finish_non_exhaustive()
    }
}

impl Live {
    /// A display drawing on stderr.
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let header = multi.add(ProgressBar::new(0));
        header.set_style(ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
        let style = ProgressStyle::with_template("{prefix:<7} {bar:24.cyan/blue} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("█▌ ");
        // Log lines written while the bars are up go above them, not through them.
        crate::logging::set_display(Some(multi.clone()));
        Self { multi, header, style, items: BTreeMap::new(), phase: None, clock: None }
    }

    fn header_message(&self) -> String {
        let done = self.items.values().filter(|(_, line)| matches!(line.state, State::Done(..))).count();
        let phase = match self.phase {
            Some((phase, false)) => format!("phase {phase:?}"),
            Some((phase, true)) => format!("phase {phase:?} done"),
            None => "starting".to_owned(),
        };
        let clock = self.clock.map(|t| format!(" · {}", t.format("%H:%M:%S%.3f"))).unwrap_or_default();
        format!("{phase} · {done} of {} items done{clock}", self.items.len())
    }

    fn line(&mut self, symbol: &Symbol) -> &mut (ProgressBar, ItemLine) {
        let (multi, style) = (&self.multi, &self.style);
        self.items.entry(symbol.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(SCALE));
            bar.set_style(style.clone());
            bar.set_prefix(symbol.as_str().to_owned());
            (bar, ItemLine::new(None, None))
        })
    }

    /// Draws one event.
    pub fn event(&mut self, event: &ProgressEvent) {
        let symbol = match event {
            ProgressEvent::PhaseStarted { phase, at } => {
                self.phase = Some((*phase, false));
                self.clock = Some(*at);
                None
            }
            ProgressEvent::PhaseDone { phase, at } => {
                self.phase = Some((*phase, true));
                self.clock = Some(*at);
                None
            }
            // Logged (as a warning) by the engine's driver, not drawn as a line.
            ProgressEvent::Warning { at, .. } => {
                self.clock = Some(*at);
                None
            }
            ProgressEvent::ItemStarted { symbol, at, .. }
            | ProgressEvent::OrderPlaced { symbol, at, .. }
            | ProgressEvent::Repegged { symbol, at, .. }
            | ProgressEvent::Escalated { symbol, at, .. }
            | ProgressEvent::Filled { symbol, at, .. }
            | ProgressEvent::ItemDone { symbol, at, .. } => {
                self.clock = Some(*at);
                Some(symbol)
            }
        };
        if let Some(symbol) = symbol {
            let (bar, line) = self.line(symbol);
            line.apply(event);
            bar.set_position(line.permille());
            bar.set_message(line.message());
            if matches!(line.state, State::Done(..)) {
                bar.abandon();
            }
        }
        self.header.set_message(self.header_message());
    }

    /// Leaves the final state on screen.
    pub fn finish(self) {
        crate::logging::set_display(None);
        self.header.abandon_with_message(self.header_message());
        for (bar, line) in self.items.values() {
            bar.abandon_with_message(line.message());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at() -> Timestamp {
        chrono::DateTime::UNIX_EPOCH
    }

    #[test]
    fn a_line_follows_its_item() {
        let symbol = Symbol::parse("AAPL").unwrap();
        let mut line = ItemLine::new(None, None);
        let steps: Vec<(ProgressEvent, &str, u64)> = vec![
            (
                ProgressEvent::ItemStarted {
                    symbol: symbol.clone(),
                    side: Side::Buy,
                    qty: "40".parse().unwrap(),
                    arrival_mid: None,
                    at: at(),
                },
                "BUY  0 of 40 · starting",
                0,
            ),
            (
                ProgressEvent::OrderPlaced {
                    symbol: symbol.clone(),
                    qty: "40".parse().unwrap(),
                    limit: Some("228.05".parse().unwrap()),
                    at: at(),
                },
                "BUY  0 of 40 · re-pegs 0 · limit 228.05 · working",
                0,
            ),
            (
                ProgressEvent::Filled {
                    symbol: symbol.clone(),
                    qty: "10".parse().unwrap(),
                    price: "228.05".parse().unwrap(),
                    filled: "10".parse().unwrap(),
                    target: "40".parse().unwrap(),
                    at: at(),
                },
                "BUY  10 of 40 · re-pegs 0 · limit 228.05 · last fill 228.05 · working",
                250,
            ),
            (
                ProgressEvent::Repegged {
                    symbol: symbol.clone(),
                    limit: "228.07".parse().unwrap(),
                    repegs: 1,
                    at: at(),
                },
                "BUY  10 of 40 · re-pegs 1 · limit 228.07 · last fill 228.05 · working",
                250,
            ),
            (
                ProgressEvent::Escalated { symbol: symbol.clone(), limit: None, at: at() },
                "BUY  10 of 40 · re-pegs 1 · market · last fill 228.05 · escalated",
                250,
            ),
            (
                ProgressEvent::ItemDone {
                    symbol: symbol.clone(),
                    outcome: ItemOutcome::PartiallyFilled,
                    reason: Some("deadline".into()),
                    at: at(),
                },
                "BUY  10 of 40 · re-pegs 1 · market · last fill 228.05 · partially filled: deadline",
                250,
            ),
        ];
        for (event, want, permille) in steps {
            line.apply(&event);
            assert_eq!(line.message(), want);
            assert_eq!(line.permille(), permille);
        }
    }

    #[test]
    fn a_held_item_is_one_word() {
        let mut line = ItemLine::new(None, None);
        line.apply(&ProgressEvent::ItemDone {
            symbol: Symbol::parse("SPY").unwrap(),
            outcome: ItemOutcome::Held,
            reason: None,
            at: at(),
        });
        assert_eq!(line.message(), "HOLD · held");
        assert_eq!(line.permille(), 0);
    }

    #[test]
    fn a_hidden_display_takes_every_event() {
        let mut live = Live::new();
        live.multi.set_draw_target(ProgressDrawTarget::hidden());
        let symbol = Symbol::parse("MSFT").unwrap();
        live.event(&ProgressEvent::PhaseStarted { phase: Phase::Sell, at: at() });
        live.event(&ProgressEvent::ItemDone { symbol, outcome: ItemOutcome::Filled, reason: None, at: at() });
        assert_eq!(live.header_message(), "phase Sell · 1 of 1 items done · 00:00:00.000");
        live.finish();
    }
}
