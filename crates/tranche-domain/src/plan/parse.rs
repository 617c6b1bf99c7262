//! Reading a plan from JSON: every field is extracted on its own so that all problems are
//! collected, then the shared rules of [`super::validate`] run on whatever parsed.

use serde_json::{Map, Value};

use super::validate::{check_duplicates, check_header, check_item, HeaderParts, ItemParts};
use super::{PlanIssue, PlanIssues, PlanItem, RebalancePlan, Urgency};
use crate::money::{decimal_from_f64, parse_decimal, Usd, Weight};
use crate::side::Action;
use crate::symbol::Symbol;
use crate::time::{parse_timestamp, Timestamp};

/// A JSON object being read, with the path prefix of its fields and the issue list.
struct Reader<'a, 'i> {
    map: &'a Map<String, Value>,
    prefix: String,
    issues: &'i mut Vec<PlanIssue>,
}

impl<'a> Reader<'a, '_> {
    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn field(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn convert<T>(&mut self, name: &str, value: &'a Value, conv: fn(&'a Value) -> Result<T, String>) -> Option<T> {
        match conv(value) {
            Ok(v) => Some(v),
            Err(message) => {
                let path = self.path(name);
                self.issues.push(PlanIssue { path, message });
                None
            }
        }
    }

    fn required<T>(&mut self, name: &str, conv: fn(&'a Value) -> Result<T, String>) -> Option<T> {
        if let Some(value) = self.field(name) {
            self.convert(name, value, conv)
        } else {
            let path = self.path(name);
            self.issues.push(PlanIssue { path, message: "is required".into() });
            None
        }
    }

    fn optional<T>(&mut self, name: &str, conv: fn(&'a Value) -> Result<T, String>) -> Option<T> {
        let value = self.field(name)?;
        self.convert(name, value, conv)
    }
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

fn text(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| format!("must be a string, got {}", describe(value)))
}

fn decimal(value: &Value) -> Result<rust_decimal::Decimal, String> {
    match value {
        Value::String(s) => parse_decimal(s),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Ok(i.into()),
            (_, Some(u), _) => Ok(u.into()),
            (_, _, Some(f)) => decimal_from_f64(f),
            _ => parse_decimal(&n.to_string()),
        },
        other => Err(format!("must be a decimal number (string or number), got {}", describe(other))),
    }
}

fn usd(value: &Value) -> Result<Usd, String> {
    decimal(value).map(Usd::new)
}

fn weight(value: &Value) -> Result<Weight, String> {
    decimal(value).map(Weight::new)
}

fn timestamp(value: &Value) -> Result<Timestamp, String> {
    parse_timestamp(text(value)?)
}

fn symbol(value: &Value) -> Result<Symbol, String> {
    Symbol::parse(text(value)?).map_err(|e| e.to_string())
}

fn action(value: &Value) -> Result<Action, String> {
    text(value)?.parse()
}

fn urgency(value: &Value) -> Result<Urgency, String> {
    match text(value)?.trim().to_ascii_uppercase().as_str() {
        "LOW" => Ok(Urgency::Low),
        "NORMAL" => Ok(Urgency::Normal),
        "HIGH" => Ok(Urgency::High),
        "URGENT" => Ok(Urgency::Urgent),
        other => Err(format!("`{other}` is not an urgency; expected one of LOW, NORMAL, HIGH, URGENT")),
    }
}

fn small_int<T: TryFrom<u64>>(value: &Value) -> Result<T, String> {
    value
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("must be a small non-negative whole number, got {}", describe(value)))
}

fn object(value: &Value) -> Result<&Map<String, Value>, String> {
    value.as_object().ok_or_else(|| format!("must be an object, got {}", describe(value)))
}

fn array(value: &Value) -> Result<&Vec<Value>, String> {
    value.as_array().ok_or_else(|| format!("must be a list of items, got {}", describe(value)))
}

fn read_item(index: usize, value: &Value, issues: &mut Vec<PlanIssue>) -> Option<PlanItem> {
    let Some(map) = value.as_object() else {
        issues.push(PlanIssue {
            path: format!("items[{index}]"),
            message: format!("must be an object, got {}", describe(value)),
        });
        return None;
    };
    let mut r = Reader { map, prefix: format!("items[{index}]."), issues };
    let symbol = r.required("symbol", symbol);
    let current_weight = r.required("current_weight", weight);
    let target_weight = r.required("target_weight", weight);
    let weight_diff = r.optional("weight_diff", weight);
    let target_value = r.required("target_value", usd);
    let current_value = r.required("current_value", usd);
    let trade_amount = r.required("trade_amount", usd);
    let action = r.required("action", action);
    let priority = r.optional("priority", small_int::<u8>);
    let parts =
        ItemParts { current_weight, target_weight, target_value, current_value, trade_amount, action, priority };
    check_item(index, &parts, issues);
    let (current_weight, target_weight) = (current_weight?, target_weight?);
    Some(PlanItem {
        symbol: symbol?,
        current_weight,
        target_weight,
        weight_diff: weight_diff.or_else(|| target_weight.checked_sub(current_weight)).unwrap_or_default(),
        target_value: target_value?,
        current_value: current_value?,
        trade_amount: trade_amount?,
        action: action?,
        priority,
    })
}

