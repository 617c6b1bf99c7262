//! The quote client against market-data servers that misbehave in ways the emulator does not:
//! one that authenticates and then sends only pings (a quiet feed: no quote changes), one that
//! sends nothing unasked (it answers pings and subscribes), and one that accepts TCP and never
//! answers. Over loopback, in real time, with a half-second watchdog.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tranche_broker::QuoteFeed;
use tranche_pricing::{AlpacaQuoteFeed, StreamConfig};

/// How a fake server behaves once a client connected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Authenticates, then sends a ping every 100 ms and nothing else.
    PingsOnly,
    /// Authenticates, then sends nothing (it reads, so it answers the client's pings).
    Quiet,
    /// Accepts TCP and never answers (no upgrade).
    Mute,
    /// Authenticates, then answers nothing but pings: a stalled feed.
    Stalled,
}

/// A fake market-data server; its address and the connections it accepted.
async fn server(behaviour: Behaviour) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            if behaviour == Behaviour::Mute {
                held.push(socket);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else { return };
                let hello = r#"[{"T":"success","msg":"connected"}]"#;
                if ws.send(Message::Text(hello.into())).await.is_err() {
                    return;
                }
                let mut ping = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        frame = ws.next() => match frame {
                            Some(Ok(Message::Text(t))) if t.as_str().contains("\"auth\"") => {
                                let ok = r#"[{"T":"success","msg":"authenticated"}]"#;
                                if ws.send(Message::Text(ok.into())).await.is_err() {
                                    return;
                                }
                            }
                            // A live feed answers a subscribe with its state, quotes or not.
                            Some(Ok(Message::Text(t))) if t.as_str().contains("\"subscribe\"") && behaviour != Behaviour::Stalled => {
                                let state = r#"[{"T":"subscription","trades":[],"quotes":["AAPL"],"bars":[]}]"#;
                                if ws.send(Message::Text(state.into())).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                        _ = ping.tick(), if behaviour == Behaviour::PingsOnly => {
                            if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn config(addr: std::net::SocketAddr) -> StreamConfig {
    let mut config = StreamConfig::new(format!("ws://{addr}/v2/iex"), "KEY", "SECRET");
    config.silence = Duration::from_millis(500);
    config.symbol_silence = Duration::ZERO;
    config
}

/// A feed whose quotes do not change for a while is alive as long as the socket is: pings from
/// the server, or the answers to the client's own, keep it. It was torn down every `silence`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_but_live_socket_is_kept() {
    for behaviour in [Behaviour::PingsOnly, Behaviour::Quiet] {
        let (addr, accepted) = server(behaviour).await;
        let feed = AlpacaQuoteFeed::connect(config(addr));
        // A symbol held whose quote never changes: the feed is asked again, answers, and lives.
        feed.subscribe(&[tranche_domain::Symbol::parse("AAPL").unwrap()]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "reconnected a live socket");
        assert_eq!(feed.connections(), 1);
    }
}

/// A server that accepts and never answers is a failed connection, tried again: the client
/// waited for it for ever, and the feed was dead for the rest of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_tried_again() {
    let (addr, accepted) = server(Behaviour::Mute).await;
    let _feed = AlpacaQuoteFeed::connect(config(addr));
    tokio::time::timeout(Duration::from_secs(5), async {
        while accepted.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a second connection within 5 s");
}

/// A stream URL carrying credentials (`wss://user:password@host`) shows neither in the
/// configuration's debug form nor in the error of a URL the WebSocket client cannot take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_stream_url_never_reach_a_message() {
    let config = StreamConfig::new("wss://user:hunter2^x@127.0.0.1:1/v2/iex", "KEY", "SECRET");
    assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
    let feed = AlpacaQuoteFeed::connect(config);
    let refused =
        tokio::time::timeout(Duration::from_secs(5), feed.subscribe(&[tranche_domain::Symbol::parse("AAPL").unwrap()]))
            .await
            .expect("answered");
    if let Err(e) = refused {
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

/// A feed that stalls before it answered anything but the authentication (it still answers
/// pings) is reconnected: its subscribe goes unanswered, the probe too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_stalled_before_its_first_answer_is_reconnected() {
    let (addr, accepted) = server(Behaviour::Stalled).await;
    let feed = AlpacaQuoteFeed::connect(config(addr));
    let _ = feed.subscribe(&[tranche_domain::Symbol::parse("AAPL").unwrap()]).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while accepted.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("reconnected within 5 s");
}
