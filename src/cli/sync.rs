//! `certseal sync …`: a sharing platform's commands (role sync): follow the change feed into a
//! JSON-lines file, resuming from its last line, and apply a change decided upstream.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use clap::Subcommand;
use serde_json::{Value, json};

use super::ClientArgs;
use super::client::{Client, explain};
use super::files::time_arg;
use super::output::{self, print_one};
use crate::pb;
use crate::pb::sync_service_client::SyncServiceClient;

/// `certseal sync …` (role sync).
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Follow the change feed into a JSON-lines file, one change per line in log order. An
    /// existing file is resumed after its last complete line (a line cut by a crash is
    /// dropped first), so every change lands exactly once. Reconnects when the server asks
    /// the consumer to resume or goes away.
    Follow {
        /// Start after this log index (a new file only; an existing file resumes by itself).
        #[arg(long)]
        after: Option<u64>,
        /// The log origin `--after` belongs to (default: the server's current one).
        #[arg(long)]
        origin: Option<String>,
        /// The JSON-lines file.
        #[arg(long)]
        out: PathBuf,
        /// Stop once every change of the latest checkpoint is written.
        #[arg(long)]
        until_caught_up: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Apply to a licence a status change decided upstream (回流), naming its source.
    Apply {
        /// Licence ID.
        licence: String,
        /// suspend, reinstate or revoke.
        #[arg(long)]
        action: String,
        /// With revoke: withdrawn (撤销), cancelled (注销), penalty (吊销), lapsed (失效),
        /// issued_in_error or other.
        #[arg(long)]
        reason: Option<String>,
        /// The platform or authority that decided it.
        #[arg(long)]
        source: String,
        /// Its reference of the decision: the same reference applies once.
        #[arg(long)]
        reference: String,
        /// When it was decided there, RFC 3339.
        #[arg(long)]
        decided_at: String,
        /// Kept in the licence's history (default: one naming the source and reference).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A change as one JSON line.
fn change_json(c: &pb::Change) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = json!({
        "origin": c.origin,
        "index": c.index,
        "time": c.time.as_ref().map(ToString::to_string),
        "kind": c.kind,
        "subject_kind": c.subject_kind().as_str_name().trim_start_matches("CHANGE_SUBJECT_").to_ascii_lowercase(),
        "subject": c.subject,
        "digest": output::hex(&c.digest),
        "actor": c.actor.as_ref().map(|a| json!({
            "department": a.department,
            "role": a.role().as_str_name().trim_start_matches("ROLE_").to_ascii_lowercase(),
        })),
        "entry": b64.encode(&c.entry),
    });
    if let Some(n) = &c.national {
        v["national"] = json!({"term": n.term, "reason": n.reason});
    }
    if let Some(u) = &c.upstream {
        v["upstream"] = json!({
            "source": u.source,
            "reference": u.reference,
            "decided_at": u.decided_at.as_ref().map(ToString::to_string),
        });
    }
    if let Some(l) = &c.licence {
        let mut lv = output::licence(l);
        if !l.document.is_empty() {
            lv["document"] = json!(b64.encode(&l.document));
        }
        v["licence"] = lv;
    }
    v
}

/// Where a feed file stands: the last complete line's index and origin, after cutting off a
/// line a crash left incomplete.
fn resume_point(file: &mut std::fs::File, path: &Path) -> anyhow::Result<Option<(u64, String)>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // Read backwards until the last complete line is whole.
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let complete = match tail.iter().rposition(|b| *b == b'\n') {
            Some(end) => end + 1,
            None if start == 0 => 0,
            None => {
                window *= 4;
                continue;
            }
        };
        if (complete as u64) + start < len {
            eprintln!(
                "{}: dropping an incomplete last line ({} bytes)",
                path.display(),
                len - start - complete as u64
            );
            file.set_len(start + complete as u64)?;
            file.sync_all()?;
        }
        if complete == 0 {
            return Ok(None);
        }
        let body = &tail[..complete - 1];
        let line_start = match body.iter().rposition(|b| *b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None => {
                window *= 4;
                continue;
            }
        };
        let last: Value = serde_json::from_slice(&body[line_start..])
            .with_context(|| format!("the last line of {} is not JSON", path.display()))?;
        let index = last["index"]
            .as_u64()
            .with_context(|| format!("the last line of {} has no index", path.display()))?;
        let origin = last["origin"]
            .as_str()
            .with_context(|| format!("the last line of {} has no origin", path.display()))?;
        return Ok(Some((index, origin.to_owned())));
    }
}

/// Whether the feed ended in a way that following again fixes.
fn resumable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::Unknown
    )
}

