//! Account activities as Alpaca pages them: `GET /v2/account/activities` (`activity_types` or
//! `category`), `GET /v2/account/activities/{activity_type}` and its `FILL` case, with `after`,
//! `until`, `date`, `direction` (`desc` by default), `page_size` (default and maximum 100
//! unless `date` is given) and `page_token`. The simulator books only executions, so every
//! activity is a FILL: one per execution of any order in the account, whoever sent it.
//!
//! Invariants: activities are totally ordered by transaction time, then activity id, then
//! booking order, and `desc` is exactly the reverse of `asc`; a page starts strictly after its
//! `page_token` in the chosen direction, so following the last id of each page visits every
//! activity once, none skipped or repeated (ids are unique: each ends in the id the simulator
//! reports for its activity, the execution's own or, with `activity_ids_unrelated`, one of its
//! own); a malformed parameter is a 422 with Alpaca's body and never a panic.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde_json::Value;
use tranche_domain::{OrderStatus, Qty, Timestamp};

use super::{error, ok, read};
use crate::render::{self, FillProgress};
use crate::State;

/// The most activities a page holds (and the default page size) when no `date` is given.
pub const MAX_PAGE_SIZE: usize = 100;

/// Every activity type Alpaca documents; the simulator produces only `FILL`.
const ACTIVITY_TYPES: &[&str] = &[
    "FILL", "TRANS", "MISC", "ACATC", "ACATS", "CFEE", "CSD", "CSR", "CSW", "DIV", "DIVCGL", "DIVCGS", "DIVFEE",
    "DIVFT", "DIVNRA", "DIVROC", "DIVTW", "DIVTXEX", "FEE", "INT", "INTNRA", "INTTW", "JNL", "JNLC", "JNLS", "MA",
    "NC", "OPASN", "OPEXP", "OPXRC", "PTC", "PTR", "REORG", "SC", "SSO", "SSP",
];

/// The query string as pairs, or why it could not be read.
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Which way the pages run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Asc,
    Desc,
}

/// The paging and time filters of a request.
#[derive(Debug, Clone)]
struct Paging {
    after: Option<Timestamp>,
    until: Option<Timestamp>,
    date: Option<NaiveDate>,
    direction: Direction,
    /// `None`: every activity (a `date` without `page_size`).
    page_size: Option<usize>,
    page_token: Option<String>,
}

/// One activity: its place in the order and its JSON.
#[derive(Debug, Clone)]
struct Activity {
    time: Timestamp,
    id: String,
    body: Value,
}

fn invalid(message: &str) -> Response {
    error(422, 40_010_001, message)
}

/// The last value given for `name`; an empty value counts as absent.
fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
}

/// A date (midnight US/Eastern) or a timestamp.
fn instant(name: &str, text: &str) -> Result<Timestamp, Response> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        if let Some(t) = render::eastern_local(&midnight) {
            return Ok(t);
        }
    }
    tranche_domain::time::parse_timestamp(text).map_err(|e| invalid(&format!("invalid {name}: {e}")))
}

impl Paging {
    fn parse(pairs: &[(String, String)]) -> Result<Self, Response> {
        let after = param(pairs, "after").map(|t| instant("after", t)).transpose()?;
        let until = param(pairs, "until").map(|t| instant("until", t)).transpose()?;
        let date =
            param(pairs, "date").map(|d| instant("date", d).map(|t| render::in_eastern(t).date_naive())).transpose()?;
        let direction = match param(pairs, "direction") {
            None | Some("desc") => Direction::Desc,
            Some("asc") => Direction::Asc,
            Some(other) => return Err(invalid(&format!("invalid direction: {other} (expected asc or desc)"))),
        };
        let page_size = match param(pairs, "page_size") {
            None => date.is_none().then_some(MAX_PAGE_SIZE),
            Some(text) => match text.parse::<usize>() {
                Ok(0) | Err(_) => return Err(invalid(&format!("invalid page_size: {text}"))),
                // With a date there is no maximum, as Alpaca documents.
                Ok(n) if date.is_some() => Some(n),
                Ok(n) => Some(n.min(MAX_PAGE_SIZE)),
            },
        };
        let page_token = param(pairs, "page_token").map(str::to_owned);
        Ok(Self { after, until, date, direction, page_size, page_token })
    }

    /// Where the page starts: the token's activity when it is one of `sorted`, else the time its
    /// id carries (a token is `<Eastern time to the ms>::<id>`).
    fn cursor(&self, sorted: &[Activity]) -> Result<Option<(Timestamp, String)>, Response> {
        let Some(token) = &self.page_token else { return Ok(None) };
        if let Some(a) = sorted.iter().find(|a| &a.id == token) {
            return Ok(Some((a.time, a.id.clone())));
        }
        let time = token
            .split_once("::")
            .and_then(|(t, _)| NaiveDateTime::parse_from_str(t, render::ACTIVITY_ID_TIME).ok())
            .and_then(|t| render::eastern_local(&t))
            .ok_or_else(|| invalid(&format!("invalid page_token: {token}")))?;
        Ok(Some((time, token.clone())))
    }

