//! Target weights (what `tranche plan new` reads): a CSV file (`symbol,weight` with a header) or JSON
//! (`{"AAPL": 0.3, ...}` or `[{"symbol": "AAPL", "weight": 0.3}, ...]`).
//!
//! Invariants: weights are read as exact decimals (never through binary floating point); every
//! problem is collected with where it is (`line 4`, `MSFT`, `[2].weight`), never only the first;
//! a returned list has unique valid symbols, weights in 0..=1 and a sum of at most 1 (the rest
//! stays cash), and is not empty.

use rust_decimal::Decimal;
use serde_json::Value;
use tranche_domain::money::{decimal_from_f64, parse_decimal};
use tranche_domain::Symbol;

/// One symbol's target weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The symbol.
    pub symbol: Symbol,
    /// Its share of the portfolio value (0..=1).
    pub weight: Decimal,
}

/// Every problem found in a targets file, each with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProblems(pub Vec<String>);

impl std::fmt::Display for TargetProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        write!(f, "the targets have {n} problem{}:", if n == 1 { "" } else { "s" })?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// A target as read, before the cross-row rules: where it is, and its raw symbol and weight.
struct Row {
    at: String,
    symbol: Result<Symbol, String>,
    weight: Result<Decimal, String>,
}

/// Parses targets text; JSON when it starts with `{` or `[`, CSV otherwise.
pub fn parse(text: &str) -> Result<Vec<Target>, TargetProblems> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let rows =
        if trimmed.starts_with('{') || trimmed.starts_with('[') { json_rows(trimmed) } else { csv_rows(trimmed) }?;
    check(rows)
}

fn symbol(text: &str) -> Result<Symbol, String> {
    Symbol::parse(text).map_err(|e| e.to_string())
}

fn weight_text(text: &str) -> Result<Decimal, String> {
    let t = text.trim();
    if let Some(percent) = t.strip_suffix('%') {
        return parse_decimal(percent).map(|p| p / Decimal::ONE_HUNDRED);
    }
    parse_decimal(t)
}

fn weight_json(value: &Value) -> Result<Decimal, String> {
    match value {
        Value::String(s) => weight_text(s),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Decimal::from(i)),
            None => n.as_f64().map_or_else(|| parse_decimal(&n.to_string()), decimal_from_f64),
        },
        other => Err(format!("weight must be a number, got {other}")),
    }
}

fn csv_rows(text: &str) -> Result<Vec<Row>, TargetProblems> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(TargetProblems(vec![
            "the file is empty: expected a `symbol,weight` header and one row per symbol".into(),
        ]));
    };
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
    let find = |name: &str| columns.iter().position(|c| c == name);
    let (Some(symbol_at), Some(weight_at)) = (find("symbol"), find("weight")) else {
        return Err(TargetProblems(vec![format!(
            "line {header_line}: the header `{header}` needs a `symbol` and a `weight` column (e.g. `symbol,weight`)"
        )]));
    };
    let mut problems = Vec::new();
    let rows = lines
        .map(|(number, line)| {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            // A cell past the header's (`AAPL,0,5`: 0.5 with a decimal comma) would be dropped
            // and the weight read as 0, selling a holding to zero; trailing empty cells are fine.
            let used = cells.iter().rposition(|c| !c.is_empty()).map_or(0, |last| last + 1);
            if used > columns.len() {
                problems.push(format!(
                    "line {number}: {used} cells where the header names {} (a decimal comma? write 0.5, not 0,5)",
                    columns.len()
                ));
            }
            let cell = |at: usize, name: &str| {
                cells.get(at).copied().filter(|c| !c.is_empty()).ok_or_else(|| format!("no {name}"))
            };
            Row {
                at: format!("line {number}"),
                symbol: cell(symbol_at, "symbol").and_then(symbol),
                weight: cell(weight_at, "weight").and_then(weight_text),
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(TargetProblems(problems))
    }
}

/// The object form's entries in the file's order, a key named twice kept twice (a JSON map
/// keeps only the last: `{"AAPL": 0.6, "AAPL": 0.1}` would read as 0.1 without a word).
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of symbol -> weight")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn json_rows(text: &str) -> Result<Vec<Row>, TargetProblems> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| TargetProblems(vec![format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column())]))?;
    match value {
        Value::Object(_) => {
            let Entries(entries) = serde_json::from_str(text).map_err(|e| TargetProblems(vec![e.to_string()]))?;
            Ok(entries
                .iter()
                .map(|(name, weight)| Row {
                    at: format!("`{name}`"),
                    symbol: symbol(name),
                    weight: weight_json(weight),
                })
                .collect())
        }
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let field = |name: &str| item.get(name).filter(|v| !v.is_null()).ok_or_else(|| format!("no {name}"));
                Row {
                    at: format!("[{i}]"),
                    symbol: field("symbol")
                        .and_then(|v| v.as_str().ok_or_else(|| format!("symbol must be a string, got {v}")))
                        .and_then(symbol),
                    weight: field("weight").and_then(weight_json),
                }
            })
            .collect()),
        other => Err(TargetProblems(vec![format!(
            "expected an object of symbol -> weight or a list of {{\"symbol\", \"weight\"}}, got {other}"
        )])),
    }
}

