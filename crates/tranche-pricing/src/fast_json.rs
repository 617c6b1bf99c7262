//! The hot path of the JSON codec: a frame that is an array of plain quote objects (what a busy
//! feed sends almost every time) read by a small single-pass scanner instead of a general JSON
//! deserializer.
//!
//! Invariant: it answers only when the frame is well-formed JSON of that one shape (an array of
//! objects whose keys and string values hold no escapes, whose numbers parse, whose arrays hold
//! only strings or numbers, with every quote field present once, `T` = `q`, and none of the keys
//! the general decoder reads for other messages), and then it
//! answers exactly what the general decoder would; for anything else it returns `None` and the
//! general decoder decides, errors included. It never panics: every index is checked.

use tranche_domain::{Price, Qty, Quote};

use crate::codec::{number_text, timestamp, DataMessage, SymbolCache};

/// A cursor over the frame's bytes.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next non-blank byte, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_ws();
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// The next non-blank byte, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.at).copied()
    }

    /// A string without escapes or control characters (the opening quote already consumed).
    fn string_body(&mut self) -> Option<&'a str> {
        let start = self.at;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let text = std::str::from_utf8(self.bytes.get(start..self.at)?).ok()?;
        self.at += 1;
        Some(text)
    }

    /// A JSON number's text (validated later by parsing it; JSON's grammar is checked here).
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        self.digits();
        let int = self.bytes.get(int_start..self.at)?;
        // No empty integer part, no leading zero before more digits.
        if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
            return None;
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        std::str::from_utf8(self.bytes.get(start..self.at)?).ok()
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        self.at - start
    }

    /// Skips an array of strings and numbers (the opening bracket already consumed).
    fn skip_flat_array(&mut self) -> Option<()> {
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            match self.next()? {
                b'"' => {
                    self.string_body()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.at -= 1;
                    self.number()?;
                }
                _ => return None,
            }
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }
}

/// The fields of one quote object, as text.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a str>,
    symbol: Option<&'a str>,
    bp: Option<&'a str>,
    bs: Option<&'a str>,
    ap: Option<&'a str>,
    asz: Option<&'a str>,
    t: Option<&'a str>,
}

