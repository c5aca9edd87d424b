//! `certseal audit …`: the auditor's tools. Export talks to the server; `verify` runs offline
//! with the `certseal-verify` crate alone.

use anyhow::{Context, bail};
use certseal_log::Checkpoint;
use serde_json::json;

use super::AuditCommand;
use super::client::{Client, explain};
use super::output::progress;
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
            if client.json {
                print_json(&json!({ "verifier_key": r.verifier_key }));
            } else {
                println!("{}", r.verifier_key);
            }
        }
        AuditCommand::Checkpoint { client } => {
            let cl = Client::connect(&client).await?;
            let r = cl
                .audit()
                .get_latest_checkpoint(cl.request(pb::GetLatestCheckpointRequest {})?)
                .await
                .map_err(explain)?
                .into_inner();
            if client.json {
                print_json(&json!({
                    "origin": r.origin,
                    "size": r.size,
                    "root_hash": hex(&r.root),
                    "note": r.note,
                }));
            } else {
                // The signed note itself, so `> cp.txt` keeps a checkpoint to give to --since.
                print!("{}", r.note);
            }
        }
        AuditCommand::Proof { index, client } => {
            let cl = Client::connect(&client).await?;
            let r = cl
                .audit()
                .get_inclusion_proof(cl.request(pb::GetInclusionProofRequest {
                    target: Some(pb::get_inclusion_proof_request::Target::Index(index)),
                    holder: None,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            if client.json {
                print_json(&json!({ "index": index, "tlog_proof": r.tlog_proof }));
            } else {
                print!("{}", r.tlog_proof);
            }
        }
        AuditCommand::Export { out, since, client } => {
            export(&out, since.as_deref(), &client).await?
        }
        AuditCommand::Verify {
            dir,
            vkey,
            previous,
            json,
        } => {
            let key = certseal_verify::parse_verifier_key(&vkey)?;
            let previous = previous
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))
                })
                .transpose()?;
            let bar = progress(0, "entries");
            let report =
                certseal_verify::verify_bundle(&dir, &key, previous.as_deref(), |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                });
            bar.finish_and_clear();
            let report = report.map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
            let linked = if report.linked_to_previous {
                "; the previous checkpoint is a prefix of it"
            } else if report.start > 0 {
                "; not linked to an earlier checkpoint (give --previous)"
            } else {
                ""
            };
            if json {
                print_json(&json!({
                    "ok": true,
                    "start": report.start,
                    "end": report.checkpoint.size,
                    "entries": report.entries,
                    "records": report.records,
                    "origin": report.checkpoint.origin,
                    "checkpoint_size": report.checkpoint.size,
                    "linked_to_previous": report.linked_to_previous,
                    "restorations": report.restorations.iter().map(|r| json!({
                        "index": r.index,
                        "old_origin": r.old_origin,
                        "new_origin": r.new_origin,
                        "last_size": r.last_size,
                        "replayed_to": r.replayed_to,
                    })).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "OK: entries {}..{} ({} entries, {} records) produce the root of the checkpoint of {} at size {}{linked}",
                    report.start,
                    report.checkpoint.size,
                    report.entries,
                    report.records,
                    report.checkpoint.origin,
                    report.checkpoint.size,
                );
                for r in &report.restorations {
                    println!(
                        "RESTORED at entry {}: log {} was restored from its backup at size {} (its signed checkpoint has the root of entries 0..{}) and continues as {}",
                        r.index, r.old_origin, r.index, r.index, r.new_origin
                    );
                    if let Some(last) = r.last_size.filter(|l| *l > r.index) {
                        println!(
                            "  the old log had reached size {last}: its entries {}..{last} are not in this log{}",
                            r.index,
                            match r.replayed_to {
                                Some(end) => format!(
                                    " (their suspensions and revocations were re-applied, up to size {end})"
                                ),
                                None => String::new(),
                            }
                        );
                    } else if let Some(end) = r.replayed_to {
                        println!(
                            "  suspensions and revocations of the old log up to size {end} were re-applied"
                        );
                    }
                }
            }
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
    let total = header
        .end
        .checked_sub(header.start)
        .context("the export's header ends before it starts")?;
    let bar = progress(total, "entries");
    while let Some(chunk) = stream.message().await.map_err(explain)? {
        let Some(pb::export_chunk::Item::Entry(e)) = chunk.item else {
            bail!("unexpected second header in the export");
        };
        bundle.push(e.index, &e.entry, &e.record)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = bundle.finish()?;
    if client.json {
        print_json(&json!({
            "out": out.display().to_string(),
            "start": header.start,
            "end": header.end,
            "entries": n,
            "checkpoint_size": cp.size,
        }));
    } else {
        println!(
            "exported entries {}..{} ({n} entries) to {}, ending at the checkpoint of size {}",
            header.start,
            header.end,
            out.display(),
            cp.size
        );
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values print")
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
