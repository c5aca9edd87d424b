//! `certseal.v1.AdminService`: online backup, the state of a restore, and of the writer.

use std::io::Read;

use certseal_registry::RestoreState;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Caller, Context};
use crate::pb;
use crate::pb::admin_service_server::AdminService;
use crate::status::to_status;

/// The admin service adapter.
#[derive(Debug, Clone)]
pub struct AdminApi(pub Context);

/// Bytes of a file per message: well under the default 4 MiB message limit of clients.
const BACKUP_CHUNK: usize = 1 << 20;

fn restore_state(s: Option<RestoreState>) -> pb::RestoreState {
    match s {
        None => pb::RestoreState::default(),
        Some(s) => pb::RestoreState {
            restored: true,
            refusal: s.refusal().unwrap_or_default(),
            writes_refused: s.pending,
            old_origin: s.old_origin,
            new_origin: s.new_origin,
            backup_size: s.backup_size,
            last_size: s.last_size.unwrap_or(0),
            replayed_to: s.replayed_to.unwrap_or(0),
            replayed: s.replayed,
            restored_at_ms: s.restored_at,
        },
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    type BackupStream = ReceiverStream<Result<pb::BackupChunk, Status>>;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let Caller { actor, slot } = self.0.admit(&request)?;
        let backup = self.0.registry.backup(&actor).await.map_err(to_status)?;
        let header = pb::BackupHeader {
            data_format: backup.data_format.clone(),
            origin: backup.origin.clone(),
            log_size: backup.log_size,
            root: backup.root.to_vec(),
            checkpoint: backup.checkpoint_note.clone(),
            files: backup
                .copy
                .files()
                .iter()
                .map(|f| pb::BackupFile {
                    name: f.name.clone(),
                    size: f.size,
                })
                .collect(),
            taken_at_ms: certseal_core::Timestamp::now().0,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let idle = self.0.limits.stream_idle;
        let (tx, rx) = mpsc::channel(4);
        // Files are read on a blocking thread; a client that stops reading for the idle
        // timeout loses the stream, and the copy is deleted with `backup`.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let send = |item| {
                let chunk = Ok(pb::BackupChunk { item: Some(item) });
                let tx = tx.clone();
                tokio::runtime::Handle::current()
                    .block_on(async move { tokio::time::timeout(idle, tx.send(chunk)).await })
                    .is_ok_and(|r| r.is_ok())
            };
            if !send(pb::backup_chunk::Item::Header(header)) {
                return;
            }
            for (i, f) in backup.copy.files().iter().enumerate() {
                let fail = |e: std::io::Error| {
                    tracing::error!(file = %f.name, error = %e, "backup: cannot read a file of the copy");
                    let _ = tx.blocking_send(Err(Status::unavailable(
                        "a file of the backup copy could not be read; nothing is lost: take the backup again",
                    )));
                };
                let mut file = match backup.copy.open_file(&f.name) {
                    Ok(file) => file,
                    Err(e) => return fail(e),
                };
                let mut hash = certseal_crypto::Sha256::new();
                let mut buf = vec![0u8; BACKUP_CHUNK];
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return fail(e),
                    };
                    hash.update(&buf[..n]);
                    let chunk = pb::BackupFileChunk {
                        file: i as u32,
                        data: buf[..n].to_vec(),
                    };
                    if !send(pb::backup_chunk::Item::Chunk(chunk)) {
                        return;
                    }
                }
                let end = pb::BackupFileEnd {
                    file: i as u32,
                    sha256: hash.finish().to_vec(),
                };
                if !send(pb::backup_chunk::Item::End(end)) {
                    return;
                }
            }
            drop(backup);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_restore_state(
        &self,
        request: Request<pb::GetRestoreStateRequest>,
    ) -> Result<Response<pb::RestoreState>, Status> {
        let _caller = self.0.admit_checked(&request)?;
        Ok(Response::new(restore_state(
            self.0.registry.restore_state(),
        )))
    }

    async fn confirm_restore(
        &self,
        request: Request<pb::ConfirmRestoreRequest>,
    ) -> Result<Response<pb::RestoreState>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let state = self
            .0
            .registry
            .confirm_restore(&actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(restore_state(Some(state))))
    }

    async fn get_writer_state(
        &self,
        request: Request<pb::GetWriterStateRequest>,
    ) -> Result<Response<pb::WriterState>, Status> {
        let caller = self.0.admit_checked(&request)?;
        let registry = &self.0.registry;
        let stops = registry.writer_stops();
        let state = match registry.writer_stopped() {
            None => pb::WriterState {
                stops,
                ..Default::default()
            },
            Some(stop) => pb::WriterState {
                stopped: true,
                cause: stop.cause.as_str().to_owned(),
                message: stop.to_string(),
                since_ms: stop.since_ms,
                stops,
                error: if caller.actor.role == certseal_core::Role::Admin {
                    stop.error
                } else {
                    String::new()
                },
            },
        };
        Ok(Response::new(state))
    }
}
