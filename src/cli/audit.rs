//! `certseal audit …`: the auditor's tools. Export talks to the server; `verify` runs offline
//! with the `certseal-verify` crate alone.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use certseal_log::Checkpoint;

use super::AuditCommand;
use super::client::{Client, explain};
use crate::pb;

/// Runs an audit subcommand.
pub async fn run(c: AuditCommand) -> anyhow::Result<()> {
    match c {
        AuditCommand::Vkey { client } => {
            let cl = Client::connect(&client).await?;
            let r = cl
                .audit()
                .get_verifier_key(cl.request(pb::GetVerifierKeyRequest {})?)
                .await
                .map_err(explain)?
                .into_inner();
            println!("{}", r.verifier_key);
        }
        AuditCommand::Checkpoint { client } => {
            let cl = Client::connect(&client).await?;
            let r = cl
                .audit()
                .get_latest_checkpoint(cl.request(pb::GetLatestCheckpointRequest {})?)
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", r.note);
        }
        AuditCommand::Proof { index, client } => {
            let cl = Client::connect(&client).await?;
            let r = cl
                .audit()
                .get_inclusion_proof(cl.request(pb::GetInclusionProofRequest {
                    target: Some(pb::get_inclusion_proof_request::Target::Index(index)),
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", r.tlog_proof);
        }
        AuditCommand::Export { out, since, client } => {
            export(&out, since.as_deref(), &client).await?
        }
        AuditCommand::Verify {
            dir,
            vkey,
            previous,
        } => {
            let key = certseal_verify::parse_verifier_key(&vkey)?;
            let previous = previous
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))
                })
                .transpose()?;
            let tty = std::io::stderr().is_terminal();
            let report =
                certseal_verify::verify_bundle(&dir, &key, previous.as_deref(), |done, total| {
                    if tty {
                        eprint!("\rverified {done}/{total} entries");
                        let _ = std::io::stderr().flush();
                    }
                });
            if tty {
                eprintln!();
            }
            let report = report.map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
            println!(
                "OK: entries {}..{} ({} entries, {} records) produce the root of the checkpoint of {} at size {}{}",
                report.start,
                report.checkpoint.size,
                report.entries,
                report.records,
                report.checkpoint.origin,
                report.checkpoint.size,
                if report.linked_to_previous {
                    "; the previous checkpoint is a prefix of it"
                } else if report.start > 0 {
                    "; not linked to an earlier checkpoint (give --previous)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

async fn export(
    out: &std::path::Path,
    since: Option<&std::path::Path>,
    client: &super::ClientArgs,
) -> anyhow::Result<()> {
    let cl = Client::connect(client).await?;
    let start = match since {
        None => 0,
        Some(p) => {
            let note = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let vkey = cl
                .audit()
                .get_verifier_key(cl.request(pb::GetVerifierKeyRequest {})?)
                .await
                .map_err(explain)?
                .into_inner()
                .verifier_key;
            let key = certseal_verify::parse_verifier_key(&vkey)?;
            Checkpoint::open(&note, &key)
                .with_context(|| format!("{} is not a checkpoint of this log", p.display()))?
                .size
        }
    };
    let mut stream = cl
        .audit()
        .export_entries(cl.request(pb::ExportEntriesRequest { start, end: 0 })?)
        .await
        .map_err(explain)?
        .into_inner();
    let Some(pb::ExportChunk {
        item: Some(pb::export_chunk::Item::Header(header)),
    }) = stream.message().await.map_err(explain)?
    else {
        bail!("the export did not start with its header");
    };
    let cp = header.checkpoint.unwrap_or_default();
    let compact: Vec<[u8; 32]> = header
        .compact_range
        .iter()
        .map(|h| {
            h.as_slice()
                .try_into()
                .context("a compact-range hash is not 32 bytes")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut bundle = certseal_verify::Bundle::create(
        out,
        &cp.origin,
        header.start,
        header.end,
        &compact,
        &cp.note,
        header.anchors,
    )
    .with_context(|| format!("cannot write the bundle in {}", out.display()))?;
    let tty = std::io::stderr().is_terminal();
    let total = header
        .end
        .checked_sub(header.start)
        .context("the export's header ends before it starts")?;
    let mut done = 0u64;
    while let Some(chunk) = stream.message().await.map_err(explain)? {
        let Some(pb::export_chunk::Item::Entry(e)) = chunk.item else {
            bail!("unexpected second header in the export");
        };
        bundle.push(e.index, &e.entry, &e.record)?;
        done += 1;
        if tty && (done.is_multiple_of(1024) || done == total) {
            eprint!("\rexported {done}/{total} entries");
            let _ = std::io::stderr().flush();
        }
    }
    if tty && total > 0 {
        eprintln!();
    }
    let n = bundle.finish()?;
    println!(
        "exported entries {}..{} ({n} entries) to {}, ending at the checkpoint of size {}",
        header.start,
        header.end,
        out.display(),
        cp.size
    );
    Ok(())
}
