//! The market-data stream codec, separate from the transport: server frames (JSON text, or
//! MessagePack with timestamp extension −1) to typed messages, and client actions to JSON. A JSON
//! frame of plain quotes takes the scanner of `fast_json`, a MessagePack one the reader of
//! `fast_msgpack`; everything else, and anything those decline, goes through the general
//! decoders here.
//!
//! Invariants: decoding never panics on any bytes (malformed frames are an error; unknown
//! message types are `Other`); prices are decimals read from the number's shortest text, never
//! rounded through binary floating point beyond what the sender wrote.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use tranche_domain::{Price, Qty, Quote, Symbol, Timestamp};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable market-data frame: {0}")]
pub struct CodecError(pub String);

/// One message of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataMessage {
    /// `success` (`connected`, `authenticated`).
    Success(String),
    /// `error` with Alpaca's code (400-411, 500).
    Error {
        /// The code.
        code: u16,
        /// The text.
        msg: String,
    },
    /// The whole current subscription state: the quote channel's symbols.
    Subscription {
        /// Symbols subscribed to quotes.
        quotes: Vec<String>,
    },
    /// A quote.
    Quote(Quote),
    /// A trade: symbol, price, size, time.
    Trade {
        /// The symbol.
        symbol: Symbol,
        /// Price.
        price: Price,
        /// Size.
        size: Qty,
        /// When.
        time: Timestamp,
    },
    /// Any other type (bars, statuses, ...), skipped.
    Other(String),
}

/// Powers of ten, each exact as an `f64`.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The decimal an `f64` writes: the shortest that reads back as the same `f64`, as `Display`
/// prints it. Prices and sizes (at most nine decimals, below 9·10¹⁵ once scaled) are found
/// without formatting: the fewest decimal places `k` whose nearest multiple of 10⁻ᵏ reads back
/// as `value`, and only when no neighbouring multiple does too (else the closest one is
/// `Display`'s to choose, and it does).
pub(crate) fn decimal_from_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    for (places, scale) in (0u32..).zip(POW10) {
        let scaled = value * scale;
        if scaled.abs() >= 9.0e15 {
            break;
        }
        let m = scaled.round();
        // Exactly the same `f64`: reading back is exact or it is not.
        let reads_back = |candidate: f64| (candidate / scale).to_bits() == value.to_bits();
        if reads_back(m) {
            if reads_back(m - 1.0) || reads_back(m + 1.0) {
                break;
            }
            // `m` is a whole number below 9·10¹⁵: exact as an i64.
            #[allow(clippy::cast_possible_truncation)]
            return Some(Decimal::new(m as i64, places));
        }
    }
    Decimal::from_str(&ryu_like(value)).ok()
}

/// The shortest decimal text of an `f64` (Rust's `Display` prints the shortest round-trip form).
fn ryu_like(value: f64) -> String {
    value.to_string()
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, the stream's own format, parsed without allocation;
/// anything else through the general RFC 3339 parser.
fn fast_utc(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || *b.last()? != b'Z'
    {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(digits(0..4)?).ok()?, digits(5..7)?, digits(8..10)?)?;
    let mut nanos = 0u32;
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty() {
        if rest[0] != b'.' || rest.len() < 2 || rest.len() > 10 {
            return None;
        }
        let frac = &rest[1..];
        let mut value =
            frac.iter().try_fold(0u32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))?;
        for _ in frac.len()..9 {
            value *= 10;
        }
        nanos = value;
    }
    let time = chrono::NaiveTime::from_hms_nano_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?, nanos)?;
    Some(date.and_time(time).and_utc())
}

pub(crate) fn timestamp(text: &str) -> Result<Timestamp, CodecError> {
    if let Some(t) = fast_utc(text) {
        return Ok(t);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| CodecError(format!("timestamp `{text}`: {e}")))
}

/// A JSON number's text as the exact decimal it writes.
pub(crate) fn number_text(text: &str) -> Option<Decimal> {
    Decimal::from_str(text).ok().or_else(|| Decimal::from_scientific(text).ok())
}

/// A number as the sender wrote it (JSON text), or as msgpack carried it (a float).
#[derive(Debug, Clone, Copy)]
enum Num<'a> {
    Text(&'a RawValue),
    Float(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for Num<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(Num::Text)
    }
}

