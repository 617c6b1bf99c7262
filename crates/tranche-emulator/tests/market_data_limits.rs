//! The market-data stream's Basic-plan limits over real WebSockets on loopback: a 31st symbol
//! on `iex` is refused with `405 symbol limit exceeded` while the 30 keep flowing (and `sip`
//! has no limit); a second authenticated connection for the same key and feed gets `406
//! connection limit exceeded`; a connection that does not authenticate gets `404 auth timeout`
//! and is closed. Every wait is bounded by a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn emulator() -> Emulator {
    emulator_with(tranche_emulator::DataStreamConfig::default()).await
}

async fn emulator_with(data_stream: tranche_emulator::DataStreamConfig) -> Emulator {
    let mut config = EmulatorConfig {
        data_stream,
        start_at: Some(Utc.with_ymd_and_hms(2026, 3, 2, 14, 30, 0).unwrap()),
        ..EmulatorConfig::default()
    };
    config.sim.market.quote_interval_ms = 100;
    // The symbols here are made up (SAA, SBA, ...): markets are invented for them.
    config.sim.symbols.invent = Some(true);
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

/// The next server message (a JSON array), or `None` once the socket is closed.
async fn next(socket: &mut Socket) -> Option<Vec<Value>> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("a message in time");
        match message {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str::<Vec<Value>>(&text).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next control message (quotes in between are skipped).
async fn control(socket: &mut Socket) -> Value {
    loop {
        let batch = next(socket).await.expect("the socket is open");
        if let [only] = &batch[..] {
            if only["T"] != "q" && only["T"] != "t" {
                return only.clone();
            }
        }
    }
}

async fn connect(emu: &Emulator, feed: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/v2/{feed}", emu.addr)).await.unwrap();
    assert_eq!(control(&mut socket).await, json!({"T": "success", "msg": "connected"}));
    socket
}

async fn send(socket: &mut Socket, message: &Value) {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
}

async fn authenticate(socket: &mut Socket) -> Value {
    send(socket, &json!({"action": "auth", "key": DEFAULT_KEY_ID, "secret": DEFAULT_SECRET_KEY})).await;
    control(socket).await
}

/// `n` distinct symbols: SA, SB, ..., TA, ...
fn symbols(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let letter = |k: usize| char::from(b'A' + u8::try_from(k % 26).unwrap());
            format!("{}{}{}", letter(18 + i / 26), letter(i), letter(i / 7))
        })
        .collect()
}

fn list(reply: &Value, channel: &str) -> BTreeSet<String> {
    reply[channel].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_31st_symbol_on_iex_is_refused_and_the_30_keep_flowing() {
    let emu = emulator().await;
    let mut socket = connect(&emu, "iex").await;
    assert_eq!(authenticate(&mut socket).await, json!({"T": "success", "msg": "authenticated"}));
    let all = symbols(31);
    let (thirty, extra) = (&all[..30], &all[30]);

    send(&mut socket, &json!({"action": "subscribe", "quotes": thirty, "trades": thirty[..5]})).await;
    let reply = control(&mut socket).await;
    assert_eq!(reply["T"], "subscription", "{reply}");
    assert_eq!(list(&reply, "quotes"), thirty.iter().cloned().collect());

    // A 31st symbol in any counted channel: refused, nothing changed.
    for channel in ["quotes", "trades"] {
        send(&mut socket, &json!({"action": "subscribe", channel: [extra]})).await;
        assert_eq!(control(&mut socket).await, json!({"T": "error", "code": 405, "msg": "symbol limit exceeded"}));
    }
    send(&mut socket, &json!({"action": "subscribe", "quotes": [thirty[0]]})).await;
    let state = control(&mut socket).await;
    assert_eq!(list(&state, "quotes"), thirty.iter().cloned().collect(), "the subscriptions are unchanged");
    assert!(list(&state, "trades").len() == 5);

    // The thirty still flow; the refused one never does.
    let mut heard = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while heard.len() < thirty.len() {
            for message in next(&mut socket).await.expect("the socket is open") {
                if message["T"] == "q" {
                    let symbol = message["S"].as_str().unwrap().to_owned();
                    assert_ne!(&symbol, extra, "a refused symbol is not sent");
                    heard.insert(symbol);
                }
            }
        }
    })
    .await
    .expect("quotes of all thirty symbols in time");

    // Room made by an unsubscribe can be used.
    send(&mut socket, &json!({"action": "unsubscribe", "quotes": [thirty[29]]})).await;
    assert_eq!(control(&mut socket).await["T"], "subscription");
    send(&mut socket, &json!({"action": "subscribe", "quotes": [extra]})).await;
    assert!(list(&control(&mut socket).await, "quotes").contains(extra));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_has_no_symbol_limit() {
    let emu = emulator().await;
    let mut socket = connect(&emu, "sip").await;
    authenticate(&mut socket).await;
    send(&mut socket, &json!({"action": "subscribe", "quotes": symbols(45)})).await;
    let reply = control(&mut socket).await;
    assert_eq!(list(&reply, "quotes").len(), 45, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_for_the_same_key_and_feed_gets_406() {
    let emu = emulator().await;
    let mut first = connect(&emu, "iex").await;
    assert_eq!(authenticate(&mut first).await["msg"], "authenticated");

    let mut second = connect(&emu, "iex").await;
    assert_eq!(authenticate(&mut second).await, json!({"T": "error", "code": 406, "msg": "connection limit exceeded"}));
    assert_eq!(next(&mut second).await, None, "the refused connection is closed");

    // Another feed is another endpoint.
    let mut sip = connect(&emu, "sip").await;
    assert_eq!(authenticate(&mut sip).await["msg"], "authenticated");

    // Once the first one is gone, its slot is free again.
    first.close(None).await.unwrap();
    let freed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut again = connect(&emu, "iex").await;
            if authenticate(&mut again).await["msg"] == "authenticated" {
                return;
            }
        }
    })
    .await;
    assert!(freed.is_ok(), "the slot of a closed connection is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_authenticate_in_time_gets_404_and_is_closed() {
    let limits = tranche_emulator::DataStreamConfig {
        // Long enough that the other connection's prompt auth never loses to it on a loaded
        // machine; short enough to keep the test quick.
        auth_timeout: Duration::from_secs(2),
        ..tranche_emulator::DataStreamConfig::default()
    };
    let emu = emulator_with(limits).await;
    let started = Instant::now();
    let mut idle = connect(&emu, "iex").await;
    let mut prompt = connect(&emu, "sip").await;
    assert_eq!(authenticate(&mut prompt).await["msg"], "authenticated");

    assert_eq!(control(&mut idle).await, json!({"T": "error", "code": 404, "msg": "auth timeout"}));
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the timeout: {:?}", started.elapsed());
    assert_eq!(next(&mut idle).await, None, "closed after the error");

    // The authenticated connection is not affected.
    send(&mut prompt, &json!({"action": "subscribe", "quotes": ["AAPL"]})).await;
    assert_eq!(control(&mut prompt).await["T"], "subscription");
}
