//! The per-symbol latest-quote store: latest wins (by the quote's own time), memory bounded by
//! a symbol cap whatever the message rate (one slot per symbol, overwritten in place).

use std::collections::HashMap;
use std::sync::RwLock;

use tranche_domain::{Quote, Symbol};

/// How far ahead of this machine's clock a quote's stamp may be (clock skew).
pub const MAX_AHEAD: std::time::Duration = std::time::Duration::from_secs(10);

/// Latest quote per symbol.
#[derive(Debug)]
pub struct QuoteStore {
    max_symbols: usize,
    quotes: RwLock<HashMap<Symbol, Quote>>,
}

impl QuoteStore {
    /// A store holding at most `max_symbols` symbols.
    pub fn new(max_symbols: usize) -> Self {
        Self { max_symbols, quotes: RwLock::new(HashMap::new()) }
    }

    /// Keeps `quote` unless a newer one is held; returns whether it was kept. A quote for a new
    /// symbol beyond the cap is dropped. A held quote stamped more than `MAX_AHEAD` after this
    /// machine's clock is replaced by any that comes: latest wins by the stamp, so one from a
    /// clock gone wrong would otherwise shut out every real quote after it (and with this
    /// machine's clock running slow, every quote looks ahead: then each new one counts).
    pub fn update(&self, quote: Quote) -> bool {
        let mut quotes = self.quotes.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = quotes.get_mut(&quote.symbol) {
            if held.time > quote.time && !Self::ahead(held) {
                return false;
            }
            *held = quote;
            return true;
        }
        if quotes.len() >= self.max_symbols {
            return false;
        }
        quotes.insert(quote.symbol.clone(), quote);
        true
    }

    /// Stamped further ahead of this machine's clock than clock skew explains (read only when
    /// an older quote comes after a newer one).
    fn ahead(quote: &Quote) -> bool {
        let most = chrono::Duration::from_std(MAX_AHEAD).unwrap_or(chrono::Duration::MAX);
        quote.time.signed_duration_since(chrono::Utc::now()) > most
    }

    /// The latest quote of `symbol`.
    pub fn get(&self, symbol: &Symbol) -> Option<Quote> {
        self.quotes.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(symbol).cloned()
    }

    /// Forgets `symbol` (after its subscription ends).
    pub fn remove(&self, symbol: &Symbol) {
        self.quotes.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(symbol);
    }

    /// Symbols held.
    pub fn len(&self) -> usize {
        self.quotes.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tranche_domain::Qty;

    fn q(symbol: &str, secs: i64, bid: &str) -> Quote {
        Quote {
            symbol: Symbol::parse(symbol).unwrap(),
            bid: bid.parse().unwrap(),
            bid_size: Qty::new(1.into()),
            ask: "999".parse().unwrap(),
            ask_size: Qty::new(1.into()),
            time: chrono::DateTime::from_timestamp(secs, 0).unwrap(),
        }
    }

    #[test]
    fn a_quote_stamped_in_the_future_never_shuts_out_the_real_ones() {
        let store = QuoteStore::new(2);
        let now = chrono::Utc::now().timestamp();
        assert!(store.update(q("A", now + 3_600, "100")));
        assert!(store.update(q("A", now, "90")), "a real quote takes over from one an hour ahead");
        assert!(store.update(q("A", now + 2, "91")), "two seconds ahead (clock skew): kept");
        assert!(!store.update(q("A", now + 1, "92")), "and an older one does not replace it");
        assert_eq!(store.get(&Symbol::parse("A").unwrap()).unwrap().bid, "91".parse().unwrap());
    }

    #[test]
    fn latest_wins_and_memory_is_bounded() {
        let store = QuoteStore::new(2);
        assert!(store.update(q("A", 10, "1")));
        assert!(!store.update(q("A", 9, "2")), "an older quote never replaces a newer one");
        assert!(store.update(q("A", 11, "3")));
        assert_eq!(store.get(&Symbol::parse("A").unwrap()).unwrap().bid, "3".parse().unwrap());
        for i in 0..10_000 {
            store.update(q("B", i, "4"));
        }
        assert!(!store.update(q("C", 1, "5")), "beyond the cap");
        assert_eq!(store.len(), 2);
    }
}
