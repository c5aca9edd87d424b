//! `certseal.v1.SyncService`: the change feed and the changes decided upstream, for sharing
//! platforms (role sync).
//!
//! A feed is a task that reads pages of the log from the store and hands their changes to the
//! connection through a small buffer. Issuing never waits for it: the writer only publishes the
//! size of each new checkpoint. A consumer that takes nothing for the stall timeout while
//! changes wait is told where to resume, and its task ends, holding nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certseal_core::{Actor, Role, Timestamp};
use certseal_registry::{ChangeSubject, FeedChange, Registry, RegistryError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert::{self, timestamp};
use super::licence::{fields_to_pb, licence_state_to_pb, status_to_pb};
use super::{Caller, Context};
use crate::pb;
use crate::pb::sync_service_server::SyncService;
use crate::status::{feed_behind, to_status};

/// The sync service adapter.
#[derive(Debug, Clone)]
pub struct SyncApi(pub Context);

/// Changes handed to the connection ahead of the consumer: with HTTP/2's window, what a
/// stalled consumer makes the server hold.
pub const FEED_BUFFER: usize = 64;
/// How often a consumer with every change hears of the latest checkpoint again.
const CAUGHT_UP_EVERY: Duration = Duration::from_secs(30);
/// How often a cluster follower, which signs nothing, looks for a newer checkpoint.
const FOLLOWER_POLL: Duration = Duration::from_millis(250);
/// How often the writing node looks anyway (it may have lost the lease meanwhile).
const LEADER_POLL: Duration = Duration::from_secs(1);

type FeedStream = Pin<Box<dyn Stream<Item = Result<pb::WatchChangesResponse, Status>> + Send>>;

/// Runs a registry read off the async threads.
async fn blocking<T: Send + 'static>(
    registry: &Arc<Registry>,
    f: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, Status> {
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || f(&registry))
        .await
        .map_err(|_| Status::internal("internal error"))?
        .map_err(to_status)
}

fn entry_actor(department: &str, role: &str) -> pb::Actor {
    pb::Actor {
        department: department.to_owned(),
        role: role
            .parse::<Role>()
            .map_or(pb::Role::Unspecified, convert::role) as i32,
    }
}

/// A change as a message.
pub(crate) fn change_to_pb(c: FeedChange, origin: &str) -> pb::Change {
    let licence = c.licence.map(|l| {
        let mut out = licence_state_to_pb(&l.licence);
        // As of the change, not now.
        out.status = status_to_pb(l.licence.status()) as i32;
        if let Some(h) = out.holder.as_mut() {
            h.name = l.claims.holder.name.clone();
        }
        out.fields = fields_to_pb(&l.claims.fields);
        out.document = l.document.unwrap_or_default();
        out
    });
    let (term, reason) = c.national;
    pb::Change {
        origin: origin.to_owned(),
        index: c.index,
        kind: c.entry.kind.clone(),
        subject_kind: match c.subject {
            ChangeSubject::Licence => pb::ChangeSubject::Licence,
            ChangeSubject::Seal => pb::ChangeSubject::Seal,
            ChangeSubject::Template => pb::ChangeSubject::Template,
            ChangeSubject::Department => pb::ChangeSubject::Department,
        } as i32,
        subject: c.entry.subject.clone(),
        digest: c.entry.digest.to_vec(),
        time: Some(timestamp(Timestamp(c.entry.time))),
        actor: Some(entry_actor(&c.entry.actor_department, &c.entry.actor_role)),
        entry: c.entry_bytes,
        licence,
        national: (!term.is_empty() || reason.is_some()).then(|| pb::NationalStatus {
            term: term.to_owned(),
            reason: reason.unwrap_or_default().to_owned(),
        }),
        upstream: c.upstream.as_ref().map(super::licence::upstream_to_pb),
    }
}

/// What one feed needs.
struct Feed {
    registry: Arc<Registry>,
    actor: Actor,
    /// The last index handed to the consumer (`None`: nothing yet).
    last_sent: Option<u64>,
    next: u64,
    stall: Duration,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The caller's client certificate (DER), checked again on every page: a revocation ends
    /// the feed.
    certificate: Option<Vec<u8>>,
    items: mpsc::Sender<pb::WatchChangesResponse>,
    end: mpsc::Sender<Status>,
}

