use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal_log::{Checkpoint, VerifierKey};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::crash::check_after_restart;
use crate::licences::{Issuer, issuer, request};
use crate::util::*;

/// A tmpfs of a few MiB mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts one at `path`, or says why it cannot (mounting needs root).
    fn mount(path: &Path, mib: u64) -> Result<Self, String> {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a server killed a moment ago may still hold files there.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The serving status `service` reports.
async fn health(channel: &Channel, service: &str) -> ServingStatus {
    HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Waits (bounded) until `service` reports `want`.
async fn until_health(channel: &Channel, service: &str, want: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = health(channel, service).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} still reports {now:?}, not {want:?}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `certseal status` as the admin: its exit status and what it printed.
fn status(server: &ChildServer) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["status", "--server", &server.url()])
        .args(["--as-department", ADMIN_DEPT, "--as-role", "admin"])
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Every licence the issuer's department has, by ID.
async fn stored_licences(channel: Channel, good: &Issuer) -> Vec<String> {
    let mut lic = LicenceServiceClient::new(channel);
    let mut ids = Vec::new();
    let mut token = String::new();
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
        ids.extend(page.licences.into_iter().map(|l| l.licence_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// The data folder on a 64 MiB filesystem, most of it taken by a ballast file, and sixteen
/// clients issuing until the disk is full: writes stop and say so (health, `certseal
/// status`, the metric, the error), reads go on; once the ballast is deleted writes resume
/// without a restart, a refused request retried with its idempotency key gives one licence,
/// nothing acknowledged is lost and the log stays consistent, across a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_writes_says_so_and_they_resume_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _disk = match SmallDisk::mount(&data, 64) {
        Ok(d) => d,
        Err(why) => {
            // Mounting needs root, as CI has on its machine.
            eprintln!("SKIPPED: cannot mount a small tmpfs for the data folder: {why}");
            return;
        }
    };
    // Taken now, freed later: what the registry gets back is known. It leaves 20 MiB, less
    // than a reopen asks for (the write-ahead log, 16 MiB of memtables and 4 MiB), so writes
    // resume only once it is freed.
    let ballast = data.join("ballast");
    std::fs::write(&ballast, vec![0x5a; 44 << 20]).unwrap();
    let config = dir.path().join("certseal.toml");
    std::fs::write(
        &config,
        "[storage]\nmemtable_mb = 16\nmax_wal_mb = 64\nblock_cache_mb = 8\n",
    )
    .unwrap();
    let metrics = free_addr();
    let spawn = || {
        ChildServer::spawn_with(
            &data,
            &[
                "--config",
                config.to_str().unwrap(),
                "--metrics-listen",
                &metrics,
            ],
        )
    };
    let server = spawn();
    let good = Arc::new(issuer(server.addr, 71, pb::SealAlgorithm::Ed25519).await);
    let channel = connect(server.addr).await;
    let key = VerifierKey::parse(
        &AuditServiceClient::new(channel.clone())
            .get_verifier_key(admin(pb::GetVerifierKeyRequest {}))
            .await
            .unwrap()
            .into_inner()
            .verifier_key,
    )
    .unwrap();

    // Sixteen issuers until each is refused; the refused request is kept for a retry.
    let acked: Arc<Mutex<HashMap<String, Option<Vec<u8>>>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..16 {
        let (ch, good, acked) = (channel.clone(), good.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            let mut l = LicenceServiceClient::new(ch);
            for i in 0.. {
                let req = request(&good, &format!("w{w}-{i}"));
                match l
                    .issue_licence(as_actor(&good.dept, "issuer", req.clone()))
                    .await
                {
                    Ok(r) => {
                        let r = r.into_inner();
                        acked.lock().unwrap().insert(r.licence_id, Some(r.document));
                    }
                    Err(e) => return (req, e),
                }
            }
            unreachable!()
        }));
    }
    let mut refused = Vec::new();
    for w in workers {
        refused.push(w.await.unwrap());
    }
    let acked_at_stop = acked.lock().unwrap().clone();
    eprintln!(
        "{} licences acknowledged before the disk filled",
        acked_at_stop.len()
    );
    assert!(
        acked_at_stop.len() > 100,
        "the disk filled too soon to mean anything"
    );
    // Each is told what happened and what to do, not that the server is shutting down.
    for (_, e) in &refused {
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(
            e.message()
                .starts_with("writes are stopped: the data folder's disk is full")
                && e.message().contains("No space left on device")
                && e.message()
                    .contains("resume by themselves once space is freed")
                && e.message().contains("same idempotency key"),
            "{e:?}"
        );
    }

    // Health: the services that take writes are NOT_SERVING, reads are served.
    let within = Duration::from_secs(30);
    for s in [
        "certseal.v1.LicenceService",
        "certseal.v1.VerificationService",
        "certseal.v1.SealService",
        "certseal.v1.TemplateService",
        "certseal.v1.DepartmentService",
        "certseal.v1.PolicyService",
    ] {
        until_health(&channel, s, ServingStatus::NotServing, within).await;
    }
    for s in ["", "certseal.v1.AuditService", "certseal.v1.AdminService"] {
        assert_eq!(health(&channel, s).await, ServingStatus::Serving, "{s}");
    }
    let (first_id, first_doc) = acked_at_stop.iter().next().unwrap();
    let read = LicenceServiceClient::new(channel.clone())
        .get_licence(as_actor(
            &good.dept,
            "issuer",
            pb::GetLicenceRequest {
                licence_id: first_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(Some(&read.document), first_doc.as_ref());
    let sample: Vec<Checkpoint> = {
        let note = AuditServiceClient::new(channel.clone())
            .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
            .await
            .unwrap()
            .into_inner()
            .note;
        vec![Checkpoint::open(&note, &key).unwrap()]
    };

    // `certseal status` fails and says why; the metric says so with its cause.
    let (ok, out) = status(&server);
    assert!(!ok, "{out}");
    assert!(out.contains("WRITES STOPPED since"), "{out}");
    assert!(out.contains("(disk_full)"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(
        out.contains("store error: "),
        "the admin sees the store's error: {out}"
    );
    assert!(out.contains("writes are stopped"), "{out}");
    let text = scrape(&metrics);
    assert!(
        text.contains("certseal_writer_stopped{cause=\"disk_full\"} 1"),
        "{text}"
    );
    assert!(text.contains("certseal_writer_stops_total 1"), "{text}");
    // A new write is refused at once, with the same words.
    let e = LicenceServiceClient::new(channel.clone())
        .issue_licence(as_actor(&good.dept, "issuer", request(&good, "late")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("disk is full"), "{e:?}");

    // Space is freed: writes resume by themselves.
    std::fs::remove_file(&ballast).unwrap();
    for s in [
        "certseal.v1.LicenceService",
        "certseal.v1.VerificationService",
    ] {
        until_health(&channel, s, ServingStatus::Serving, Duration::from_secs(60)).await;
    }
    // What the server said about it, for whoever reads the test's output.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    for line in log.lines().filter(|l| {
        [
            "group commit failed",
            "still stopped",
            "reopened",
            "reloaded",
            "resume",
        ]
        .iter()
        .any(|w| l.contains(w))
    }) {
        eprintln!("server: {line}");
    }
    let (ok, out) = status(&server);
    assert!(ok, "{out}");
    assert!(!out.contains("WRITES STOPPED"), "{out}");
    let text = scrape(&metrics);
    assert!(text.contains("certseal_writer_stopped 0"), "{text}");

    // Each refused request, retried with its key, gives one licence: the one its group wrote
    // if that reached the disk after all, or a new one. A second retry gives the same.
    let mut l = LicenceServiceClient::new(channel.clone());
    let mut retried = HashMap::new();
    for (req, _) in &refused {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let r = l
                .issue_licence(as_actor(&good.dept, "issuer", req.clone()))
                .await
                .unwrap()
                .into_inner();
            ids.push(r.licence_id.clone());
            retried.insert(r.licence_id, Some(r.document));
        }
        assert_eq!(ids[0], ids[1], "{}", req.idempotency_key);
    }
    assert_eq!(
        retried.len(),
        refused.len(),
        "one licence per refused request"
    );
    let late = l
        .issue_licence(as_actor(&good.dept, "issuer", request(&good, "late")))
        .await
        .unwrap()
        .into_inner();
    let mut all = acked_at_stop.clone();
    all.extend(retried);
    all.insert(late.licence_id, Some(late.document));

    // Nothing acknowledged is lost, nothing is there twice, and the log is consistent with
    // the checkpoint signed while writes were stopped.
    check_after_restart(server.addr, dir.path(), 0, &good, &all, &sample, &key).await;
    let mut stored = stored_licences(channel.clone(), &good).await;
    stored.sort();
    let mut expected: Vec<_> = all.keys().cloned().collect();
    expected.sort();
    assert_eq!(
        stored, expected,
        "exactly the acknowledged licences are stored"
    );

    // And after a restart.
    server.kill9();
    let server = spawn();
    check_after_restart(server.addr, dir.path(), 1, &good, &all, &sample, &key).await;
    assert_eq!(
        stored_licences(connect(server.addr).await, &good)
            .await
            .len(),
        all.len()
    );
    drop(server);
}
