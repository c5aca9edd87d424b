//! Joining the sharing platforms: the change feed a platform follows (killed and restarted,
//! stalled), its positions and origins, and changes decided upstream.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::policy_service_client::PolicyServiceClient;
use certseal::pb::sync_service_client::SyncServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use certseal_log::merkle::{leaf_hash, parse_hash, verify_inclusion};
use certseal_log::{Checkpoint, Entry, VerifierKey};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::licences::{Issuer, fields, issuer, request};
use crate::util::*;

/// The sharing platform's department.
fn platform() -> String {
    dept_code(90)
}

/// A server enforcing the sharing policy, with more `config` (on a cluster: a follower).
async fn enforced(config: &str) -> TestServer {
    let toml = format!("[policy]\nenforce = true\nadmin_department = \"{ADMIN_DEPT}\"\n{config}");
    let s = TestServer::start_with(&toml).await;
    // The operator audits too (to read every entry).
    register(
        &mut certseal::pb::department_service_client::DepartmentServiceClient::new(
            connect(s.addr()).await,
        ),
        ADMIN_DEPT,
        "登记机关",
    )
    .await;
    policy(
        s.addr(),
        pb::SetDepartmentPolicyRequest {
            department: ADMIN_DEPT.into(),
            roles: vec![pb::Role::Admin as i32, pb::Role::Auditor as i32],
            ..Default::default()
        },
    )
    .await;
    s
}

async fn policy(addr: SocketAddr, r: pb::SetDepartmentPolicyRequest) {
    PolicyServiceClient::new(connect(addr).await)
        .set_department_policy(admin(r))
        .await
        .unwrap();
}

/// `i` issues its type; the platform follows it (every field) and applies upstream changes to
/// `apply` issuers' licences of it.
async fn grants(addr: SocketAddr, i: &Issuer, apply: &[&str]) {
    grants_showing(addr, i, apply, true).await;
}

