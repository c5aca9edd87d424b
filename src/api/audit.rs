//! `certseal.v1.AuditService`.

use super::Caller;
use certseal_registry::{ProofTarget, RegistryError, SignedCheckpoint};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Context;
use crate::pb;
use crate::pb::audit_service_server::AuditService;
use crate::status::to_status;

/// The audit service adapter.
#[derive(Debug, Clone)]
pub struct AuditApi(pub Context);

/// Entries read per page of an export.
const EXPORT_PAGE: usize = 512;

fn checkpoint(c: SignedCheckpoint) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint {
        note: c.note,
        origin: c.checkpoint.origin,
        size: c.checkpoint.size,
        root: c.checkpoint.root.to_vec(),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn get_latest_checkpoint(
        &self,
        request: Request<pb::GetLatestCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let _caller = self.0.admit_checked(&request)?;
        Ok(Response::new(checkpoint(
            self.0.registry.latest_checkpoint(),
        )))
    }

    async fn get_verifier_key(
        &self,
        request: Request<pb::GetVerifierKeyRequest>,
    ) -> Result<Response<pb::GetVerifierKeyResponse>, Status> {
        let _caller = self.0.admit_checked(&request)?;
        Ok(Response::new(pb::GetVerifierKeyResponse {
            verifier_key: self.0.registry.verifier_key().to_string(),
        }))
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::LogEntry>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let index = request.get_ref().index;
        let entry = self
            .0
            .registry
            .get_entry(&actor, index)
            .map_err(to_status)?;
        Ok(Response::new(pb::LogEntry { index, entry }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit_checked(&request)?;
        let holder = request
            .get_ref()
            .holder
            .as_ref()
            .map(|h| super::holder::holder_from_pb(Some(h)))
            .transpose()
            .map_err(to_status)?;
        let target = match &request.get_ref().target {
            Some(pb::get_inclusion_proof_request::Target::Index(i)) => ProofTarget::Index(*i),
            Some(pb::get_inclusion_proof_request::Target::LeafHash(h)) => {
                ProofTarget::LeafHash(h.as_slice().try_into().map_err(|_| {
                    to_status(RegistryError::invalid(
                        "leaf_hash",
                        "a leaf hash has 32 bytes",
                    ))
                })?)
            }
            None => {
                return Err(to_status(RegistryError::invalid(
                    "target",
                    "give an index or a leaf_hash",
                )));
            }
        };
        let p = self
            .0
            .registry
            .inclusion_proof(&actor, target, holder.as_ref())
            .map_err(to_status)?;
        let tlog_proof = p.tlog_proof();
        Ok(Response::new(pb::InclusionProof {
            index: p.index,
            entry: p.entry,
            hashes: p.hashes.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(checkpoint(p.checkpoint)),
            tlog_proof,
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.get_ref();
        let (hashes, cp) = self
            .0
            .registry
            .consistency_proof(&actor, r.from_size, r.to_size)
            .map_err(to_status)?;
        Ok(Response::new(pb::ConsistencyProof {
            from_size: r.from_size,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(checkpoint(cp)),
        }))
    }

    type ExportEntriesStream = ReceiverStream<Result<pb::ExportChunk, Status>>;

    async fn export_entries(
        &self,
        request: Request<pb::ExportEntriesRequest>,
    ) -> Result<Response<Self::ExportEntriesStream>, Status> {
        let Caller { actor, slot } = self.0.admit_checked(&request)?;
        let r = request.get_ref();
        let registry = self.0.registry.clone();
        let idle = self.0.limits.stream_idle;
        let cp = match r.end {
            0 => registry.latest_checkpoint(),
            n => registry.checkpoint_at(n).map_err(to_status)?,
        };
        let end = cp.checkpoint.size;
        if r.start > end {
            return Err(to_status(RegistryError::invalid(
                "start",
                format!("must not exceed the end, {end}"),
            )));
        }
        let compact_range = registry.compact_range(&actor, r.start).map_err(to_status)?;
        let anchors = registry.anchors(r.start, end, 64).map_err(to_status)?;
        let header = pb::ExportHeader {
            checkpoint: Some(checkpoint(cp)),
            start: r.start,
            end,
            compact_range: compact_range.iter().map(|h| h.to_vec()).collect(),
            anchors,
        };
        tracing::info!(by = %actor.department, start = r.start, end, "audit export");
        let (tx, rx) = mpsc::channel(4);
        let mut next = r.start;
        tokio::spawn(async move {
            let _slot = slot;
            // A client that stops reading for the idle timeout loses the stream.
            let send = |item| {
                let tx = tx.clone();
                async move {
                    let chunk = Ok(pb::ExportChunk { item: Some(item) });
                    matches!(tokio::time::timeout(idle, tx.send(chunk)).await, Ok(Ok(())))
                }
            };
            if !send(pb::export_chunk::Item::Header(header)).await {
                return;
            }
            while next < end {
                let page = match registry.export_page(&actor, next, end, EXPORT_PAGE) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(to_status(e))).await;
                        return;
                    }
                };
                next += page.len() as u64;
                let page_len = page.len();
                for item in page {
                    let e = pb::ExportedEntry {
                        index: item.index,
                        entry: item.entry,
                        record: item.record,
                    };
                    if !send(pb::export_chunk::Item::Entry(e)).await {
                        return; // the client went away or stalled
                    }
                }
                if page_len == 0 {
                    let _ = tx
                        .send(Err(Status::internal("the log ended before the checkpoint")))
                        .await;
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
