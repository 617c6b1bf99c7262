//! The execution engine: a pure decision core and an async driver over the broker ports.
//!
//! Planned contents (issue "Execution engine"): `core.handle(input, now) -> Vec<Command>` for the
//! sell-then-buy phases, sizing, smart limit pricing, re-pegs, escalation, settlement waits and
//! results; and a driver with a biased `select!` (order events, then quotes, then timers) that runs
//! the commands against the ports. The engine depends on ports only, never on an adapter.
