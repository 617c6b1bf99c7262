//! The market-data stream as Alpaca's SDKs speak it, over real WebSockets on loopback: with
//! `Content-Type: application/msgpack` every server frame is MessagePack (the `connected` and
//! `authenticated` controls, the subscription state, errors, quotes and trades) and MessagePack
//! client messages are understood; a trades subscription carries the simulated tape's prints;
//! a closed connection is no longer counted. Every wait is bounded by a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn emulator() -> Emulator {
    let mut config = EmulatorConfig {
        start_at: Some(Utc.with_ymd_and_hms(2026, 3, 2, 14, 30, 0).unwrap()),
        ..EmulatorConfig::default()
    };
    config.sim.market.quote_interval_ms = 100;
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

/// A MessagePack value as JSON (timestamps as `{"ext": bytes}` so a test can tell them apart).
fn json_of(value: &rmpv::Value) -> Value {
    match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => json!(b),
        rmpv::Value::Integer(i) => i.as_i64().map_or_else(|| json!(i.as_u64()), |v| json!(v)),
        rmpv::Value::F32(f) => json!(f),
        rmpv::Value::F64(f) => json!(f),
        rmpv::Value::String(s) => json!(s.as_str().unwrap()),
        rmpv::Value::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        rmpv::Value::Map(entries) => {
            Value::Object(entries.iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), json_of(v))).collect())
        }
        rmpv::Value::Ext(kind, bytes) => json!({"ext": kind, "len": bytes.len()}),
        rmpv::Value::Binary(b) => json!({"binary": b.len()}),
    }
}

fn msgpack(value: &Value) -> Vec<u8> {
    fn convert(value: &Value) -> rmpv::Value {
        match value {
            Value::String(s) => rmpv::Value::from(s.as_str()),
            Value::Array(items) => rmpv::Value::Array(items.iter().map(convert).collect()),
            Value::Object(map) => {
                rmpv::Value::Map(map.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), convert(v))).collect())
            }
            other => panic!("not used here: {other}"),
        }
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &convert(value)).unwrap();
    out
}

/// The next server frame, decoded; asserts it is in the session's encoding.
async fn next(socket: &mut Socket, binary: bool) -> Option<Vec<Value>> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("a frame in time");
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                assert!(binary, "a JSON session got a binary frame");
                let value = rmpv::decode::read_value(&mut &bytes[..]).expect("MessagePack");
                return Some(json_of(&value).as_array().expect("a batch").clone());
            }
            Some(Ok(Message::Text(text))) => {
                assert!(!binary, "a MessagePack session got a text frame: {text}");
                return Some(serde_json::from_str(&text).unwrap());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next message whose type `T` is `kind` (others skipped).
async fn next_of(socket: &mut Socket, binary: bool, kind: &str) -> Value {
    loop {
        let batch = next(socket, binary).await.expect("the socket is open");
        if let Some(found) = batch.iter().find(|m| m["T"] == kind) {
            return found.clone();
        }
    }
}

async fn connect(emu: &Emulator, binary: bool) -> Socket {
    let mut request = format!("ws://{}/v2/iex", emu.addr).into_client_request().unwrap();
    if binary {
        request.headers_mut().insert("Content-Type", "application/msgpack".parse().unwrap());
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
}

async fn send(socket: &mut Socket, binary: bool, message: &Value) {
    let frame =
        if binary { Message::Binary(msgpack(message).into()) } else { Message::Text(message.to_string().into()) };
    socket.send(frame).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_of_a_msgpack_session_is_msgpack_and_trades_flow_in_both_encodings() {
    let emu = emulator().await;
    for binary in [true, false] {
        let mut socket = connect(&emu, binary).await;
        let connected = next(&mut socket, binary).await.unwrap();
        assert_eq!(connected, [json!({"T": "success", "msg": "connected"})], "binary {binary}");
        send(&mut socket, binary, &json!({"action": "subscribe", "quotes": ["AAPL"]})).await;
        let refused = next_of(&mut socket, binary, "error").await;
        assert_eq!(refused, json!({"T": "error", "code": 401, "msg": "not authenticated"}));
        send(&mut socket, binary, &json!({"action": "auth", "key": DEFAULT_KEY_ID, "secret": DEFAULT_SECRET_KEY}))
            .await;
        assert_eq!(next_of(&mut socket, binary, "success").await, json!({"T": "success", "msg": "authenticated"}));
        send(&mut socket, binary, &json!({"action": "subscribe", "trades": ["AAPL"], "quotes": ["MSFT"]})).await;
        let state = next_of(&mut socket, binary, "subscription").await;
        assert_eq!((&state["trades"], &state["quotes"]), (&json!(["AAPL"]), &json!(["MSFT"])), "{state}");
        let trade = next_of(&mut socket, binary, "t").await;
        assert_eq!(trade["S"], "AAPL", "{trade}");
        assert!(trade["p"].as_f64().unwrap() > 0.0 && trade["s"].as_f64().unwrap() > 0.0, "{trade}");
        assert!(trade["i"].as_u64().unwrap() > 0, "{trade}");
        if binary {
            assert_eq!(trade["t"], json!({"ext": -1, "len": 12}), "a MessagePack timestamp: {trade}");
        } else {
            assert!(trade["t"].as_str().unwrap().ends_with('Z'), "{trade}");
        }
        let quote = next_of(&mut socket, binary, "q").await;
        assert_eq!(quote["S"], "MSFT", "{quote}");
        socket.send(Message::Binary(vec![0xc1, 0xff, 0x00].into())).await.unwrap();
        assert_eq!(
            next_of(&mut socket, binary, "error").await,
            json!({"T": "error", "code": 400, "msg": "invalid syntax"}),
            "garbage is answered in the session's encoding"
        );
        socket.close(None).await.unwrap();
        while next(&mut socket, binary).await.is_some() {}
    }
    // Both sessions ended: nothing is held for them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while emu.market_data_connections() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "connections still counted: {}", emu.market_data_connections());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A MessagePack session speaks MessagePack both ways: a JSON text frame is invalid syntax there
/// (answered in MessagePack), so a client that forgets to encode a message is found here, not by
/// the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_frame_in_a_msgpack_session_is_invalid_syntax() {
    let emu = emulator().await;
    let mut socket = connect(&emu, true).await;
    next(&mut socket, true).await.unwrap();
    let auth = json!({"action": "auth", "key": DEFAULT_KEY_ID, "secret": DEFAULT_SECRET_KEY});
    socket.send(Message::Text(auth.to_string().into())).await.unwrap();
    assert_eq!(next_of(&mut socket, true, "error").await, json!({"T": "error", "code": 400, "msg": "invalid syntax"}));
    // The same message as MessagePack authenticates.
    send(&mut socket, true, &auth).await;
    assert_eq!(next_of(&mut socket, true, "success").await, json!({"T": "success", "msg": "authenticated"}));
}
