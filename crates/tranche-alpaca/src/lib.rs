//! Alpaca adapter: typed trading REST endpoints and the trade_updates WebSocket.
//!
//! Planned contents (issue "Alpaca adapter and emulator"): the `Broker` and `OrderEvents` ports over
//! Alpaca's REST API and trade_updates stream, tolerant decoding of every payload shape in the protocol
//! reference, every Alpaca error mapped into `BrokerError`, GET retries with backoff and jitter, no
//! blind retry of POST/PATCH/DELETE, a client-side rate limiter and a stream supervisor with gap
//! markers.
