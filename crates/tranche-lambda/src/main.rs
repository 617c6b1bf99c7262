//! The function's binary: JSON log lines (with the plan and correlation ids), the configuration
//! read once per cold start, then Lambda's runtime loop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tranche_lambda::handler::Function;

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
        Ok::<Value, Error>(function.invoke(&event.payload, deadline(event.context.deadline())).await)
    }))
    .await
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