impl Num<'_> {
    fn decimal(self) -> Option<Decimal> {
        match self {
            Num::Text(raw) => number_text(raw.get()),
            Num::Float(f) => decimal_from_f64(f),
        }
    }
}

#[derive(Deserialize)]
struct RawJson<'a> {
    #[serde(rename = "T", borrow)]
    kind: &'a str,
    #[serde(rename = "S", borrow, default)]
    symbol: Option<&'a str>,
    #[serde(borrow, default)]
    bp: Option<Num<'a>>,
    #[serde(borrow, default)]
    bs: Option<Num<'a>>,
    #[serde(borrow, default)]
    ap: Option<Num<'a>>,
    #[serde(rename = "as", borrow, default)]
    asz: Option<Num<'a>>,
    #[serde(borrow, default)]
    p: Option<Num<'a>>,
    #[serde(borrow, default)]
    s: Option<Num<'a>>,
    #[serde(borrow, default)]
    t: Option<&'a str>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    quotes: Option<Vec<String>>,
}

fn num(value: Option<Num<'_>>, field: &str) -> Result<Decimal, CodecError> {
    value.and_then(Num::decimal).ok_or_else(|| CodecError(format!("missing or invalid `{field}`")))
}

/// Validated symbols by their wire text, so a busy connection validates each symbol once and
/// shares it afterwards (bounded: cleared when it grows past its cap).
#[derive(Debug, Default)]
pub struct SymbolCache {
    known: std::collections::HashMap<Box<str>, Symbol>,
}

impl SymbolCache {
    const CAP: usize = 20_000;

    pub(crate) fn get(&mut self, text: Option<&str>) -> Result<Symbol, CodecError> {
        let text = text.unwrap_or_default();
        if let Some(symbol) = self.known.get(text) {
            return Ok(symbol.clone());
        }
        let symbol = Symbol::parse(text).map_err(|e| CodecError(e.to_string()))?;
        if self.known.len() >= Self::CAP {
            self.known.clear();
        }
        self.known.insert(text.into(), symbol.clone());
        Ok(symbol)
    }
}

fn message(
    raw: RawJson<'_>,
    symbols: &mut SymbolCache,
    time: impl FnOnce(Option<&str>) -> Result<Timestamp, CodecError>,
) -> Result<DataMessage, CodecError> {
    Ok(match raw.kind {
        "success" => DataMessage::Success(raw.msg.unwrap_or_default()),
        "error" => DataMessage::Error { code: raw.code.unwrap_or(0), msg: raw.msg.unwrap_or_default() },
        "subscription" => DataMessage::Subscription { quotes: raw.quotes.unwrap_or_default() },
        "q" => DataMessage::Quote(Quote {
            symbol: symbols.get(raw.symbol)?,
            bid: Price::new(num(raw.bp, "bp")?),
            bid_size: Qty::new(num(raw.bs, "bs")?),
            ask: Price::new(num(raw.ap, "ap")?),
            ask_size: Qty::new(num(raw.asz, "as")?),
            time: time(raw.t)?,
        }),
        "t" => DataMessage::Trade {
            symbol: symbols.get(raw.symbol)?,
            price: Price::new(num(raw.p, "p")?),
            size: Qty::new(num(raw.s, "s")?),
            time: time(raw.t)?,
        },
        other => DataMessage::Other(other.to_owned()),
    })
}

/// Decodes a JSON frame: an array of messages (a single object is accepted too).
pub fn decode_json(frame: &[u8]) -> Result<Vec<DataMessage>, CodecError> {
    decode_json_with(frame, &mut SymbolCache::default())
}

/// [`decode_json`] with a connection's symbol cache.
pub fn decode_json_with(frame: &[u8], symbols: &mut SymbolCache) -> Result<Vec<DataMessage>, CodecError> {
    let first = frame.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'[') {
        if let Some(quotes) = crate::fast_json::quotes(frame, symbols) {
            return Ok(quotes);
        }
    }
    decode_json_general(frame, first, symbols)
}

/// Any JSON frame through the general deserializer (the fast path's reference).
pub(crate) fn decode_json_general(
    frame: &[u8],
    first: Option<u8>,
    symbols: &mut SymbolCache,
) -> Result<Vec<DataMessage>, CodecError> {
    let raws: Vec<RawJson<'_>> = if first == Some(b'{') {
        vec![serde_json::from_slice(frame).map_err(|e| CodecError(e.to_string()))?]
    } else {
        serde_json::from_slice(frame).map_err(|e| CodecError(e.to_string()))?
    };
    raws.into_iter().map(|raw| message(raw, symbols, |t| timestamp(t.unwrap_or_default()))).collect()
}

