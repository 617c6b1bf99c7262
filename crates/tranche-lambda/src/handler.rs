//! One invocation: every `RebalancePlanned` event executed exactly once through the S3 ledger,
//! within the invocation's time.
//!
//! Invariants: the function refuses to run without an S3 ledger (a redelivered or concurrent
//! event for the same plan must find the same ledger); a completed plan answers its recorded
//! result and sends nothing; a plan another worker runs is reported, not waited for; the run's
//! deadline is the invocation's remaining time less a safety margin, and a plan not finished by
//! then is left resumable (its next delivery continues it); Alpaca's live host is refused unless
//! `TRANCHE_CONFIRM_LIVE=yes`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tranche::alpaca::AlpacaConfig;
use tranche::engine::{execute_recorded, EngineConfig, Ports, RunError};
use tranche::ledger::{LeaseTerms, Ledger, LedgerSpec};
use tranche::wiring::AlpacaConnection;

use crate::answer::{batch_failures, not_executed, trade_executed, Disposition};
use crate::event::{parse, Invocation, RebalancePlanned};

/// Time kept back from the invocation's remaining time: for the final cancels, recording the
/// result and answering (default).
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// The name of the function error that asks for the event to be delivered again.
pub const DELIVER_AGAIN: &str = "TrancheDeliverAgain";

/// The least time worth starting a run with (default).
pub const LEAST_RUN: Duration = Duration::from_secs(15);

/// What an invocation answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The `TradeExecuted` answer, or an SQS batch's partial failures.
    pub payload: Value,
    /// A single event that must be delivered again: the plan was left resumable, another
    /// invocation runs it, or it could not be started.
    pub deliver_again: bool,
}

/// The function's configuration, read once per cold start.
#[derive(Debug, Clone)]
pub struct Function {
    ledger: LedgerSpec,
    lease: LeaseTerms,
    alpaca: AlpacaConfig,
    engine: EngineConfig,
    margin: Duration,
    least_run: Duration,
    /// The ledger, opened at the first event and kept for the process's life: its store is
    /// proven once (see the object ledger's conditional-write probe), not once per event.
    opened: OpenedLedger,
}

/// The ledger a warm function keeps between events.
#[derive(Clone, Default)]
struct OpenedLedger(Arc<Mutex<Option<Arc<dyn Ledger>>>>);

impl std::fmt::Debug for OpenedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.0.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        f.write_str(if open { "OpenedLedger(open)" } else { "OpenedLedger(not yet)" })
    }
}

/// The longest a Lambda invocation may run (its timeout's maximum).
const LONGEST_INVOCATION: Duration = Duration::from_secs(900);

/// Refuses a margin and a least run that no invocation can fit: every event would be answered
/// "deliver again", and redelivered for ever, with nothing ever traded.
fn room_to_run(margin: Duration, least_run: Duration) -> Result<(), String> {
    if margin.saturating_add(least_run) >= LONGEST_INVOCATION {
        return Err(format!(
            "TRANCHE_DEADLINE_MARGIN ({} s) and TRANCHE_LEAST_RUN ({} s) add up to the longest a Lambda invocation may \
             run ({} s) or more: no event could ever be run",
            margin.as_secs_f64(),
            least_run.as_secs_f64(),
            LONGEST_INVOCATION.as_secs()
        ));
    }
    Ok(())
}

fn seconds(name: &str, default: Duration) -> Result<Duration, String> {
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| format!("{name}=`{text}` is not a number of seconds")),
    }
}

