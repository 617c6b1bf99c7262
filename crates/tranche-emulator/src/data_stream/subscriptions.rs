//! One market-data connection's subscriptions (§6.4): the symbols (or `*`) of each channel,
//! changed by `subscribe` / `unsubscribe` and answered with the whole state, under a plan's
//! symbol limit.
//!
//! Invariants: a subscribe that would take the distinct symbols of the limited channels (trades
//! and quotes: Alpaca's Basic plan does not count bars) past the limit changes nothing; `*`
//! counts as more than any limit; `corrections` and `cancelErrors` follow `trades`, as Alpaca
//! subscribes them together; a malformed entry is skipped, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use tranche_domain::Symbol;

/// The channels a client may subscribe to, in the order of the reply.
const CHANNELS: [&str; 7] = ["trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds"];

/// The channels whose symbols count toward a plan's symbol limit: trades and quotes (Alpaca's
/// free plan: "30 symbols for trades+quotes channels, bars unlimited").
const LIMITED: [&str; 2] = ["trades", "quotes"];

/// Every symbol of a channel.
const ALL: &str = "*";

/// A subscription change that was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LimitExceeded;

/// The market symbols (quotes or trades) a change added and removed (what the market must be
/// told: a subscribed symbol's market keeps running).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct QuoteChanges {
    /// Newly subscribed quote symbols.
    pub added: Vec<Symbol>,
    /// Quote symbols no longer subscribed.
    pub removed: Vec<Symbol>,
}

/// The subscription state of one connection.
#[derive(Debug, Clone, Default)]
pub(super) struct Subscriptions {
    channels: BTreeMap<&'static str, BTreeSet<String>>,
}

/// The entries of `channel` in a client message: `*` or valid symbols (others are skipped).
fn entries(msg: &Value, channel: &str) -> Vec<String> {
    let Some(list) = msg.get(channel).and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .filter_map(Value::as_str)
        .filter_map(|s| if s == ALL { Some(ALL.to_owned()) } else { Symbol::parse(s).ok().map(|s| s.to_string()) })
        .collect()
}

fn symbols(entries: &BTreeSet<String>) -> Vec<Symbol> {
    entries.iter().filter(|e| *e != ALL).filter_map(|e| Symbol::parse(e).ok()).collect()
}

impl Subscriptions {
    fn channel(&self, name: &str) -> impl Iterator<Item = &String> {
        self.channels.get(name).into_iter().flatten()
    }

    /// Distinct symbols across the limited channels (`usize::MAX` with a `*`).
    fn counted(&self) -> usize {
        let distinct: BTreeSet<&String> = LIMITED.iter().flat_map(|c| self.channel(c)).collect();
        if distinct.iter().any(|e| *e == ALL) {
            usize::MAX
        } else {
            distinct.len()
        }
    }

    /// Adds (`subscribe`) or removes the message's entries of every channel; a subscribe that
    /// would go past `limit` distinct symbols (0: no limit) is refused and changes nothing.
    pub fn apply(&mut self, subscribe: bool, msg: &Value, limit: usize) -> Result<QuoteChanges, LimitExceeded> {
        let mut next = self.clone();
        for channel in CHANNELS {
            let set = next.channels.entry(channel).or_default();
            for entry in entries(msg, channel) {
                if subscribe {
                    set.insert(entry);
                } else {
                    set.remove(&entry);
                }
            }
        }
        if subscribe && limit > 0 && next.counted() > limit && next.counted() > self.counted() {
            return Err(LimitExceeded);
        }
        let before: BTreeSet<Symbol> = self.market_symbols().into_iter().collect();
        let after: BTreeSet<Symbol> = next.market_symbols().into_iter().collect();
        let changes = QuoteChanges {
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
        };
        *self = next;
        Ok(changes)
    }

    /// Whether quotes of `symbol` are subscribed (by name or by `*`).
    pub fn wants_quote(&self, symbol: &Symbol) -> bool {
        self.channel("quotes").any(|e| e == ALL || e == symbol.as_str())
    }

    /// Whether trades of `symbol` are subscribed (by name or by `*`).
    pub fn wants_trade(&self, symbol: &Symbol) -> bool {
        self.channel("trades").any(|e| e == ALL || e == symbol.as_str())
    }

