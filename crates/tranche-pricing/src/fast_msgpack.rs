//! The hot path of the MessagePack codec: a frame that is an array of quote maps (what a busy
//! feed sends almost every time, and what Alpaca's SDKs ask for) read straight from its bytes,
//! with no intermediate value tree and no allocation but the result and a new symbol.
//!
//! Invariant: it answers only when the frame is one well-formed MessagePack array of maps with
//! string keys, every map a quote (`T` = `q`) with each of `S`, `bp`, `bs`, `ap`, `as` and `t`
//! once and of the expected kinds, and nothing after the array; it then answers exactly what the
//! general decoder would. For anything else it returns `None` and the general decoder decides,
//! errors included. It never panics: every read is bounds-checked.

use tranche_domain::{Price, Qty, Quote, Timestamp};

use crate::codec::{decimal_from_f64, timestamp, DataMessage, SymbolCache};

/// A cursor over the frame's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn len16(&mut self) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(self.be()?)))
    }

    fn len32(&mut self) -> Option<usize> {
        usize::try_from(u32::from_be_bytes(self.be()?)).ok()
    }

    /// An array header: its length.
    fn array(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x90..=0x9f => Some(usize::from(b & 0x0f)),
            0xdc => self.len16(),
            0xdd => self.len32(),
            _ => None,
        }
    }

    /// A map header: its number of entries.
    fn map(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x80..=0x8f => Some(usize::from(b & 0x0f)),
            0xde => self.len16(),
            0xdf => self.len32(),
            _ => None,
        }
    }

    /// A string (UTF-8 checked).
    fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.len16()?,
            0xdb => self.len32()?,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// A number as the general decoder reads it: a float, or an integer taken as a float.
    fn number(&mut self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        let value = match self.byte()? {
            b @ (0x00..=0x7f) => f64::from(b),
            b @ 0xe0..=0xff => f64::from(i8::from_be_bytes([b])),
            0xca => f64::from(f32::from_be_bytes(self.be()?)),
            0xcb => f64::from_be_bytes(self.be()?),
            0xcc => f64::from(self.byte()?),
            0xcd => f64::from(u16::from_be_bytes(self.be()?)),
            0xce => f64::from(u32::from_be_bytes(self.be()?)),
            0xcf => u64::from_be_bytes(self.be()?) as f64,
            0xd0 => f64::from(i8::from_be_bytes(self.be()?)),
            0xd1 => f64::from(i16::from_be_bytes(self.be()?)),
            0xd2 => f64::from(i32::from_be_bytes(self.be()?)),
            0xd3 => i64::from_be_bytes(self.be()?) as f64,
            _ => return None,
        };
        Some(value)
    }

    /// A timestamp: MessagePack's extension −1 (4, 8 or 12 bytes) or an RFC 3339 string.
    fn time(&mut self) -> Option<Timestamp> {
        let (kind, data) = match self.bytes.get(self.at)? {
            0xd6 => {
                self.at += 1;
                (self.byte()?, self.take(4)?)
            }
            0xd7 => {
                self.at += 1;
                (self.byte()?, self.take(8)?)
            }
            0xc7 => {
                self.at += 1;
                let len = usize::from(self.byte()?);
                (self.byte()?, self.take(len)?)
            }
            _ => return timestamp(self.str()?).ok(),
        };
        if kind != 0xff {
            return None;
        }
        let (secs, nanos) = match data.len() {
            4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
            8 => {
                let raw = u64::from_be_bytes(data.try_into().ok()?);
                (i64::try_from(raw & 0x3_ffff_ffff).ok()?, u32::try_from(raw >> 34).ok()?)
            }
            12 => (i64::from_be_bytes(data[4..].try_into().ok()?), u32::from_be_bytes(data[..4].try_into().ok()?)),
            _ => return None,
        };
        chrono::DateTime::from_timestamp(secs, nanos)
    }

    /// Skips any one value (the fields a quote carries that the engine does not read).
    fn skip(&mut self, depth: u8) -> Option<()> {
        if depth > 8 {
            return None;
        }
        let marker = self.byte()?;
        let skip_bytes = |r: &mut Self, n: usize| r.take(n).map(|_| ());
        match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some(()),
            0x80..=0x8f => self.skip_entries(usize::from(marker & 0x0f) * 2, depth),
            0x90..=0x9f => self.skip_entries(usize::from(marker & 0x0f), depth),
            0xa0..=0xbf => skip_bytes(self, usize::from(marker & 0x1f)),
            0xc4 | 0xd9 => {
                let n = usize::from(self.byte()?);
                skip_bytes(self, n)
            }
            0xc5 | 0xda => {
                let n = self.len16()?;
                skip_bytes(self, n)
            }
            0xc6 | 0xdb => {
                let n = self.len32()?;
                skip_bytes(self, n)
            }
            0xc7 => {
                let n = usize::from(self.byte()?);
                skip_bytes(self, n + 1)
            }
            0xc8 => {
                let n = self.len16()?;
                skip_bytes(self, n + 1)
            }
            0xc9 => {
                let n = self.len32()?;
                skip_bytes(self, n.checked_add(1)?)
            }
            0xca | 0xce | 0xd2 => skip_bytes(self, 4),
            0xcb | 0xcf | 0xd3 => skip_bytes(self, 8),
            0xcc | 0xd0 => skip_bytes(self, 1),
            0xcd | 0xd1 => skip_bytes(self, 2),
            0xd4 => skip_bytes(self, 2),
            0xd5 => skip_bytes(self, 3),
            0xd6 => skip_bytes(self, 5),
            0xd7 => skip_bytes(self, 9),
            0xd8 => skip_bytes(self, 17),
            0xdc => {
                let n = self.len16()?;
                self.skip_entries(n, depth)
            }
            0xdd => {
                let n = self.len32()?;
                self.skip_entries(n, depth)
            }
            0xde => {
                let n = self.len16()?;
                self.skip_entries(n.checked_mul(2)?, depth)
            }
            0xdf => {
                let n = self.len32()?;
                self.skip_entries(n.checked_mul(2)?, depth)
            }
            0xc1 => None,
        }
    }

    fn skip_entries(&mut self, n: usize, depth: u8) -> Option<()> {
        (0..n).try_for_each(|_| self.skip(depth + 1))
    }
}