impl Function {
    /// From the environment: `TRANCHE_LEDGER` (an `s3://BUCKET/PREFIX`, required),
    /// `TRANCHE_LEDGER_LEASE` and `TRANCHE_LEDGER_CLOCK_SKEW` (seconds), `TRANCHE_DEADLINE_MARGIN`
    /// (seconds kept back from the invocation's time, default 60), `TRANCHE_LEAST_RUN` (the
    /// least time worth starting a run with, default 15 s), Alpaca's `APCA_*` and the bucket's
    /// `AWS_*`.
    pub fn from_env() -> Result<Self, String> {
        let spec = std::env::var("TRANCHE_LEDGER").map_err(|_| {
            "TRANCHE_LEDGER is not set: the function needs an S3 ledger (s3://BUCKET/PREFIX) so that a redelivered event never trades twice".to_owned()
        })?;
        let ledger: LedgerSpec = spec.parse().map_err(|e| format!("TRANCHE_LEDGER: {e}"))?;
        if !ledger.is_shared() {
            return Err(format!(
                "TRANCHE_LEDGER={spec} is not an S3 ledger: concurrent and redelivered invocations must share one (s3://BUCKET/PREFIX)"
            ));
        }
        let defaults = LeaseTerms::default();
        let lease = LeaseTerms::new(
            seconds("TRANCHE_LEDGER_LEASE", defaults.length())?,
            seconds("TRANCHE_LEDGER_CLOCK_SKEW", defaults.clock_skew())?,
        )
        .map_err(|e| e.to_string())?;
        let alpaca = AlpacaConfig::from_env(false).map_err(|e| e.to_string())?;
        if alpaca.is_live() && std::env::var("TRANCHE_CONFIRM_LIVE").as_deref() != Ok("yes") {
            return Err(
                "APCA_API_BASE_URL is Alpaca's live host: set TRANCHE_CONFIRM_LIVE=yes to trade real money".into()
            );
        }
        let margin = seconds("TRANCHE_DEADLINE_MARGIN", DEFAULT_MARGIN)?;
        let least_run = seconds("TRANCHE_LEAST_RUN", LEAST_RUN)?;
        room_to_run(margin, least_run)?;
        Ok(Self {
            ledger,
            lease,
            alpaca,
            engine: EngineConfig::default(),
            margin,
            least_run,
            opened: OpenedLedger::default(),
        })
    }

    /// A function with the given ledger (which must be shared: an S3 one), lease, Alpaca
    /// connection, engine settings and margin.
    pub fn new(
        ledger: LedgerSpec,
        lease: LeaseTerms,
        alpaca: AlpacaConfig,
        engine: EngineConfig,
        margin: Duration,
    ) -> Result<Self, String> {
        if !ledger.is_shared() {
            return Err(format!("{ledger} is not an S3 ledger: the function needs one (s3://BUCKET/PREFIX)"));
        }
        Ok(Self { ledger, lease, alpaca, engine, margin, least_run: LEAST_RUN, opened: OpenedLedger::default() })
    }

    /// The same function starting runs with as little as `least` left (default 15 s).
    #[must_use]
    pub fn with_least_run(mut self, least: Duration) -> Self {
        self.least_run = least;
        self
    }

    /// Answers one invocation whose deadline is `deadline` (its payload only; see
    /// [`Function::answer`]).
    pub async fn invoke(&self, payload: &Value, deadline: SystemTime) -> Value {
        self.answer(payload, deadline).await.payload
    }

    /// Answers one invocation whose deadline is `deadline`: the payload, and whether a single
    /// event must be delivered again (left resumable, run elsewhere, not started): the binary
    /// then answers with a function error, the only answer on which Lambda retries an
    /// asynchronous invocation (an EventBridge rule) and a Step Functions state can. An SQS
    /// batch says it per record in its payload.
    pub async fn answer(&self, payload: &Value, deadline: SystemTime) -> Answer {
        match parse(payload) {
            Invocation::One(one) => match *one {
                Err(e) => Answer { payload: not_executed(None, &e.to_string(), false), deliver_again: false },
                Ok(event) => {
                    let (payload, deliver_again) = self.execute(&event, deadline).await;
                    Answer { payload, deliver_again }
                }
            },
            Invocation::Batch(records) => {
                let mut again = Vec::new();
                for record in records {
                    let retry = match record.event {
                        // Not executable: delivering it again changes nothing.
                        Err(e) => {
                            tracing::error!(message_id = %record.message_id, error = %e, "record refused");
                            false
                        }
                        Ok(event) => {
                            let (answer, retry) = self.execute(&event, deadline).await;
                            // The batch's payload is Lambda's, not the workflow's: the
                            // `TradeExecuted` answer goes to the log (the ledger holds the
                            // whole result).
                            tracing::info!(
                                message_id = %record.message_id,
                                event_id = %answer["event_id"],
                                disposition = %answer["metadata"]["disposition"],
                                success = %answer["success"],
                                orders_placed = %answer["orders_placed"],
                                orders_succeeded = %answer["orders_succeeded"],
                                failed_symbols = %answer["failed_symbols"],
                                failure_reason = %answer["failure_reason"],
                                "TradeExecuted"
                            );
                            retry
                        }
                    };
                    if retry {
                        again.push(record.message_id);
                    }
                }
                Answer { payload: batch_failures(&again), deliver_again: false }
            }
        }
    }