    /// The page of `all` this request asks for.
    fn page(&self, mut all: Vec<Activity>) -> Result<Vec<Value>, Response> {
        // Stable: activities with the same time and id keep their booking order.
        all.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        let cursor = self.cursor(&all)?;
        let mut kept: Vec<Activity> = all
            .into_iter()
            .filter(|a| self.after.is_none_or(|t| a.time > t))
            .filter(|a| self.until.is_none_or(|t| a.time < t))
            .filter(|a| self.date.is_none_or(|d| render::in_eastern(a.time).date_naive() == d))
            .filter(|a| match (&cursor, self.direction) {
                (None, _) => true,
                (Some((t, id)), Direction::Asc) => (a.time, &a.id) > (*t, id),
                (Some((t, id)), Direction::Desc) => (a.time, &a.id) < (*t, id),
            })
            .collect();
        if self.direction == Direction::Desc {
            kept.reverse();
        }
        kept.truncate(self.page_size.unwrap_or(usize::MAX));
        Ok(kept.into_iter().map(|a| a.body).collect())
    }
}

/// Every execution in the account as a FILL activity, in booking order, each saying where its
/// order stood right after it; the id ends in the execution id the simulator reports for the
/// activity (which may differ from the trade update's).
fn fills(sim: &mut tranche_sim::Sim) -> Vec<Activity> {
    let fills = sim.fill_activities(chrono::DateTime::UNIX_EPOCH);
    let last: HashMap<&str, usize> = fills.iter().enumerate().map(|(i, f)| (f.order_id.as_str(), i)).collect();
    let mut orders = HashMap::new();
    let mut cum: HashMap<&str, Decimal> = HashMap::new();
    let mut out = Vec::with_capacity(fills.len());
    for (i, f) in fills.iter().enumerate() {
        let order = orders.entry(f.order_id.as_str()).or_insert_with(|| sim.order(&f.order_id).ok());
        let filled = cum.entry(f.order_id.as_str()).or_default();
        *filled += f.qty.get();
        let completes = last.get(f.order_id.as_str()) == Some(&i)
            && order.as_ref().is_some_and(|o| o.status == OrderStatus::Filled);
        let ordered = order.as_ref().and_then(|o| o.qty).map(Qty::get);
        let leaves_qty = match ordered {
            Some(q) => Some(Qty::new((q - *filled).max(Decimal::ZERO))),
            None if completes => Some(Qty::ZERO),
            None => None,
        };
        let progress = FillProgress { cum_qty: Qty::new(*filled), leaves_qty, completes };
        out.push(Activity {
            time: f.time,
            id: render::activity_id(f.time, f.execution_id.as_str()),
            body: render::fill_activity(f, &progress),
        });
    }
    out
}

/// Which activities a request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// FILL among the requested types: the executions.
    Fills,
    /// Only types the simulator never books: nothing.
    Nothing,
}

fn activity_type(text: &str) -> Result<Wanted, Response> {
    match text {
        "FILL" => Ok(Wanted::Fills),
        t if ACTIVITY_TYPES.contains(&t) => Ok(Wanted::Nothing),
        t => Err(invalid(&format!("invalid activity type: {t}"))),
    }
}

/// `activity_types=A,B` or `category=trade_activity|non_trade_activity` (not both); neither
/// is every type.
fn wanted(pairs: &[(String, String)]) -> Result<Wanted, Response> {
    match (param(pairs, "activity_types"), param(pairs, "category")) {
        (Some(_), Some(_)) => Err(invalid("activity_types and category cannot be used together")),
        (None, None | Some("trade_activity")) => Ok(Wanted::Fills),
        (None, Some("non_trade_activity")) => Ok(Wanted::Nothing),
        (None, Some(other)) => Err(invalid(&format!("invalid category: {other}"))),
        (Some(list), None) => {
            let mut wanted = Wanted::Nothing;
            for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if activity_type(t)? == Wanted::Fills {
                    wanted = Wanted::Fills;
                }
            }
            Ok(wanted)
        }
    }
}

/// The page of `wanted` activities the query asks for.
fn answer(
    state: &State,
    query: Pairs,
    wanted: impl FnOnce(&[(String, String)]) -> Result<Wanted, Response>,
) -> Response {
    let Ok(Query(pairs)) = query else { return invalid("invalid query string") };
    let run = || -> Result<Vec<Value>, Response> {
        let wanted = wanted(&pairs)?;
        let paging = Paging::parse(&pairs)?;
        let all = read(state, |sim| Ok(if wanted == Wanted::Fills { fills(sim) } else { Vec::new() }))?;
        paging.page(all)
    };
    match run() {
        Ok(page) => ok(Value::Array(page)),
        Err(r) => r,
    }
}

/// `GET /v2/account/activities/FILL`: the account's executions, paged.
pub async fn fill_activities(state: Extract<Arc<State>>, query: Pairs) -> Response {
    answer(&state.0, query, |_| Ok(Wanted::Fills))
}

