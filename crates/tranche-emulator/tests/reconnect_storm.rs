//! A misbehaving market-data client cannot take the emulator down: thousands of connections to
//! the market-data stream (wrong keys, no authentication at all, garbage frames, clients that
//! vanish without a close) leave the emulator process with the sockets and the memory it had
//! before them. Measured on the `alpaca-emulator` binary through `/proc` (Linux).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Connections per kind of misbehaviour.
const EACH: usize = 500;
/// Connections open at once.
const AT_ONCE: usize = 40;

struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Open file descriptors (sockets included) of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Resident memory of process `pid`, in kB.
fn resident_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    WrongKeys,
    NeverAuthenticates,
    Garbage,
    Vanishes,
}

async fn misbehave(url: String, how: Misbehaviour) {
    let Ok(Ok((mut socket, _))) =
        tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url)).await
    else {
        return;
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.next()).await; // connected
    match how {
        Misbehaviour::WrongKeys => {
            let _ = socket.send(Message::Text(r#"{"action":"auth","key":"x","secret":"y"}"#.into())).await;
        }
        Misbehaviour::NeverAuthenticates => {}
        Misbehaviour::Garbage => {
            let _ = socket.send(Message::Binary(vec![0xc1, 0xde, 0xad, 0xbe, 0xef].into())).await;
            let _ = socket.send(Message::Text("{not json".into())).await;
            let _ = socket.send(Message::Text(r#"{"action":"subscribe","quotes":["AAPL"]}"#.into())).await;
        }
        Misbehaviour::Vanishes => {
            // Dropped without a close frame, as a killed client is.
            drop(socket);
            return;
        }
    }
    // Wrong keys and no keys: the server closes (402, the auth timeout). Garbage: its three
    // answers (400, 400, 401), then this client leaves.
    let answers = if matches!(how, Misbehaviour::Garbage) { 3 } else { usize::MAX };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut seen = 0;
        while seen < answers {
            match socket.next().await {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => seen += 1,
            }
        }
    })
    .await;
    let _ = socket.close(None).await;
}

async fn storm(url: &str, rounds: usize) {
    let kinds =
        [Misbehaviour::WrongKeys, Misbehaviour::NeverAuthenticates, Misbehaviour::Garbage, Misbehaviour::Vanishes];
    let jobs: Vec<_> = (0..rounds * kinds.len()).map(|i| (url.to_owned(), kinds[i % kinds.len()])).collect();
    futures_util::stream::iter(jobs).for_each_concurrent(AT_ONCE, |(url, how)| misbehave(url, how)).await;
}

/// Waits until the process holds at most `fds` descriptors (its sessions ending), up to 20 s.
async fn settle(pid: u32, fds: usize) -> usize {
    for _ in 0..400 {
        if descriptors(pid) <= fds {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    descriptors(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_misbehaving_market_data_clients_leave_no_socket_and_no_memory_behind() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPED: needs /proc (Linux)");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_alpaca-emulator"))
        .args(["--listen", "127.0.0.1:0", "--seed", "5", "--data-auth-timeout-ms", "200"])
        .args(["--start-at", "2026-03-02T14:30:00Z"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let _running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("alpaca-emulator listening on ").expect("the first line").to_owned();
    let url = format!("{}/v2/iex", base.replace("http://", "ws://"));

    // A first, smaller storm warms the allocator and the runtime up; then the baseline.
    storm(&url, 50).await;
    let fds_before = settle(pid, 0).await.max(descriptors(pid));
    let fds_before = settle(pid, fds_before).await;
    let rss_before = resident_kb(pid);

    storm(&url, EACH).await;
    let fds_after = settle(pid, fds_before).await;
    let rss_after = resident_kb(pid);
    eprintln!(
        "{} connections: descriptors {fds_before} -> {fds_after}, resident {rss_before} kB -> {rss_after} kB",
        EACH * 4
    );
    assert_eq!(fds_after, fds_before, "every socket of the storm is closed");
    // Memory held per connection would show as megabytes here (2,000 connections); what is
    // allowed is allocator noise.
    assert!(rss_after <= rss_before + 4_096, "resident memory grew from {rss_before} kB to {rss_after} kB");

    // And the emulator still serves a well-behaved client.
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let connected = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(connected.into_text().unwrap().as_str(), r#"[{"T":"success","msg":"connected"}]"#);
}