    /// Executes one event; its answer, and whether it should be delivered again.
    async fn execute(&self, event: &RebalancePlanned, deadline: SystemTime) -> (Value, bool) {
        let plan_id = event.plan.plan_id.clone();
        // The time the run may take: the invocation's remaining time less the margin.
        let left = || deadline.duration_since(SystemTime::now()).unwrap_or_default().saturating_sub(self.margin);
        let not_started = |remaining: Duration| {
            let reason =
                format!("only {} s left in this invocation: not started; deliver it again", remaining.as_secs());
            (not_executed(Some(event), &reason, true), true)
        };
        let at_start = left();
        if at_start < self.least_run {
            return not_started(at_start);
        }
        let ledger = match self.ledger() {
            Ok(l) => l,
            Err(e) => return (not_executed(Some(event), &format!("the ledger cannot be opened: {e}"), true), true),
        };
        let ports = match self.ports() {
            Ok(p) => p,
            Err(e) => return (not_executed(Some(event), &e, true), true),
        };
        let replayed = ledger.completed_before(&plan_id).await;
        // The run's time is counted from here: the reads above (the ledger's, at S3's pace, up to
        // a quarter of the lease each with their retries) spent some of the invocation.
        let remaining = left();
        if remaining < self.least_run && !replayed {
            return not_started(remaining);
        }
        // The invocation's time bounds the run, not a phase: a phase that runs out of it is the
        // run running out of time (resumable), not the phase's own deadline (items given up).
        // The run's end (its leftover orders settled) fits in half the margin: the rest is for
        // recording the result and answering.
        let engine = EngineConfig {
            run_deadline: self.engine.run_deadline.min(remaining),
            resumable_at_deadline: true,
            wind_down: self.engine.wind_down.min(self.margin / 2),
            ..self.engine.clone()
        };
        tracing::info!(%plan_id, correlation_id = %event.correlation_id, remaining_s = remaining.as_secs(), "executing");
        match execute_recorded(event.plan.clone(), engine, ports, ledger, None).await {
            Ok(result) => {
                let disposition = if replayed { Disposition::Replayed } else { Disposition::Executed };
                (trade_executed(event, &result, disposition), false)
            }
            Err(RunError::LeftResumable { result }) => (trade_executed(event, &result, Disposition::Resumable), true),
            Err(RunError::LedgerAfterRun { error, result }) => {
                tracing::error!(%plan_id, %error, "the run finished but its result could not be recorded");
                (trade_executed(event, &result, Disposition::Executed), false)
            }
            // Another worker has the plan: reported; a later delivery finds it completed.
            Err(e @ (RunError::AlreadyRunning { .. } | RunError::ClaimLost { .. })) => {
                (not_executed(Some(event), &e.to_string(), true), true)
            }
            Err(e @ RunError::Ledger(_)) => (not_executed(Some(event), &e.to_string(), true), true),
        }
    }

    /// The ledger: opened at the first event, then the same for every event of this process.
    fn ledger(&self) -> Result<Arc<dyn Ledger>, tranche::ledger::LedgerError> {
        let mut opened = self.opened.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ledger) = opened.as_ref() {
            return Ok(Arc::clone(ledger));
        }
        let ledger = self.ledger.open(&format!("tranche-lambda-{}", std::process::id()), self.lease)?;
        *opened = Some(Arc::clone(&ledger));
        Ok(ledger)
    }

    /// The broker, its trade-update stream, the quote feed and the clock, at Alpaca.
    fn ports(&self) -> Result<Ports, String> {
        AlpacaConnection::open(self.alpaca.clone()).map(|c| c.ports()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_margin_and_least_run_no_invocation_can_fit_are_refused() {
        assert!(room_to_run(DEFAULT_MARGIN, LEAST_RUN).is_ok());
        assert!(room_to_run(Duration::from_secs(800), Duration::from_secs(99)).is_ok());
        let refused = room_to_run(Duration::from_secs(890), Duration::from_secs(10)).unwrap_err();
        assert!(refused.contains("no event could ever be run"), "{refused}");
        assert!(room_to_run(Duration::MAX, LEAST_RUN).is_err(), "no overflow");
    }

    /// A warm function keeps its ledger between events (its store proven once, not per event),
    /// and its clones share it.
    #[test]
    fn the_ledger_is_opened_once_per_process() {
        let spec: LedgerSpec = "s3://bucket/tranche".parse().unwrap_or_else(|e| panic!("{e}"));
        let alpaca = AlpacaConfig::new("KEY", tranche::alpaca::Secret::new("SECRET"));
        let function = Function::new(spec, LeaseTerms::default(), alpaca, EngineConfig::default(), DEFAULT_MARGIN)
            .unwrap_or_else(|e| panic!("{e}"));
        let first = function.ledger().unwrap_or_else(|e| panic!("{e}"));
        let again = function.clone().ledger().unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&first, &again));
    }
}