/// `GET /v2/account/activities`: every activity (or those of `activity_types` / `category`),
/// paged.
pub async fn activities(state: Extract<Arc<State>>, query: Pairs) -> Response {
    answer(&state.0, query, wanted)
}

/// `GET /v2/account/activities/{activity_type}`: FILL is the executions, any other documented
/// type is empty, an unknown one 422; `category` may not be given with a type.
pub async fn activities_of_type(state: Extract<Arc<State>>, Path(activity): Path<String>, query: Pairs) -> Response {
    answer(&state.0, query, |pairs| {
        if param(pairs, "category").is_some() {
            return Err(invalid("category cannot be used with an activity type"));
        }
        activity_type(&activity)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(1_772_461_800_000 + ms).unwrap_or_default()
    }

    /// Activities at the given times (ms after a fixed instant), ids `<time>::e<index>`.
    fn activities(times: &[i64]) -> Vec<Activity> {
        times
            .iter()
            .enumerate()
            .map(|(i, &ms)| {
                let id = render::activity_id(at(ms), &format!("e{i:03}"));
                Activity { time: at(ms), id: id.clone(), body: Value::String(id) }
            })
            .collect()
    }

    fn query(text: &str) -> Vec<(String, String)> {
        text.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').map_or((p.to_owned(), String::new()), |(k, v)| (k.into(), v.into())))
            .collect()
    }

    fn ids(page: &[Value]) -> Vec<String> {
        page.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
    }

    /// Follows page tokens to the end; every page no longer than `size`.
    fn walk(all: &[Activity], params: &str, size: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1_000 {
            let q = match &token {
                Some(t) => format!("{params}&page_token={t}"),
                None => params.to_owned(),
            };
            let page = ids(&Paging::parse(&query(&q)).unwrap().page(all.to_vec()).unwrap());
            assert!(page.len() <= size, "{q}: {} > {size}", page.len());
            seen.extend(page.iter().cloned());
            if page.len() < size {
                return seen;
            }
            token = page.last().cloned();
        }
        panic!("paging never ended");
    }

    #[test]
    fn pages_visit_every_activity_once_in_either_direction() {
        // Ties in time (same millisecond, same instant) and out-of-order booking.
        let times: Vec<i64> = (0..257).map(|i| (i * 7919) % 90 * 3).collect();
        let all = activities(&times);
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        let asc: Vec<String> = sorted.iter().map(|a| a.id.clone()).collect();
        let cases = [("direction=asc", 100, false), ("direction=asc&page_size=7", 7, false), ("", 100, true)];
        for (params, size, reversed) in cases {
            let got = walk(&all, params, size);
            let mut want = asc.clone();
            if reversed {
                want.reverse();
            }
            assert_eq!(got, want, "{params}");
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        for q in ["page_size=0", "page_size=ten", "page_size=-1", "direction=up", "after=yesterday", "page_token=x"] {
            assert!(Paging::parse(&query(q)).and_then(|p| p.page(activities(&[1]))).is_err(), "{q}");
        }
        assert!(wanted(&query("activity_types=FILL,NOPE")).is_err());
        assert!(wanted(&query("activity_types=FILL&category=trade_activity")).is_err());
        assert_eq!(wanted(&query("activity_types=DIV,TRANS")).ok(), Some(Wanted::Nothing));
        assert_eq!(wanted(&query("activity_types=DIV,FILL")).ok(), Some(Wanted::Fills));
    }

    #[test]
    fn page_size_is_capped_unless_a_date_is_given() {
        let all = activities(&(0..250).collect::<Vec<_>>());
        let len = |q: &str| Paging::parse(&query(q)).unwrap().page(all.clone()).unwrap().len();
        assert_eq!(len(""), 100);
        assert_eq!(len("page_size=500"), 100);
        assert_eq!(len("page_size=3"), 3);
        let day = render::in_eastern(at(0)).date_naive();
        assert_eq!(len(&format!("date={day}")), 250, "a date returns everything by default");
        assert_eq!(len(&format!("date={day}&page_size=120")), 120);
    }

    #[test]
    fn a_token_that_is_no_activity_pages_from_the_time_it_names() {
        let all = activities(&[0, 10, 20, 30]);
        let token = render::activity_id(at(15), "zz");
        let p = |q: &str| ids(&Paging::parse(&query(q)).unwrap().page(all.clone()).unwrap());
        assert_eq!(p(&format!("direction=asc&page_token={token}")), [all[2].id.clone(), all[3].id.clone()]);
        assert_eq!(p(&format!("page_token={token}")), [all[1].id.clone(), all[0].id.clone()]);
    }

    #[test]
    fn after_and_until_are_exclusive() {
        let all = activities(&[0, 1000, 2000]);
        let t = |ms: i64| at(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let q = format!("direction=asc&after={}&until={}", t(0), t(2000));
        assert_eq!(ids(&Paging::parse(&query(&q)).unwrap().page(all.clone()).unwrap()), [all[1].id.clone()]);
    }
}
