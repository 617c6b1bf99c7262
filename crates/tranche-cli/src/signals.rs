//! Ctrl-C and SIGTERM (a container or service stop) during `execute` at Alpaca. The first stops
//! the run as at its deadline: its open orders cancelled, its fills read, the result printed and
//! recorded, the plan left to resume (the same command continues it), exit 130. A second one
//! exits at once, saying that orders may still be working.
//!
//! Invariant: a signal that cannot be listened for never stops a run (the stop request then
//! never comes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tranche::engine::StopRequest;

/// The exit code of a run stopped by a signal, and of a second signal (128 + SIGINT's number,
/// as shells report Ctrl-C).
pub const INTERRUPTED: u8 = 130;

/// The stop request of a run: the first SIGINT or SIGTERM, named. `seen` is set when the run
/// took it.
/// The signals are listened for from the call on, by a task of their own (call it inside the
/// run's runtime), for the whole run: its end (leftover orders settled, the result recorded)
/// included, where nothing polls the stop request any more and a signal, handled by nobody,
/// did nothing (a second Ctrl-C did not exit either).
pub fn stop_request(seen: Arc<AtomicBool>) -> StopRequest {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let name = next_signal().await;
        crate::logging::warn(&format!(
            "{name}: stopping the run: cancelling its open orders and recording what it did (again to exit at once)"
        ));
        let _ = tx.send(format!("interrupted by {name}"));
        let again = next_signal().await;
        errln!("{again} again: exiting now; orders of this run may still be working at the broker (`tranche orders`)");
        std::process::exit(i32::from(INTERRUPTED));
    });
    // `seen` only once the engine takes the request: a signal during the end of a run that had
    // already ended by its deadline did not stop it.
    Box::pin(async move {
        match rx.await {
            Ok(reason) => {
                seen.store(true, Ordering::SeqCst);
                reason
            }
            Err(_) => std::future::pending().await,
        }
    })
}

/// The next SIGINT or SIGTERM; never, for a signal that cannot be listened for.
async fn next_signal() -> &'static str {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = async {
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                    "SIGTERM"
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            name = interrupt => name,
            name = terminate => name,
        }
    }
    #[cfg(not(unix))]
    {
        interrupt.await
    }
}
