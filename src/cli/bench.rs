//! `certseal bench`: a load generator for a running server (or one it starts on a temporary
//! folder). It prepares a department, a licence type and an active seal, then runs N
//! concurrent callers for S seconds and prints throughput and latency percentiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tonic::transport::Channel;

use super::client::explain;
use crate::pb;
use crate::pb::licence_service_client::LicenceServiceClient;
use crate::pb::verification_service_client::VerificationServiceClient;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// IssueLicence.
    Issue,
    /// VerifyLicence by ID (each with a signed, logged receipt).
    VerifyId,
    /// VerifyDocument with the COSE bytes.
    VerifyDoc,
    /// VerifyLicence by ID with a holder's use code: each check also uses one use, counted
    /// and logged with its receipt.
    VerifyCode,
    /// One issue, three checks by ID and one by document, in turn.
    Mixed,
    /// IssueLicences: `--count` licences through one bulk stream (as `certseal licence import`).
    Import,
    /// No server: the same sign + encode + batched durable put in a tight loop, in process.
    Baseline,
}

/// `certseal bench …`
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// issue, verify-id, verify-doc, verify-code, mixed, import or baseline.
    pub workload: Workload,
    /// Calls in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// A running server started with --dev-auth; default: start one on a temporary folder.
    #[arg(long)]
    pub target: Option<String>,
    /// Write the report here as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Seconds of the in-process baseline run after a service workload (0: none), so the
    /// report gives the service as a ratio of a baseline measured in the same run.
    #[arg(long, default_value_t = 5)]
    pub baseline_seconds: u64,
    /// Licences the import workload streams (default: a city's 150,329).
    #[arg(long, default_value_t = 150_329)]
    pub count: u64,
    /// The seal's algorithm: ed25519, p256 or sm2.
    #[arg(long, default_value = "ed25519")]
    pub algorithm: String,
    /// Attach a change-feed consumer (WatchChanges, role sync) that reads one change and then
    /// nothing, for the whole run: issuing must not slow down for it.
    #[arg(long)]
    pub stalled_feed: bool,
}

/// A change-feed consumer that takes in its first change and then stops reading; it stays
/// attached while held.
async fn stalled_feed(url: &str) -> anyhow::Result<tonic::Streaming<pb::WatchChangesResponse>> {
    let channel = Channel::from_shared(url.to_owned())?
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await?;
    let mut feed = crate::pb::sync_service_client::SyncServiceClient::new(channel)
        .watch_changes(as_actor(
            FEED_PLATFORM,
            "sync",
            pb::WatchChangesRequest {
                after: None,
                origin: String::new(),
            },
        ))
        .await
        .map_err(explain)?
        .into_inner();
    feed.message().await.map_err(explain)?;
    Ok(feed)
}