fn mp_get<'a>(map: &'a [(rmpv::Value, rmpv::Value)], key: &str) -> Option<&'a rmpv::Value> {
    map.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

fn mp_f64(value: Option<&rmpv::Value>) -> Option<Num<'static>> {
    match value? {
        rmpv::Value::F64(f) => Some(Num::Float(*f)),
        rmpv::Value::F32(f) => Some(Num::Float(f64::from(*f))),
        rmpv::Value::Integer(i) => i.as_f64().map(Num::Float),
        _ => None,
    }
}

/// A msgpack timestamp (extension type −1: 4, 8 or 12 bytes) or an RFC 3339 string.
fn mp_time(value: Option<&rmpv::Value>) -> Result<Timestamp, CodecError> {
    match value {
        Some(rmpv::Value::Ext(-1, bytes)) => {
            let (secs, nanos) = match bytes.len() {
                4 => (
                    i64::from(u32::from_be_bytes(bytes[..4].try_into().map_err(|_| CodecError("timestamp32".into()))?)),
                    0u32,
                ),
                8 => {
                    let raw = u64::from_be_bytes(bytes[..8].try_into().map_err(|_| CodecError("timestamp64".into()))?);
                    (i64::try_from(raw & 0x3_ffff_ffff).unwrap_or(0), u32::try_from(raw >> 34).unwrap_or(0))
                }
                12 => {
                    let nanos =
                        u32::from_be_bytes(bytes[..4].try_into().map_err(|_| CodecError("timestamp96".into()))?);
                    let secs =
                        i64::from_be_bytes(bytes[4..12].try_into().map_err(|_| CodecError("timestamp96".into()))?);
                    (secs, nanos)
                }
                n => return Err(CodecError(format!("timestamp extension of {n} bytes"))),
            };
            chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(|| CodecError("timestamp out of range".into()))
        }
        Some(rmpv::Value::String(s)) => timestamp(s.as_str().unwrap_or_default()),
        _ => Err(CodecError("missing timestamp".into())),
    }
}

/// Decodes a MessagePack frame (an array of maps).
pub fn decode_msgpack(frame: &[u8]) -> Result<Vec<DataMessage>, CodecError> {
    decode_msgpack_with(frame, &mut SymbolCache::default())
}

/// [`decode_msgpack`] with a connection's symbol cache.
pub fn decode_msgpack_with(frame: &[u8], symbols: &mut SymbolCache) -> Result<Vec<DataMessage>, CodecError> {
    if let Some(quotes) = crate::fast_msgpack::quotes(frame, symbols) {
        return Ok(quotes);
    }
    decode_msgpack_general(frame, symbols)
}