/// Stores `value` in `slot`, refusing a second occurrence (the general decoder refuses
/// duplicate fields too).
fn set<'a>(slot: &mut Option<&'a str>, value: &'a str) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// One object (the opening brace already consumed) as a quote.
fn quote_object(s: &mut Scanner<'_>, symbols: &mut SymbolCache) -> Option<Quote> {
    let mut f = Fields::default();
    if s.peek()? == b'}' {
        return None;
    }
    loop {
        if s.next()? != b'"' {
            return None;
        }
        let key = s.string_body()?;
        // Keys the general decoder reads with a type of its own (trades' `p` and `s`, control
        // messages' fields) are its to judge.
        if matches!(key, "p" | "s" | "msg" | "code" | "quotes") {
            return None;
        }
        if s.next()? != b':' {
            return None;
        }
        match s.next()? {
            b'"' => {
                let value = s.string_body()?;
                match key {
                    "T" => set(&mut f.kind, value)?,
                    "S" => set(&mut f.symbol, value)?,
                    "t" => set(&mut f.t, value)?,
                    "bp" | "bs" | "ap" | "as" => return None,
                    _ => {}
                }
            }
            b'-' | b'0'..=b'9' => {
                s.at -= 1;
                let value = s.number()?;
                match key {
                    "bp" => set(&mut f.bp, value)?,
                    "bs" => set(&mut f.bs, value)?,
                    "ap" => set(&mut f.ap, value)?,
                    "as" => set(&mut f.asz, value)?,
                    "T" | "S" | "t" => return None,
                    _ => {}
                }
            }
            b'[' if !matches!(key, "T" | "S" | "t" | "bp" | "bs" | "ap" | "as") => s.skip_flat_array()?,
            _ => return None,
        }
        match s.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    if f.kind? != "q" {
        return None;
    }
    Some(Quote {
        symbol: symbols.get(f.symbol).ok()?,
        bid: Price::new(number_text(f.bp?)?),
        bid_size: Qty::new(number_text(f.bs?)?),
        ask: Price::new(number_text(f.ap?)?),
        ask_size: Qty::new(number_text(f.asz?)?),
        time: timestamp(f.t?).ok()?,
    })
}

/// The frame as quotes, when it is an array of plain quote objects; `None` otherwise.
pub(crate) fn quotes(frame: &[u8], symbols: &mut SymbolCache) -> Option<Vec<DataMessage>> {
    let mut s = Scanner { bytes: frame, at: 0 };
    if s.next()? != b'[' {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() / 128 + 1);
    if s.peek()? == b']' {
        return None;
    }
    loop {
        if s.next()? != b'{' {
            return None;
        }
        out.push(DataMessage::Quote(quote_object(&mut s, symbols)?));
        match s.next()? {
            b',' => {}
            b']' => break,
            _ => return None,
        }
    }
    // Nothing but blanks after the array.
    s.skip_ws();
    (s.at == frame.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::decode_json_general;

    fn general(frame: &[u8]) -> Result<Vec<DataMessage>, crate::codec::CodecError> {
        let first = frame.iter().find(|b| !b.is_ascii_whitespace()).copied();
        decode_json_general(frame, first, &mut SymbolCache::default())
    }

    const KEYS: &[&str] = &["T", "S", "bp", "bs", "ap", "as", "t", "c", "z", "p", "s", "msg", "code", "quotes", "x"];
    const VALUES: &[&str] = &[
        "\"q\"",
        "\"t\"",
        "\"AAPL\"",
        "\"2022-04-12T17:16:36.390749849Z\"",
        "165.5",
        "1",
        "-2",
        "1e2",
        "[\"R\"]",
        "[]",
        "[1,\"x\"]",
        "{}",
        "null",
        "true",
        "\"x\"",
    ];

    const FRAME: &str = r#"[{"T":"q","S":"AAPL","bx":"V","bp":165.5,"bs":1,"ax":"V","ap":170.34,"as":1,"t":"2022-04-12T17:16:36.390749849Z","c":["R"],"z":"C"},
        {"T":"q","S":"MSFT","bp":1e2,"bs":300,"ap":100.01,"as":2,"t":"2022-04-12T17:16:36Z","c":[]}]"#;

    #[test]
    fn the_usual_frame_takes_the_fast_path_and_agrees() {
        let fast = quotes(FRAME.as_bytes(), &mut SymbolCache::default()).expect("plain quotes");
        assert_eq!(fast.len(), 2);
        assert_eq!(Ok(fast), general(FRAME.as_bytes()));
    }

    #[test]
    fn anything_else_is_left_to_the_general_decoder() {
        for frame in [
            r#"[{"T":"success","msg":"authenticated"}]"#,
            r#"[{"T":"q","S":"AAPL","bp":1,"bs":1,"ap":1,"as":1}]"#,
            r#"[{"T":"q","S":"AAPL","bp":1,"bp":2,"bs":1,"ap":1,"as":1,"t":"2022-04-12T17:16:36Z"}]"#,
            r#"[{"T":"q","S":"A\u0041","bp":1,"bs":1,"ap":1,"as":1,"t":"2022-04-12T17:16:36Z"}]"#,
            r#"[{"T":"q","S":"AAPL","bp":01,"bs":1,"ap":1,"as":1,"t":"2022-04-12T17:16:36Z"}]"#,
            r#"[{"T":"q","S":"AAPL","bp":1,"bs":1,"ap":1,"as":1,"t":"2022-04-12T17:16:36Z",}]"#,
            r#"[{"T":"q","S":"AAPL","bp":1,"bs":1,"ap":1,"as":1,"t":"2022-04-12T17:16:36Z","x":{"y":1}}]"#,
            r#"[{"T":"q","S":"AAPL","bp":1,"bs":1,"ap":1,"as":1,"t":"2022-04-12T17:16:36Z"}] x"#,
            "[]",
            "[",
        ] {
            assert_eq!(quotes(frame.as_bytes(), &mut SymbolCache::default()), None, "{frame}");
        }
    }

    proptest! {
        /// Whatever the bytes (the usual frame with a few bytes changed, cut short or not), the
        /// fast path either declines or says exactly what the general decoder says.
        #[test]
        fn the_fast_path_never_disagrees(
            edits in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
            cut in 0usize..400,
        ) {
            let mut frame = FRAME.as_bytes().to_vec();
            for (at, byte) in edits {
                let at = at % frame.len();
                frame[at] = byte;
            }
            // Half the cases cut the frame short.
            if cut % 2 == 1 && cut < frame.len() {
                frame.truncate(cut);
            }
            if let Some(fast) = quotes(&frame, &mut SymbolCache::default()) {
                prop_assert_eq!(Ok(fast), general(&frame));
            }
        }

        /// Frames of quote objects with extra fields from the keys both decoders know spliced in
        /// anywhere (duplicates, other messages' keys and every kind of value included) and
        /// sometimes a field left out: the fast path declines or agrees.
        #[test]
        fn structured_frames_never_make_it_disagree(
            objects in proptest::collection::vec(
                (
                    proptest::collection::vec((0usize..KEYS.len(), 0usize..VALUES.len(), 0usize..8), 0..3),
                    proptest::option::of(0usize..7),
                ),
                1..4,
            ),
        ) {
            let base = [
                ("T", "\"q\""),
                ("S", "\"AAPL\""),
                ("bp", "165.5"),
                ("bs", "1"),
                ("ap", "170.34"),
                ("as", "2"),
                ("t", "\"2022-04-12T17:16:36.390749849Z\""),
            ];
            let frame = format!(
                "[{}]",
                objects
                    .iter()
                    .map(|(extras, dropped)| {
                        let mut fields: Vec<String> = base
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| Some(*i) != *dropped)
                            .map(|(_, (k, v))| format!("\"{k}\":{v}"))
                            .collect();
                        for &(k, v, at) in extras {
                            fields.insert(at.min(fields.len()), format!("\"{}\":{}", KEYS[k], VALUES[v]));
                        }
                        format!("{{{}}}", fields.join(","))
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if let Some(fast) = quotes(frame.as_bytes(), &mut SymbolCache::default()) {
                prop_assert_eq!(Ok(fast), general(frame.as_bytes()), "{}", frame);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_fast_path(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = quotes(&bytes, &mut SymbolCache::default());
        }
    }
}
