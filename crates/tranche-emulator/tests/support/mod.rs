//! Raw HTTP/1.1 over loopback to an emulator, with the default key pair: what a client nobody
//! here wrote sends, and everything the server answers (status, headers, JSON body).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tranche_emulator::{Emulator, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

/// One answer: its status, its header lines (`name: value`, names lower-cased) and its body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// `method path` with a JSON `body` (none when `None`).
pub async fn request(emu: &Emulator, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(emu.addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAPCA-API-KEY-ID: {DEFAULT_KEY_ID}\r\n\
         APCA-API-SECRET-KEY: {DEFAULT_SECRET_KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        emu.addr,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response)).await.unwrap().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: serde_json::from_str(body).unwrap_or(Value::Null) }
}

/// `GET path`: the status and the JSON body.
pub async fn get(emu: &Emulator, path: &str) -> (u16, Value) {
    let answer = request(emu, "GET", path, None).await;
    (answer.status, answer.body)
}