/// [`grants`], the platform seeing every field or only the public ones.
async fn grants_showing(addr: SocketAddr, i: &Issuer, apply: &[&str], all_fields: bool) {
    policy(
        addr,
        pb::SetDepartmentPolicyRequest {
            department: i.dept.clone(),
            roles: vec![pb::Role::Issuer as i32],
            issue: vec![pb::IssueGrant {
                type_code: i.type_code.clone(),
                seal_ids: Vec::new(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    register(
        &mut certseal::pb::department_service_client::DepartmentServiceClient::new(
            connect(addr).await,
        ),
        &platform(),
        "福建省电子证照共享平台",
    )
    .await;
    policy(
        addr,
        pb::SetDepartmentPolicyRequest {
            department: platform(),
            roles: vec![pb::Role::Sync as i32],
            sync: vec![pb::SyncGrant {
                type_code: i.type_code.clone(),
                all_fields,
                apply_issuers: apply.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
}

fn as_sync<T>(m: T) -> tonic::Request<T> {
    as_actor(&platform(), "sync", m)
}

async fn issue(addr: SocketAddr, i: &Issuer, key: &str) -> String {
    LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(i, key)))
        .await
        .unwrap()
        .into_inner()
        .licence_id
}

async fn verifier_key(addr: SocketAddr) -> VerifierKey {
    let text = AuditServiceClient::new(connect(addr).await)
        .get_verifier_key(admin(pb::GetVerifierKeyRequest {}))
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    VerifierKey::parse(&text).unwrap()
}

/// Now, as a message.
fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

/// Every entry of the log, read by an auditor.
async fn all_entries(addr: SocketAddr) -> Vec<Entry> {
    let mut a = AuditServiceClient::new(connect(addr).await);
    let size = a
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size;
    let mut out = Vec::new();
    for index in 0..size {
        let e = a
            .get_entry(as_actor(
                ADMIN_DEPT,
                "auditor",
                pb::GetEntryRequest { index },
            ))
            .await
            .unwrap()
            .into_inner();
        out.push(Entry::decode(&e.entry).unwrap());
    }
    out
}

/// The indexes a platform following `followed` types must get: changes of those types'
/// licences and templates, and of every seal and department.
fn expected(entries: &[Entry], followed: &BTreeSet<String>) -> Vec<u64> {
    entries
        .iter()
        .filter(|e| {
            let (what, _) = e.kind.split_once('.').unwrap();
            match what {
                "licence" => {
                    e.kind != "licence.ofd_sealed"
                        && matches!(e.extra.get("type"), Some(certseal_log::Extra::Text(t)) if followed.contains(t))
                }
                "template" => followed.contains(&e.subject),
                "seal" | "department" => true,
                _ => false,
            }
        })
        .map(|e| e.seq)
        .collect()
}

/// Proves the change at `index` with entry `entry` against a signed checkpoint, reading the
/// proof as the platform.
async fn prove(addr: SocketAddr, key: &VerifierKey, index: u64, entry: &[u8]) {
    let p = AuditServiceClient::new(connect(addr).await)
        .get_inclusion_proof(as_sync(pb::GetInclusionProofRequest {
            target: Some(pb::get_inclusion_proof_request::Target::Index(index)),
            holder: None,
        }))
        .await
        .unwrap_or_else(|s| panic!("proof of {index}: {s:?}"))
        .into_inner();
    assert_eq!(p.entry, entry, "entry {index} as proved");
    let cp = Checkpoint::open(&p.checkpoint.unwrap().note, key).unwrap();
    let hashes: Vec<_> = p.hashes.iter().map(|h| parse_hash(h).unwrap()).collect();
    verify_inclusion(&leaf_hash(entry), index, cp.size, &hashes, &cp.root)
        .unwrap_or_else(|e| panic!("entry {index} not in the checkpoint: {e}"));
}

fn follower_cli(addr: SocketAddr, out: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"));
    c.args(["sync", "follow", "--out"])
        .arg(out)
        .args(extra)
        .args([
            "--server",
            &format!("http://{addr}"),
            "--as-department",
            &platform(),
            "--as-role",
            "sync",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_and_restarted_gets_every_change_once_in_log_order_each_proved() {
    let s = enforced("").await;
    let addr = s.addr();
    let a = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let other = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    grants(addr, &a, &[&a.dept]).await;
    policy(
        addr,
        pb::SetDepartmentPolicyRequest {
            department: other.dept.clone(),
            roles: vec![pb::Role::Issuer as i32],
            issue: vec![pb::IssueGrant {
                type_code: other.type_code.clone(),
                seal_ids: Vec::new(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("changes.jsonl");

    // Issues and changes licences of both types while the consumer is killed and restarted.
    let writer = tokio::spawn({
        let (a, other) = (
            crate::licences::issuer_clone(&a),
            crate::licences::issuer_clone(&other),
        );
        async move {
            let mut l = LicenceServiceClient::new(connect(addr).await);
            let dept = a.dept.clone();
            for n in 0..60u32 {
                let id = issue(addr, &a, &format!("a-{n}")).await;
                issue(addr, &other, &format!("o-{n}")).await;
                match n % 6 {
                    1 => {
                        l.suspend_licence(as_actor(
                            &dept,
                            "issuer",
                            pb::LicenceTransitionRequest {
                                licence_id: id,
                                note: "暂扣".into(),
                                request_id: String::new(),
                            },
                        ))
                        .await
                        .unwrap();
                    }
                    2 => {
                        l.revoke_licence(as_actor(
                            &dept,
                            "issuer",
                            pb::RevokeLicenceRequest {
                                licence_id: id,
                                reason: pb::LicenceRevocationReason::Penalty as i32,
                                note: "吊销".into(),
                                request_id: String::new(),
                            },
                        ))
                        .await
                        .unwrap();
                    }
                    3 => {
                        l.amend_licence(as_actor(
                            &dept,
                            "issuer",
                            pb::AmendLicenceRequest {
                                licence_id: id,
                                fields: fields("张三饭店"),
                                ..Default::default()
                            },
                        ))
                        .await
                        .unwrap();
                    }
                    4 => {
                        SyncServiceClient::new(connect(addr).await)
                            .apply_upstream_change(as_sync(pb::ApplyUpstreamChangeRequest {
                                licence_id: id,
                                action: pb::UpstreamAction::Revoke as i32,
                                reason: pb::LicenceRevocationReason::Cancelled as i32,
                                source: "福建省市场监督管理局".into(),
                                reference: format!("闽市监注〔2026〕{n}号"),
                                decided_at: Some(now()),
                                note: String::new(),
                            }))
                            .await
                            .unwrap();
                    }
                    _ => {}
                }
                // Long enough for the consumer to be killed several times meanwhile.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    let mut kills = 0;
    while !writer.is_finished() {
        let mut child = follower_cli(addr, &out, &[]).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(300 + 150 * (kills % 4))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    writer.await.unwrap();
    assert!(kills >= 3, "the consumer was killed only {kills} times");
    // A last run to the end of the log.
    let status = follower_cli(addr, &out, &["--until-caught-up"])
        .status()
        .unwrap();
    assert!(status.success());

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    let entries = all_entries(addr).await;
    let want = expected(&entries, &BTreeSet::from([a.type_code.clone()]));
    assert_eq!(got, want, "every change exactly once, in log order");
    let key = verifier_key(addr).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut terms: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let index = l["index"].as_u64().unwrap();
        let entry = b64.decode(l["entry"].as_str().unwrap()).unwrap();
        assert_eq!(Entry::decode(&entry).unwrap(), entries[index as usize]);
        assert_eq!(l["origin"], key.name());
        prove(addr, &key, index, &entry).await;
        if let Some(t) = l["national"]["term"].as_str() {
            *terms.entry(t.to_owned()).or_default() += 1;
        }
        if l["subject_kind"] == "licence" {
            assert_eq!(l["licence"]["type_code"], a.type_code.as_str());
        }
    }
    // 60 issued: 10 held, 10 revoked as a penalty, 10 amended (and their predecessors
    // superseded), 10 cancelled upstream.
    assert_eq!(
        terms,
        BTreeMap::from([
            ("暂扣".to_owned(), 10),
            ("吊销".to_owned(), 10),
            ("变更".to_owned(), 20),
            ("注销".to_owned(), 10),
        ]),
    );
    let upstream: Vec<_> = lines.iter().filter(|l| l["upstream"].is_object()).collect();
    assert_eq!(upstream.len(), 10);
    assert_eq!(upstream[0]["upstream"]["source"], "福建省市场监督管理局");
    assert_eq!(upstream[0]["actor"]["department"], platform().as_str());
    // An issue carries the signed document (every field is granted) and the holder.
    let issued = lines
        .iter()
        .find(|l| l["kind"] == "licence.issued")
        .unwrap();
    let doc = b64
        .decode(issued["licence"]["document"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        hex::encode(certseal_crypto::sha256(&[&doc])),
        issued["digest"].as_str().unwrap()
    );
    assert_eq!(issued["licence"]["holder"]["name"], "张三");
    // The other department's licences never appear.
    assert!(
        lines
            .iter()
            .all(|l| l["licence"]["type_code"] != other.type_code.as_str())
    );
    s.stop().await;
}

/// Opens a feed whose client takes in little before it stops reading.
async fn narrow_feed(
    addr: SocketAddr,
    after: Option<u64>,
    origin: &str,
) -> Result<tonic::Streaming<pb::WatchChangesResponse>, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    SyncServiceClient::new(channel)
        .watch_changes(as_sync(pb::WatchChangesRequest {
            after,
            origin: origin.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_is_told_to_resume_and_resumes_without_a_gap() {
    let server = enforced("[limits]\nfeed_stall_secs = 1\n").await;
    let addr = server.addr();
    let a = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    grants(addr, &a, &[]).await;
    let mut feed = narrow_feed(addr, None, "").await.unwrap();
    let first = feed.message().await.unwrap().unwrap();
    assert!(matches!(
        first.item,
        Some(pb::watch_changes_response::Item::Change(_))
    ));
    // The consumer stops reading; 600 licences are issued meanwhile.
    let items: Vec<pb::IssueLicencesItem> = (0..600)
        .map(|n| pb::IssueLicencesItem {
            r#ref: n.to_string(),
            licence: Some(request(&a, &format!("k{n}"))),
        })
        .collect();
    let results: Vec<_> = LicenceServiceClient::new(connect(addr).await)
        .issue_licences(as_actor(&a.dept, "issuer", tokio_stream::iter(items)))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert!(results.iter().all(|r| matches!(
        r,
        Ok(pb::IssueLicencesResult {
            outcome: Some(pb::issue_licences_result::Outcome::LicenceId(_)),
            ..
        })
    )));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // It reads again: what was handed over before the stall, then where to resume.
    let mut received = vec![match first.item {
        Some(pb::watch_changes_response::Item::Change(c)) => c.index,
        _ => unreachable!(),
    }];
    let status = loop {
        match feed.message().await {
            Ok(Some(pb::WatchChangesResponse {
                item: Some(pb::watch_changes_response::Item::Change(c)),
            })) => received.push(c.index),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the feed ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_error_details().error_info().unwrap().clone();
    assert_eq!(info.reason, "FEED_CONSUMER_BEHIND");
    let resume: u64 = info.metadata["resume_after"].parse().unwrap();
    assert_eq!(
        Some(&resume),
        received.last(),
        "it names the last change handed over"
    );
    // The server held a bounded part of the 600 issues, not all of them.
    assert!(
        received.len() < 400,
        "{} changes were buffered for a consumer that read nothing",
        received.len()
    );
    // Resuming where it was told gets the rest, with no gap and nothing twice.
    let origin = info.metadata["origin"].clone();
    let mut feed = narrow_feed(addr, Some(resume), &origin).await.unwrap();
    loop {
        match feed.message().await.unwrap().unwrap().item {
            Some(pb::watch_changes_response::Item::Change(c)) => received.push(c.index),
            Some(pb::watch_changes_response::Item::CaughtUp(_)) => break,
            None => {}
        }
    }
    let want = expected(
        &all_entries(addr).await,
        &BTreeSet::from([a.type_code.clone()]),
    );
    assert_eq!(received, want);
    server.stop().await;
}

#[tokio::test]
async fn positions_from_another_origin_or_past_the_log_are_refused() {
    let s = enforced("").await;
    let addr = s.addr();
    let a = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    grants(addr, &a, &[]).await;
    let origin = verifier_key(addr).await.name().to_owned();
    let size = AuditServiceClient::new(connect(addr).await)
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size;
    let open = |after: Option<u64>, origin: &str, dept: String, role: &'static str| {
        let origin = origin.to_owned();
        async move {
            SyncServiceClient::new(connect(addr).await)
                .watch_changes(as_actor(
                    &dept,
                    role,
                    pb::WatchChangesRequest { after, origin },
                ))
                .await
                .map(|_| ())
        }
    };
    let past = open(Some(size), &origin, platform(), "sync")
        .await
        .unwrap_err();
    assert_eq!(past.code(), Code::FailedPrecondition);
    assert!(
        past.message().contains(&format!("{size} entries")),
        "{past:?}"
    );
    let other = open(Some(1), "other.example/log", platform(), "sync")
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert!(other.message().contains(&origin), "{other:?}");
    expect_code(
        open(Some(1), "", platform(), "sync").await.unwrap_err(),
        Code::InvalidArgument,
    );
    // Only the sync role follows, and only a department holding it.
    for (dept, role) in [(a.dept.clone(), "issuer"), (a.dept.clone(), "sync")] {
        expect_code(
            open(None, "", dept, role).await.unwrap_err(),
            Code::PermissionDenied,
        );
    }
    open(Some(size - 1), &origin, platform(), "sync")
        .await
        .unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cancellation_applies_once_and_then_fails_verification() {
    let s = enforced("").await;
    let addr = s.addr();
    let a = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let b = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    grants(addr, &a, &[&a.dept]).await;
    policy(
        addr,
        pb::SetDepartmentPolicyRequest {
            department: b.dept.clone(),
            roles: vec![pb::Role::Issuer as i32, pb::Role::Verifier as i32],
            issue: vec![pb::IssueGrant {
                type_code: b.type_code.clone(),
                seal_ids: Vec::new(),
                ..Default::default()
            }],
            read: vec![pb::ReadGrant {
                type_code: a.type_code.clone(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    let id = issue(addr, &a, "one").await;
    let decided = now();
    let mut sync = SyncServiceClient::new(connect(addr).await);
    let cancel = |reason: pb::LicenceRevocationReason| pb::ApplyUpstreamChangeRequest {
        licence_id: id.clone(),
        action: pb::UpstreamAction::Revoke as i32,
        reason: reason as i32,
        source: "国家政务服务平台".into(),
        reference: "GJ-2026-000123".into(),
        decided_at: Some(decided),
        note: String::new(),
    };
    let size = |addr| async move {
        AuditServiceClient::new(connect(addr).await)
            .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
            .await
            .unwrap()
            .into_inner()
            .size
    };
    let before = size(addr).await;
    let first = sync
        .apply_upstream_change(as_sync(cancel(pb::LicenceRevocationReason::Cancelled)))
        .await
        .unwrap()
        .into_inner();
    assert!(first.applied);
    assert_eq!(first.log_index, before);
    let again = sync
        .apply_upstream_change(as_sync(cancel(pb::LicenceRevocationReason::Cancelled)))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.applied);
    assert_eq!(again.log_index, first.log_index);
    assert_eq!(size(addr).await, before + 1, "applied once, logged once");
    // The same reference for another decision is refused and changes nothing.
    expect_code(
        sync.apply_upstream_change(as_sync(cancel(pb::LicenceRevocationReason::Penalty)))
            .await
            .unwrap_err(),
        Code::AlreadyExists,
    );
    let l = LicenceServiceClient::new(connect(addr).await)
        .get_licence(as_actor(
            &a.dept,
            "issuer",
            pb::GetLicenceRequest {
                licence_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.status(), pb::LicenceStatus::Revoked);
    assert_eq!(l.history.len(), 2);
    let e = &l.history[1];
    assert_eq!(e.reason(), pb::LicenceRevocationReason::Cancelled);
    let u = e.upstream.as_ref().unwrap();
    assert_eq!(
        (u.source.as_str(), u.reference.as_str()),
        ("国家政务服务平台", "GJ-2026-000123")
    );
    assert_eq!(u.decided_at.as_ref().unwrap().seconds, decided.seconds);
    assert_eq!(e.by.as_ref().unwrap().department, platform());
    // Verification fails with the matching sub-indication.
    let r = VerificationServiceClient::new(connect(addr).await)
        .verify_licence(as_actor(
            &b.dept,
            "verifier",
            pb::VerifyLicenceRequest {
                licence_id: id.clone(),
                purpose: Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: "办理食品经营许可变更".into(),
                }),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.indication(), pb::Indication::TotalFailed);
    assert_eq!(r.sub_indication(), pb::SubIndication::Revoked);

    // Refused, changing nothing: a licence of an issuer the grant does not name, a caller
    // without the sync role, a decision dated in the future, a missing reason.
    let of_b = issue(addr, &b, "b-one").await;
    let before = size(addr).await;
    let mut other = cancel(pb::LicenceRevocationReason::Cancelled);
    other.licence_id = of_b;
    other.reference = "GJ-2026-000124".into();
    expect_code(
        sync.apply_upstream_change(as_sync(other.clone()))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    expect_code(
        sync.apply_upstream_change(as_actor(&a.dept, "issuer", other.clone()))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    let mut future = cancel(pb::LicenceRevocationReason::Cancelled);
    future.reference = "GJ-2026-000125".into();
    future.decided_at = Some(prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    });
    expect_code(
        sync.apply_upstream_change(as_sync(future))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
    );
    let mut no_reason = cancel(pb::LicenceRevocationReason::Unspecified);
    no_reason.reference = "GJ-2026-000126".into();
    expect_code(
        sync.apply_upstream_change(as_sync(no_reason))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
    );
    assert_eq!(size(addr).await, before, "the refusals changed nothing");

    // The command line applies one too, and says when it was applied before.
    let second = issue(addr, &a, "two").await;
    // Decided a minute ahead (clocks differ a little): later than any decision below.
    let ahead = prost_types::Timestamp {
        seconds: now().seconds + 60,
        nanos: 0,
    }
    .to_string();
    let apply = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args([
                "sync",
                "apply",
                &second,
                "--action",
                "suspend",
                "--source",
                "市局",
                "--reference",
                "SJ-1",
                "--decided-at",
                &ahead,
                "--json",
                "--server",
                &format!("http://{addr}"),
                "--as-department",
                &platform(),
                "--as-role",
                "sync",
            ])
            .output()
            .unwrap()
    };
    let out: serde_json::Value = serde_json::from_slice(&apply().stdout).unwrap();
    assert_eq!(out["applied"], true);
    assert_eq!(out["licence"]["status"], "suspended");
    let out: serde_json::Value = serde_json::from_slice(&apply().stdout).unwrap();
    assert_eq!(out["applied"], false);
    // Decisions apply in upstream order: one taken before the last applied, or before the
    // licence was issued, is refused.
    let stale = |reference: &str, seconds: i64| pb::ApplyUpstreamChangeRequest {
        licence_id: second.clone(),
        action: pb::UpstreamAction::Reinstate as i32,
        reason: 0,
        source: "市局".into(),
        reference: reference.into(),
        decided_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        note: String::new(),
    };
    for (reference, seconds) in [("SJ-0", now().seconds + 1), ("SJ-00", 1_000_000_000)] {
        let e = sync
            .apply_upstream_change(as_sync(stale(reference, seconds)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_sees_what_its_grant_shows_and_proves_only_what_it_follows() {
    let s = enforced("").await;
    let addr = s.addr();
    let a = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let b = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    grants_showing(addr, &a, &[], false).await;
    policy(
        addr,
        pb::SetDepartmentPolicyRequest {
            department: b.dept.clone(),
            roles: vec![pb::Role::Issuer as i32],
            issue: vec![pb::IssueGrant {
                type_code: b.type_code.clone(),
                seal_ids: Vec::new(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    let ours = issue(addr, &a, "ours").await;
    let theirs = issue(addr, &b, "theirs").await;
    let mut feed = SyncServiceClient::new(connect(addr).await)
        .watch_changes(as_sync(pb::WatchChangesRequest {
            after: None,
            origin: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut licences = Vec::new();
    loop {
        match feed.message().await.unwrap().unwrap().item {
            Some(pb::watch_changes_response::Item::Change(c)) => {
                if let Some(l) = c.licence {
                    licences.push(l);
                }
            }
            Some(pb::watch_changes_response::Item::CaughtUp(_)) => break,
            None => {}
        }
    }
    assert_eq!(licences.len(), 1, "only the followed type's licence");
    let l = &licences[0];
    assert_eq!(l.licence_id, ours);
    let holder = l.holder.clone().unwrap();
    assert_ne!(
        holder.id,
        crate::licences::PERSON,
        "a person holder is masked"
    );
    assert_ne!(holder.name, "张三");
    assert!(l.fields.contains_key("capital"), "public fields shown");
    assert!(
        !l.fields.contains_key("staff"),
        "a field the grant does not name"
    );
    assert!(l.document.is_empty(), "the document holds every field");
    // The platform proves the entries its feed carries, and no other.
    let entries = all_entries(addr).await;
    let index_of = |id: &str| {
        entries
            .iter()
            .find(|e| e.kind == "licence.issued" && e.subject == id)
            .unwrap()
            .seq
    };
    let mut audit = AuditServiceClient::new(connect(addr).await);
    let proof = |index| {
        as_sync(pb::GetInclusionProofRequest {
            target: Some(pb::get_inclusion_proof_request::Target::Index(index)),
            holder: None,
        })
    };
    audit
        .get_inclusion_proof(proof(index_of(&ours)))
        .await
        .unwrap();
    expect_code(
        audit
            .get_inclusion_proof(proof(index_of(&theirs)))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    s.stop().await;
}