/// Why a feed stopped handing over changes.
enum Stop {
    /// The consumer went away.
    Gone,
    /// The stream ends with this status.
    End(Status),
}

impl Feed {
    async fn run(mut self) {
        if let Stop::End(status) = self.follow().await {
            let _ = self.end.send(status).await;
        }
    }

    /// Hands `item` over, or stops if the consumer took nothing for the stall timeout.
    async fn hand_over(
        &mut self,
        item: pb::WatchChangesResponse,
        origin: &str,
        waiting: u64,
    ) -> Result<(), Stop> {
        let sent = tokio::select! {
            sent = tokio::time::timeout(self.stall, self.items.send(item)) => sent,
            _ = self.stopping.changed() => return Err(self.shutting_down()),
        };
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => {
                tracing::warn!(department = %self.actor.department, resume_after = ?self.last_sent, waiting, "change-feed consumer fell behind; told to resume");
                Err(Stop::End(feed_behind(
                    self.last_sent,
                    origin,
                    waiting,
                    self.stall,
                )))
            }
        }
    }

    fn shutting_down(&self) -> Stop {
        Stop::End(Status::unavailable(format!(
            "the server is shutting down: resume after {}",
            self.last_sent
                .map_or_else(|| "nothing (from the start)".to_owned(), |i| i.to_string())
        )))
    }

    async fn follow(&mut self) -> Stop {
        let mut signed = self.registry.watch_signed();
        let mut told: Option<(u64, Instant)> = None;
        loop {
            if *self.stopping.borrow() {
                return self.shutting_down();
            }
            if let Some(der) = self.certificate.clone()
                && let Err(e) =
                    blocking(&self.registry, move |r| r.check_client_certificate(&der)).await
            {
                return Stop::End(e);
            }
            let latest = match blocking(&self.registry, |r| Ok(r.latest_checkpoint())).await {
                Ok(l) => l,
                Err(e) => return Stop::End(e),
            };
            let (size, origin) = (latest.checkpoint.size, latest.checkpoint.origin.clone());
            if self.next < size {
                let (actor, next) = (self.actor.clone(), self.next);
                let page = match blocking(&self.registry, move |r| r.feed_page(&actor, next, size))
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return Stop::End(e),
                };
                for c in page.changes {
                    let index = c.index;
                    let item = pb::WatchChangesResponse {
                        item: Some(pb::watch_changes_response::Item::Change(change_to_pb(
                            c, &origin,
                        ))),
                    };
                    if let Err(stop) = self.hand_over(item, &origin, size - index).await {
                        return stop;
                    }
                    self.last_sent = Some(index);
                }
                self.next = page.next;
                continue;
            }
            let due = told.is_none_or(|(s, at)| s != size || at.elapsed() >= CAUGHT_UP_EVERY);
            if due {
                let item = pb::WatchChangesResponse {
                    item: Some(pb::watch_changes_response::Item::CaughtUp(pb::CaughtUp {
                        checkpoint: latest.note.clone(),
                        size,
                    })),
                };
                if let Err(stop) = self.hand_over(item, &origin, 0).await {
                    return stop;
                }
                told = Some((size, Instant::now()));
            }
            // The leader's writer wakes the feed at once; a follower (or a leader that just
            // lost the lease) looks at the database's checkpoints.
            let wait = if self.registry.following() {
                FOLLOWER_POLL
            } else {
                LEADER_POLL
            };
            tokio::select! {
                _ = signed.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.stopping.changed() => {}
                _ = self.items.closed() => return Stop::Gone,
            }
        }
    }
}

