//! gRPC adapters: proto messages to domain values at the edge, registry calls, errors to
//! statuses through [`crate::status`]. No rule of the domain lives here.

mod audit;
mod convert;
mod department;
mod licence;
mod seal;
mod template;
mod verification;

use std::sync::Arc;

use certseal_registry::Registry;

use crate::auth::Authenticator;

pub use audit::AuditApi;
pub use department::DepartmentApi;
pub use licence::LicenceApi;
pub use seal::SealApi;
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

/// Runs `handle` on every item of a client stream, up to [`BULK_IN_FLIGHT`] at once, and
/// streams the answers back in completion order. The stream ends with an error status if the
/// client stalls, sends too many items or fails.
pub(crate) fn bulk<I, R, F, Fut>(
    mut items: tonic::Streaming<I>,
    limits: crate::config::Limits,
    handle: F,
) -> tokio_stream::wrappers::ReceiverStream<Result<R, tonic::Status>>
where
    I: Send + 'static,
    R: Send + 'static,
    F: Fn(I, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(BULK_IN_FLIGHT);
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
            let (answer, tx) = (handle(item, index), tx.clone());
            index += 1;
            tokio::spawn(async move {
                let _ = tx.send(Ok(answer.await)).await;
                drop(permit);
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
