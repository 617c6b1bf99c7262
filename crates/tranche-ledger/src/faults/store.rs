//! `FaultyStore`: any `object_store::ObjectStore` with seeded faults (slow calls, 503s before
//! the call is applied, lost answers after a write is applied, spurious precondition failures
//! on conditional writes, death after N writes; or a store that ignores the conditions of
//! conditional writes altogether).
//!
//! Invariants: the writes are `put`/`put_opts`, a multipart upload's `complete`, `delete`,
//! `copy`, `copy_if_not_exists`, `rename` and `rename_if_not_exists` (each one write, passed to
//! the inner store's own method); a spurious precondition failure answers a create-if-absent
//! with `AlreadyExists` and an update-if-version with `Precondition`; a listing faults only at
//! its start (the rest of the stream is the inner store's, unchanged); a read's body is not
//! faulted. With [`FaultPlan::none`] every call is passed through unchanged.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};

use super::{Access, FaultInjector, FaultKind, FaultPlan, InjectedFault};

const STORE: &str = "FaultyStore";

/// How a call touches the store, and how a spurious precondition failure is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
    /// Create if absent: refused with `AlreadyExists`.
    CreateIfAbsent,
    /// Update if the version matches: refused with `Precondition`.
    UpdateIfVersion,
}

impl Mode {
    fn access(self) -> Access {
        match self {
            Self::Read => Access::Read,
            Self::Write => Access::Write,
            Self::CreateIfAbsent | Self::UpdateIfVersion => Access::ConditionalWrite,
        }
    }

    fn of_put(mode: &PutMode) -> Self {
        match mode {
            PutMode::Overwrite => Self::Write,
            PutMode::Create => Self::CreateIfAbsent,
            PutMode::Update(_) => Self::UpdateIfVersion,
        }
    }
}

fn to_error(fault: InjectedFault, path: &str, mode: Mode) -> object_store::Error {
    match (fault.kind, mode) {
        (FaultKind::SpuriousPrecondition, Mode::UpdateIfVersion) => {
            object_store::Error::Precondition { path: path.to_owned(), source: Box::new(fault) }
        }
        (FaultKind::SpuriousPrecondition, _) => {
            object_store::Error::AlreadyExists { path: path.to_owned(), source: Box::new(fault) }
        }
        _ => object_store::Error::Generic { store: STORE, source: Box::new(fault) },
    }
}

/// One call through the injector: refused, slowed, applied, or applied with its answer lost.
async fn guarded<T>(
    injector: &FaultInjector,
    op: &'static str,
    path: &str,
    mode: Mode,
    inner: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    let ticket = injector.admit(op, path, mode.access()).map_err(|f| to_error(f, path, mode))?;
    if let Some(delay) = ticket.slow {
        tokio::time::sleep(delay).await;
    }
    if let Some(refusal) = ticket.refusal(path) {
        return Err(to_error(refusal, path, mode));
    }
    let result = inner.await;
    match ticket.settle(result.is_ok(), path) {
        Some(lost) => Err(to_error(lost, path, mode)),
        None => result,
    }
}

/// An object store that misbehaves on purpose, following a [`FaultPlan`].
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    injector: Arc<FaultInjector>,
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore").field("inner", &self.inner).field("injector", &self.injector).finish()
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl FaultyStore {
    /// `inner` with the faults of `plan`.
    pub fn new(inner: Arc<dyn ObjectStore>, plan: FaultPlan) -> Self {
        Self { inner, injector: Arc::new(FaultInjector::new(plan)) }
    }

    /// The fault decisions, counters and death switch.
    pub fn injector(&self) -> &FaultInjector {
        &self.injector
    }

    /// How many times each kind of fault fired (every kind present).
    pub fn faults_fired(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.injector.faults_fired()
    }

    /// The wrapped store (faultless access, e.g. to inspect what was really written).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// A listing that may be refused or slowed at its start and is otherwise the inner one.
    fn gated_list(
        &self,
        op: &'static str,
        prefix: Option<&Path>,
        inner: impl FnOnce() -> BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let target = prefix.map(ToString::to_string).unwrap_or_default();
        let ticket = match self.injector.admit(op, &target, Access::Read) {
            Ok(ticket) => ticket,
            Err(fault) => return stream::once(std::future::ready(Err(to_error(fault, &target, Mode::Read)))).boxed(),
        };
        let delay = ticket.slow;
        let start = match ticket.refusal(&target) {
            Some(refusal) => Err(to_error(refusal, &target, Mode::Read)),
            None if delay.is_none() => return inner(),
            None => Ok(inner()),
        };
        stream::once(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            start
        })
        .try_flatten()
        .boxed()
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put(&self, location: &Path, payload: PutPayload) -> object_store::Result<PutResult> {
        guarded(&self.injector, "put", location.as_ref(), Mode::Write, self.inner.put(location, payload)).await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let mode = Mode::of_put(&opts.mode);
        if self.injector.plan().ignores_conditions {
            opts.mode = PutMode::Overwrite;
        }
        guarded(&self.injector, "put", location.as_ref(), mode, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let path = location.as_ref();
        let start = self.inner.put_multipart_opts(location, opts);
        let upload = guarded(&self.injector, "put_multipart", path, Mode::Read, start).await?;
        Ok(Box::new(FaultyUpload { inner: upload, injector: Arc::clone(&self.injector), path: path.to_owned() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        guarded(&self.injector, "get", location.as_ref(), Mode::Read, self.inner.get_opts(location, options)).await
    }

    async fn head(&self, location: &Path) -> object_store::Result<ObjectMeta> {
        guarded(&self.injector, "head", location.as_ref(), Mode::Read, self.inner.head(location)).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        guarded(&self.injector, "delete", location.as_ref(), Mode::Write, self.inner.delete(location)).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.gated_list("list", prefix, || self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.gated_list("list", prefix, || self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let target = prefix.map(ToString::to_string).unwrap_or_default();
        guarded(&self.injector, "list_with_delimiter", &target, Mode::Read, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        guarded(&self.injector, "copy", to.as_ref(), Mode::Write, self.inner.copy(from, to)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        guarded(&self.injector, "rename", to.as_ref(), Mode::Write, self.inner.rename(from, to)).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        let inner = self.inner.copy_if_not_exists(from, to);
        guarded(&self.injector, "copy_if_not_exists", to.as_ref(), Mode::CreateIfAbsent, inner).await
    }

    async fn rename_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        let inner = self.inner.rename_if_not_exists(from, to);
        guarded(&self.injector, "rename_if_not_exists", to.as_ref(), Mode::CreateIfAbsent, inner).await
    }
}

/// A multipart upload whose parts may be refused or slowed and whose completion is a write.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    injector: Arc<FaultInjector>,
    path: String,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let ticket = match self.injector.admit("put_part", &self.path, Access::Read) {
            Ok(ticket) => ticket,
            Err(fault) => return Box::pin(std::future::ready(Err(to_error(fault, &self.path, Mode::Read)))),
        };
        let delay = ticket.slow;
        if let Some(refusal) = ticket.refusal(&self.path) {
            let error = to_error(refusal, &self.path, Mode::Read);
            return Box::pin(async move {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                Err(error)
            });
        }
        drop(ticket);
        let part = self.inner.put_part(data);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        guarded(&self.injector, "complete_multipart", &self.path, Mode::Write, self.inner.complete()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        guarded(&self.injector, "abort_multipart", &self.path, Mode::Read, self.inner.abort()).await
    }
}
