//! The trade_updates stream: in MessagePack when asked for with `Content-Type:
//! application/msgpack` at the upgrade (every server message, authorization, listening and trade
//! updates, comes as a msgpack map, and the client may speak msgpack or JSON), and a rapid
//! reconnect refused with HTTP 429 at the upgrade when that fault is on. Real sockets on
//! loopback; every wait is bounded by a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tranche_domain::{ClientOrderId, OrderRequest, Side, Symbol};
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn field<'a>(map: &'a rmpv::Value, key: &str) -> &'a rmpv::Value {
    map.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key))).map_or(&rmpv::Value::Nil, |(_, v)| v)
}

/// The next server message that is not a ping or a pong, within ten seconds.
async fn next_message(socket: &mut Socket) -> Message {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .unwrap();
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// The next server message, which must be a binary msgpack map.
async fn next_msgpack(socket: &mut Socket) -> rmpv::Value {
    match next_message(socket).await {
        Message::Binary(bytes) => {
            let mut reader = &bytes[..];
            let value = rmpv::decode::read_value(&mut reader).expect("a msgpack frame");
            assert!(value.is_map(), "{value:?}");
            value
        }
        other => panic!("expected a msgpack frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_msgpack_session_gets_every_message_in_msgpack() {
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), EmulatorConfig::default()).await.unwrap();
    let mut request = format!("ws://{}/stream", emu.addr).into_client_request().unwrap();
    request.headers_mut().insert("Content-Type", "application/msgpack".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    // Authenticate in msgpack.
    let auth = rmpv::Value::Map(vec![
        ("action".into(), "auth".into()),
        ("key".into(), DEFAULT_KEY_ID.into()),
        ("secret".into(), DEFAULT_SECRET_KEY.into()),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &auth).unwrap();
    socket.send(Message::Binary(bytes.into())).await.unwrap();
    let reply = next_msgpack(&mut socket).await;
    assert_eq!(field(&reply, "stream").as_str(), Some("authorization"));
    assert_eq!(field(field(&reply, "data"), "status").as_str(), Some("authorized"));

    // Listen in JSON: accepted too, answered in msgpack.
    let listen = r#"{"action":"listen","data":{"streams":["trade_updates"]}}"#;
    socket.send(Message::Text(listen.into())).await.unwrap();
    let reply = next_msgpack(&mut socket).await;
    assert_eq!(field(&reply, "stream").as_str(), Some("listening"));

    let order = OrderRequest::day(
        ClientOrderId::from_broker("msgpack-1"),
        Symbol::parse("AAPL").unwrap(),
        Side::Buy,
        "2".parse().unwrap(),
        None,
    );
    emu.with_sim(|s| s.submit(&order)).unwrap();
    let update = next_msgpack(&mut socket).await;
    assert_eq!(field(&update, "stream").as_str(), Some("trade_updates"));
    let data = field(&update, "data");
    assert!(field(data, "event").as_str().is_some(), "{update:?}");
    assert_eq!(field(field(data, "order"), "client_order_id").as_str(), Some("msgpack-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reconnect_is_refused_with_429_at_the_upgrade() {
    let config = EmulatorConfig { stream_reconnect_min: Some(Duration::from_secs(30)), ..EmulatorConfig::default() };
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let url = format!("ws://{}/stream", emu.addr);
    let (first, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("the first upgrade is accepted");
    drop(first);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 429),
        other => panic!("expected HTTP 429 instead of 101, got {:?}", other.map(|(_, r)| r.status())),
    }
}

/// A JSON session authenticated (and listening, when asked) at `emu`.
async fn json_session(emu: &Emulator, listen: bool) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/stream", emu.addr)).await.unwrap();
    let auth = format!(r#"{{"action":"auth","key":"{DEFAULT_KEY_ID}","secret":"{DEFAULT_SECRET_KEY}"}}"#);
    socket.send(Message::Text(auth.into())).await.unwrap();
    assert_eq!(next_json(&mut socket).await["data"]["status"], "authorized");
    if listen {
        socket.send(Message::Text(r#"{"action":"listen","data":{"streams":["trade_updates"]}}"#.into())).await.unwrap();
        assert_eq!(next_json(&mut socket).await["stream"], "listening");
    }
    socket
}

/// The next server message as JSON (Alpaca sends JSON in binary frames).
async fn next_json(socket: &mut Socket) -> serde_json::Value {
    match next_message(socket).await {
        Message::Binary(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a JSON frame, got {other:?}"),
    }
}

/// Alpaca keeps nothing for a session that is not listening: an update sent between its
/// authentication and its `listen` is lost to it (no backfill), which is why a client must
/// listen before it trades. The emulator delivered such updates once `listen` came, so an
/// engine that traded first and listened later would have seen fills it never gets at Alpaca.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_sent_before_listen_are_not_delivered() {
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), EmulatorConfig::default()).await.unwrap();
    let mut witness = json_session(&emu, true).await;
    let mut late = json_session(&emu, false).await;
    let order = |id: &str| {
        OrderRequest::day(
            ClientOrderId::from_broker(id),
            Symbol::parse("AAPL").unwrap(),
            Side::Buy,
            "1".parse().unwrap(),
            None,
        )
    };
    emu.with_sim(|s| s.submit(&order("before-listen"))).unwrap();
    // Once the witness has the order's first update, it was sent while `late` did not listen.
    let first = next_json(&mut witness).await;
    assert_eq!(first["data"]["order"]["client_order_id"], "before-listen", "{first}");
    late.send(Message::Text(r#"{"action":"listen","data":{"streams":["trade_updates"]}}"#.into())).await.unwrap();
    assert_eq!(next_json(&mut late).await["stream"], "listening");
    emu.with_sim(|s| s.submit(&order("after-listen"))).unwrap();
    loop {
        let update = next_json(&mut late).await;
        let id = update["data"]["order"]["client_order_id"].as_str().unwrap_or_default().to_owned();
        assert_ne!(id, "before-listen", "an update from before `listen` was delivered: {update}");
        if id == "after-listen" {
            break;
        }
    }
}
