//! The example refuses Alpaca's live host unless told `CONFIRM_LIVE=yes`, before anything is
//! sent (the check comes before any connection).

use std::process::Command;

#[test]
fn the_live_host_is_refused_without_confirmation() {
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/../plan.json");
    let out = Command::new(env!("CARGO_BIN_EXE_downstream-alpaca-s3"))
        .args([plan, "s3://bucket/prefix"])
        .env("APCA_API_BASE_URL", "https://api.alpaca.markets")
        .env("APCA_API_KEY_ID", "KEY")
        .env("APCA_API_SECRET_KEY", "zz-live-guard-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env_remove("CONFIRM_LIVE")
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CONFIRM_LIVE=yes"), "{stderr}");
    assert!(!stderr.contains("zz-live-guard-secret"));
}
