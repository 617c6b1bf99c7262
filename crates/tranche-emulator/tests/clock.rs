//! The emulator's market is open from its start, whatever the hour or the day it starts: its
//! clock is pinned at every hour of a week (and at minutes around midnight), and `GET /v2/clock`
//! must answer open with the next close after now and before the next open. Then a session that
//! starts before midnight is followed across it in the simulator's own time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

use chrono::{DateTime, Duration, TimeZone, Utc};
use tranche_emulator::{always_open_session, Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

/// `GET /v2/clock` with the default key pair, on a plain socket; the JSON body.
fn clock(address: &str) -> serde_json::Value {
    get(address, "/v2/clock")
}

/// `GET path` with the default key pair, on a plain socket; the JSON body of a 200.
fn get(address: &str, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAPCA-API-KEY-ID: {DEFAULT_KEY_ID}\r\n\
         APCA-API-SECRET-KEY: {DEFAULT_SECRET_KEY}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

fn time(value: &serde_json::Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value[key].as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// Every hour of Monday 2026-11-23 to Sunday 2026-11-29, and the minutes around each midnight.
fn starts() -> Vec<DateTime<Utc>> {
    let monday = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
    let mut out: Vec<_> = (0..24 * 7).map(|h| monday + Duration::hours(h)).collect();
    for day in 1..8 {
        let midnight = monday + Duration::days(day);
        out.extend([-16, -15, -1, 1, 15].map(|m| midnight + Duration::minutes(m)));
    }
    out.extend([Utc.with_ymd_and_hms(2026, 11, 28, 17, 30, 0).unwrap()]); // the hour the bug was found
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_is_open_at_start_at_every_hour_of_every_day() {
    for start in starts() {
        let config = EmulatorConfig { start_at: Some(start), ..EmulatorConfig::default() };
        let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        let address = emulator.addr.to_string();
        let answer = tokio::task::spawn_blocking(move || clock(&address)).await.unwrap();
        let (now, next_open, next_close) =
            (time(&answer, "timestamp"), time(&answer, "next_open"), time(&answer, "next_close"));
        assert_eq!(answer["is_open"], true, "started at {start}: {answer}");
        assert!(now >= start && now < start + Duration::minutes(1), "started at {start}: {answer}");
        assert!(next_close > now && next_close < next_open, "started at {start}: {answer}");
        assert!(next_close - now >= Duration::hours(7), "open for the whole session from {start}: {answer}");
    }
}

#[test]
fn a_session_started_before_midnight_stays_open_across_it_and_closes_once() {
    let start = Utc.with_ymd_and_hms(2026, 11, 28, 23, 50, 0).unwrap(); // a Saturday night
    let config = tranche_sim::SimConfig { session: always_open_session(start), ..Default::default() };
    let mut sim = tranche_sim::Sim::new(config).unwrap();
    let close = sim.clock().next_close;
    assert_eq!(close, start + Duration::hours(8));
    let mut t = start;
    while t < close {
        sim.advance_to(t);
        let clock = sim.clock();
        assert!(clock.is_open, "open at {t}");
        assert_eq!(clock.next_close, close, "one close, seen from {t}");
        t += Duration::minutes(7);
    }
    sim.advance_to(close);
    let after = sim.clock();
    assert!(!after.is_open, "closed at the close");
    assert_eq!(after.next_open, start - Duration::minutes(15) + Duration::days(1), "opens again the next night");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_hours_calendar_has_nyses_holidays_and_early_closes() {
    // Monday of Thanksgiving week 2026, 10:00 ET, in the US regular session.
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0).unwrap();
    let mut config = EmulatorConfig { start_at: Some(start), wall_clock_session: false, ..EmulatorConfig::default() };
    config.sim.session = tranche_emulator::us_regular_session(start);
    let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let address = emulator.addr.to_string();
    let days = get(&address, "/v2/calendar?start=2026-11-23&end=2026-12-01");
    let got: Vec<(String, String, String)> = days
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap().to_owned();
            (text("date"), text("open"), text("close"))
        })
        .collect();
    let day = |date: &str, close: &str| (date.to_owned(), "09:30".to_owned(), close.to_owned());
    assert_eq!(
        got,
        vec![
            day("2026-11-23", "16:00"),
            day("2026-11-24", "16:00"),
            day("2026-11-25", "16:00"),
            // Thanksgiving (the 26th) is a holiday; the day after closes at 13:00.
            day("2026-11-27", "13:00"),
            day("2026-11-30", "16:00"),
            day("2026-12-01", "16:00"),
        ]
    );
    assert_eq!(days[2]["settlement_date"], "2026-11-27", "T+1 skips the holiday");
    // The clock agrees: on the Wednesday after the close, the next open is Friday's.
    let wednesday_close = Utc.with_ymd_and_hms(2026, 11, 25, 21, 0, 0).unwrap();
    let next = emulator.with_sim(|s| {
        let calendar = s.calendar().clone();
        (calendar.next_open(wednesday_close), calendar.next_close(wednesday_close))
    });
    assert_eq!(next.0, Utc.with_ymd_and_hms(2026, 11, 27, 14, 30, 0).unwrap());
    assert_eq!(next.1, Utc.with_ymd_and_hms(2026, 11, 27, 18, 0, 0).unwrap(), "13:00 ET");
}

/// In summer New York is UTC−4: with the real hours the session is 09:30-16:00 New York time
/// (13:30-20:00 UTC), the calendar says 09:30 and 16:00 across the change of the clocks, and the
/// clock's times carry −04:00 (they said 10:30-17:00 and −05:00 all year).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_hours_follow_new_yorks_daylight_saving_time() {
    // Friday 6 March 2026, 10:00 EST; the clocks change on Sunday the 8th.
    let start = Utc.with_ymd_and_hms(2026, 3, 6, 15, 0, 0).unwrap();
    let mut config = EmulatorConfig { start_at: Some(start), wall_clock_session: false, ..EmulatorConfig::default() };
    config.sim.session = tranche_emulator::us_regular_session(start);
    let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let address = emulator.addr.to_string();
    let days = get(&address, "/v2/calendar?start=2026-03-06&end=2026-03-09");
    let got: Vec<(String, String, String)> = days
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().into(),
                d["open"].as_str().unwrap().into(),
                d["close"].as_str().unwrap().into(),
            )
        })
        .collect();
    let day = |date: &str| (date.to_owned(), "09:30".to_owned(), "16:00".to_owned());
    assert_eq!(got, vec![day("2026-03-06"), day("2026-03-09")]);
    let now = clock(&address);
    assert_eq!(now["next_close"], "2026-03-06T16:00:00.000000000-05:00", "{now}");
    assert_eq!(now["next_open"], "2026-03-09T09:30:00.000000000-04:00", "{now}");
    let monday_open = emulator.with_sim(|s| s.calendar().next_open(Utc.with_ymd_and_hms(2026, 3, 7, 0, 0, 0).unwrap()));
    assert_eq!(monday_open, Utc.with_ymd_and_hms(2026, 3, 9, 13, 30, 0).unwrap(), "09:30 EDT");
}