async fn follow(
    after: Option<u64>,
    origin: Option<String>,
    out: &Path,
    until_caught_up: bool,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("cannot open {}", out.display()))?;
    // Two followers appending to one file would write changes twice.
    if file.try_lock().is_err() {
        bail!(
            "{} is being written by another `certseal sync follow`: stop it first",
            out.display()
        );
    }
    let mut position = match resume_point(&mut file, out)? {
        Some((index, o)) => {
            if after.is_some_and(|a| a != index) || origin.as_ref().is_some_and(|x| *x != o) {
                bail!(
                    "{} ends at index {index} of '{o}', which --after/--origin contradict: leave them out to resume, or write to another file",
                    out.display()
                );
            }
            eprintln!("resuming after index {index} of '{o}'");
            Some((index, o))
        }
        None => after.map(|a| (a, origin.clone().unwrap_or_default())),
    };
    let mut unsynced = 0u32;
    let mut backoff = Duration::from_millis(200);
    loop {
        let cl = match Client::connect(client).await {
            Ok(cl) => cl,
            // A server restarting comes back: wait for it.
            Err(e) => {
                eprintln!("{e:#}; retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        let (after, origin) = match &position {
            Some((i, o)) => (Some(*i), o.clone()),
            None => (None, String::new()),
        };
        let origin = if after.is_some() && origin.is_empty() {
            // `--after` without `--origin`: the server's current log.
            crate::pb::audit_service_client::AuditServiceClient::new(cl.channel())
                .get_latest_checkpoint(cl.request(pb::GetLatestCheckpointRequest {})?)
                .await
                .map_err(explain)?
                .into_inner()
                .origin
        } else {
            origin
        };
        let mut stream = match SyncServiceClient::new(cl.channel())
            .watch_changes(cl.request(pb::WatchChangesRequest { after, origin })?)
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                eprintln!("the feed is unavailable ({}); retrying", s.message());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(s) => return Err(explain(s)),
        };
        loop {
            let item = match stream.message().await {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(s) if resumable(&s) => {
                    file.sync_data()?;
                    eprintln!("the feed ended ({}); resuming", s.message());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
                Err(s) => {
                    file.sync_data()?;
                    return Err(explain(s));
                }
            };
            match item.item {
                Some(pb::watch_changes_response::Item::Change(c)) => {
                    let mut line = serde_json::to_vec(&change_json(&c))?;
                    line.push(b'\n');
                    // One write per line: a crash leaves at most one incomplete line.
                    file.write_all(&line)
                        .with_context(|| format!("cannot write {}", out.display()))?;
                    position = Some((c.index, c.origin));
                    unsynced += 1;
                    if unsynced >= 1024 {
                        file.sync_data()?;
                        unsynced = 0;
                    }
                }
                Some(pb::watch_changes_response::Item::CaughtUp(c)) => {
                    file.sync_data()?;
                    unsynced = 0;
                    eprintln!("caught up with the checkpoint of size {}", c.size);
                    if until_caught_up {
                        return Ok(());
                    }
                }
                None => {}
            }
        }
    }
}

fn action_value(action: &str) -> anyhow::Result<pb::UpstreamAction> {
    Ok(match action {
        "suspend" => pb::UpstreamAction::Suspend,
        "reinstate" => pb::UpstreamAction::Reinstate,
        "revoke" => pb::UpstreamAction::Revoke,
        other => bail!("unknown action '{other}': suspend, reinstate or revoke"),
    })
}

fn reason_value(reason: Option<&str>) -> anyhow::Result<pb::LicenceRevocationReason> {
    use pb::LicenceRevocationReason as R;
    Ok(match reason {
        None => R::Unspecified,
        Some("withdrawn") => R::Withdrawn,
        Some("cancelled") => R::Cancelled,
        Some("penalty") => R::Penalty,
        Some("lapsed") => R::Lapsed,
        Some("issued_in_error") => R::IssuedInError,
        Some("other") => R::Other,
        Some(other) => bail!(
            "unknown reason '{other}': withdrawn, cancelled, penalty, lapsed, issued_in_error or other"
        ),
    })
}

/// Runs `certseal sync …`.
pub async fn run(c: SyncCommand) -> anyhow::Result<()> {
    match c {
        SyncCommand::Follow {
            after,
            origin,
            out,
            until_caught_up,
            client,
        } => follow(after, origin, &out, until_caught_up, &client).await,
        SyncCommand::Apply {
            licence,
            action,
            reason,
            source,
            reference,
            decided_at,
            note,
            client,
        } => {
            let request = pb::ApplyUpstreamChangeRequest {
                licence_id: licence,
                action: action_value(&action)? as i32,
                reason: reason_value(reason.as_deref())? as i32,
                source,
                reference,
                decided_at: time_arg("--decided-at", Some(&decided_at))?,
                note,
            };
            let cl = Client::connect(&client).await?;
            let r = SyncServiceClient::new(cl.channel())
                .apply_upstream_change(cl.request(request)?)
                .await
                .map_err(explain)?
                .into_inner();
            let mut v = json!({"applied": r.applied, "log_index": r.log_index});
            if let Some(l) = &r.licence {
                v["licence"] = output::licence(l);
            }
            print_one(&v, client.json);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        (dir, path, f)
    }

    #[test]
    fn a_feed_file_resumes_after_its_last_complete_line() {
        let (_d, path, mut f) = file_with(b"");
        assert_eq!(resume_point(&mut f, &path).unwrap(), None);
        let lines = b"{\"origin\":\"o\",\"index\":3}\n{\"origin\":\"o\",\"index\":7}\n";
        let (_d, path, mut f) = file_with(lines);
        assert_eq!(resume_point(&mut f, &path).unwrap(), Some((7, "o".into())));
        // A line cut by a crash is dropped, and the one before it counts.
        let mut cut = lines.to_vec();
        cut.extend_from_slice(b"{\"origin\":\"o\",\"ind");
        let (_d, path, mut f) = file_with(&cut);
        assert_eq!(resume_point(&mut f, &path).unwrap(), Some((7, "o".into())));
        assert_eq!(std::fs::read(&path).unwrap(), lines);
        // Only a cut line: nothing yet.
        let (_d, path, mut f) = file_with(b"{\"origin\"");
        assert_eq!(resume_point(&mut f, &path).unwrap(), None);
        assert!(std::fs::read(&path).unwrap().is_empty());
        // Lines longer than the first window are read whole.
        let long = format!(
            "{{\"origin\":\"o\",\"index\":1}}\n{{\"origin\":\"o\",\"index\":2,\"pad\":\"{}\"}}\n",
            "x".repeat(200_000)
        );
        let (_d, path, mut f) = file_with(long.as_bytes());
        assert_eq!(resume_point(&mut f, &path).unwrap(), Some((2, "o".into())));
    }
}