/// Any MessagePack frame through a generic value tree (the fast reader's reference).
pub(crate) fn decode_msgpack_general(frame: &[u8], symbols: &mut SymbolCache) -> Result<Vec<DataMessage>, CodecError> {
    let mut cursor = frame;
    let value = rmpv::decode::read_value(&mut cursor).map_err(|e| CodecError(e.to_string()))?;
    let items = match value {
        rmpv::Value::Array(items) => items,
        map @ rmpv::Value::Map(_) => vec![map],
        other => return Err(CodecError(format!("expected an array, got {other}"))),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let rmpv::Value::Map(map) = item else { return Err(CodecError("expected a map".into())) };
        let text = |key: &str| mp_get(&map, key).and_then(rmpv::Value::as_str);
        let raw = RawJson {
            kind: text("T").ok_or_else(|| CodecError("message without T".into()))?,
            symbol: text("S"),
            bp: mp_f64(mp_get(&map, "bp")),
            bs: mp_f64(mp_get(&map, "bs")),
            ap: mp_f64(mp_get(&map, "ap")),
            asz: mp_f64(mp_get(&map, "as")),
            p: mp_f64(mp_get(&map, "p")),
            s: mp_f64(mp_get(&map, "s")),
            t: None,
            msg: text("msg").map(str::to_owned),
            code: mp_get(&map, "code").and_then(rmpv::Value::as_u64).and_then(|c| u16::try_from(c).ok()),
            quotes: mp_get(&map, "quotes")
                .and_then(rmpv::Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
        };
        out.push(message(raw, symbols, |_| mp_time(mp_get(&map, "t")))?);
    }
    Ok(out)
}

/// Encodes quotes as a msgpack frame with extension −1 timestamps (the emulator's and the
/// benchmarks' writer).
pub fn encode_msgpack_quotes(quotes: &[Quote]) -> Vec<u8> {
    let f = |d: Decimal| d.to_string().parse::<f64>().unwrap_or(0.0);
    let items = quotes
        .iter()
        .map(|q| {
            let secs = q.time.timestamp();
            let nanos = q.time.timestamp_subsec_nanos();
            let mut ts = Vec::with_capacity(12);
            ts.extend_from_slice(&nanos.to_be_bytes());
            ts.extend_from_slice(&secs.to_be_bytes());
            rmpv::Value::Map(vec![
                ("T".into(), "q".into()),
                ("S".into(), q.symbol.as_str().into()),
                ("bx".into(), "V".into()),
                ("bp".into(), rmpv::Value::F64(f(q.bid.get()))),
                ("bs".into(), rmpv::Value::F64(f(q.bid_size.get()))),
                ("ax".into(), "V".into()),
                ("ap".into(), rmpv::Value::F64(f(q.ask.get()))),
                ("as".into(), rmpv::Value::F64(f(q.ask_size.get()))),
                ("t".into(), rmpv::Value::Ext(-1, ts)),
                ("c".into(), rmpv::Value::Array(vec!["R".into()])),
                ("z".into(), "C".into()),
            ])
        })
        .collect();
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &rmpv::Value::Array(items));
    out
}

