//! Draws one symbol's [`ChartData`] as an inline SVG: the bid/ask band as steps over time, the
//! limit-price steps (escalation dashed), the fills as dots sized by shares, the arrival mid,
//! labelled axes (prices in dollars, times in UTC) and a legend.
//!
//! Invariants: the output is self-contained SVG (no script, no link, no external reference);
//! every text in it goes through [`escape`]; element ids are unique per chart (`index`).

use std::fmt::Write;

use tranche_domain::{Side, Timestamp};

use super::chart::{price_decimals, price_text, price_ticks, time_label, time_ticks, ChartData, Scale, StepKind};
use super::html::escape;

const WIDTH: f64 = 1100.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = WIDTH - 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = HEIGHT - 52.0;

const BAND: &str = "#dbe7f6";
const BID: &str = "#15803d";
const ASK: &str = "#b91c1c";
const LIMIT: &str = "#111827";
const ESCALATED: &str = "#d97706";
const FILL: &str = "#7c3aed";
const MID: &str = "#6b7280";

/// Pixel coordinates of the plot area and its scales.
struct Frame {
    t0: Timestamp,
    x: Scale,
    y: Scale,
}

impl Frame {
    fn x(&self, at: Timestamp) -> f64 {
        self.x.at((at - self.t0).num_milliseconds() as f64)
    }

    fn y(&self, price: f64) -> f64 {
        self.y.at(price)
    }
}

/// A path through step points: horizontal from each point to the next, then vertical.
fn step_path(points: &[(f64, f64)], end_x: f64) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        if i == 0 {
            let _ = write!(d, "M{x:.1},{y:.1}");
        } else {
            let _ = write!(d, "H{x:.1}V{y:.1}");
        }
    }
    if !points.is_empty() {
        let _ = write!(d, "H{end_x:.1}");
    }
    d
}

/// The SVG for one chart; `index` keeps its ids unique in the page. `None` when there is
/// nothing to draw.
pub fn chart(data: &ChartData, index: usize) -> Option<String> {
    if data.is_empty() {
        return None;
    }
    let (t0, t1) = data.time_domain()?;
    let (p0, p1) = data.price_domain()?;
    let (p0, p1, price_ticks) = price_ticks(p0, p1);
    let span_ms = (t1 - t0).num_milliseconds() as f64;
    let frame = Frame { t0, x: Scale::new(0.0, span_ms, LEFT, RIGHT), y: Scale::new(p0, p1, BOTTOM, TOP) };
    let symbol = escape(data.symbol.as_str());
    let side = match data.side {
        Some(Side::Buy) => "buy",
        Some(Side::Sell) => "sell",
        None => "order",
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" data-symbol="{symbol}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title-{index}"><title id="chart-title-{index}">{symbol} {side}: bid/ask band, limit price and fills over time</title><defs><clipPath id="plot-{index}"><rect x="{LEFT}" y="{TOP}" width="{w:.1}" height="{h:.1}"/></clipPath></defs>"#,
        w = RIGHT - LEFT,
        h = BOTTOM - TOP,
    );
    axes(&mut svg, &frame, p0, p1, &price_ticks, t1);
    let _ = write!(svg, r#"<g clip-path="url(#plot-{index})">"#);
    band(&mut svg, data, &frame, t1);
    arrival(&mut svg, data, &frame);
    limits(&mut svg, data, &frame, t1);
    fills(&mut svg, data, &frame);
    // Drawn last, over the fills, on a white halo: a fill dot never hides it.
    arrival_label(&mut svg, data, &frame);
    svg.push_str("</g>");
    legend(&mut svg, data);
    svg.push_str("</svg>");
    Some(svg)
}

fn axes(svg: &mut String, frame: &Frame, p0: f64, p1: f64, price_ticks: &[f64], t1: Timestamp) {
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{w:.1}" height="{h:.1}" fill="#ffffff" stroke="#9ca3af"/>"##,
        w = RIGHT - LEFT,
        h = BOTTOM - TOP
    );
    let decimals = price_decimals(if price_ticks.len() > 1 { price_ticks[1] - price_ticks[0] } else { p1 - p0 });
    svg.push_str(r##"<g font-size="12" fill="#374151">"##);
    for tick in price_ticks {
        let y = frame.y(*tick);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{RIGHT}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><line x1="{x0:.1}" x2="{LEFT}" y1="{y:.1}" y2="{y:.1}" stroke="#6b7280"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{label}</text>"##,
            x0 = LEFT - 5.0,
            tx = LEFT - 8.0,
            ty = y + 4.0,
            label = format_args!("{tick:.decimals$}"),
        );
    }
    let (step, time_ticks) = time_ticks(frame.t0, t1);
    for tick in &time_ticks {
        let x = frame.x(*tick);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{BOTTOM}" stroke="#eef0f3"/><line x1="{x:.1}" x2="{x:.1}" y1="{BOTTOM}" y2="{b:.1}" stroke="#6b7280"/><text x="{x:.1}" y="{ty:.1}" text-anchor="middle">{label}</text>"##,
            b = BOTTOM + 5.0,
            ty = BOTTOM + 19.0,
            label = escape(&time_label(*tick, step)),
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" font-size="13">time (UTC, {date})</text><text transform="translate(18 {cy:.1}) rotate(-90)" text-anchor="middle" font-size="13">price (USD)</text></g>"#,
        cx = f64::midpoint(LEFT, RIGHT),
        ty = HEIGHT - 12.0,
        cy = f64::midpoint(TOP, BOTTOM),
        date = frame.t0.format("%Y-%m-%d"),
    );
}

