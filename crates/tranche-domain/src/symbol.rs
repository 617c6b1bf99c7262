//! Ticker symbols.
//!
//! Invariant: a `Symbol` is trimmed, upper-case, 1 to [`Symbol::MAX_LEN`] characters from
//! `A-Z 0-9 . / -`, and starts with a letter or digit. It never contains `_`, which the client
//! order id encoding relies on.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A validated, upper-cased ticker symbol such as `AAPL`, `BRK.B` or `BTC/USD`. Cloning is a
/// reference-count increment (symbols are copied into every quote, order and fill).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(Arc<str>);

/// Why a text is not a symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    /// Nothing left after trimming.
    #[error("symbol is empty")]
    Empty,
    /// Longer than [`Symbol::MAX_LEN`].
    #[error("symbol `{text}` has {len} characters; at most {max} are allowed")]
    TooLong {
        /// The offending text.
        text: String,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside `A-Z 0-9 . / -`, or a separator in first position.
    #[error("symbol `{text}` has the character {ch:?} at position {position}; only letters, digits, `.`, `/` and `-` (not first) are allowed")]
    BadCharacter {
        /// The offending text.
        text: String,
        /// The first bad character.
        ch: char,
        /// Its zero-based character position.
        position: usize,
    },
}

impl Symbol {
    /// Longest accepted symbol, as in the predecessor's plan schema.
    pub const MAX_LEN: usize = 10;

    /// Trims, upper-cases and validates `text`.
    pub fn parse(text: &str) -> Result<Self, SymbolError> {
        let upper = text.trim().to_ascii_uppercase();
        if upper.is_empty() {
            return Err(SymbolError::Empty);
        }
        let len = upper.chars().count();
        if len > Self::MAX_LEN {
            return Err(SymbolError::TooLong { text: upper, len, max: Self::MAX_LEN });
        }
        for (position, ch) in upper.chars().enumerate() {
            let ok = ch.is_ascii_uppercase() || ch.is_ascii_digit() || (position > 0 && matches!(ch, '.' | '/' | '-'));
            if !ok {
                return Err(SymbolError::BadCharacter { text: upper, ch, position });
            }
        }
        Ok(Self(upper.into()))
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Symbol {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_upper_cases() {
        assert_eq!(Symbol::parse("  aapl ").unwrap().as_str(), "AAPL");
        assert_eq!(Symbol::parse("brk.b").unwrap().as_str(), "BRK.B");
        assert_eq!(Symbol::parse("BTC/USD").unwrap().as_str(), "BTC/USD");
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(Symbol::parse("   "), Err(SymbolError::Empty));
        assert!(matches!(Symbol::parse("ABCDEFGHIJK"), Err(SymbolError::TooLong { len: 11, .. })));
        assert!(matches!(Symbol::parse("AA PL"), Err(SymbolError::BadCharacter { ch: ' ', position: 2, .. })));
        assert!(matches!(Symbol::parse(".X"), Err(SymbolError::BadCharacter { position: 0, .. })));
        assert!(matches!(Symbol::parse("A_B"), Err(SymbolError::BadCharacter { ch: '_', .. })));
        assert!(matches!(Symbol::parse("ÄPFEL"), Err(SymbolError::BadCharacter { ch: 'Ä', .. })));
    }

    #[test]
    fn error_messages_name_the_input() {
        let msg = Symbol::parse("A$").unwrap_err().to_string();
        assert!(msg.contains("A$") && msg.contains('$'), "{msg}");
    }
}