#[tonic::async_trait]
impl SyncService for SyncApi {
    type WatchChangesStream = FeedStream;

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        let Caller { actor, slot } = self.0.admit(&request)?;
        let certificate = if self.0.auth == crate::auth::Authenticator::ClientCert {
            request
                .peer_certs()
                .and_then(|c| c.first().map(|d| d.as_ref().to_vec()))
        } else {
            None
        };
        let r = request.into_inner();
        let registry = self.0.registry.clone();
        let start = {
            let actor = actor.clone();
            blocking(&registry, move |reg| {
                reg.feed_start(&actor, r.after, &r.origin)
            })
            .await?
        };
        let (items, items_rx) = mpsc::channel(FEED_BUFFER);
        let (end, end_rx) = mpsc::channel(1);
        let feed = Feed {
            registry,
            actor,
            last_sent: r.after,
            next: start,
            stall: self.0.limits.feed_stall,
            stopping: self.0.stopping.clone(),
            certificate,
            items,
            end,
        };
        tokio::spawn(feed.run());
        // The department's call slot is held while the stream is, buffered changes included.
        let stream = ReceiverStream::new(items_rx)
            .map(Ok)
            .chain(ReceiverStream::new(end_rx).map(Err))
            .map(move |item| {
                let _held = &slot;
                item
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn apply_upstream_change(
        &self,
        request: Request<pb::ApplyUpstreamChangeRequest>,
    ) -> Result<Response<pb::ApplyUpstreamChangeResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let action = upstream_action(&r)?;
        let decided_at = convert::optional_time("decided_at", &r.decided_at)
            .map_err(to_status)?
            .ok_or_else(|| {
                to_status(RegistryError::invalid(
                    "decided_at",
                    "required: when it was decided upstream",
                ))
            })?;
        let applied = self
            .0
            .registry
            .apply_upstream_change(
                &actor,
                &certseal_registry::UpstreamChange {
                    licence_id: r.licence_id,
                    action,
                    source: r.source,
                    reference: r.reference,
                    decided_at,
                    note: r.note,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ApplyUpstreamChangeResponse {
            licence: Some(licence_state_to_pb(&applied.licence)),
            applied: applied.applied,
            log_index: applied.log_index,
        }))
    }
}

fn upstream_action(
    r: &pb::ApplyUpstreamChangeRequest,
) -> Result<certseal_core::LicenceAction, Status> {
    use certseal_core::LicenceAction;
    let reason = super::licence::reason_from_pb(r.reason).map_err(to_status)?;
    match (pb::UpstreamAction::try_from(r.action), reason) {
        (Ok(pb::UpstreamAction::Suspend), None) => Ok(LicenceAction::Suspend),
        (Ok(pb::UpstreamAction::Reinstate), None) => Ok(LicenceAction::Reinstate),
        (Ok(pb::UpstreamAction::Revoke), Some(reason)) => Ok(LicenceAction::Revoke(reason)),
        (Ok(pb::UpstreamAction::Revoke), None) => Err(to_status(RegistryError::invalid(
            "reason",
            "a revocation says why: WITHDRAWN (撤销), CANCELLED (注销), PENALTY (吊销), LAPSED (失效), ISSUED_IN_ERROR or OTHER",
        ))),
        (Ok(pb::UpstreamAction::Suspend | pb::UpstreamAction::Reinstate), Some(_)) => {
            Err(to_status(RegistryError::invalid(
                "reason",
                "only a revocation has a reason",
            )))
        }
        _ => Err(to_status(RegistryError::invalid(
            "action",
            "SUSPEND, REINSTATE or REVOKE",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_goes_with_a_reason_only_when_it_revokes() {
        let req = |action: pb::UpstreamAction, reason: pb::LicenceRevocationReason| {
            pb::ApplyUpstreamChangeRequest {
                action: action as i32,
                reason: reason as i32,
                ..Default::default()
            }
        };
        use pb::LicenceRevocationReason as R;
        use pb::UpstreamAction as A;
        assert!(upstream_action(&req(A::Revoke, R::Cancelled)).is_ok());
        assert!(upstream_action(&req(A::Suspend, R::Unspecified)).is_ok());
        assert!(upstream_action(&req(A::Revoke, R::Unspecified)).is_err());
        assert!(upstream_action(&req(A::Reinstate, R::Penalty)).is_err());
        assert!(upstream_action(&req(A::Unspecified, R::Unspecified)).is_err());
    }
}