fn band(svg: &mut String, data: &ChartData, frame: &Frame, t1: Timestamp) {
    if data.samples.is_empty() {
        return;
    }
    let last = data.samples[data.samples.len() - 1].at;
    let end_x = frame.x(data.band_until.unwrap_or(last).max(last).min(t1));
    let asks: Vec<(f64, f64)> = data.samples.iter().map(|s| (frame.x(s.at), frame.y(s.ask))).collect();
    let bids: Vec<(f64, f64)> = data.samples.iter().map(|s| (frame.x(s.at), frame.y(s.bid))).collect();
    let mut polygon = String::new();
    for (i, (x, y)) in asks.iter().enumerate() {
        let next = asks.get(i + 1).map_or(end_x, |p| p.0);
        let _ = write!(polygon, "{x:.1},{y:.1} {next:.1},{y:.1} ");
    }
    for (i, (x, y)) in bids.iter().enumerate().rev() {
        let next = bids.get(i + 1).map_or(end_x, |p| p.0);
        let _ = write!(polygon, "{next:.1},{y:.1} {x:.1},{y:.1} ");
    }
    let _ = write!(
        svg,
        r#"<polygon class="band" points="{points}" fill="{BAND}" fill-opacity="0.85"/><path class="ask" d="{ask}" fill="none" stroke="{ASK}" stroke-width="1.4"/><path class="bid" d="{bid}" fill="none" stroke="{BID}" stroke-width="1.4"/>"#,
        points = polygon.trim_end(),
        ask = step_path(&asks, end_x),
        bid = step_path(&bids, end_x),
    );
}

fn arrival(svg: &mut String, data: &ChartData, frame: &Frame) {
    let Some(mid) = data.arrival_mid else {
        return;
    };
    let y = frame.y(mid);
    let _ = write!(
        svg,
        r#"<line class="arrival" x1="{LEFT}" x2="{RIGHT}" y1="{y:.1}" y2="{y:.1}" stroke="{MID}" stroke-width="1.2" stroke-dasharray="2 4"/>"#,
    );
}

fn arrival_label(svg: &mut String, data: &ChartData, frame: &Frame) {
    let Some(mid) = data.arrival_mid else {
        return;
    };
    let _ = write!(
        svg,
        r#"<text class="arrival-label" x="{tx:.1}" y="{ty:.1}" text-anchor="end" font-size="11" fill="{MID}" stroke="white" stroke-width="3" paint-order="stroke">arrival mid {label}</text>"#,
        label = price_text(mid),
        tx = RIGHT - 6.0,
        ty = frame.y(mid) - 5.0,
    );
}