/// The in-process baseline: what issuing costs without gRPC, validation or indexes. One
/// thread builds claims, encodes them to deterministic CBOR, signs a COSE_Sign1 with Ed25519,
/// and puts the document and a licence record into a RocksDB batch; every `group` licences the
/// batch is written with one WAL sync, as the sequencer does.
fn baseline(seconds: u64, group: usize) -> anyhow::Result<(u64, f64)> {
    use certseal_core::{
        CreditCode, FieldValue, Holder, HolderKind, LicenceClaims, LicenceId, SealId, TypeCode,
    };
    use certseal_store::{Batch, KvStore, Table};
    use certseal_store_rocks::{RocksOptions, RocksStore};
    let err = |e: certseal_crypto::CryptoError| anyhow::anyhow!("{e}");
    let dir = tempfile::tempdir()?;
    let store = RocksStore::open(&dir.path().join("db"), &RocksOptions::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = certseal_crypto::x509::generate_key(certseal_crypto::x509::KeyAlgorithm::Ed25519)
        .map_err(err)?;
    let signer =
        certseal_crypto::load_signer(certseal_crypto::x509::KeyAlgorithm::Ed25519, &key.pkcs8)
            .map_err(err)?;
    let issuer: CreditCode = DEPT
        .parse()
        .map_err(|e: certseal_core::IdError| anyhow::anyhow!(e.0))?;
    let type_code: TypeCode = format!("{DEPT}001")
        .parse()
        .map_err(|e: certseal_core::IdError| anyhow::anyhow!(e.0))?;
    let holder = Holder::new(
        HolderKind::Organisation,
        "91350200MA2XYW123L",
        "厦门某某餐饮有限公司",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let seal = SealId::new(1_795_000_000_000, &[7; 10]);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    let mut batch = Batch::new();
    while Instant::now() < deadline {
        let serial = format!("{n:012}");
        let claims = LicenceClaims {
            id: LicenceId::new(&type_code, &issuer, &serial, 1)
                .map_err(|e| anyhow::anyhow!(e.0))?,
            issuer: issuer.clone(),
            exp: Some(1_950_000_000),
            nbf: 1_795_000_000,
            iat: 1_795_000_000,
            type_code: type_code.clone(),
            template_version: 1,
            seal,
            holder: holder.clone(),
            fields: [
                (
                    "operator_name".to_owned(),
                    FieldValue::Text(format!("第{n}号店")),
                ),
                ("legal_rep_id".to_owned(), FieldValue::Text(PERSON.into())),
            ]
            .into_iter()
            .collect(),
            prev: None,
        };
        let document = certseal_crypto::cose::sign1(
            signer.as_ref(),
            &[0; 8],
            certseal_core::licence::LICENCE_CONTENT_TYPE,
            None,
            claims.encode(),
        )
        .map_err(err)?;
        let digest = certseal_crypto::sha256(&[&document]);
        batch.put(
            Table::Licences,
            claims.id.as_str().as_bytes(),
            digest.to_vec(),
        );
        batch.put(Table::Records, digest.to_vec(), document);
        n += 1;
        if n.is_multiple_of(group as u64) {
            store
                .write(&batch, true)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            batch = Batch::new();
        }
    }
    store
        .write(&batch, true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((n, started.elapsed().as_secs_f64()))
}

const ADMIN: &str = "11100000000013338W";
/// The holder agent and the verifier of the use-code workload (registered by `use_codes`).
const CODE_AGENT: &str = "11350200MB0123457D";
const CODE_VERIFIER: &str = "11350200MB0123458G";
/// Use codes the use-code workload makes: of 100 uses each, enough for 100,000 checks.
const BENCH_CODES: usize = 1024;

/// Codes of 100 uses for the licences `targets`, made by a holder agent for one verifier, as
/// (licence ID, code).
async fn use_codes(
    channel: &Channel,
    targets: &[(String, Vec<u8>)],
) -> anyhow::Result<Vec<(String, String)>> {
    use crate::pb::department_service_client::DepartmentServiceClient;
    use crate::pb::holder_service_client::HolderServiceClient;
    for (code, name) in [
        (CODE_AGENT, "基准政务服务平台"),
        (CODE_VERIFIER, "基准核验局"),
    ] {
        let _ = DepartmentServiceClient::new(channel.clone())
            .register_department(as_actor(
                ADMIN,
                "admin",
                pb::RegisterDepartmentRequest {
                    credit_code: code.into(),
                    name: name.into(),
                    region_code: "350200".into(),
                },
            ))
            .await;
    }
    // 64 at a time: within the department's limit of calls in progress.
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut making = tokio::task::JoinSet::new();
    for i in 0..BENCH_CODES {
        let slot = slots.clone().acquire_owned().await?;
        let mut h = HolderServiceClient::new(channel.clone());
        let licence = targets[i % targets.len()].0.clone();
        making.spawn(async move {
            let r = h
                .create_use_code(as_actor(
                    CODE_AGENT,
                    "holder_agent",
                    pb::CreateUseCodeRequest {
                        holder: Some(pb::HolderRef {
                            kind: pb::HolderKind::Organisation as i32,
                            id: "91350200MA2XYW123L".into(),
                        }),
                        licence_id: licence.clone(),
                        purposes: vec!["ADMIN_APPROVAL".into()],
                        fields: vec![],
                        audience: Some(pb::UseCodeAudience {
                            audience: Some(pb::use_code_audience::Audience::Department(
                                CODE_VERIFIER.into(),
                            )),
                        }),
                        validity_seconds: 24 * 3600,
                        uses: certseal_core::use_code::MAX_USE_CODE_USES,
                    },
                ))
                .await
                .map_err(explain)?
                .into_inner();
            drop(slot);
            anyhow::Ok((licence, r.code))
        });
    }
    let mut made = Vec::with_capacity(BENCH_CODES);
    while let Some(r) = making.join_next().await {
        made.push(r??);
    }
    Ok(made)
}
const DEPT: &str = "11350200MB0123456A";
/// The sharing platform of `--stalled-feed` (development mode: no policy to hold).
const FEED_PLATFORM: &str = "11350200MB0123459K";
const PERSON: &str = "11010519491231002X";

fn as_actor<T>(dept: &str, role: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut()
        .insert("x-certseal-department", dept.parse().expect("ASCII"));
    r.metadata_mut()
        .insert("x-certseal-role", role.parse().expect("ASCII"));
    r
}

/// A server this command started; killed when dropped.
struct Spawned {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server() -> anyhow::Result<(String, Spawned)> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--dev-auth", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start a server")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            bail!("the server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((format!("http://{addr}"), Spawned { child, _dir: dir }))
}

/// The request for licence `n`.
fn issue_request(seal: &str, run: &str, n: u64) -> pb::IssueLicenceRequest {
    let text = |s: String| pb::FieldValue {
        value: Some(pb::field_value::Value::Text(s)),
    };
    pb::IssueLicenceRequest {
        type_code: format!("{DEPT}001"),
        template_version: 0,
        holder: Some(pb::Holder {
            kind: pb::HolderKind::Organisation as i32,
            id: "91350200MA2XYW123L".into(),
            name: format!("厦门某某餐饮有限公司{n}"),
        }),
        fields: [
            ("operator_name".to_owned(), text(format!("第{n}号店"))),
            ("legal_rep_id".to_owned(), text(PERSON.into())),
        ]
        .into_iter()
        .collect(),
        not_before: None,
        not_after: None,
        seal_id: seal.into(),
        idempotency_key: format!("bench-{run}-{n}"),
        existing_id: String::new(),
        collected: None,
    }
}

/// Department, type and seal (idempotent enough to run twice against one server).
async fn prepare(channel: Channel, algorithm: pb::SealAlgorithm) -> anyhow::Result<String> {
    use crate::pb::department_service_client::DepartmentServiceClient;
    use crate::pb::seal_service_client::SealServiceClient;
    use crate::pb::template_service_client::TemplateServiceClient;
    let _ = DepartmentServiceClient::new(channel.clone())
        .register_department(as_actor(
            ADMIN,
            "admin",
            pb::RegisterDepartmentRequest {
                credit_code: DEPT.into(),
                name: "基准测试局".into(),
                region_code: "350200".into(),
            },
        ))
        .await;
    let mut t = TemplateServiceClient::new(channel.clone());
    let field = |name: &str, ty: pb::FieldType| pb::FieldSpec {
        name: name.into(),
        label: name.into(),
        r#type: ty as i32,
        required: true,
        visibility: pb::Visibility::Public as i32,
        ..Default::default()
    };
    let _ = t
        .create_template_draft(as_actor(
            ADMIN,
            "admin",
            pb::CreateTemplateDraftRequest {
                type_code: format!("{DEPT}001"),
                base_version: 0,
                content: Some(pb::TemplateContent {
                    name: "基准证照".into(),
                    category: pb::TemplateCategory::Licence as i32,
                    default_validity_days: 1825,
                    fields: vec![
                        field("operator_name", pb::FieldType::String),
                        field("legal_rep_id", pb::FieldType::ResidentId),
                    ],
                }),
            },
        ))
        .await;
    let _ = t
        .publish_template(as_actor(
            ADMIN,
            "admin",
            pb::PublishTemplateRequest {
                type_code: format!("{DEPT}001"),
                version: 1,
            },
        ))
        .await;
    let mut s = SealServiceClient::new(channel);
    let active = s
        .list_seals(as_actor(
            ADMIN,
            "admin",
            pb::ListSealsRequest {
                department: DEPT.into(),
                status: pb::SealStatus::Active as i32,
                page_size: 100,
                page_token: String::new(),
            },
        ))
        .await
        .map_err(explain)?
        .into_inner();
    if let Some(seal) = active.seals.iter().find(|s| s.algorithm() == algorithm) {
        return Ok(seal.seal_id.clone());
    }
    let seal = s
        .register_seal(as_actor(
            ADMIN,
            "admin",
            pb::RegisterSealRequest {
                department: DEPT.into(),
                name: "基准测试专用章".into(),
                r#type: pb::SealType::SpecialPurpose as i32,
                image: b"\x89PNG\r\n\x1a\nbench".to_vec(),
                algorithm: algorithm as i32,
                ..Default::default()
            },
        ))
        .await
        .map_err(explain)?
        .into_inner()
        .seal
        .context("no seal")?;
    s.activate_seal(as_actor(
        ADMIN,
        "admin",
        pb::SealTransitionRequest {
            request_id: String::new(),
            seal_id: seal.seal_id.clone(),
            note: "bench".into(),
        },
    ))
    .await
    .map_err(explain)?;
    Ok(seal.seal_id)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `certseal bench`.
pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.concurrency == 0 || a.duration == 0 {
        bail!("--concurrency and --duration must be at least 1");
    }
    let group = a.concurrency.min(256);
    if a.workload == Workload::Baseline {
        let (n, secs) = tokio::task::spawn_blocking(move || baseline(a.duration, group)).await??;
        println!(
            "Baseline: {n} licences in {secs:.1} s = {:.0}/s (in process: sign + encode + durable put, groups of {group})",
            n as f64 / secs
        );
        if let Some(p) = a.report {
            let report = json!({"workload": "Baseline", "group": group, "seconds": secs, "ok": n, "per_second": n as f64 / secs});
            std::fs::write(&p, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        return Ok(());
    }
    let (url, _spawned) = match &a.target {
        Some(t) => (t.clone(), None),
        None => {
            let (url, s) = spawn_server()?;
            (url, Some(s))
        }
    };
    let channel = Channel::from_shared(url.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let algorithm = match a.algorithm.as_str() {
        "ed25519" => pb::SealAlgorithm::Ed25519,
        "p256" => pb::SealAlgorithm::EcdsaP256,
        "sm2" => pb::SealAlgorithm::Sm2,
        other => anyhow::bail!("--algorithm {other}: ed25519, p256 or sm2"),
    };
    let seal = prepare(channel.clone(), algorithm).await?;
    let mut run_id = [0u8; 6];
    certseal_crypto::random(&mut run_id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let run_id: String = run_id.iter().map(|b| format!("{b:02x}")).collect();
    // Licences to check, for the verify workloads.
    let mut targets = Vec::new();
    if !matches!(a.workload, Workload::Issue | Workload::Import) {
        let mut l = LicenceServiceClient::new(channel.clone());
        for n in 0..64 {
            let r = l
                .issue_licence(as_actor(DEPT, "issuer", issue_request(&seal, &run_id, n)))
                .await
                .map_err(explain)?
                .into_inner();
            targets.push((r.licence_id, r.document));
        }
    }
    if a.workload == Workload::Import {
        return import(&a, channel, &seal, &run_id, group).await;
    }
    let codes = Arc::new(if a.workload == Workload::VerifyCode {
        use_codes(&channel, &targets).await?
    } else {
        Vec::new()
    });
    let targets = Arc::new(targets);
    let seal = Arc::new(seal);
    let _feed = match a.stalled_feed {
        true => Some(stalled_feed(&url).await?),
        false => None,
    };
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(1_000_000));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (channel, targets, seal, counter, run_id, codes) = (
            channel.clone(),
            targets.clone(),
            seal.clone(),
            counter.clone(),
            run_id.clone(),
            codes.clone(),
        );
        let workload = a.workload;
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut l = LicenceServiceClient::new(channel.clone());
            let mut v = VerificationServiceClient::new(channel);
            let purpose = Some(pb::Purpose {
                code: "ADMIN_APPROVAL".into(),
                text: "bench".into(),
            });
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t0 = Instant::now();
                // Mixed: one issue, three checks by ID, one by document.
                let kind = match (workload, n % 5) {
                    (Workload::Mixed, 0) => Workload::Issue,
                    (Workload::Mixed, 4) => Workload::VerifyDoc,
                    (Workload::Mixed, _) => Workload::VerifyId,
                    (w, _) => w,
                };
                let ok = match kind {
                    Workload::Issue => l
                        .issue_licence(as_actor(DEPT, "issuer", issue_request(&seal, &run_id, n)))
                        .await
                        .is_ok(),
                    Workload::VerifyId => {
                        let (id, _) = &targets[n as usize % targets.len()];
                        v.verify_licence(as_actor(
                            ADMIN,
                            "verifier",
                            pb::VerifyLicenceRequest {
                                licence_id: id.clone(),
                                purpose: purpose.clone(),
                                at: None,
                                use_code: String::new(),
                            },
                        ))
                        .await
                        .is_ok_and(|r| r.get_ref().indication() == pb::Indication::TotalPassed)
                    }
                    Workload::VerifyCode => {
                        let (id, code) = &codes[n as usize % codes.len()];
                        v.verify_licence(as_actor(
                            CODE_VERIFIER,
                            "verifier",
                            pb::VerifyLicenceRequest {
                                licence_id: id.clone(),
                                purpose: purpose.clone(),
                                at: None,
                                use_code: code.clone(),
                            },
                        ))
                        .await
                        .is_ok_and(|r| r.get_ref().indication() == pb::Indication::TotalPassed)
                    }
                    Workload::VerifyDoc => {
                        let (_, doc) = &targets[n as usize % targets.len()];
                        v.verify_document(as_actor(
                            ADMIN,
                            "verifier",
                            pb::VerifyDocumentRequest {
                                document: Some(pb::verify_document_request::Document::Cose(
                                    doc.clone(),
                                )),
                                purpose: purpose.clone(),
                                at: None,
                                use_code: String::new(),
                            },
                        ))
                        .await
                        .is_ok_and(|r| r.get_ref().indication() == pb::Indication::TotalPassed)
                    }
                    Workload::Mixed | Workload::Baseline | Workload::Import => {
                        unreachable!("resolved above")
                    }
                };
                if ok {
                    lat.push(t0.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let per_second = lat.len() as f64 / elapsed;
    // The same machine, right after: the ratio survives a noisy neighbour better than either.
    let base = if a.baseline_seconds > 0 {
        let seconds = a.baseline_seconds;
        let (n, secs) = tokio::task::spawn_blocking(move || baseline(seconds, group)).await??;
        Some(n as f64 / secs)
    } else {
        None
    };
    let report = json!({
        "workload": format!("{:?}", a.workload),
        "algorithm": a.algorithm,
        "concurrency": a.concurrency,
        "seconds": elapsed,
        "ok": lat.len(),
        "errors": errors,
        "per_second": lat.len() as f64 / elapsed,
        "latency_ms": {
            "p50": percentile(&lat, 0.50),
            "p90": percentile(&lat, 0.90),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        },
        "server": if a.target.is_some() { url } else { "started by this command".to_owned() },
        "stalled_feed": a.stalled_feed,
        "baseline_per_second": base,
        "ratio_to_baseline": base.map(|b| per_second / b),
    });
    println!(
        "{:?}{}: {} ok in {:.1} s = {:.0}/s at {} in flight; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
        a.workload,
        if a.stalled_feed {
            " with a stalled change-feed consumer"
        } else {
            ""
        },
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed,
        a.concurrency,
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        errors
    );
    if let Some(b) = base {
        println!(
            "In-process baseline (sign + encode + durable put, groups of {group}): {b:.0}/s; the service ran at {:.2} × baseline",
            per_second / b
        );
    }
    if let Some(p) = a.report {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// The bulk workload: `count` licences through one IssueLicences stream, as fast as the server
/// takes them; the time runs from the first item sent to the last result.
async fn import(
    a: &BenchArgs,
    channel: Channel,
    seal: &str,
    run_id: &str,
    group: usize,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IssueLicencesItem>(1024);
    let (count, seal_c, run_c) = (a.count, seal.to_owned(), run_id.to_owned());
    let started = Instant::now();
    let feeder = tokio::spawn(async move {
        for n in 0..count {
            let item = pb::IssueLicencesItem {
                r#ref: n.to_string(),
                licence: Some(issue_request(&seal_c, &run_c, n)),
            };
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let mut results = LicenceServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .issue_licences(as_actor(
            DEPT,
            "issuer",
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await
        .map_err(explain)?
        .into_inner();
    let (mut ok, mut errors) = (0u64, 0u64);
    while let Some(r) = results.message().await.map_err(explain)? {
        match r.outcome {
            Some(pb::issue_licences_result::Outcome::LicenceId(_)) => ok += 1,
            _ => errors += 1,
        }
    }
    feeder.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let per_second = ok as f64 / elapsed;
    println!(
        "Import: {ok} licences in {elapsed:.1} s = {per_second:.0}/s through one IssueLicences stream; {errors} errors"
    );
    let base = if a.baseline_seconds > 0 {
        let seconds = a.baseline_seconds;
        let (n, secs) = tokio::task::spawn_blocking(move || baseline(seconds, group)).await??;
        let b = n as f64 / secs;
        println!(
            "In-process baseline (sign + encode + durable put, groups of {group}): {b:.0}/s; the service ran at {:.2} × baseline",
            per_second / b
        );
        Some(b)
    } else {
        None
    };
    if let Some(p) = &a.report {
        let report = json!({
            "workload": "Import",
            "count": a.count,
            "seconds": elapsed,
            "ok": ok,
            "errors": errors,
            "per_second": per_second,
            "baseline_per_second": base,
            "ratio_to_baseline": base.map(|b| per_second / b),
        });
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if errors > 0 {
        bail!("{errors} of {} items failed", a.count);
    }
    Ok(())
}