/// The rules across rows: each row valid, symbols unique, weights 0..=1, sum at most 1.
fn check(rows: Vec<Row>) -> Result<Vec<Target>, TargetProblems> {
    let mut problems = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut first_at: Vec<(Symbol, String)> = Vec::new();
    let mut sum = Decimal::ZERO;
    if rows.is_empty() {
        problems.push("no targets: list at least one symbol (weight 0 sells a position to zero)".to_owned());
    }
    for row in rows {
        let symbol = row.symbol.map_err(|e| problems.push(format!("{}: {e}", row.at))).ok();
        let weight = row.weight.map_err(|e| problems.push(format!("{}: {e}", row.at))).ok();
        if let Some(w) = weight {
            if w < Decimal::ZERO {
                problems.push(format!("{}: weight {w} is negative; weights must be 0 or more", row.at));
            } else {
                if w > Decimal::ONE {
                    problems.push(format!("{}: weight {w} is above 1 (weights are fractions: 0.25 = 25%)", row.at));
                }
                sum = sum.saturating_add(w);
            }
        }
        if let Some(s) = &symbol {
            if let Some((_, first)) = first_at.iter().find(|(seen, _)| seen == s) {
                problems.push(format!("{}: duplicate symbol {s}: already at {first}", row.at));
            } else {
                first_at.push((s.clone(), row.at.clone()));
            }
        }
        if let (Some(symbol), Some(weight)) = (symbol, weight) {
            targets.push(Target { symbol, weight });
        }
    }
    if sum > Decimal::ONE {
        problems.push(format!("the weights add up to {sum}; at most 1 is allowed (whatever is left stays cash)"));
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(TargetProblems(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(targets: &[Target]) -> Vec<(String, String)> {
        targets.iter().map(|t| (t.symbol.to_string(), t.weight.normalize().to_string())).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(s, w)| ((*s).to_owned(), (*w).to_owned())).collect()
    }

    #[test]
    fn the_three_formats_read_the_same_targets() {
        let want = pairs(&[("AAPL", "0.3"), ("SPY", "0.5")]);
        let csv = "# my targets\nSymbol, Weight\naapl,0.3\n\nSPY, 50%\n";
        assert_eq!(weights(&parse(csv).unwrap()), want);
        assert_eq!(weights(&parse(r#"{"AAPL": 0.3, "spy": "0.5"}"#).unwrap()), want);
        let list = r#"[{"symbol": "AAPL", "weight": 0.3}, {"symbol": "SPY", "weight": 0.5, "note": "core"}]"#;
        assert_eq!(weights(&parse(list).unwrap()), want);
    }

    #[test]
    fn extra_csv_columns_are_ignored_and_order_is_free() {
        let csv = "weight,name,symbol\n0.1,Apple,AAPL\n";
        assert_eq!(weights(&parse(csv).unwrap()), pairs(&[("AAPL", "0.1")]));
    }

    #[test]
    fn every_problem_is_listed_with_where_it_is() {
        let csv = "symbol,weight\nAAPL,0.6\nBAD SYMBOL,0.1\nMSFT,-0.2\naapl,0.3\nSPY,lots\nQQQ\nTLT,1.5\n";
        let problems = parse(csv).unwrap_err();
        let text = problems.to_string();
        for want in [
            "line 3: symbol `BAD SYMBOL`",
            "line 4: weight -0.2 is negative",
            "line 5: duplicate symbol AAPL: already at line 2",
            "line 6: `lots` is not a decimal number",
            "line 7: no weight",
            "line 8: weight 1.5 is above 1",
            "the weights add up to 2.5",
        ] {
            assert!(text.contains(want), "missing `{want}` in {text}");
        }
        assert_eq!(problems.0.len(), 7, "{text}");
    }

    /// `AAPL,0,5` (0.5 typed with a decimal comma) has a cell the header does not name: read as
    /// weight 0 it would sell a held AAPL to zero. Trailing empty cells (`AAPL,0.5,`) are fine.
    #[test]
    fn a_row_with_more_cells_than_the_header_is_refused() {
        let problems = parse("symbol,weight\nAAPL,0,5\nMSFT,0.2,\nSPY,0.1, ,\n").unwrap_err();
        assert_eq!(
            problems.0,
            vec!["line 2: 3 cells where the header names 2 (a decimal comma? write 0.5, not 0,5)"],
            "{problems}"
        );
    }

    /// In the object form a symbol named twice is a problem, as in the other forms (JSON keeps
    /// the last silently), and the targets keep the file's order.
    #[test]
    fn the_object_form_refuses_a_symbol_named_twice_and_keeps_the_files_order() {
        let problems = parse(r#"{"AAPL": 0.6, "MSFT": 0.3, "aapl": 0.1}"#).unwrap_err();
        assert_eq!(problems.0, vec!["`aapl`: duplicate symbol AAPL: already at `AAPL`"], "{problems}");
        let problems = parse(r#"{"AAPL": 0.6, "AAPL": 0.1}"#).unwrap_err();
        assert_eq!(problems.0, vec!["`AAPL`: duplicate symbol AAPL: already at `AAPL`"], "{problems}");
        assert_eq!(
            weights(&parse(r#"{"SPY": 0.5, "AAPL": 0.25, "MSFT": 0.25}"#).unwrap()),
            pairs(&[("SPY", "0.5"), ("AAPL", "0.25"), ("MSFT", "0.25")])
        );
    }

    #[test]
    fn a_sum_above_one_is_refused_and_exactly_one_is_fine() {
        assert!(parse(r#"{"A": 0.5, "B": 0.5}"#).is_ok());
        let problems = parse(r#"{"A": 0.6, "B": 0.5}"#).unwrap_err();
        assert_eq!(problems.0, vec!["the weights add up to 1.1; at most 1 is allowed (whatever is left stays cash)"]);
    }

    #[test]
    fn shapes_that_are_not_targets_are_explained() {
        assert!(parse("").unwrap_err().0[0].contains("the file is empty"));
        assert!(parse("ticker,pct\nAAPL,1\n").unwrap_err().0[0].contains("needs a `symbol` and a `weight` column"));
        assert!(parse("{\"AAPL\": ").unwrap_err().0[0].contains("not valid JSON"));
        assert!(parse("[]").unwrap_err().0[0].contains("no targets"));
        assert!(parse(r#"[{"weight": true}]"#).unwrap_err().to_string().contains("[0]: no symbol"));
    }
}