fn limits(svg: &mut String, data: &ChartData, frame: &Frame, t1: Timestamp) {
    let last_fill = data.fills.iter().map(|f| f.at).max();
    let item_end = data.end.or(last_fill).unwrap_or(t1).min(t1);
    for (i, step) in data.limits.iter().enumerate() {
        let x = frame.x(step.at);
        let until = data.limits.get(i + 1).map_or(item_end, |next| next.at).max(step.at);
        let (color, dash, what) = match step.kind {
            StepKind::Placed => (LIMIT, "", "order placed"),
            StepKind::Repegged => (LIMIT, "", "re-peg"),
            StepKind::Escalated => (ESCALATED, r#" stroke-dasharray="7 4""#, "escalated"),
        };
        let at = step.at.format("%H:%M:%S%.3f");
        let Some(price) = step.price else {
            let _ = write!(
                svg,
                r#"<g class="market"><title>{what}: market order at {at}</title><line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{BOTTOM}" stroke="{ESCALATED}" stroke-width="1.5" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty:.1}" font-size="11" fill="{ESCALATED}">market order</text></g>"#,
                tx = x + 4.0,
                ty = TOP + 14.0,
            );
            continue;
        };
        let y = frame.y(price);
        // The vertical riser from the previous limit, so that the steps read as one line.
        if let Some(prev) = i.checked_sub(1).and_then(|p| data.limits[p].price) {
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{py:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2.2"{dash}/>"#,
                py = frame.y(prev),
            );
        }
        let _ = write!(
            svg,
            r#"<g class="limit"><title>{what}: limit {price:.2} at {at}</title><line x1="{x:.1}" x2="{ux:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2.2"{dash}/><circle cx="{x:.1}" cy="{y:.1}" r="3.2" fill="{color}"/></g>"#,
            ux = frame.x(until),
        );
    }
}

fn fills(svg: &mut String, data: &ChartData, frame: &Frame) {
    let largest = data.fills.iter().map(|f| f.qty).fold(0.0_f64, f64::max);
    for fill in &data.fills {
        let share = if largest > 0.0 { (fill.qty / largest).sqrt() } else { 1.0 };
        let _ = write!(
            svg,
            r##"<circle class="fill" cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{FILL}" fill-opacity="0.85" stroke="#ffffff" stroke-width="1.5"><title>filled {qty} @ {price:.4} at {at}</title></circle>"##,
            x = frame.x(fill.at),
            y = frame.y(fill.price),
            r = 4.5 + 4.5 * share,
            qty = escape(&trim_number(fill.qty)),
            price = fill.price,
            at = fill.at.format("%H:%M:%S%.3f"),
        );
    }
}

/// A share count without float noise (at most six decimals, no trailing zeros).
fn trim_number(value: f64) -> String {
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A legend entry's sample mark.
enum Mark {
    Band,
    Line(&'static str, f64, &'static str),
    Dot,
}

/// The legend, listing only what this chart shows.
fn legend(svg: &mut String, data: &ChartData) {
    const ENTRIES: [(Mark, &str, f64); 7] = [
        (Mark::Band, "bid/ask band", 128.0),
        (Mark::Line(ASK, 1.4, ""), "ask", 70.0),
        (Mark::Line(BID, 1.4, ""), "bid", 70.0),
        (Mark::Line(LIMIT, 2.2, ""), "limit price (a step = a new price)", 250.0),
        (Mark::Line(ESCALATED, 2.2, r#" stroke-dasharray="7 4""#), "escalated / market", 170.0),
        (Mark::Dot, "fill (size = shares)", 160.0),
        (Mark::Line(MID, 1.2, r#" stroke-dasharray="2 4""#), "arrival mid", 110.0),
    ];
    let y = 22.0;
    let mut x = LEFT;
    svg.push_str(r##"<g class="legend" font-size="12" fill="#111827">"##);
    let limit = data.limits.iter().any(|l| l.price.is_some() && l.kind != StepKind::Escalated);
    let escalated = data.limits.iter().any(|l| l.price.is_none() || l.kind == StepKind::Escalated);
    let shown = [
        !data.samples.is_empty(),
        !data.samples.is_empty(),
        !data.samples.is_empty(),
        limit,
        escalated,
        !data.fills.is_empty(),
        data.arrival_mid.is_some(),
    ];
    for ((mark, label, width), _) in ENTRIES.into_iter().zip(shown).filter(|(_, shown)| *shown) {
        let _ = match mark {
            Mark::Band => write!(
                svg,
                r#"<rect x="{x:.1}" y="{ry:.1}" width="24" height="12" fill="{BAND}" stroke="{ASK}" stroke-width="0.8"/>"#,
                ry = y - 6.0
            ),
            Mark::Line(color, stroke, extra) => write!(
                svg,
                r#"<line x1="{x:.1}" x2="{x2:.1}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="{stroke}"{extra}/>"#,
                x2 = x + 24.0
            ),
            Mark::Dot => {
                write!(svg, r##"<circle cx="{cx:.1}" cy="{y}" r="6" fill="{FILL}" stroke="#ffffff"/>"##, cx = x + 12.0)
            }
        };
        let _ = write!(svg, r#"<text x="{tx:.1}" y="{ty:.1}">{label}</text>"#, tx = x + 30.0, ty = y + 4.0);
        x += width;
    }
    svg.push_str("</g>");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::report::chart::{FillMark, LimitStep};
    use crate::report::tape::Sample;
    use chrono::TimeZone;
    use tranche_domain::Symbol;

    fn at(ms: i64) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    fn data() -> ChartData {
        ChartData {
            symbol: Symbol::parse("BRK.B").unwrap(),
            side: Some(Side::Buy),
            samples: vec![
                Sample { at: at(0), bid: 100.0, ask: 100.1 },
                Sample { at: at(2_000), bid: 100.05, ask: 100.12 },
            ],
            limits: vec![
                LimitStep { at: at(100), price: Some(100.04), kind: StepKind::Placed },
                LimitStep { at: at(3_000), price: Some(100.08), kind: StepKind::Repegged },
                LimitStep { at: at(6_000), price: None, kind: StepKind::Escalated },
            ],
            fills: vec![FillMark { at: at(6_100), qty: 3.5, price: 100.13 }],
            arrival_mid: Some(100.05),
            start: Some(at(0)),
            end: Some(at(6_200)),
            band_until: Some(at(6_200)),
        }
    }

    #[test]
    fn a_chart_has_its_parts_and_nothing_external() {
        let svg = chart(&data(), 3).unwrap();
        assert!(svg.starts_with("<svg class=\"chart\" data-symbol=\"BRK.B\""));
        for part in [
            "class=\"band\"",
            "class=\"bid\"",
            "class=\"ask\"",
            "class=\"limit\"",
            "class=\"market\"",
            "class=\"fill\"",
            "class=\"arrival\"",
            "class=\"legend\"",
            "price (USD)",
            "time (UTC, 2026-03-02)",
            "15:00:02",
            "100.10",
            "filled 3.5 @ 100.1300",
            "url(#plot-3)",
        ] {
            assert!(svg.contains(part), "missing {part}: {svg}");
        }
        assert_eq!(svg.matches("class=\"limit\"").count(), 2);
        assert!(!svg.contains("<script") && !svg.contains("href"));
    }

    #[test]
    fn nothing_to_draw_is_no_chart() {
        let mut empty = data();
        empty.samples.clear();
        empty.limits.clear();
        empty.fills.clear();
        empty.start = None;
        empty.end = None;
        empty.arrival_mid = None;
        assert!(chart(&empty, 0).is_none());
    }

    #[test]
    fn share_counts_print_without_float_noise() {
        assert_eq!(trim_number(21.923_093_786), "21.923094");
        assert_eq!(trim_number(525.0), "525");
    }
}
