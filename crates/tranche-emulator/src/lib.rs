//! Alpaca-compatible HTTP and WebSocket emulator served from the simulator.
//!
//! Planned contents (issue "Alpaca adapter and emulator"): the Alpaca trading REST paths, the
//! trade_updates stream and the market-data stream with Alpaca's JSON shapes, status codes, error
//! bodies and auth checks, plus fault-injection switches, over a `tranche-sim` market.
