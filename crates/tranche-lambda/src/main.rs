//! The function's binary: JSON log lines (with the plan and correlation ids), the configuration
//! read once per cold start, then Lambda's runtime loop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use tranche_lambda::handler::{Answer, Function, DELIVER_AGAIN};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).with_writer(std::io::stderr).init();
    let function = match Function::from_env() {
        Ok(f) => f,
        Err(message) => {
            tracing::error!(%message, "the function is not configured");
            return Err(message.into());
        }
    };
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let answer = function.answer(&event.payload, deadline(event.context.deadline())).await;
        answered(answer)
    }))
    .await
}

/// The runtime's answer: the payload, or for a single event to deliver again a function error
/// named `TrancheDeliverAgain` whose message is the payload (Lambda retries an asynchronous
/// invocation only on an error; a Step Functions state can retry on the name).
fn answered(answer: Answer) -> Result<Value, Diagnostic> {
    if answer.deliver_again {
        Err(Diagnostic { error_type: DELIVER_AGAIN.into(), error_message: answer.payload.to_string() })
    } else {
        Ok(answer.payload)
    }
}

/// The invocation's deadline. Lambda sends it in milliseconds since the epoch; a local runtime
/// API (cargo-lambda's) sends the timeout itself, which reads as a moment in January 1970: such
/// a value is taken as counted from now.
fn deadline(sent: SystemTime) -> SystemTime {
    let year_2000 = UNIX_EPOCH + Duration::from_secs(946_684_800);
    match sent.duration_since(UNIX_EPOCH) {
        Ok(relative) if sent < year_2000 => {
            tracing::warn!(
                seconds = relative.as_secs(),
                "the runtime API sent a relative deadline (a local emulator); counting it from now"
            );
            SystemTime::now() + relative
        }
        _ => sent,
    }
}