    /// The symbols subscribed for quotes or trades (`*` left out), each once.
    pub fn market_symbols(&self) -> Vec<Symbol> {
        let named: BTreeSet<String> = LIMITED.iter().flat_map(|c| self.channel(c).cloned()).collect();
        symbols(&named)
    }

    /// The `subscription` message: the whole state.
    pub fn reply(&self) -> Value {
        let list = |name: &str| Value::Array(self.channel(name).map(|e| Value::String(e.clone())).collect());
        let mut reply = json!({"T": "subscription"});
        for channel in CHANNELS {
            reply[channel] = list(channel);
        }
        reply["corrections"] = list("trades");
        reply["cancelErrors"] = list("trades");
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize, prefix: &str) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{}", char::from(b'A' + u8::try_from(i % 26).unwrap_or(0)))).collect()
    }

    #[test]
    fn the_limit_counts_distinct_trade_and_quote_symbols() {
        // (case, message, subscribe, accepted)
        let mut subs = Subscriptions::default();
        let thirty: Vec<String> = names(26, "Q").into_iter().chain(names(4, "R")).collect();
        let cases: Vec<(&str, Value, bool, bool)> = vec![
            ("thirty quotes", json!({"quotes": thirty}), true, true),
            ("the same as trades", json!({"trades": thirty}), true, true),
            ("bars do not count", json!({"bars": names(26, "B")}), true, true),
            ("a 31st", json!({"quotes": ["ZZZ"]}), true, false),
            ("a 31st trade", json!({"trades": ["ZZZ"]}), true, false),
            ("a wildcard", json!({"quotes": ["*"]}), true, false),
            ("again the thirty", json!({"quotes": thirty, "trades": thirty}), true, true),
            ("one out", json!({"quotes": ["QA"], "trades": ["QA"]}), false, true),
            ("one in", json!({"quotes": ["ZZZ"]}), true, true),
            ("a 31st again", json!({"trades": ["YYY"]}), true, false),
        ];
        for (case, msg, subscribe, accepted) in cases {
            let before = subs.reply();
            let result = subs.apply(subscribe, &msg, 30);
            assert_eq!(result.is_ok(), accepted, "{case}");
            if !accepted {
                assert_eq!(subs.reply(), before, "{case}: a refusal changes nothing");
            }
        }
        assert_eq!(subs.counted(), 30);
        assert!(subs.wants_quote(&Symbol::parse("ZZZ").unwrap()));
        assert!(!subs.wants_quote(&Symbol::parse("QA").unwrap()));
    }

    #[test]
    fn no_limit_and_wildcards() {
        let mut subs = Subscriptions::default();
        let changes = subs
            .apply(true, &json!({"quotes": names(26, "A").into_iter().chain(names(26, "B")).collect::<Vec<_>>()}), 0)
            .unwrap();
        assert_eq!(changes.added.len(), 52);
        subs.apply(true, &json!({"quotes": ["*", "bad symbol!", 7]}), 0).unwrap();
        assert!(subs.wants_quote(&Symbol::parse("ANY").unwrap()));
        assert_eq!(subs.market_symbols().len(), 52, "the wildcard is not a symbol");
        let changes = subs.apply(false, &json!({"quotes": ["AA", "NEVER"]}), 0).unwrap();
        assert_eq!(changes.removed, [Symbol::parse("AA").unwrap()]);
    }

    #[test]
    fn the_reply_is_the_whole_state_with_corrections_following_trades() {
        let mut subs = Subscriptions::default();
        subs.apply(true, &json!({"trades": ["AAPL"], "quotes": ["AMD", "CLDR"], "dailyBars": ["VOO"]}), 30).unwrap();
        assert_eq!(
            subs.reply(),
            json!({"T": "subscription", "trades": ["AAPL"], "quotes": ["AMD", "CLDR"], "bars": [], "updatedBars": [],
                "dailyBars": ["VOO"], "statuses": [], "lulds": [], "corrections": ["AAPL"], "cancelErrors": ["AAPL"]})
        );
    }
}
