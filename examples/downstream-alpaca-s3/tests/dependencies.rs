//! The point of this example: an Alpaca + S3 application compiles neither the simulator nor
//! SQLite. Asks cargo for the example's normal dependency tree (offline, from the lock file) and
//! fails if either appears.

#![allow(clippy::expect_used)]

use std::process::Command;

#[test]
fn the_example_pulls_in_neither_the_simulator_nor_sqlite() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none", "--manifest-path", manifest])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("tranche-alpaca ")), "the tree lists the adapters:\n{tree}");
    assert!(tree.lines().any(|l| l.starts_with("object_store ")), "and the object store:\n{tree}");
    for unwanted in ["tranche-sim ", "rusqlite ", "libsqlite3-sys "] {
        assert!(!tree.lines().any(|l| l.starts_with(unwanted)), "{unwanted}is compiled:\n{tree}");
    }
}
