//! The execution engine: a pure decision core and an async driver over the broker ports.
//!
//! - [`EngineCore`] is the synchronous state machine `handle(input, now) -> Vec<Command>`: the
//!   sell-then-buy phases, sizing, smart limit pricing, re-pegs by replace or cancel-then-new,
//!   escalation, settlement and buying-power scaling, and the result.
//! - [`execute`] is the driver: it runs the core's commands against the `Broker`, `OrderEvents`,
//!   `QuoteFeed` and `Clock` ports, feeds the answers back, and returns the result. Its `select!`
//!   is biased: order events first, then broker answers, then quotes, then timers. With a ledger
//!   ([`execute_recorded`]) every order is fenced: sent only under a freshly proven claim on the
//!   plan, and a worker that lost the plan to another stops at once.
//!
//! The engine depends on the ports only, never on an adapter.

mod config;
mod core;
mod driver;
mod events;
mod fence;
mod io;
pub mod predecessor;
mod preview;
pub mod pricing;
pub mod sizing;

pub use config::{ConfigIssue, ConfigIssues, EngineConfig, Escalation, SmartPricing, Strategy};
pub use core::{EngineCore, OpenOrder, Recovery};
pub use driver::{execute, execute_recorded, execute_recorded_until, Ports, RunError, StopRequest};
pub use events::{Phase, ProgressEvent};
pub use io::{Command, Input, LedgerRecord, PreflightData, TimerId};
pub use preview::{preview, Preview, PreviewRow};
