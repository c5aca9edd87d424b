//! Online backup and offline restore: a backup taken while licences are being issued restores
//! to a server whose licences verify and whose log continues under a new origin from a
//! `log.restored` entry that `audit verify` accepts; a replay of the old log re-applies the
//! revocations made after the backup; without one, writes wait for `restore confirm`; a changed
//! byte or a wrong KEK is refused before anything is written.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::department_service_client::DepartmentServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use tonic::Code;

use crate::licences::{issuer, request};
use crate::util::*;

fn cli(server: Option<&ChildServer>, role: &str, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_certseal"));
    c.args(args);
    if let Some(s) = server {
        c.args([
            "--server",
            &s.url(),
            "--as-department",
            ADMIN_DEPT,
            "--as-role",
            role,
        ]);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A holder's use code for department 9 to check `licence` twice.
async fn use_code(addr: std::net::SocketAddr, licence: &str) -> pb::CreateUseCodeResponse {
    certseal::pb::holder_service_client::HolderServiceClient::new(connect(addr).await)
        .create_use_code(as_actor(
            &dept_code(10),
            "holder_agent",
            pb::CreateUseCodeRequest {
                holder: Some(pb::HolderRef {
                    kind: pb::HolderKind::Person as i32,
                    id: crate::licences::PERSON.into(),
                }),
                licence_id: licence.into(),
                purposes: vec!["ADMIN_APPROVAL".into()],
                fields: vec![],
                audience: Some(pb::UseCodeAudience {
                    audience: Some(pb::use_code_audience::Audience::Department(dept_code(9))),
                }),
                validity_seconds: 3600,
                uses: 2,
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// A check by department 9 with a use code; the refusal's reason, if refused.
async fn check_with(addr: std::net::SocketAddr, licence: &str, code: &str) -> Result<(), String> {
    let mut r = as_actor(
        &dept_code(9),
        "verifier",
        pb::VerifyLicenceRequest {
            licence_id: licence.into(),
            purpose: Some(pb::Purpose {
                code: "ADMIN_APPROVAL".into(),
                text: "核验".into(),
            }),
            at: None,
            use_code: code.into(),
        },
    );
    r.set_timeout(std::time::Duration::from_secs(30));
    match VerificationServiceClient::new(connect(addr).await)
        .verify_licence(r)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            use tonic_types::StatusExt;
            Err(e
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone())
                .unwrap_or_else(|| format!("{e:?}")))
        }
    }
}

async fn try_check(
    addr: std::net::SocketAddr,
    id: &str,
) -> Result<pb::VerificationResult, tonic::Status> {
    VerificationServiceClient::new(connect(addr).await)
        .verify_licence(as_actor(
            &dept_code(9),
            "verifier",
            pb::VerifyLicenceRequest {
                licence_id: id.into(),
                purpose: Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: "核验".into(),
                }),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn check(addr: std::net::SocketAddr, id: &str) -> pb::VerificationResult {
    try_check(addr, id).await.unwrap()
}

async fn seal_status(addr: std::net::SocketAddr, id: &str) -> i32 {
    SealServiceClient::new(connect(addr).await)
        .get_seal(admin(pb::GetSealRequest {
            seal_id: id.into(),
            include_image: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .seal
        .unwrap()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_under_a_new_origin_and_replays_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = ChildServer::spawn(&data);
    let addr = server.addr;
    let main = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let other = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    let mut departments = DepartmentServiceClient::new(connect(addr).await);
    register(&mut departments, &dept_code(9), "核验部门").await;
    let mut licences = LicenceServiceClient::new(connect(addr).await);
    let mut before = Vec::new();
    for i in 0..12 {
        let l = licences
            .issue_licence(as_actor(
                &main.dept,
                "issuer",
                request(&main, &format!("b{i}")),
            ))
            .await
            .unwrap()
            .into_inner();
        before.push(l.licence_id);
    }
    // Two use codes of two uses each, made before the backup.
    let (to_revoke, to_use) = (
        use_code(addr, &before[1]).await,
        use_code(addr, &before[2]).await,
    );
    let old_vkey = ok(cli(Some(&server), "auditor", &["audit", "vkey"]))
        .trim()
        .to_owned();

    // Issuers keep going while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..2 {
        let stop = stop.clone();
        let channel = connect(addr).await;
        let issuer = crate::licences::Issuer {
            dept: main.dept.clone(),
            type_code: main.type_code.clone(),
            seal_id: main.seal_id.clone(),
            seal_cert: main.seal_cert.clone(),
        };
        load.push(tokio::spawn(async move {
            let mut l = LicenceServiceClient::new(channel);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                l.issue_licence(as_actor(
                    &issuer.dept,
                    "issuer",
                    request(&issuer, &format!("load-{w}-{n}")),
                ))
                .await
                .unwrap();
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let backup = dir.path().join("backup");
    let out = {
        let backup = backup.clone();
        let url = server.url();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_certseal"))
                .args([
                    "backup",
                    "--out",
                    backup.to_str().unwrap(),
                    "--server",
                    &url,
                ])
                .args(["--as-department", ADMIN_DEPT, "--as-role", "admin"])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    stop.store(true, Ordering::Relaxed);
    let issued_during: u32 = futures_sum(load).await;
    let said = ok(out);
    assert!(
        said.contains("The key-encryption key is NOT in the backup"),
        "{said}"
    );
    assert!(issued_during > 0, "the load ran during the backup");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    let b = manifest["log_size"].as_u64().unwrap();
    assert!(said.contains(&format!("at size {b}")), "{said}");
    assert!(
        std::fs::read_dir(&backup).unwrap().count() == 2,
        "manifest.json and db/ only"
    );
    // The server deleted its staging copy.
    assert!(
        !data.join("backup-staging").exists()
            || std::fs::read_dir(data.join("backup-staging"))
                .unwrap()
                .count()
                == 0
    );

    // After the backup: a licence and another department's seal are revoked.
    let revoked_licence = before[0].clone();
    licences
        .revoke_licence(as_actor(
            &main.dept,
            "issuer",
            pb::RevokeLicenceRequest {
                request_id: String::new(),
                licence_id: revoked_licence.clone(),
                reason: pb::LicenceRevocationReason::Withdrawn as i32,
                note: "after the backup".into(),
            },
        ))
        .await
        .unwrap();
    SealServiceClient::new(connect(addr).await)
        .revoke_seal(admin(pb::RevokeSealRequest {
            request_id: String::new(),
            seal_id: other.seal_id.clone(),
            reason: pb::RevocationReason::Superseded as i32,
            compromised_at: None,
            note: "after the backup".into(),
        }))
        .await
        .unwrap();
    // And one code revoked by its holder, the other used up.
    certseal::pb::holder_service_client::HolderServiceClient::new(connect(addr).await)
        .revoke_use_code(as_actor(
            &dept_code(10),
            "holder_agent",
            pb::RevokeUseCodeRequest {
                holder: Some(pb::HolderRef {
                    kind: pb::HolderKind::Person as i32,
                    id: crate::licences::PERSON.into(),
                }),
                code_id: to_revoke.info.as_ref().unwrap().code_id.clone(),
            },
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        check_with(addr, &before[2], &to_use.code).await.unwrap();
    }
    let last_cp = dir.path().join("last-checkpoint");
    std::fs::write(
        &last_cp,
        ok(cli(Some(&server), "auditor", &["audit", "checkpoint"])),
    )
    .unwrap();
    // An auditor's export of the old log from the backup on.
    let since = dir.path().join("backup-checkpoint");
    std::fs::write(&since, manifest["checkpoint"].as_str().unwrap()).unwrap();
    let replay = dir.path().join("replay");
    ok(cli(
        Some(&server),
        "auditor",
        &[
            "audit",
            "export",
            "--out",
            replay.to_str().unwrap(),
            "--since",
            since.to_str().unwrap(),
        ],
    ));
    let old_size = AuditServiceClient::new(connect(addr).await)
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size;
    assert!(old_size > b);
    server.kill9();

    let kek = data.join("keys").join("kek");
    let restore = |from: &Path, to: &Path, kek: &Path, extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--from",
            from.to_str().unwrap(),
            "--data-dir",
            to.to_str().unwrap(),
            "--kek",
            kek.to_str().unwrap(),
            "--operator",
            ADMIN_DEPT,
        ];
        args.extend_from_slice(extra);
        cli(None, "", &args)
    };

    // A changed byte is refused, naming the file.
    let damaged = dir.path().join("damaged");
    copy_dir(&backup, &damaged);
    let victim = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .find(|p| p.ends_with(".sst") || p.ends_with(".log"))
        .unwrap();
    let mut bytes = std::fs::read(damaged.join(&victim)).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(damaged.join(&victim), bytes).unwrap();
    let err = failed(restore(&damaged, &dir.path().join("r-damaged"), &kek, &[]));
    assert!(
        err.contains(&victim) && err.contains("does not match the manifest"),
        "{err}"
    );
    assert!(!dir.path().join("r-damaged").exists());

    // A wrong KEK is refused before anything is written.
    let wrong = dir.path().join("wrong-kek");
    std::fs::write(&wrong, [7u8; 32]).unwrap();
    // A KEK others may read is refused first, with the fix.
    let err = failed(restore(&backup, &dir.path().join("r-wrong"), &wrong, &[]));
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = failed(restore(&backup, &dir.path().join("r-wrong"), &wrong, &[]));
    assert!(err.contains("does not open this backup's keys"), "{err}");
    assert!(!dir.path().join("r-wrong").exists());

    // Without a replay: the log continues under a new origin, writes wait for a confirmation.
    let plain = dir.path().join("r-plain");
    let said = ok(restore(
        &backup,
        &plain,
        &kek,
        &["--last-checkpoint", last_cp.to_str().unwrap()],
    ));
    assert!(said.contains("WRITES ARE REFUSED"), "{said}");
    let s = ChildServer::spawn(&plain);
    let e = DepartmentServiceClient::new(connect(s.addr).await)
        .register_department(admin(pb::RegisterDepartmentRequest {
            credit_code: dept_code(20),
            name: "新部门".into(),
            region_code: "350200".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("restored from a backup"),
        "{}",
        e.message()
    );
    let status = ok(cli(Some(&s), "admin", &["status"]));
    assert!(status.contains("WRITES REFUSED"), "{status}");
    // Checks are refused too: the licence revoked after the backup is active again here, and
    // would pass.
    let e = try_check(s.addr, &revoked_licence).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let said = ok(cli(Some(&s), "admin", &["restore", "confirm"]));
    assert!(said.contains("writes are allowed"), "{said}");
    // What confirm accepts: the revocation after the backup is undone here.
    assert_eq!(
        check(s.addr, &revoked_licence).await.indication,
        pb::Indication::TotalPassed as i32
    );
    let e = cli(Some(&s), "admin", &["restore", "confirm"]);
    assert!(failed(e).contains("confirmed already"));
    DepartmentServiceClient::new(connect(s.addr).await)
        .register_department(admin(pb::RegisterDepartmentRequest {
            credit_code: dept_code(20),
            name: "新部门".into(),
            region_code: "350200".into(),
        }))
        .await
        .unwrap();
    drop(s);

    // With the replay: the revocations after the backup are made again.
    let replayed = dir.path().join("r-replay");
    let said = ok(restore(
        &backup,
        &replayed,
        &kek,
        &[
            "--last-checkpoint",
            last_cp.to_str().unwrap(),
            "--replay",
            replay.to_str().unwrap(),
        ],
    ));
    assert!(!said.contains("WRITES ARE REFUSED"), "{said}");
    assert!(
        said.contains(&format!("replayed the old log to size {old_size}")),
        "{said}"
    );
    let s = ChildServer::spawn(&replayed);
    assert_eq!(
        seal_status(s.addr, &other.seal_id).await,
        pb::SealStatus::Revoked as i32
    );
    let r = check(s.addr, &revoked_licence).await;
    assert_eq!(r.indication, pb::Indication::TotalFailed as i32);
    assert_eq!(r.sub_indication, pb::SubIndication::Revoked as i32);
    // A code revoked or used up after the backup opens nothing again.
    assert_eq!(
        check_with(s.addr, &before[1], &to_revoke.code).await,
        Err("USE_CODE_REVOKED".into())
    );
    assert_eq!(
        check_with(s.addr, &before[2], &to_use.code).await,
        Err("USE_CODE_USED_UP".into())
    );
    // Every licence acknowledged before the backup verifies.
    for id in &before[1..] {
        let r = check(s.addr, id).await;
        assert_eq!(r.indication, pb::Indication::TotalPassed as i32, "{id}");
    }
    // Writes are allowed.
    licences = LicenceServiceClient::new(connect(s.addr).await);
    licences
        .issue_licence(as_actor(
            &main.dept,
            "issuer",
            request(&main, "after-restore"),
        ))
        .await
        .unwrap();

    // The log: the new origin, and the old auditor's key follows the change through
    // log.restored, whose backup checkpoint has the root of the entries before it.
    let cp = AuditServiceClient::new(connect(s.addr).await)
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(cp.origin.ends_with("/restore-1"), "{}", cp.origin);
    assert!(cp.size > b + 1);
    let export = dir.path().join("restored-export");
    ok(cli(
        Some(&s),
        "auditor",
        &["audit", "export", "--out", export.to_str().unwrap()],
    ));
    let report = ok(cli(
        None,
        "",
        &[
            "audit",
            "verify",
            export.to_str().unwrap(),
            "--vkey",
            &old_vkey,
        ],
    ));
    assert!(report.starts_with("OK: entries 0.."), "{report}");
    assert!(
        report.contains(&format!("RESTORED at entry {b}")) && report.contains("/restore-1"),
        "{report}"
    );
    assert!(
        report.contains(&format!("reached size {old_size}")),
        "{report}"
    );
    // The old log's checkpoint past the backup is not a prefix of the restored log.
    let err = failed(cli(
        None,
        "",
        &[
            "audit",
            "verify",
            export.to_str().unwrap(),
            "--vkey",
            &old_vkey,
            "--previous",
            last_cp.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("restored from a backup"), "{err}");
    drop(s);
}

async fn futures_sum(tasks: Vec<tokio::task::JoinHandle<u32>>) -> u32 {
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n
}
