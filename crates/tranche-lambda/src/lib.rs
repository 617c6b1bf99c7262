//! Tranche as an AWS Lambda function, the way the predecessor ran: the portfolio step's
//! `RebalancePlanned` event in (directly, from EventBridge, or an SQS batch), a
//! `TradeExecuted`-compatible answer out, every plan executed exactly once through the S3 ledger
//! however often or concurrently the event is delivered.
//!
//! - `event`: what an invocation carries, parsed and validated.
//! - `answer`: the `TradeExecuted` payload and the SQS partial batch response.
//! - `handler`: one invocation, with the run's deadline taken from the invocation's.

pub mod answer;
pub mod event;
pub mod handler;
