use std::io::{Read, Write};

use certseal::pb;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;

use crate::licences::{issuer, request};
use crate::util::*;

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of the first series starting with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no series {prefix} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_metrics_endpoint_counts_calls_issues_checks_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_addr();
    let server = ChildServer::spawn_with(&dir.path().join("data"), &["--metrics-listen", &metrics]);
    let i = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
    let channel = connect(server.addr).await;
    let mut l = LicenceServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = l
            .issue_licence(as_actor(&i.dept, "issuer", request(&i, &format!("m{n}"))))
            .await
            .unwrap();
        ids.push(r.into_inner().licence_id);
    }
    // A refused call: its code is counted.
    l.get_licence(as_actor(
        &i.dept,
        "issuer",
        pb::GetLicenceRequest {
            licence_id: "not an id".into(),
        },
    ))
    .await
    .unwrap_err();
    let mut v = VerificationServiceClient::new(channel);
    for id in &ids[..2] {
        v.verify_licence(as_actor(
            &i.dept,
            "issuer",
            pb::VerifyLicenceRequest {
                licence_id: id.clone(),
                purpose: Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: "metrics".into(),
                }),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap();
    }

    let text = scrape(&metrics);
    let issue = "/certseal.v1.LicenceService/IssueLicence";
    assert_eq!(
        value(
            &text,
            &format!("certseal_rpc_requests_total{{method=\"{issue}\",code=\"OK\"}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "certseal_rpc_requests_total{method=\"/certseal.v1.LicenceService/GetLicence\",code=\"InvalidArgument\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("certseal_rpc_duration_seconds_count{{method=\"{issue}\"}}")
        ),
        3.0
    );
    assert!(
        text.contains(&format!(
            "certseal_rpc_duration_seconds_bucket{{le=\"+Inf\",method=\"{issue}\"}} 3"
        )),
        "{text}"
    );
    assert_eq!(value(&text, "certseal_licences_issued_total"), 3.0);
    assert_eq!(
        value(
            &text,
            "certseal_verifications_total{result=\"TOTAL_PASSED\"}"
        ),
        2.0
    );
    // Department, template (draft, publish), seal (register, activate), 3 issues, 2 receipts.
    assert!(value(&text, "certseal_log_size") >= 10.0, "{text}");
    assert!(value(&text, "certseal_checkpoint_age_seconds") < 60.0);
    let groups = value(&text, "certseal_group_commits_total");
    assert!(groups >= 1.0 && value(&text, "certseal_group_commit_operations_total") >= groups);
    assert!(
        value(&text, "certseal_rocksdb_memtable_bytes") > 0.0,
        "{text}"
    );
    assert!(text.contains("certseal_rocksdb_sst_bytes"), "{text}");
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

#[tokio::test]
async fn status_shows_health_version_and_the_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(&dir.path().join("data"));
    issuer(server.addr, 2, pb::SealAlgorithm::Ed25519).await;
    let status = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args(["status", "--server", &server.url()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = status(&[
        "--as-department",
        ADMIN_DEPT,
        "--as-role",
        "auditor",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["serving"], true);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // Department, template draft and publication, seal registration and activation.
    assert_eq!(v["log_size"], 5, "{v}");
    assert!(v["checkpoint"].as_str().unwrap().contains("\n5\n"), "{v}");
    // Without an identity: healthy, but the checkpoint is not for it.
    let out = status(&[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("SERVING") && text.contains("not readable (Unauthenticated"),
        "{text}"
    );
}

#[tokio::test]
async fn every_call_has_a_request_id_in_the_log_and_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let i = issuer(server.addr, 3, pb::SealAlgorithm::Ed25519).await;
    let mut l = LicenceServiceClient::new(connect(server.addr).await);
    let mut req = as_actor(&i.dept, "issuer", request(&i, "rid"));
    req.metadata_mut()
        .insert("x-request-id", "case-2026-0042".parse().unwrap());
    let r = l.issue_licence(req).await.unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "case-2026-0042");
    let id = r.into_inner().licence_id;
    // Without one, or with one unfit for a log line, the server makes one.
    for given in [None, Some("two words\tand a tab")] {
        let mut req = as_actor(&i.dept, "issuer", request(&i, "rid"));
        if let Some(g) = given {
            req.metadata_mut()
                .insert("x-request-id", g.parse().unwrap());
        }
        let r = l.issue_licence(req).await.unwrap();
        let made = r.metadata().get("x-request-id").unwrap().to_str().unwrap();
        assert!(
            made.len() == 16 && made.chars().all(|c| c.is_ascii_hexdigit()),
            "{made}"
        );
    }
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("request_id=case-2026-0042") && l.contains(&id)),
        "{log}"
    );
}