/// Encodes quotes as a JSON frame, as the server sends them.
pub fn encode_json_quotes(quotes: &[Quote]) -> String {
    let items: Vec<serde_json::Value> = quotes
        .iter()
        .map(|q| {
            let n = |d: Decimal| d.normalize().to_string().parse::<serde_json::Number>().map_or(serde_json::Value::Null, serde_json::Value::Number);
            serde_json::json!({"T": "q", "S": q.symbol.as_str(), "bx": "V", "bp": n(q.bid.get()), "bs": n(q.bid_size.get()),
                "ax": "V", "ap": n(q.ask.get()), "as": n(q.ask_size.get()),
                "t": q.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), "c": ["R"], "z": "C"})
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: the decimal of `Display`'s shortest text.
    fn displayed(value: f64) -> Option<Decimal> {
        Decimal::from_str(&value.to_string()).ok()
    }

    #[test]
    fn floats_become_the_decimals_they_write() {
        // (case, value, expected text)
        let cases = [
            ("a price", 87.66, "87.66"),
            ("a sub-dollar price", 0.0517, "0.0517"),
            ("a whole size", 200.0, "200"),
            ("a fractional size", 0.004, "0.004"),
            ("one tenth", 0.1, "0.1"),
            ("a price of four decimals", 1.2345, "1.2345"),
            ("negative", -3.5, "-3.5"),
            ("zero", 0.0, "0"),
            ("negative zero", -0.0, "0"),
            ("no short form", 0.1 + 0.2, "0.30000000000000004"),
            ("large", 1.5e17, "150000000000000000"),
        ];
        for (case, value, text) in cases {
            let got = decimal_from_f64(value).unwrap();
            assert_eq!(got.to_string(), text, "{case}");
            assert_eq!(Some(got), displayed(value), "{case}");
        }
        assert_eq!(decimal_from_f64(f64::NAN), None);
        assert_eq!(decimal_from_f64(f64::INFINITY), None);
    }

    proptest! {
        #[test]
        fn floats_of_prices_and_sizes_decode_as_display_writes_them(units in -10_000_000_000i64..10_000_000_000, places in 0u32..10) {
            let value = Decimal::new(units, places).to_string().parse::<f64>().unwrap();
            let got = decimal_from_f64(value);
            prop_assert_eq!(got, displayed(value));
            prop_assert_eq!(got.map(|d| d.to_string()), displayed(value).map(|d| d.to_string()));
        }

        #[test]
        fn any_float_decodes_as_display_writes_it(bits in any::<u64>()) {
            let value = f64::from_bits(bits);
            let got = decimal_from_f64(value);
            prop_assert_eq!(got.map(|d| d.to_string()), if value.is_finite() { displayed(value).map(|d| d.to_string()) } else { None });
        }
    }

    #[test]
    fn reference_messages_decode() {
        let frame = br#"[{"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"},
            {"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},
            {"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z"}]"#;
        let messages = decode_json(frame).unwrap();
        let DataMessage::Quote(q) = &messages[0] else { panic!("{messages:?}") };
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string(), q.ask_size.to_string()),
            ("87.66".into(), "87.68".into(), "4".into())
        );
        assert_eq!(q.time.timestamp_subsec_nanos(), 335_689_322);
        assert!(matches!(&messages[1], DataMessage::Trade { price, .. } if price.to_string() == "126.55"));
        assert_eq!(messages[2], DataMessage::Other("b".into()));
        assert_eq!(
            decode_json(br#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#).unwrap(),
            vec![DataMessage::Error { code: 406, msg: "connection limit exceeded".into() }]
        );
        assert_eq!(
            decode_json(br#"[{"T":"success","msg":"connected"}]"#).unwrap(),
            vec![DataMessage::Success("connected".into())]
        );
    }

    #[test]
    fn symbol_cache_shares_validated_symbols_rejects_bad_ones_and_stays_bounded() {
        let mut cache = SymbolCache::default();
        let frame = br#"[{"T":"q","S":"AMD","bp":1,"bs":1,"ap":2,"as":1,"t":"2021-02-22T15:51:45Z"}]"#;
        let first = decode_json_with(frame, &mut cache).unwrap();
        let second = decode_json_with(frame, &mut cache).unwrap();
        assert_eq!(first, decode_json(frame).unwrap());
        let (DataMessage::Quote(a), DataMessage::Quote(b)) = (&first[0], &second[0]) else { panic!("{first:?}") };
        assert!(std::ptr::eq(a.symbol.as_str(), b.symbol.as_str()), "second decode reuses the cached symbol");
        let bad = br#"[{"T":"q","S":"no spaces","bp":1,"bs":1,"ap":2,"as":1,"t":"2021-02-22T15:51:45Z"}]"#;
        assert!(decode_json_with(bad, &mut cache).is_err());
        for i in 0..SymbolCache::CAP + 10 {
            cache.get(Some(&format!("S{i}"))).unwrap();
        }
        assert!(cache.known.len() <= SymbolCache::CAP);
    }

    #[test]
    fn msgpack_round_trips_with_extension_timestamps() {
        let quote = Quote {
            symbol: Symbol::parse("AAPL").unwrap(),
            bid: "228.1".parse().unwrap(),
            bid_size: Qty::new(300.into()),
            ask: "228.12".parse().unwrap(),
            ask_size: Qty::new(500.into()),
            time: chrono::DateTime::from_timestamp(1_772_463_600, 123_456_789).unwrap(),
        };
        let frame = encode_msgpack_quotes(std::slice::from_ref(&quote));
        assert_eq!(decode_msgpack(&frame).unwrap(), vec![DataMessage::Quote(quote.clone())]);
        assert_eq!(
            decode_json(encode_json_quotes(std::slice::from_ref(&quote)).as_bytes()).unwrap(),
            vec![DataMessage::Quote(quote)]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_json(&bytes);
            let _ = decode_msgpack(&bytes);
        }

        #[test]
        fn arbitrary_valid_quotes_round_trip(bid in 1u32..10_000_000, spread in 0u32..1000, size in 1u32..100_000, secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000, sym in "[A-Z]{1,5}") {
            let quote = Quote {
                symbol: Symbol::parse(&sym).unwrap(),
                bid: Price::new(Decimal::new(i64::from(bid), 2)),
                bid_size: Qty::new(size.into()),
                ask: Price::new(Decimal::new(i64::from(bid + spread), 2)),
                ask_size: Qty::new(size.into()),
                time: chrono::DateTime::from_timestamp(secs, nanos).unwrap(),
            };
            let json = encode_json_quotes(std::slice::from_ref(&quote));
            prop_assert_eq!(decode_json(json.as_bytes()).unwrap(), vec![DataMessage::Quote(quote.clone())]);
            prop_assert_eq!(decode_msgpack(&encode_msgpack_quotes(std::slice::from_ref(&quote))).unwrap(), vec![DataMessage::Quote(quote)]);
        }
    }
}
