//! gRPC adapters: proto messages to domain values at the edge, registry calls, errors to
//! statuses through [`crate::status`]. No rule of the domain lives here.

mod admin;
mod audit;
mod convert;
mod department;
mod holder;
mod licence;
mod policy;
mod seal;
mod sync;
mod template;
mod verification;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certseal_core::{Actor, CreditCode};
use certseal_registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Authenticator;

pub use admin::AdminApi;
pub use audit::AuditApi;
pub use department::DepartmentApi;
pub use holder::HolderApi;
pub use licence::LicenceApi;
pub use policy::PolicyApi;
pub use seal::SealApi;
pub use sync::SyncApi;
pub use template::TemplateApi;
pub use verification::VerificationApi;

/// What every service adapter needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The registry all calls go to.
    pub registry: Arc<Registry>,
    /// How callers are identified.
    pub auth: Authenticator,
    /// Timeouts and bounds of streams.
    pub limits: crate::config::Limits,
    /// Calls in progress per department.
    pub in_flight: Arc<DepartmentSlots>,
    /// Becomes true when the server begins to shut down: long-running streams end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// A caller let in: who it is, and its department's slot, held until the call ends.
pub(crate) struct Caller {
    pub actor: Actor,
    pub slot: OwnedSemaphorePermit,
}

impl Context {
    /// A page request within `[limits] max_page_size`.
    pub(crate) fn page(&self, size: u32, token: String) -> certseal_registry::PageRequest {
        let max = self.limits.max_page_size;
        // 0 asks for the default (50), itself bounded by the configured maximum.
        let size = match size {
            0 if max >= 50 => 0,
            0 => max,
            n => n.min(max),
        };
        certseal_registry::PageRequest { size, token }
    }

    /// The gate of every RPC: identifies the caller and takes one of its department's call
    /// slots. The registry operation then checks the role and grants it needs; an RPC that
    /// reaches no registry operation uses [`Context::admit_checked`].
    pub(crate) fn admit<T>(&self, request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
        let actor = self.auth.actor(request)?;
        // Checked on every call too: a revocation also ends connections already open.
        if self.auth == Authenticator::ClientCert
            && let Some(der) = request
                .peer_certs()
                .as_ref()
                .and_then(|c| c.first().cloned())
            && let Err(e) = self.registry.check_client_certificate(der.as_ref())
        {
            tracing::warn!(department = %actor.department, reason = %e, "call refused");
            return Err(crate::status::to_status(e));
        }
        let slot = self.in_flight.take(&actor.department)?;
        Ok(Caller { actor, slot })
    }

    /// [`Context::admit`], and a check that the department holds the role it acts in.
    pub(crate) fn admit_checked<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<Caller, tonic::Status> {
        let caller = self.admit(request)?;
        self.registry
            .check_caller(&caller.actor)
            .map_err(crate::status::to_status)?;
        Ok(caller)
    }
}

/// Bounds the calls one department has in progress, so that no department can take the
/// server from the others.
#[derive(Debug)]
pub struct DepartmentSlots {
    per_department: usize,
    slots: Mutex<HashMap<CreditCode, Arc<Semaphore>>>,
}

impl DepartmentSlots {
    /// At most `per_department` calls of one department at a time.
    pub fn new(per_department: usize) -> Self {
        Self {
            per_department,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, department: &CreditCode) -> Result<OwnedSemaphorePermit, tonic::Status> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            // Forget idle departments now and then so the map stays small.
            if slots.len() > 10_000 {
                let full = self.per_department;
                slots.retain(|_, s| s.available_permits() < full);
            }
            slots
                .entry(department.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_department)))
                .clone()
        };
        semaphore.try_acquire_owned().map_err(|_| {
            tracing::warn!(%department, limit = self.per_department, "department call limit reached");
            tonic::Status::resource_exhausted(format!(
                "department {department} has {} calls in progress, its limit ([limits] per_department_concurrency): retry later",
                self.per_department
            ))
        })
    }
}

/// The next item of a client stream, within the idle timeout and the item bound; `Ok(None)` at
/// its end.
pub(crate) async fn next_item<T>(
    items: &mut tonic::Streaming<T>,
    limits: &crate::config::Limits,
    read: u64,
) -> Result<Option<T>, tonic::Status> {
    if read >= limits.stream_max_items {
        return Err(tonic::Status::resource_exhausted(format!(
            "a stream carries at most {} items",
            limits.stream_max_items
        )));
    }
    match tokio::time::timeout(limits.stream_idle, items.message()).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no item for {} s: the stream is closed",
            limits.stream_idle.as_secs()
        ))),
    }
}

/// Items of one bulk call handled at the same time: enough to fill a group commit.
const BULK_IN_FLIGHT: usize = 256;

/// Admits the caller of a bulk call, then runs `handle` on every item of its client stream,
/// up to [`BULK_IN_FLIGHT`] at once, and streams the answers back in completion order. The
/// stream ends with an error status if the client stalls, sends too many items or fails.
pub(crate) fn bulk<I, R, F, Fut>(
    ctx: &Context,
    request: tonic::Request<tonic::Streaming<I>>,
    handle: F,
) -> Result<tokio_stream::wrappers::ReceiverStream<Result<R, tonic::Status>>, tonic::Status>
where
    I: Send + 'static,
    R: Send + 'static,
    F: Fn(Arc<Registry>, Arc<Actor>, I, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let Caller { actor, slot } = ctx.admit(&request)?;
    let (actor, registry, limits) = (Arc::new(actor), ctx.registry.clone(), ctx.limits);
    let mut items = request.into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(BULK_IN_FLIGHT);
    // The department's slot is held until the last item's answer is handed over.
    let slot = Arc::new(slot);
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(BULK_IN_FLIGHT));
        let mut index = 0u64;
        loop {
            let item = match next_item(&mut items, &limits, index).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let answer = handle(registry.clone(), actor.clone(), item, index);
            let (tx, slot, idle) = (tx.clone(), slot.clone(), limits.stream_idle);
            index += 1;
            tokio::spawn(async move {
                // A client that stops reading answers loses them after the idle timeout,
                // which frees the item's place and, with the last one, the slot.
                let _ = tokio::time::timeout(idle, tx.send(Ok(answer.await))).await;
                drop((permit, slot));
            });
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}
