//! A registry on three certseal nodes over a three-node MariaDB Galera cluster, started by
//! `scripts/cluster` on this machine: writes through any node, a revocation seen at once by a
//! follower, and fail-over under load when the leader, a follower and the Galera write node are
//! killed with `kill -9` in turn, with nothing acknowledged lost or issued twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use certseal_log::{Checkpoint, VerifierKey};

use crate::licences::{Issuer, issuer, request};
use crate::util::*;

/// A cluster of this test's own, taken down when dropped.
struct Cluster {
    dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
struct Part {
    name: String,
    addr: String,
    pid: Option<u32>,
    role: String,
}

impl Cluster {
    fn up() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("certseal-cluster-")
            .tempdir_in("/tmp")
            .unwrap();
        let c = Self { dir };
        c.run(&["up"]);
        c
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(Self::script())
            .arg(args[0])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&args[1..])
            .args(if args[0] == "up" {
                vec!["--bin", env!("CARGO_BIN_EXE_certseal")]
            } else {
                vec![]
            })
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/cluster {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status(&self) -> (Vec<Part>, Vec<Part>) {
        let v: serde_json::Value = serde_json::from_str(&self.run(&["status", "--json"])).unwrap();
        let parts = |key: &str, addr: &str, state: &str| -> Vec<Part> {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| Part {
                    name: p["name"].as_str().unwrap().to_owned(),
                    addr: p[addr].as_str().unwrap().to_owned(),
                    pid: p["pid"].as_u64().map(|x| x as u32),
                    role: p[state].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        };
        (
            parts("certseal", "grpc", "role"),
            parts("database", "address", "state"),
        )
    }

    fn certseal(&self) -> Vec<Part> {
        self.status().0
    }

    fn leader(&self) -> Part {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.certseal().into_iter().find(|p| p.role == "leader") {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill9(&self, part: &Part) {
        let pid = part.pid.expect("the part runs");
        assert!(
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .arg("down")
            .arg("--dir")
            .arg(self.dir.path())
            .output();
    }
}

fn addr(p: &Part) -> SocketAddr {
    p.addr.parse().unwrap()
}

async fn verify(addr: SocketAddr, id: &str) -> pb::VerificationResult {
    VerificationServiceClient::new(connect(addr).await)
        .verify_licence(as_actor(
            ADMIN_DEPT,
            "verifier",
            pb::VerifyLicenceRequest {
                licence_id: id.into(),
                purpose: Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: "集群核验".into(),
                }),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Each idempotency key's acknowledged licence: its ID and document.
type Acked = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

/// A channel to a node that may be down.
async fn try_connect(node: SocketAddr) -> Option<tonic::transport::Channel> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{node}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    ep.connect().await.ok()
}

/// Issues with unique idempotency keys against every node in turn until told to stop,
/// retrying each key until it is acknowledged; records what each key got.
fn load(
    nodes: Vec<SocketAddr>,
    good: Arc<Issuer>,
    client: usize,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut n = 0usize;
        let mut refusals = 0usize;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let key = format!("cluster-{client}-{n}");
            let started = Instant::now();
            loop {
                let node = nodes[(n + refusals) % nodes.len()];
                let got = async {
                    let ch = try_connect(node).await?;
                    LicenceServiceClient::new(ch)
                        .issue_licence(as_actor(&good.dept, "issuer", request(&good, &key)))
                        .await
                        .ok()
                }
                .await;
                match got {
                    Some(l) => {
                        let l = l.into_inner();
                        acked
                            .lock()
                            .unwrap()
                            .insert(key.clone(), (l.licence_id, l.document));
                        break;
                    }
                    None => {
                        refusals += 1;
                        assert!(
                            started.elapsed() < Duration::from_secs(120),
                            "{key}: writes did not resume"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            n += 1;
        }
        refusals
    })
}

/// Waits until a write through `node` is acknowledged; answers how long that took.
async fn writes_resume(node: SocketAddr, good: &Issuer, key: &str) -> Duration {
    let started = Instant::now();
    loop {
        let ok = match try_connect(node).await {
            Some(ch) => LicenceServiceClient::new(ch)
                .issue_licence(as_actor(&good.dept, "issuer", request(good, key)))
                .await
                .is_ok(),
            None => false,
        };
        if ok {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "writes did not resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn verifier_key(node: SocketAddr) -> VerifierKey {
    let k = AuditServiceClient::new(connect(node).await)
        .get_verifier_key(admin(pb::GetVerifierKeyRequest {}))
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    VerifierKey::parse(&k).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_galera_fail_over_without_losing_anything() {
    let cluster = Cluster::up();
    let nodes = cluster.certseal();
    assert_eq!(nodes.len(), 3);
    let leader = cluster.leader();
    let followers: Vec<Part> = nodes
        .iter()
        .filter(|p| p.name != leader.name)
        .cloned()
        .collect();
    assert_eq!(followers.len(), 2, "{nodes:?}");

    // Set-up through a follower: every write is forwarded to the leader.
    let good = Arc::new(issuer(addr(&followers[0]), 1, pb::SealAlgorithm::Ed25519).await);
    let key = verifier_key(addr(&followers[1])).await;

    // Issued through one follower, read and checked through the other.
    let l = LicenceServiceClient::new(connect(addr(&followers[0])).await)
        .issue_licence(as_actor(&good.dept, "issuer", request(&good, "first")))
        .await
        .unwrap()
        .into_inner();
    let r = verify(addr(&followers[1]), &l.licence_id).await;
    assert_eq!(r.indication(), pb::Indication::TotalPassed, "{r:?}");
    // The same idempotency key through another node gives the same licence.
    let again = LicenceServiceClient::new(connect(addr(&leader)).await)
        .issue_licence(as_actor(&good.dept, "issuer", request(&good, "first")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (&again.licence_id, &again.document),
        (&l.licence_id, &l.document)
    );

    // A revocation on the leader, checked at once on a follower.
    LicenceServiceClient::new(connect(addr(&leader)).await)
        .revoke_licence(as_actor(
            &good.dept,
            "issuer",
            pb::RevokeLicenceRequest {
                licence_id: l.licence_id.clone(),
                reason: pb::LicenceRevocationReason::IssuedInError as i32,
                note: "签发有误".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let r = verify(addr(&followers[0]), &l.licence_id).await;
    assert_eq!(
        (r.indication(), r.sub_indication()),
        (pb::Indication::TotalFailed, pb::SubIndication::Revoked),
        "a follower answers from the latest change: {r:?}"
    );
    // The signed document, checked through the other follower, says the same.
    let r = VerificationServiceClient::new(connect(addr(&followers[1])).await)
        .verify_document(as_actor(
            ADMIN_DEPT,
            "verifier",
            pb::VerifyDocumentRequest {
                document: Some(pb::verify_document_request::Document::Cose(
                    l.document.clone(),
                )),
                purpose: Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: "集群核验".into(),
                }),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.indication(), r.sub_indication()),
        (pb::Indication::TotalFailed, pb::SubIndication::Revoked),
        "{r:?}"
    );

    // Load from three clients against all three nodes while parts are killed in turn.
    let all: Vec<SocketAddr> = nodes.iter().map(addr).collect();
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|c| load(all.clone(), good.clone(), c, acked.clone(), stop.clone()))
        .collect();
    let mut seen: Vec<Checkpoint> = Vec::new();
    let mut a = AuditServiceClient::new(connect(addr(&followers[0])).await);
    seen.push(crate::crash::latest(&mut a, &key).await);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut resumed = Vec::new();
    for round in ["leader", "follower", "db write node"] {
        let (cs, db) = cluster.status();
        let victim = match round {
            "leader" => cs.iter().find(|p| p.role == "leader").unwrap().clone(),
            "follower" => cs.iter().find(|p| p.role == "follower").unwrap().clone(),
            _ => db[0].clone(),
        };
        let survivor = cs
            .iter()
            .find(|p| p.name != victim.name && p.pid.is_some())
            .unwrap()
            .clone();
        if let Ok(cp) = AuditServiceClient::new(connect(addr(&survivor)).await)
            .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
            .await
        {
            seen.push(Checkpoint::open(&cp.into_inner().note, &key).unwrap());
        }
        let before = acked.lock().unwrap().len();
        cluster.kill9(&victim);
        let took = writes_resume(addr(&survivor), &good, &format!("resume-{round}")).await;
        eprintln!(
            "{round} killed: writes resumed through {} in {took:?}",
            survivor.name
        );
        resumed.push((round, took));
        cluster.run(&["start-node", &victim.name]);
        // The load goes on after the restart.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 20 {
            assert!(
                Instant::now() < deadline,
                "the load stalled after {round} came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "acknowledged {} licences under load; resumed: {resumed:?}",
        acked.len()
    );

    // No idempotency key gave two licences: each key's retry answers the licence it got.
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    for (k, (id, _)) in &acked {
        assert!(
            by_id.insert(id, k).is_none(),
            "licence {id} acknowledged for two keys"
        );
    }
    let (some_key, (some_id, some_doc)) = acked.iter().next().unwrap();
    for node in &all {
        let l = LicenceServiceClient::new(connect(*node).await)
            .issue_licence(as_actor(&good.dept, "issuer", request(&good, some_key)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((&l.licence_id, &l.document), (some_id, some_doc));
    }

    // Every acknowledged licence is there, with the same document and its log entry, on every
    // node; the log is whole and consistent with every checkpoint signed before a kill.
    let by_id: HashMap<String, Option<Vec<u8>>> = acked
        .values()
        .map(|(id, doc)| (id.clone(), Some(doc.clone())))
        .collect();
    for (i, node) in all.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        crate::crash::check_after_restart(*node, dir.path(), i, &good, &by_id, &seen, &key).await;
    }
}
