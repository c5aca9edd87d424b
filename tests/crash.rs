use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal_log::merkle::{parse_hash, verify_consistency};
use certseal_log::{Checkpoint, Entry, VerifierKey};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::licences::{Issuer, issuer, request};
use crate::util::*;

/// A delay in `[lo, hi)` ms from the clock's nanoseconds: enough spread for crash points.
fn jitter(lo: u64, hi: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(lo + nanos % (hi - lo))
}

pub(crate) async fn latest(a: &mut AuditServiceClient<Channel>, key: &VerifierKey) -> Checkpoint {
    let note = a
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .note;
    Checkpoint::open(&note, key).unwrap()
}

/// Samples signed checkpoints every 20 ms until the server dies.
fn sample_checkpoints(
    channel: Channel,
    key: VerifierKey,
) -> tokio::task::JoinHandle<Vec<Checkpoint>> {
    tokio::spawn(async move {
        let mut a = AuditServiceClient::new(channel);
        let mut seen = Vec::new();
        loop {
            match a
                .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
                .await
            {
                Ok(r) => seen.push(Checkpoint::open(&r.into_inner().note, &key).unwrap()),
                Err(_) => return seen,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// What must hold after every restart: each acknowledged licence is there byte for byte with
/// its audit entry; every stored licence is whole (document and entry); the log is consistent
/// with every checkpoint signed before the crash, and an export of all of it verifies offline.
pub(crate) async fn check_after_restart(
    server: std::net::SocketAddr,
    dir: &Path,
    round: usize,
    good: &Issuer,
    acked: &HashMap<String, Option<Vec<u8>>>,
    seen: &[Checkpoint],
    key: &VerifierKey,
) {
    let channel = connect(server).await;
    let mut a = AuditServiceClient::new(channel.clone());
    let now = latest(&mut a, key).await;
    for cp in seen.iter().filter(|c| c.size > 0) {
        let c = a
            .get_consistency_proof(admin(pb::GetConsistencyProofRequest {
                from_size: cp.size,
                to_size: now.size,
            }))
            .await
            .unwrap()
            .into_inner();
        let hashes: Vec<_> = c.hashes.iter().map(|h| parse_hash(h).unwrap()).collect();
        verify_consistency(cp.size, now.size, &hashes, &cp.root, &now.root)
            .unwrap_or_else(|e| panic!("round {round}: {} -> {}: {e}", cp.size, now.size));
    }
    // The log's licence entries, by licence ID: the digest of the document they commit to.
    let mut issued = BTreeMap::new();
    let mut export = a
        .export_entries(as_actor(
            ADMIN_DEPT,
            "auditor",
            pb::ExportEntriesRequest { start: 0, end: 0 },
        ))
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = export.next().await {
        if let Some(pb::export_chunk::Item::Entry(e)) = chunk.unwrap().item {
            let entry = Entry::decode(&e.entry).unwrap();
            if entry.kind == "licence.issued" {
                assert_eq!(certseal_crypto::sha256(&[&e.record]), entry.digest);
                issued.insert(entry.subject.clone(), entry.digest);
            }
        }
    }
    let mut lic = LicenceServiceClient::new(channel);
    for (id, doc) in acked {
        let l = lic
            .get_licence(as_actor(
                &good.dept,
                "issuer",
                pb::GetLicenceRequest {
                    licence_id: id.clone(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("round {round}: acknowledged licence {id} lost: {e:?}"))
            .into_inner();
        if let Some(doc) = doc {
            assert_eq!(&l.document, doc, "round {round}: licence {id} changed");
        }
        assert_eq!(
            issued.get(id),
            Some(&certseal_crypto::sha256(&[&l.document])),
            "round {round}: licence {id} has no audit entry for its document"
        );
    }
    // Nothing is half there: every stored licence has its document and its entry.
    let mut token = String::new();
    let mut stored = 0;
    loop {
        let page = lic
            .list_licences(as_actor(
                &good.dept,
                "issuer",
                pb::ListLicencesRequest {
                    issuer: good.dept.clone(),
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        for l in &page.licences {
            let full = lic
                .get_licence(as_actor(
                    &good.dept,
                    "issuer",
                    pb::GetLicenceRequest {
                        licence_id: l.licence_id.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                issued.get(&l.licence_id),
                Some(&certseal_crypto::sha256(&[&full.document])),
                "round {round}: licence {} is stored without its entry",
                l.licence_id
            );
            stored += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        stored,
        issued.len(),
        "round {round}: every logged licence is stored"
    );
    // The whole log, exported by the CLI, verifies offline against the newest checkpoint.
    let out = dir.join(format!("bundle-{round}"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "audit",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--server",
            &format!("http://{server}"),
        ])
        .args(["--as-department", ADMIN_DEPT, "--as-role", "auditor"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = certseal_verify::verify_bundle(&out, key, None, |_, _| {}).unwrap();
    assert!(report.checkpoint.size >= now.size);
    eprintln!(
        "round {round}: {} acknowledged, {stored} stored, log size {}",
        acked.len(),
        now.size
    );
}

/// Concurrent issuers, a bulk import and an export, each cut by `kill -9` at a random moment,
/// three rounds on one data folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_licences_survive_kill_9_during_issue_import_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let good = issuer(server.addr, 61, pb::SealAlgorithm::Ed25519).await;
    let key = {
        let mut a = AuditServiceClient::new(connect(server.addr).await);
        VerifierKey::parse(
            &a.get_verifier_key(admin(pb::GetVerifierKeyRequest {}))
                .await
                .unwrap()
                .into_inner()
                .verifier_key,
        )
        .unwrap()
    };
    let good = Arc::new(good);
    let acked: Arc<Mutex<HashMap<String, Option<Vec<u8>>>>> = Arc::default();
    let mut server = Some(server);
    let mut acked_before = 0;
    // Issuers, a bulk import, an export, then issuers and an import again.
    for round in 0..5 {
        let s = server.take().unwrap();
        let channel = connect(s.addr).await;
        let sampler = sample_checkpoints(channel.clone(), key.clone());
        let mut work = Vec::new();
        match round % 3 {
            // Eight issuers, one licence at a time each.
            0 => {
                for w in 0..8 {
                    let (ch, good, acked) = (channel.clone(), good.clone(), acked.clone());
                    work.push(tokio::spawn(async move {
                        let mut l = LicenceServiceClient::new(ch);
                        for i in 0.. {
                            let r = l
                                .issue_licence(as_actor(
                                    &good.dept,
                                    "issuer",
                                    request(&good, &format!("r{round}-{w}-{i}")),
                                ))
                                .await;
                            match r {
                                Ok(r) => {
                                    let r = r.into_inner();
                                    acked.lock().unwrap().insert(r.licence_id, Some(r.document));
                                }
                                Err(_) => return,
                            }
                        }
                    }));
                }
            }
            // A bulk import through the stream: an acknowledged item is one whose result came.
            1 => {
                let (ch, good, acked) = (channel.clone(), good.clone(), acked.clone());
                let dept = good.dept.clone();
                work.push(tokio::spawn(async move {
                    let items =
                        tokio_stream::iter((0..20_000).map(move |i| pb::IssueLicencesItem {
                            r#ref: i.to_string(),
                            licence: Some(request(&good, &format!("r{round}-{i}"))),
                        }));
                    let r = match LicenceServiceClient::new(ch)
                        .issue_licences(as_actor(&dept, "issuer", items))
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("bulk call: {e:?}");
                            return;
                        }
                    };
                    let mut results = r.into_inner();
                    while let Some(r) = results.next().await {
                        match r {
                            Ok(r) => match r.outcome {
                                Some(pb::issue_licences_result::Outcome::LicenceId(id)) => {
                                    acked.lock().unwrap().insert(id, None);
                                }
                                other => eprintln!("bulk item: {other:?}"),
                            },
                            Err(e) => {
                                eprintln!("bulk stream: {e:?}");
                                break;
                            }
                        }
                    }
                }));
            }
            // An export read slowly while two issuers write.
            _ => {
                let ch = channel.clone();
                work.push(tokio::spawn(async move {
                    let mut a = AuditServiceClient::new(ch);
                    if let Ok(r) = a
                        .export_entries(as_actor(
                            ADMIN_DEPT,
                            "auditor",
                            pb::ExportEntriesRequest { start: 0, end: 0 },
                        ))
                        .await
                    {
                        let mut s = r.into_inner();
                        while let Some(Ok(_)) = s.next().await {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                    }
                }));
                for w in 0..2 {
                    let (ch, good, acked) = (channel.clone(), good.clone(), acked.clone());
                    work.push(tokio::spawn(async move {
                        let mut l = LicenceServiceClient::new(ch);
                        for i in 0.. {
                            match l
                                .issue_licence(as_actor(
                                    &good.dept,
                                    "issuer",
                                    request(&good, &format!("r{round}-{w}-{i}")),
                                ))
                                .await
                            {
                                Ok(r) => {
                                    let r = r.into_inner();
                                    acked.lock().unwrap().insert(r.licence_id, Some(r.document));
                                }
                                Err(_) => return,
                            }
                        }
                    }));
                }
            }
        }
        let delay = jitter(300, 1500);
        tokio::time::sleep(delay).await;
        eprintln!("round {round}: kill -9 after {delay:?}");
        s.kill9();
        for w in work {
            w.await.unwrap();
        }
        let seen = sampler.await.unwrap();
        let restarted = ChildServer::spawn(&data);
        let acked_now = acked.lock().unwrap().clone();
        assert!(
            acked_now.len() > acked_before,
            "round {round}: nothing was acknowledged"
        );
        acked_before = acked_now.len();
        check_after_restart(
            restarted.addr,
            dir.path(),
            round,
            &good,
            &acked_now,
            &seen,
            &key,
        )
        .await;
        server = Some(restarted);
    }
}
