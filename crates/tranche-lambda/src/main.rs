//! The function's binary: JSON log lines (with the plan and correlation ids), the configuration
//! read once per cold start, then Lambda's runtime loop.

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
        Ok::<Value, Error>(function.invoke(&event.payload, event.context.deadline()).await)
    }))
    .await
}
