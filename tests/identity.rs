use certseal::pb;
use tonic::{Code, Request};

use crate::util::*;

fn get_req() -> pb::GetDepartmentRequest {
    pb::GetDepartmentRequest {
        credit_code: dept_code(1),
    }
}

#[tokio::test]
async fn dev_metadata_must_name_a_valid_department_and_role() {
    let s = TestServer::start().await;
    let mut c = s.departments().await;
    let e = c.get_department(Request::new(get_req())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("x-certseal-department"), "{e:?}");

    let e = c
        .get_department(as_actor("11100000000013338X", "admin", get_req()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = c
        .get_department(as_actor(ADMIN_DEPT, "root", get_req()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("unknown role"));
    s.stop().await;
}

#[tokio::test]
async fn writes_need_the_admin_role_and_reads_any_role() {
    let s = TestServer::start().await;
    let mut c = s.departments().await;
    for role in ["issuer", "verifier", "auditor"] {
        let e = c
            .register_department(as_actor(
                ADMIN_DEPT,
                role,
                pb::RegisterDepartmentRequest {
                    credit_code: dept_code(1),
                    name: "x".into(),
                    region_code: "350200".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{role}");
    }
    register(&mut c, &dept_code(1), "x").await;
    for role in ["issuer", "verifier", "auditor", "admin"] {
        c.get_department(as_actor(&dept_code(1), role, get_req()))
            .await
            .unwrap();
    }
    let e = c
        .deactivate_department(as_actor(
            &dept_code(1),
            "issuer",
            pb::DeactivateDepartmentRequest {
                credit_code: dept_code(1),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let d = c
        .get_department(admin(get_req()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.status(), pb::DepartmentStatus::Active);
    s.stop().await;
}

#[tokio::test]
async fn without_dev_auth_every_call_is_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), false).await;
    let mut c = certseal::pb::department_service_client::DepartmentServiceClient::new(
        connect(server.addr).await,
    );
    let e = c.get_department(admin(get_req())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "metadata is not trusted");
    server.stop().await.unwrap();
}

/// Development mode is for one machine: refused on a network address, and it mints no
/// department certificates, which would outlive it and work under mutual TLS.
#[tokio::test]
async fn development_mode_is_for_one_machine_only() {
    use certseal::pb::policy_service_client::PolicyServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let port = free_addr().rsplit(':').next().unwrap().to_owned();
    let open = dir.path().join("open");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "serve",
            "--dev-auth",
            "--listen",
            &format!("0.0.0.0:{port}"),
        ])
        .arg("--data-dir")
        .arg(&open)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve --dev-auth --listen 0.0.0.0:{port} is still serving");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--dev-auth") && stderr.contains("not a loopback address"),
        "{stderr}"
    );
    assert!(!open.exists(), "a refused server opens no data folder");

    // On loopback it serves, but issues no department certificate, by RPC or CLI.
    let server = ChildServer::spawn(&dir.path().join("data"));
    let ch = connect(server.addr).await;
    register(
        &mut pb::department_service_client::DepartmentServiceClient::new(ch.clone()),
        ADMIN_DEPT,
        "Registry administration",
    )
    .await;
    let key = certseal_crypto::x509::generate_key(certseal_crypto::x509::KeyAlgorithm::EcdsaP256)
        .unwrap();
    let e = PolicyServiceClient::new(ch)
        .issue_department_certificate(admin(pb::IssueDepartmentCertificateRequest {
            department: ADMIN_DEPT.into(),
            roles: vec![pb::Role::Admin as i32],
            csr_pem: certseal_crypto::x509::client_csr(&key.pkcs8, "x").unwrap(),
            validity_days: 30,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("development mode") && e.message().contains("dept-cert bootstrap"),
        "{e:?}"
    );
    let pki = dir.path().join("pki");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "dept-cert",
            "issue",
            "--department",
            ADMIN_DEPT,
            "--role",
            "admin",
        ])
        .arg("--out")
        .arg(&pki)
        .args(["--server", &server.url(), "--as-department", ADMIN_DEPT])
        .args(["--as-role", "admin"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("FAILED_PRECONDITION")
            && stderr.contains("--dev-auth")
            && stderr.contains("certseal dept-cert bootstrap"),
        "{stderr}"
    );
    assert!(!pki.exists(), "no key or certificate is written");
}
