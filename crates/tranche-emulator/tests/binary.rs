//! The `alpaca-emulator` binary: its documented first line, and Alpaca's answers to requests
//! without or with wrong keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn get(address: &str, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The emulator process, killed when the test ends, pass or fail.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prints_the_documented_first_line_and_checks_the_key_pair() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alpaca-emulator"))
        .args(["--listen", "127.0.0.1:0", "--seed", "3", "--key-id", "K1", "--secret-key", "S1", "--faults", "light"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("alpaca-emulator listening on http://").map(str::to_owned);
    let address = url.expect("the first line is exactly `alpaca-emulator listening on http://HOST:PORT`");
    assert!(address.starts_with("127.0.0.1:") && !address.ends_with(":0"), "{address}");

    let none = get(&address, "/v2/clock", "");
    assert!(none.starts_with("HTTP/1.1 403") && none.contains("forbidden."), "{none}");
    let wrong = get(&address, "/v2/clock", "APCA-API-KEY-ID: K1\r\nAPCA-API-SECRET-KEY: nope\r\n");
    assert!(wrong.starts_with("HTTP/1.1 401") && wrong.contains("40110000"), "{wrong}");
    // With the right pair: the clock, with US/Eastern offsets, possibly after an injected fault.
    let mut answered = false;
    for _ in 0..20 {
        let right = get(&address, "/v2/clock", "APCA-API-KEY-ID: K1\r\nAPCA-API-SECRET-KEY: S1\r\n");
        if right.starts_with("HTTP/1.1 200") {
            assert!(right.contains("\"is_open\":true") && right.contains("-05:00"), "{right}");
            answered = true;
            break;
        }
    }
    assert!(answered, "the clock answered within 20 tries despite light faults");
}
