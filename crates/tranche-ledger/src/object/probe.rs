//! The proof that a store honours conditional writes, asked once per ledger before its first
//! plan is claimed: the lease's fencing rests on `If-None-Match: *` (a create refused when the
//! object exists) and `If-Match` (an update refused when the version moved), and a store that
//! accepts both unconditionally (an S3-compatible service without conditional writes, a proxy
//! that drops the headers) would let two workers hold one plan and send its orders twice.
//!
//! Invariants: the probe writes only its own object (`probes/<owner>-<unique>.json` under the
//! prefix, deleted afterwards, best effort); a store shown to ignore a condition is refused with
//! [`LedgerError::Invalid`] before any plan is touched; a transient failure is a storage error,
//! and the next `begin` asks again (only a success is remembered).

use chrono::Utc;
use object_store::{PutMode, UpdateVersion};
use serde::Serialize;

use super::{new_run_id, safe, storage, ObjectLedger};
use crate::model::LedgerError;

/// The probe object's content: who wrote it and when (for whoever finds one left behind).
#[derive(Serialize)]
struct Probe<'a> {
    owner: &'a str,
    written_at: chrono::DateTime<Utc>,
    purpose: &'static str,
}

/// A version no object has: an update conditional on it must be refused.
const NO_SUCH_VERSION: &str = "\"tranche-probe-no-such-version\"";

impl ObjectLedger {
    /// Shows that the store refuses a create of an object that exists and an update of an object
    /// whose version moved (see the module's header).
    pub(super) async fn probe_conditional_writes(&self) -> Result<(), LedgerError> {
        let path = self.prefix.child("probes").child(format!("{}-{}.json", safe(&self.owner), new_run_id()));
        let probe = Probe {
            owner: &self.owner,
            written_at: (self.now)(),
            purpose: "shows that the store honours conditional writes; safe to delete",
        };
        self.create_once(&path, &probe).await?;
        let verdict = self.conditions_refused(&path, &probe).await;
        if let Err(e) = self.store.delete(&path).await {
            tracing::warn!(error = %e, %path, "could not delete the store probe (allow s3:DeleteObject on the prefix's probes/)");
        }
        verdict
    }

    async fn conditions_refused(&self, path: &object_store::path::Path, probe: &Probe<'_>) -> Result<(), LedgerError> {
        let ignored = |what: &str| {
            LedgerError::Invalid(format!(
                "the ledger's store accepted {what}: it does not honour conditional writes (If-None-Match, \
                 If-Match), on which the plan lease's fencing rests; two workers could hold one plan and send \
                 its orders twice. Use a store with conditional writes (Amazon S3, MinIO, ...)"
            ))
        };
        let unsupported = |e: object_store::Error| {
            LedgerError::Invalid(format!(
                "the ledger's store cannot write conditionally ({e}); the plan lease's fencing needs it"
            ))
        };
        match self.put_json(path, probe, PutMode::Create).await {
            Ok(_) => return Err(ignored("a create of an object that exists (If-None-Match: *)")),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {}
            Err(e @ object_store::Error::NotImplemented) => return Err(unsupported(e)),
            Err(e) => return Err(storage(e)),
        }
        let moved = UpdateVersion { e_tag: Some(NO_SUCH_VERSION.to_owned()), version: None };
        match self.put_json(path, probe, PutMode::Update(moved)).await {
            Ok(_) => Err(ignored("an update conditional on a version the object does not have (If-Match)")),
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e @ object_store::Error::NotImplemented) => Err(unsupported(e)),
            Err(e) => Err(storage(e)),
        }
    }
}
