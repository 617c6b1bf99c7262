//! Alpaca market-data stream: codec, latest-quote store, subscriptions and supervisor.
//!
//! Planned contents (issue "Pricing stream"): a JSON and msgpack codec separate from the transport,
//! reference-counted subscriptions, a bounded per-symbol latest-quote store, a data-age watchdog,
//! reconnect with backoff and resubscription, and the REST latest-quote fallback; it implements the
//! `QuoteFeed` port.