/// The frame's quotes, when it is a well-formed array of nothing but quote maps; `None`
/// otherwise (see the module's invariant).
pub(crate) fn quotes(frame: &[u8], symbols: &mut SymbolCache) -> Option<Vec<DataMessage>> {
    let mut r = Reader { bytes: frame, at: 0 };
    let n = r.array()?;
    // Never trust a length for an allocation: a quote map takes at least 32 bytes.
    let mut out = Vec::with_capacity(n.min(frame.len() / 32));
    for _ in 0..n {
        let entries = r.map()?;
        let (mut kind, mut symbol, mut bp, mut bs, mut ap, mut asz, mut time) =
            (None, None, None, None, None, None, None);
        for _ in 0..entries {
            // Each field once: a repeated one is the general decoder's case.
            match r.str()? {
                "T" if kind.is_none() => kind = Some(r.str()?),
                "S" if symbol.is_none() => symbol = Some(r.str()?),
                "bp" if bp.is_none() => bp = Some(r.number()?),
                "bs" if bs.is_none() => bs = Some(r.number()?),
                "ap" if ap.is_none() => ap = Some(r.number()?),
                "as" if asz.is_none() => asz = Some(r.number()?),
                "t" if time.is_none() => time = Some(r.time()?),
                "T" | "S" | "bp" | "bs" | "ap" | "as" | "t" | "msg" | "code" | "quotes" | "p" | "s" => return None,
                _ => r.skip(0)?,
            }
        }
        if kind? != "q" {
            return None;
        }
        out.push(DataMessage::Quote(Quote {
            symbol: symbols.get(Some(symbol?)).ok()?,
            bid: Price::new(decimal_from_f64(bp?)?),
            bid_size: Qty::new(decimal_from_f64(bs?)?),
            ask: Price::new(decimal_from_f64(ap?)?),
            ask_size: Qty::new(decimal_from_f64(asz?)?),
            time: time?,
        }));
    }
    (r.at == frame.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;
    use rust_decimal::Decimal;

    use super::*;
    use crate::codec::{decode_msgpack_general, encode_msgpack_quotes};

    fn quote(symbol: &str, bid: (i64, u32), ask: (i64, u32), size: i64, nanos: i64) -> Quote {
        Quote {
            symbol: tranche_domain::Symbol::parse(symbol).unwrap(),
            bid: Price::new(Decimal::new(bid.0, bid.1)),
            bid_size: Qty::new(Decimal::from(size)),
            ask: Price::new(Decimal::new(ask.0, ask.1)),
            ask_size: Qty::new(Decimal::from(size + 1)),
            time: chrono::DateTime::from_timestamp_nanos(nanos),
        }
    }

    fn encode(value: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    /// A one-message frame from `(key, value)` pairs.
    fn frame(entries: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
        encode(&rmpv::Value::Array(vec![rmpv::Value::Map(
            entries.into_iter().map(|(k, v)| (rmpv::Value::from(k), v)).collect(),
        )]))
    }

    /// A quote message's fields, in order.
    type Entries = Vec<(&'static str, rmpv::Value)>;

    fn base() -> Entries {
        let mut ts = 5u32.to_be_bytes().to_vec();
        ts.extend_from_slice(&1_772_462_000i64.to_be_bytes());
        vec![
            ("T", "q".into()),
            ("S", "AAPL".into()),
            ("bp", rmpv::Value::F64(228.1)),
            ("bs", rmpv::Value::from(3)),
            ("ap", rmpv::Value::F64(228.12)),
            ("as", rmpv::Value::F32(2.0)),
            ("t", rmpv::Value::Ext(-1, ts)),
            ("c", rmpv::Value::Array(vec!["R".into()])),
            ("z", "C".into()),
        ]
    }

    #[test]
    fn what_the_reader_answers_and_what_it_leaves_to_the_general_decoder() {
        let with = |change: &dyn Fn(&mut Entries)| {
            let mut entries = base();
            change(&mut entries);
            frame(entries)
        };
        // (case, frame, answered by the reader)
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("a quote", with(&|_| {}), true),
            ("a timestamp as text", with(&|e| e[6].1 = "2026-03-02T14:33:20.000000005Z".into()), true),
            (
                "a 64-bit timestamp",
                with(&|e| e[6].1 = rmpv::Value::Ext(-1, (5u64 << 34 | 0x69a5_9fb0).to_be_bytes().to_vec())),
                true,
            ),
            ("an integer price", with(&|e| e[2].1 = rmpv::Value::from(228)), true),
            ("a trade", with(&|e| e[0].1 = "t".into()), false),
            ("a price as text", with(&|e| e[2].1 = "228.1".into()), false),
            (
                "no timestamp",
                with(&|e| {
                    e.remove(6);
                }),
                false,
            ),
            ("a field twice", with(&|e| e.push(("bp", rmpv::Value::F64(1.0)))), false),
            ("another extension", with(&|e| e[6].1 = rmpv::Value::Ext(3, vec![0; 12])), false),
            ("a bad symbol", with(&|e| e[1].1 = "not a symbol!".into()), false),
            (
                "bytes after the frame",
                {
                    let mut f = with(&|_| {});
                    f.push(0xc0);
                    f
                },
                false,
            ),
            (
                "a cut frame",
                {
                    let f = with(&|_| {});
                    f[..f.len() - 3].to_vec()
                },
                false,
            ),
        ];
        for (case, bytes, answered) in cases {
            let fast = quotes(&bytes, &mut SymbolCache::default());
            assert_eq!(fast.is_some(), answered, "{case}");
            if let Some(fast) = fast {
                let general = decode_msgpack_general(&bytes, &mut SymbolCache::default()).unwrap();
                assert_eq!(fast, general, "{case}: as the general decoder");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1000,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(20_261_129),
            ..ProptestConfig::default()
        })]

        #[test]
        fn a_frame_of_quotes_reads_as_the_general_decoder_reads_it(
            rows in proptest::collection::vec(
                ("[A-Z]{1,5}", 1i64..100_000_000, 0u32..7, 1i64..10_000_000, 0i64..4_000_000_000_000_000_000),
                0..40,
            )
        ) {
            let quotes_in: Vec<Quote> = rows
                .iter()
                .map(|(s, units, places, size, nanos)| quote(s, (*units, *places), (units + 1, *places), *size, *nanos))
                .collect();
            let bytes = encode_msgpack_quotes(&quotes_in);
            let fast = quotes(&bytes, &mut SymbolCache::default());
            let general = decode_msgpack_general(&bytes, &mut SymbolCache::default()).unwrap();
            prop_assert_eq!(fast.as_ref(), Some(&general));
        }

        #[test]
        fn any_bytes_are_answered_as_the_general_decoder_would_or_left_to_it(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(fast) = quotes(&bytes, &mut SymbolCache::default()) {
                prop_assert_eq!(Ok(fast), decode_msgpack_general(&bytes, &mut SymbolCache::default()));
            }
        }

        #[test]
        fn cut_and_flipped_quote_frames_never_answer_wrongly(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
            let mut bytes = encode_msgpack_quotes(&[quote("AAPL", (22810, 2), (22812, 2), 3, 1_772_462_000_000_000_005), quote("MSFT", (41520, 2), (41530, 2), 1, 1_772_462_000_000_000_006)]);
            if let Some(b) = bytes.get_mut(flip) {
                *b ^= 1 << bit;
            }
            bytes.truncate(cut.max(1));
            if let Some(fast) = quotes(&bytes, &mut SymbolCache::default()) {
                prop_assert_eq!(Ok(fast), decode_msgpack_general(&bytes, &mut SymbolCache::default()));
            }
        }
    }
}
