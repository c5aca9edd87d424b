use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use certseal::pb;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use tokio::io::AsyncWriteExt;

use crate::licences::{issuer, request};
use crate::util::*;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn purpose() -> Option<pb::Purpose> {
    Some(pb::Purpose {
        code: "ADMIN_APPROVAL".into(),
        text: "核验".into(),
    })
}

/// Not pseudo-random enough for anything but noise.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One flooding department: many calls at once, each oversize, malformed or garbage.
async fn flood(addr: std::net::SocketAddr, n: u32, stop: Arc<AtomicBool>, refused: Arc<AtomicU64>) {
    let channel = connect(addr).await;
    let dept = dept_code(40 + n);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..24u64 {
        let (channel, dept, stop, refused) =
            (channel.clone(), dept.clone(), stop.clone(), refused.clone());
        tasks.spawn(async move {
            let mut v = VerificationServiceClient::new(channel.clone());
            let mut l = LicenceServiceClient::new(channel);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let failed = match (lane + i) % 5 {
                    // Larger than the server's message bound.
                    0 => v
                        .verify_document(as_actor(
                            &dept,
                            "verifier",
                            pb::VerifyDocumentRequest {
                                document: Some(pb::verify_document_request::Document::Cose(vec![
                                0xd2;
                                5 << 20
                            ])),
                                purpose: purpose(),
                                at: None,
                                use_code: String::new(),
                            },
                        ))
                        .await
                        .is_err(),
                    // Bytes that are no COSE document.
                    1 => v
                        .verify_document(as_actor(
                            &dept,
                            "verifier",
                            pb::VerifyDocumentRequest {
                                document: Some(pb::verify_document_request::Document::Cose(noise(
                                    i, 4096,
                                ))),
                                purpose: purpose(),
                                at: None,
                                use_code: String::new(),
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().indication != pb::Indication::TotalPassed as i32)
                        .unwrap_or(true),
                    // A QR string of garbage.
                    2 => v
                        .verify_document(as_actor(
                            &dept,
                            "verifier",
                            pb::VerifyDocumentRequest {
                                document: Some(pb::verify_document_request::Document::Qr(format!(
                                    "CS1:{}",
                                    "Z".repeat(60_000)
                                ))),
                                purpose: purpose(),
                                at: None,
                                use_code: String::new(),
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().indication != pb::Indication::TotalPassed as i32)
                        .unwrap_or(true),
                    // Identifiers that are not identifiers, and an issue of junk.
                    3 => v
                        .verify_licence(as_actor(
                            &dept,
                            "verifier",
                            pb::VerifyLicenceRequest {
                                licence_id: "x".repeat(10_000),
                                purpose: purpose(),
                                at: None,
                                use_code: String::new(),
                            },
                        ))
                        .await
                        .is_err(),
                    _ => l
                        .issue_licence(as_actor(
                            &dept,
                            "issuer",
                            pb::IssueLicenceRequest {
                                type_code: "garbage".into(),
                                seal_id: "junk".into(),
                                idempotency_key: "\u{0}".repeat(500),
                                ..Default::default()
                            },
                        ))
                        .await
                        .is_err(),
                };
                assert!(failed, "a bad request was accepted");
                refused.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Raw garbage on fresh connections.
    tasks.spawn({
        let stop = stop.clone();
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    let _ = s.write_all(&noise(i, 64 << 10)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    while tasks.join_next().await.is_some() {}
}

/// Several departments flood the server with oversize and malformed requests while a good
/// client keeps issuing and verifying: every good call succeeds, nothing bad is stored, and
/// the server's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_bad_requests_neither_stops_good_calls_nor_grows_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("certseal.toml");
    std::fs::write(&config, "[limits]\nper_department_concurrency = 16\n").unwrap();
    let server = ChildServer::spawn_with(&data, &["--config", config.to_str().unwrap()]);
    let pid = server.child.id();
    let good = issuer(server.addr, 31, pb::SealAlgorithm::Ed25519).await;
    let channel = connect(server.addr).await;
    let mut lic = LicenceServiceClient::new(channel.clone());
    let mut ver = VerificationServiceClient::new(channel);
    let mut issue_and_verify = async |key: String| {
        let l = lic
            .issue_licence(as_actor(&good.dept, "issuer", request(&good, &key)))
            .await
            .unwrap_or_else(|e| panic!("good issue {key} failed: {e:?}"))
            .into_inner();
        let r = ver
            .verify_licence(as_actor(
                &dept_code(39),
                "verifier",
                pb::VerifyLicenceRequest {
                    licence_id: l.licence_id.clone(),
                    purpose: purpose(),
                    at: None,
                    use_code: String::new(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("good verify failed: {e:?}"))
            .into_inner();
        assert_eq!(
            r.indication,
            pb::Indication::TotalPassed as i32,
            "{}",
            r.reason
        );
        let d = ver
            .verify_document(as_actor(
                &dept_code(39),
                "verifier",
                pb::VerifyDocumentRequest {
                    document: Some(pb::verify_document_request::Document::Cose(l.document)),
                    purpose: purpose(),
                    at: None,
                    use_code: String::new(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("good document check failed: {e:?}"))
            .into_inner();
        assert_eq!(
            d.indication,
            pb::Indication::TotalPassed as i32,
            "{}",
            d.reason
        );
    };
    for i in 0..20 {
        issue_and_verify(format!("warm-{i}")).await;
    }
    let baseline = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|n| tokio::spawn(flood(server.addr, n, stop.clone(), refused.clone())))
        .collect();
    let started = Instant::now();
    let mut peak = baseline;
    let mut good_calls = 0;
    while started.elapsed() < Duration::from_secs(12) {
        issue_and_verify(format!("during-{good_calls}")).await;
        good_calls += 1;
        peak = peak.max(rss_kib(pid));
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.unwrap();
    }
    peak = peak.max(rss_kib(pid));
    let refused = refused.load(Ordering::Relaxed);
    eprintln!(
        "flood: {refused} bad calls refused, {good_calls} good issue+verify rounds, server RSS {} MiB before, {} MiB at peak",
        baseline >> 10,
        peak >> 10
    );
    assert!(refused > 100, "the flood did not run: {refused} calls");
    assert!(good_calls > 10, "only {good_calls} good rounds in 12 s");
    assert!(
        peak < baseline + (200 << 10),
        "server memory grew from {} MiB to {} MiB under the flood",
        baseline >> 10,
        peak >> 10
    );
    // Nothing the flood sent was stored: the issuer's licences are exactly the good ones.
    let mut all = 0;
    let mut token = String::new();
    loop {
        let page = lic
            .list_licences(as_actor(
                &good.dept,
                "issuer",
                pb::ListLicencesRequest {
                    issuer: good.dept.clone(),
                    page_token: token.clone(),
                    page_size: 1000,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        all += page.licences.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all, 20 + good_calls);
    for n in 0..4 {
        let theirs = lic
            .list_licences(admin(pb::ListLicencesRequest {
                issuer: dept_code(40 + n),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(theirs.licences.is_empty(), "a flooder's issue was stored");
    }
    assert!(server_alive(server), "the server survived");
}

fn server_alive(mut server: ChildServer) -> bool {
    server.child.try_wait().unwrap().is_none()
}

/// The bounds of `[limits]` apply as configured: page size, fields per licence, seal image size.
#[tokio::test]
async fn configured_input_limits_are_applied() {
    use certseal::pb::department_service_client::DepartmentServiceClient;
    use certseal::pb::seal_service_client::SealServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let server = start_with_config(
        dir.path(),
        "[limits]\nmax_page_size = 2\nmax_licence_fields = 3\nmax_seal_image_kib = 1\n",
    )
    .await;
    let good = issuer(server.addr, 51, pb::SealAlgorithm::Ed25519).await;
    let channel = connect(server.addr).await;
    let mut depts = DepartmentServiceClient::new(channel.clone());
    for n in 52..55 {
        register(&mut depts, &dept_code(n), "某局").await;
    }
    for size in [0, 500] {
        let page = depts
            .list_departments(admin(pb::ListDepartmentsRequest {
                page_size: size,
                page_token: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.departments.len(), 2, "page_size {size}");
        assert!(!page.next_page_token.is_empty());
    }
    let too_many = LicenceServiceClient::new(channel.clone())
        .issue_licence(as_actor(&good.dept, "issuer", request(&good, "k")))
        .await
        .unwrap_err();
    let v = expect_code(too_many, tonic::Code::InvalidArgument);
    assert!(
        v.iter()
            .any(|(f, m)| f == "fields" && m.contains("at most 3")),
        "{v:?}"
    );
    let mut image = png(1);
    image.resize(2048, 0);
    let big = SealServiceClient::new(channel)
        .register_seal(admin(pb::RegisterSealRequest {
            department: good.dept.clone(),
            name: "专用章".into(),
            r#type: pb::SealType::SpecialPurpose as i32,
            image,
            algorithm: pb::SealAlgorithm::Ed25519 as i32,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let v = expect_code(big, tonic::Code::InvalidArgument);
    assert!(v.iter().any(|(f, _)| f == "image"), "{v:?}");
    server.stop().await.unwrap();
}