/// The plan-level fields that parsed (`None` = missing or already reported).
struct Header<'a> {
    schema_version: String,
    correlation_id: Option<&'a str>,
    causation_id: Option<&'a str>,
    timestamp: Option<Timestamp>,
    plan_id: Option<&'a str>,
    raw_items: Option<&'a Vec<Value>>,
    total_portfolio_value: Option<Usd>,
    total_trade_value: Option<Usd>,
    max_drift_tolerance: Option<Weight>,
    execution_urgency: Urgency,
    estimated_duration_minutes: Option<u32>,
    metadata: Option<Map<String, Value>>,
}

fn read_header<'a>(map: &'a Map<String, Value>, issues: &mut Vec<PlanIssue>) -> Header<'a> {
    let mut r = Reader { map, prefix: String::new(), issues };
    let header = Header {
        schema_version: r.optional("schema_version", text).unwrap_or("1.0").to_owned(),
        correlation_id: r.required("correlation_id", text),
        causation_id: r.required("causation_id", text),
        timestamp: r.required("timestamp", timestamp),
        plan_id: r.required("plan_id", text),
        raw_items: r.required("items", array),
        total_portfolio_value: r.required("total_portfolio_value", usd),
        total_trade_value: r.optional("total_trade_value", usd),
        max_drift_tolerance: r.optional("max_drift_tolerance", weight),
        execution_urgency: r.optional("execution_urgency", urgency).unwrap_or(Urgency::Normal),
        estimated_duration_minutes: r.optional("estimated_duration_minutes", small_int::<u32>),
        metadata: r.optional("metadata", object).cloned(),
    };
    if let Some(attribution) = header.metadata.as_ref().and_then(|m| m.get("strategy_attribution")) {
        if !attribution.is_null() && !attribution.as_object().is_some_and(|m| m.values().all(Value::is_object)) {
            issues.push(PlanIssue {
                path: "metadata.strategy_attribution".into(),
                message: "must map each symbol to an object of strategy name -> weight".into(),
            });
        }
    }
    header
}

/// Reads and validates a plan, collecting every problem.
pub(super) fn plan_from_value(value: &Value) -> Result<RebalancePlan, PlanIssues> {
    let mut issues = Vec::new();
    let Some(map) = value.as_object() else {
        return Err(PlanIssues(vec![PlanIssue {
            path: "(plan)".into(),
            message: format!("must be a JSON object, got {}", describe(value)),
        }]));
    };
    let header = read_header(map, &mut issues);
    let raw_items: &[Value] = header.raw_items.map_or(&[], Vec::as_slice);
    let items: Vec<Option<PlanItem>> =
        raw_items.iter().enumerate().map(|(i, v)| read_item(i, v, &mut issues)).collect();
    let parsed_symbols = items.iter().enumerate().filter_map(|(i, item)| item.as_ref().map(|it| (i, &it.symbol)));
    check_duplicates(parsed_symbols, &mut issues);
    let parts = HeaderParts {
        ids: vec![
            ("plan_id", header.plan_id),
            ("correlation_id", header.correlation_id),
            ("causation_id", header.causation_id),
        ],
        total_portfolio_value: header.total_portfolio_value,
        max_drift_tolerance: header.max_drift_tolerance,
        estimated_duration_minutes: header.estimated_duration_minutes,
        // A missing or malformed `items` was reported already; do not add "must not be empty".
        item_count: if header.raw_items.is_some() { raw_items.len() } else { 1 },
    };
    check_header(&parts, &mut issues);

    let (Some(correlation_id), Some(causation_id), Some(timestamp), Some(plan_id), Some(total_portfolio_value), true) = (
        header.correlation_id,
        header.causation_id,
        header.timestamp,
        header.plan_id,
        header.total_portfolio_value,
        issues.is_empty(),
    ) else {
        return Err(PlanIssues(issues));
    };
    let items: Vec<PlanItem> = items.into_iter().flatten().collect();
    let total_trade_value = header.total_trade_value.unwrap_or_else(|| {
        items.iter().try_fold(Usd::ZERO, |acc, item| acc.checked_add(item.trade_amount)).unwrap_or_default()
    });
    Ok(RebalancePlan {
        schema_version: header.schema_version,
        correlation_id: correlation_id.to_owned(),
        causation_id: causation_id.to_owned(),
        timestamp,
        plan_id: plan_id.to_owned(),
        items,
        total_portfolio_value,
        total_trade_value,
        max_drift_tolerance: header.max_drift_tolerance.unwrap_or(Weight::new(rust_decimal::Decimal::new(5, 2))),
        execution_urgency: header.execution_urgency,
        estimated_duration_minutes: header.estimated_duration_minutes,
        metadata: header.metadata,
    })
}
