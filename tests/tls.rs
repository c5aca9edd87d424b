use std::path::Path;

use certseal::config::{Overrides, RawConfig};
use certseal::pb;
use certseal::pb::department_service_client::DepartmentServiceClient;
use certseal::pb::policy_service_client::PolicyServiceClient;
use certseal::server;
use certseal_crypto::x509::{self, KeyAlgorithm};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::util::*;

struct Pki {
    ca: certseal_crypto::Certificate,
    ca_key: certseal_crypto::SecretBytes,
}

impl Pki {
    fn new(name: &str) -> Self {
        let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let now = certseal_core::Timestamp::now().0 / 1000;
        Self {
            ca: x509::create_ca(name, &key.pkcs8, now - 60, now + 86400).unwrap(),
            ca_key: key.pkcs8,
        }
    }

    /// (certificate PEM, key PEM) of a department system with `roles`.
    fn client(&self, dept: &str, roles: &[&str]) -> (String, String) {
        let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let now = certseal_core::Timestamp::now().0 / 1000;
        let cert = x509::issue_client_certificate(
            &self.ca,
            &self.ca_key,
            &key.pkcs8,
            &x509::ClientSubject {
                department_name: "某局",
                credit_code: dept,
                roles,
            },
            now - 60,
            now + 3600,
        )
        .unwrap();
        (cert.pem(), x509::pkcs8_pem(&key.pkcs8))
    }
}

pub(crate) async fn channel(
    addr: std::net::SocketAddr,
    ca: &str,
    id: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = id {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

fn config(
    dir: &Path,
    pki: &Pki,
    dev_auth: bool,
) -> Result<certseal::config::Config, certseal::config::ConfigError> {
    let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let now = certseal_core::Timestamp::now().0 / 1000;
    let cert = x509::issue_server_certificate(
        &pki.ca,
        &pki.ca_key,
        &key.pkcs8,
        &["127.0.0.1".to_owned(), "localhost".to_owned()],
        now - 60,
        now + 3600,
    )
    .unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), x509::pkcs8_pem(&key.pkcs8)).unwrap();
    std::fs::write(dir.join("ca.pem"), pki.ca.pem()).unwrap();
    let toml = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n[policy]\nadmin_department = \"{ADMIN_DEPT}\"\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display(),
        dir.join("ca.pem").display()
    );
    RawConfig::parse(&toml).unwrap().validate(Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.join("data")),
        dev_auth,
        log_format: None,
        metrics_listen: None,
        public_listen: None,
    })
}

#[tokio::test]
async fn mutual_tls_identifies_departments_by_their_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("client CA");
    assert!(
        config(dir.path(), &pki, true).is_err(),
        "development mode is refused with TLS"
    );
    let server = server::start(&config(dir.path(), &pki, false).unwrap())
        .await
        .unwrap();
    let ca = pki.ca.pem();
    let admin_id = pki.client(ADMIN_DEPT, &["admin"]);
    let dept = dept_code(5);
    let system = pki.client(&dept, &["issuer", "verifier"]);

    // The admin's certificate registers a department; metadata cannot claim another identity.
    let mut d =
        DepartmentServiceClient::new(channel(server.addr, &ca, Some(&admin_id)).await.unwrap());
    let mut req = tonic::Request::new(pb::RegisterDepartmentRequest {
        credit_code: dept.clone(),
        name: "某局".into(),
        region_code: "350200".into(),
    });
    req.metadata_mut()
        .insert("x-certseal-department", dept.parse().unwrap());
    let created = d.register_department(req).await.unwrap().into_inner();
    assert_eq!(
        created.record.unwrap().created_by.unwrap().department,
        ADMIN_DEPT,
        "the department comes from the certificate"
    );

    // The registry grants the department both roles its certificate names.
    PolicyServiceClient::new(channel(server.addr, &ca, Some(&admin_id)).await.unwrap())
        .set_department_policy(pb::SetDepartmentPolicyRequest {
            department: dept.clone(),
            roles: vec![pb::Role::Issuer as i32, pb::Role::Verifier as i32],
            ..Default::default()
        })
        .await
        .unwrap();

    // A system with two roles picks one; a role the certificate does not grant is refused.
    let mut s =
        DepartmentServiceClient::new(channel(server.addr, &ca, Some(&system)).await.unwrap());
    let list = |role: Option<&str>| {
        let mut r = tonic::Request::new(pb::ListDepartmentsRequest::default());
        if let Some(role) = role {
            r.metadata_mut()
                .insert("x-certseal-role", role.parse().unwrap());
        }
        r
    };
    expect_code(
        s.list_departments(list(None)).await.unwrap_err(),
        Code::Unauthenticated,
    );
    s.list_departments(list(Some("verifier"))).await.unwrap();
    expect_code(
        s.list_departments(list(Some("admin"))).await.unwrap_err(),
        Code::PermissionDenied,
    );
    let mut r = tonic::Request::new(pb::RegisterDepartmentRequest {
        credit_code: dept_code(6),
        name: "x".into(),
        region_code: "350200".into(),
    });
    r.metadata_mut()
        .insert("x-certseal-role", "issuer".parse().unwrap());
    expect_code(
        d_clone(&mut s).register_department(r).await.unwrap_err(),
        Code::PermissionDenied,
    );

    // No client certificate: UNAUTHENTICATED. One from another CA: no connection at all.
    let mut anon = DepartmentServiceClient::new(channel(server.addr, &ca, None).await.unwrap());
    expect_code(
        anon.list_departments(list(None)).await.unwrap_err(),
        Code::Unauthenticated,
    );
    let stranger = Pki::new("another CA").client(ADMIN_DEPT, &["admin"]);
    let refused = match channel(server.addr, &ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => DepartmentServiceClient::new(ch)
            .list_departments(list(None))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from an unknown CA is refused");
    // Plain text is refused too.
    assert!(
        DepartmentServiceClient::new(connect_plain(server.addr).await)
            .list_departments(admin(pb::ListDepartmentsRequest::default()))
            .await
            .is_err()
    );
    server.stop().await.unwrap();
}

fn d_clone(c: &mut DepartmentServiceClient<Channel>) -> DepartmentServiceClient<Channel> {
    c.clone()
}

async fn connect_plain(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// `certseal` with `args`, as the administrator over TLS (empty `id`: no identity flags).
fn cli_tls(
    addr: std::net::SocketAddr,
    pki: &Path,
    id: &str,
    args: &[&str],
) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"));
    c.args(args);
    if !id.is_empty() {
        c.arg("--server")
            .arg(format!("https://{addr}"))
            .arg("--cert")
            .arg(pki.join(format!("{id}.pem")))
            .arg("--key")
            .arg(pki.join(format!("{id}.key")))
            .arg("--ca")
            .arg(pki.join("client-ca.pem"));
    }
    c.output().unwrap()
}

fn succeeded(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "certseal failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A request acting in `role`.
fn acting<T>(role: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut()
        .insert("x-certseal-role", role.parse().unwrap());
    r
}

/// A department system's identity: a key made here, certified by the registry's client CA.
async fn certify(
    policies: &mut PolicyServiceClient<Channel>,
    dept: &str,
    roles: &[pb::Role],
) -> Result<(String, String), tonic::Status> {
    let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let r = policies
        .issue_department_certificate(pb::IssueDepartmentCertificateRequest {
            department: dept.into(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            csr_pem: x509::client_csr(&key.pkcs8, "a department system").unwrap(),
            validity_days: 30,
        })
        .await?
        .into_inner();
    Ok((r.certificate_pem, x509::pkcs8_pem(&key.pkcs8)))
}

pub(crate) fn read_grant(type_code: &str, purposes: &[&str], fields: &[&str]) -> pb::ReadGrant {
    pb::ReadGrant {
        type_code: type_code.into(),
        purposes: purposes.iter().map(|p| (*p).into()).collect(),
        fields: fields.iter().map(|f| (*f).into()).collect(),
        all_fields: false,
    }
}

pub(crate) fn issue_request(type_code: &str, seal_id: &str, key: &str) -> pb::IssueLicenceRequest {
    let mut r = crate::licences::request(
        &crate::licences::Issuer {
            dept: String::new(),
            type_code: type_code.into(),
            seal_id: seal_id.into(),
            seal_cert: Vec::new(),
        },
        key,
    );
    r.type_code = type_code.into();
    r
}

fn verify_request(id: &str, purpose: &str) -> pb::VerifyLicenceRequest {
    pb::VerifyLicenceRequest {
        licence_id: id.into(),
        purpose: Some(pb::Purpose {
            code: purpose.into(),
            text: "材料核验".into(),
        }),
        at: None,
        use_code: String::new(),
    }
}

/// The whole pilot path over real TLS: bootstrap offline, then every allow and deny of the
/// sharing policy with department certificates from the registry's client CA.
#[tokio::test]
async fn sharing_policy_allows_exactly_what_it_grants_over_mutual_tls() {
    use certseal::pb::audit_service_client::AuditServiceClient;
    use certseal::pb::licence_service_client::LicenceServiceClient;
    use certseal::pb::seal_service_client::SealServiceClient;
    use certseal::pb::template_service_client::TemplateServiceClient;
    use certseal::pb::verification_service_client::VerificationServiceClient;

    let dir = tempfile::tempdir().unwrap();
    // With CERTSEAL_TEST_CLUSTER (a cluster of scripts/cluster up --tls): against a follower of
    // its registry, whose writes go to the leader with the caller's certificate; else one
    // server of its own.
    let cluster = test_cluster().filter(|c| c.tls);
    let (addr, pki, single) = match cluster {
        Some(c) => (c.follower(), c.dir.join("tls"), None),
        None => {
            let (server, pki, data) = bootstrap_and_spawn(dir.path());
            (server.addr, pki, Some((server, data)))
        }
    };
    let ca = std::fs::read_to_string(pki.join("client-ca.pem")).unwrap();
    let pem = |name: &str| {
        (
            std::fs::read_to_string(pki.join(format!("{name}.pem"))).unwrap(),
            std::fs::read_to_string(pki.join(format!("{name}.key"))).unwrap(),
        )
    };
    let admin_ch = channel(addr, &ca, Some(&pem("admin"))).await.unwrap();
    let mut policies = PolicyServiceClient::new(admin_ch.clone());

    // The administrator sets up: issuer A with two types and two seals, verifiers B and C,
    // auditor D, and B's own seal.
    let (a, b, c, d) = (dept_code(21), dept_code(22), dept_code(23), dept_code(24));
    let mut depts = DepartmentServiceClient::new(admin_ch.clone());
    for code in [&a, &b, &c, &d] {
        register(&mut depts, code, "某局").await;
    }
    let mut templates = TemplateServiceClient::new(admin_ch.clone());
    let (food, other) = (format!("{a}001"), format!("{a}002"));
    for t in [&food, &other] {
        templates
            .create_template_draft(pb::CreateTemplateDraftRequest {
                type_code: t.clone(),
                base_version: 0,
                content: Some(crate::licences::food_template("食品经营许可证")),
            })
            .await
            .unwrap();
        templates
            .publish_template(pb::PublishTemplateRequest {
                type_code: t.clone(),
                version: 1,
            })
            .await
            .unwrap();
    }
    let mut seals = SealServiceClient::new(admin_ch.clone());
    let mut seal_of = async |dept: &str, n: u8| {
        let s = seals
            .register_seal(pb::RegisterSealRequest {
                department: dept.into(),
                name: format!("专用章{n}"),
                r#type: pb::SealType::SpecialPurpose as i32,
                image: png(n),
                algorithm: pb::SealAlgorithm::Ed25519 as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .seal
            .unwrap();
        seals
            .activate_seal(pb::SealTransitionRequest {
                request_id: String::new(),
                seal_id: s.seal_id.clone(),
                note: String::new(),
            })
            .await
            .unwrap();
        s.seal_id
    };
    let (a_seal, a_other_seal, b_seal) = (
        seal_of(&a, 1).await,
        seal_of(&a, 2).await,
        seal_of(&b, 3).await,
    );

    // Bad policies are refused, naming each problem, and change nothing.
    let bad = policies
        .set_department_policy(pb::SetDepartmentPolicyRequest {
            request_id: String::new(),
            department: a.clone(),
            roles: vec![pb::Role::Issuer as i32],
            issue: vec![
                pb::IssueGrant {
                    type_code: format!("{a}009"),
                    seal_ids: vec![],
                    collect_regions: vec![],
                },
                pb::IssueGrant {
                    type_code: food.clone(),
                    seal_ids: vec![b_seal.clone()],
                    collect_regions: vec![],
                },
            ],
            read: vec![],
            expected_revision: None,
            sync: vec![],
        })
        .await
        .unwrap_err();
    let fields = expect_code(bad, Code::InvalidArgument);
    assert!(
        fields
            .iter()
            .any(|(f, m)| f == "issue[0].type_code" && m.contains("no template")),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|(f, m)| f == "issue[1].seal_ids" && m.contains("another department")),
        "{fields:?}"
    );
    expect_code(
        policies
            .set_department_policy(pb::SetDepartmentPolicyRequest {
                department: dept_code(29),
                roles: vec![pb::Role::Issuer as i32],
                ..Default::default()
            })
            .await
            .unwrap_err(),
        Code::NotFound,
    );

    // The policy: A issues `food` with its first seal only; B reads `food` for one purpose and
    // sees one private field; C reads only `other`; D audits.
    let set = policies
        .set_department_policy(pb::SetDepartmentPolicyRequest {
            request_id: String::new(),
            department: a.clone(),
            roles: vec![pb::Role::Issuer as i32],
            issue: vec![pb::IssueGrant {
                type_code: food.clone(),
                seal_ids: vec![a_seal.clone()],
                collect_regions: vec![],
            }],
            read: vec![],
            sync: vec![],
            expected_revision: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.revision, 1);
    // A stale revision loses nothing: it is refused.
    expect_code(
        policies
            .set_department_policy(pb::SetDepartmentPolicyRequest {
                department: a.clone(),
                expected_revision: Some(0),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );
    // B through the CLI: grant read-modify-write.
    succeeded(cli_tls(
        addr,
        &pki,
        "admin",
        &[
            "policy",
            "grant",
            &b,
            "--role",
            "verifier",
            "--read",
            &food,
            "--purpose",
            "ADMIN_APPROVAL",
            "--field",
            "staff",
        ],
    ));
    policies
        .set_department_policy(pb::SetDepartmentPolicyRequest {
            department: c.clone(),
            roles: vec![pb::Role::Verifier as i32],
            read: vec![read_grant(&other, &[], &[])],
            ..Default::default()
        })
        .await
        .unwrap();
    policies
        .set_department_policy(pb::SetDepartmentPolicyRequest {
            department: d.clone(),
            roles: vec![pb::Role::Auditor as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    let shown = succeeded(cli_tls(addr, &pki, "admin", &["policy", "get", &b]));
    assert!(
        shown.contains("verifier") && shown.contains(&food) && shown.contains("staff"),
        "{shown}"
    );

    // Certificates: a role the policy does not hold is refused; A's through the CLI.
    expect_code(
        certify(&mut policies, &c, &[pb::Role::Issuer])
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );
    succeeded(cli_tls(
        addr,
        &pki,
        "admin",
        &[
            "dept-cert",
            "issue",
            "--department",
            &a,
            "--role",
            "issuer",
            "--out",
            pki.to_str().unwrap(),
        ],
    ));
    let b_id = certify(&mut policies, &b, &[pb::Role::Verifier])
        .await
        .unwrap();
    let c_id = certify(&mut policies, &c, &[pb::Role::Verifier])
        .await
        .unwrap();
    let d_id = certify(&mut policies, &d, &[pb::Role::Auditor])
        .await
        .unwrap();
    let a_ch = channel(addr, &ca, Some(&pem(&a))).await.unwrap();
    let b_ch = channel(addr, &ca, Some(&b_id)).await.unwrap();
    let c_ch = channel(addr, &ca, Some(&c_id)).await.unwrap();
    let d_ch = channel(addr, &ca, Some(&d_id)).await.unwrap();

    // Issuing: the granted type with the granted seal, and nothing else.
    let mut a_lic = LicenceServiceClient::new(a_ch.clone());
    let issued = a_lic
        .issue_licence(issue_request(&food, &a_seal, "k1"))
        .await
        .unwrap()
        .into_inner();
    let id = issued.licence_id.clone();
    for (t, s, why) in [
        (&food, &a_other_seal, "a seal the grant does not name"),
        (&other, &a_seal, "a type not granted"),
        (&food, &b_seal, "another department's seal"),
    ] {
        let e = a_lic
            .issue_licence(issue_request(t, s, why))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{why}: {e:?}");
    }
    let mine = a_lic
        .list_licences(pb::ListLicencesRequest {
            issuer: a.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.licences.len(), 1, "a refused issue stores nothing");
    // An issuer is not an administrator, and cannot claim a role its certificate lacks.
    expect_code(
        DepartmentServiceClient::new(a_ch.clone())
            .register_department(pb::RegisterDepartmentRequest {
                credit_code: dept_code(28),
                name: "x".into(),
                region_code: "350200".into(),
            })
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    expect_code(
        PolicyServiceClient::new(a_ch.clone())
            .set_department_policy(acting(
                "admin",
                pb::SetDepartmentPolicyRequest {
                    department: a.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );

    // Verifying: B for its purpose sees the public fields and the one it was granted.
    let mut b_ver = VerificationServiceClient::new(b_ch.clone());
    let r = b_ver
        .verify_licence(verify_request(&id, "ADMIN_APPROVAL"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.indication,
        pb::Indication::TotalPassed as i32,
        "{}",
        r.reason
    );
    let seen: Vec<&String> = r.licence.as_ref().unwrap().fields.keys().collect();
    assert!(
        seen.iter().any(|f| *f == "capital"),
        "public field: {seen:?}"
    );
    assert!(
        seen.iter().any(|f| *f == "staff"),
        "granted field: {seen:?}"
    );
    assert!(
        !seen.iter().any(|f| *f == "opened" || *f == "legal_rep_id"),
        "{seen:?}"
    );
    // Another purpose, another department's type, or reading the record: refused.
    expect_code(
        b_ver
            .verify_licence(verify_request(&id, "LAW_ENFORCEMENT"))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    expect_code(
        VerificationServiceClient::new(c_ch.clone())
            .verify_licence(verify_request(&id, "ADMIN_APPROVAL"))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    expect_code(
        LicenceServiceClient::new(b_ch.clone())
            .get_licence(pb::GetLicenceRequest {
                licence_id: id.clone(),
            })
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    // Checking the document itself is held to the same grant.
    expect_code(
        VerificationServiceClient::new(c_ch.clone())
            .verify_document(pb::VerifyDocumentRequest {
                document: Some(pb::verify_document_request::Document::Cose(
                    issued.document.clone(),
                )),
                purpose: verify_request(&id, "ADMIN_APPROVAL").purpose,
                at: None,
                use_code: String::new(),
            })
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    // Listing is for the issuing department: B finds nothing without stating a purpose.
    for filter in [
        pb::ListLicencesRequest {
            type_code: food.clone(),
            ..Default::default()
        },
        pb::ListLicencesRequest {
            holder_kind: pb::HolderKind::Person as i32,
            holder_id: crate::licences::PERSON.into(),
            ..Default::default()
        },
    ] {
        let listed = LicenceServiceClient::new(b_ch.clone())
            .list_licences(filter)
            .await
            .unwrap()
            .into_inner();
        assert!(listed.licences.is_empty(), "{:?}", listed.licences);
    }
    // Log entries: a department reads its own acts and the checks of its licences, not the
    // administrator's acts nor another department's checks.
    let mut b_audit = AuditServiceClient::new(b_ch.clone());
    let entry = |index| pb::GetEntryRequest { index };
    b_audit.get_entry(entry(r.receipt_log_index)).await.unwrap();
    AuditServiceClient::new(a_ch.clone())
        .get_entry(entry(r.receipt_log_index))
        .await
        .unwrap();
    expect_code(
        AuditServiceClient::new(c_ch.clone())
            .get_entry(entry(r.receipt_log_index))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    expect_code(
        b_audit.get_entry(entry(0)).await.unwrap_err(),
        Code::PermissionDenied,
    );
    // Amending with a seal the grant does not name is issuing with it: refused.
    expect_code(
        a_lic
            .amend_licence(pb::AmendLicenceRequest {
                licence_id: id.clone(),
                fields: crate::licences::fields("张三小吃店（新址）"),
                seal_id: a_other_seal.clone(),
                note: "新址".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );

    // Only the granted check left a receipt; the issuer sees it.
    let receipts = VerificationServiceClient::new(a_ch.clone())
        .list_receipts(pb::ListReceiptsRequest {
            licence_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .receipts;
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].verifier, b);

    // Auditing: D exports; B (a verifier) and A (an issuer) may not.
    let export = |ch: Channel| async move {
        let mut s = AuditServiceClient::new(ch)
            .export_entries(pb::ExportEntriesRequest { start: 0, end: 0 })
            .await?
            .into_inner();
        let mut kinds = Vec::new();
        while let Some(chunk) = s.message().await? {
            if let Some(pb::export_chunk::Item::Entry(e)) = chunk.item {
                kinds.push(certseal_log::Entry::decode(&e.entry).unwrap().kind);
            }
        }
        Ok::<_, tonic::Status>(kinds)
    };
    expect_code(
        export(b_ch.clone()).await.unwrap_err(),
        Code::PermissionDenied,
    );
    expect_code(
        export(a_ch.clone()).await.unwrap_err(),
        Code::PermissionDenied,
    );
    let kinds = export(d_ch.clone()).await.unwrap();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("policy.changed"), 4, "{kinds:?}");
    // In a cluster the bootstrap also issued the three nodes' certificates.
    let nodes = if cluster.is_some() { 3 } else { 0 };
    assert_eq!(
        count("client_certificate.issued"),
        5 + nodes,
        "admin, A, B, C, D and the nodes: {kinds:?}"
    );
    // The auditor checks nothing.
    expect_code(
        VerificationServiceClient::new(d_ch.clone())
            .verify_licence(verify_request(&id, "ADMIN_APPROVAL"))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );

    // Revoking B's role in the registry stops its certificate at once.
    succeeded(cli_tls(
        addr,
        &pki,
        "admin",
        &["policy", "revoke", &b, "--role", "verifier"],
    ));
    expect_code(
        b_ver
            .verify_licence(verify_request(&id, "ADMIN_APPROVAL"))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );

    // Withdrawing A's grant: it may still suspend its licence, but not make it valid again.
    succeeded(cli_tls(
        addr,
        &pki,
        "admin",
        &["policy", "revoke", &a, "--issue", &food],
    ));
    let transition = || pb::LicenceTransitionRequest {
        request_id: String::new(),
        licence_id: id.clone(),
        note: "核查".into(),
    };
    a_lic.suspend_licence(transition()).await.unwrap();
    expect_code(
        a_lic.reinstate_licence(transition()).await.unwrap_err(),
        Code::PermissionDenied,
    );

    // No certificate: UNAUTHENTICATED. A certificate from an unknown CA: no connection.
    expect_code(
        LicenceServiceClient::new(channel(addr, &ca, None).await.unwrap())
            .get_licence(pb::GetLicenceRequest {
                licence_id: id.clone(),
            })
            .await
            .unwrap_err(),
        Code::Unauthenticated,
    );
    let stranger = Pki::new("another CA").client(ADMIN_DEPT, &["admin"]);
    let refused = match channel(addr, &ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => PolicyServiceClient::new(ch)
            .list_department_policies(pb::ListDepartmentPoliciesRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from an unknown CA is refused");

    // Every denial is in the server's log, with the department and the reason (in a
    // cluster, the follower's for what it refused itself, the leader's for forwarded writes).
    let log = match (single, cluster) {
        (Some((server, data)), _) => {
            drop(server);
            std::fs::read_to_string(data.with_extension("log")).unwrap()
        }
        (None, Some(c)) => c.logs(),
        (None, None) => unreachable!(),
    };
    let denials: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("permission denied"))
        .collect();
    assert!(
        denials.len() >= 10,
        "{} denials logged:\n{log}",
        denials.len()
    );
    for (who, why) in [
        (&c, "may not verify"),
        (&a, "may not issue"),
        (&a, "may not sign"),
        (&a, "reinstating"),
        (&b, "only for the purposes"),
        (&b, "only auditors read every entry"),
        (&a, "grants the roles"),
    ] {
        assert!(
            denials
                .iter()
                .any(|l| l.contains(who.as_str()) && l.contains(why)),
            "no denial of {who} logged with '{why}': {denials:#?}"
        );
    }
}

/// The single-server setup: offline bootstrap into `dir`/pki, then a server over `dir`/data
/// with its TLS certificate.
fn bootstrap_and_spawn(dir: &Path) -> (ChildServer, std::path::PathBuf, std::path::PathBuf) {
    let (data, pki) = (dir.join("data"), dir.join("pki"));
    let policy_toml = format!("[policy]\nadmin_department = \"{ADMIN_DEPT}\"\n");
    std::fs::write(dir.join("bootstrap.toml"), &policy_toml).unwrap();

    // Offline bootstrap: the server certificate and the first administrator's.
    let boot = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "dept-cert",
            "bootstrap",
            "--host",
            "127.0.0.1",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--config")
        .arg(dir.join("bootstrap.toml"))
        .arg("--out")
        .arg(&pki)
        .output()
        .unwrap();
    succeeded(boot);
    #[cfg(unix)]
    for key in ["server.key", "admin.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is readable by others");
    }
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "{policy_toml}[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            pki.join("server.pem").display(),
            pki.join("server.key").display()
        ),
    )
    .unwrap();
    let server = ChildServer::spawn_args(&data, &["--config", config.to_str().unwrap()]);
    (server, pki, data)
}

/// `dir/bootstrap.toml`, naming the administrator department for the offline bootstrap.
pub(crate) fn boot_toml(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("bootstrap.toml");
    std::fs::write(
        &path,
        format!("[policy]\nadmin_department = \"{ADMIN_DEPT}\"\n"),
    )
    .unwrap();
    path
}

/// `certseal dept-cert bootstrap` into `out`, offline, with more arguments (e.g. `--node NAME`).
pub(crate) fn bootstrap_with(data: &Path, config: &Path, out: &Path, extra: &[&str]) {
    succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args([
                "dept-cert",
                "bootstrap",
                "--host",
                "127.0.0.1",
                "--data-dir",
            ])
            .arg(data)
            .args(extra)
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap(),
    );
}

/// A server in this process over `data`, with the server certificate in `pki`.
async fn start_tls(data: &Path, pki: &Path) -> server::RunningServer {
    let toml = format!(
        "[policy]\nadmin_department = \"{ADMIN_DEPT}\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        pki.join("server.pem").display(),
        pki.join("server.key").display()
    );
    let config = RawConfig::parse(&toml)
        .unwrap()
        .validate(Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data.to_owned()),
            ..Overrides::default()
        })
        .unwrap();
    server::start(&config).await.unwrap()
}

/// A department certificate from the registry with its serial.
pub(crate) async fn certify_serial(
    admin: &Channel,
    dept: &str,
    role: pb::Role,
) -> ((String, String), String, String) {
    let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let r = PolicyServiceClient::new(admin.clone())
        .issue_department_certificate(pb::IssueDepartmentCertificateRequest {
            department: dept.into(),
            roles: vec![role as i32],
            csr_pem: x509::client_csr(&key.pkcs8, "a department system").unwrap(),
            validity_days: 30,
        })
        .await
        .unwrap()
        .into_inner();
    (
        (r.certificate_pem, x509::pkcs8_pem(&key.pkcs8)),
        r.serial,
        r.ca_pem,
    )
}

/// One call as `id` on `ch`; the error, if refused.
async fn list_with(ch: Channel) -> Result<(), tonic::Status> {
    DepartmentServiceClient::new(ch)
        .list_departments(pb::ListDepartmentsRequest::default())
        .await
        .map(|_| ())
}

/// A call on a new connection with `id`: its error text, if refused anywhere (handshake or API).
async fn refusal_on_new_connection(
    addr: std::net::SocketAddr,
    ca: &str,
    id: &(String, String),
) -> Option<String> {
    match channel(addr, ca, Some(id)).await {
        Err(e) => Some(format!("{e:?}")),
        Ok(ch) => list_with(ch).await.err().map(|e| format!("{e:?}")),
    }
}

fn crl_lists(dir: &Path, crl: &str, ca: &str, serial: &str) -> bool {
    let (ok, out) = openssl(
        dir,
        &["crl", "-verify", "-CAfile", ca, "-in", crl, "-noout"],
    );
    assert!(ok && out.contains("verify OK"), "{crl} against {ca}: {out}");
    let (ok, text) = openssl(dir, &["crl", "-in", crl, "-noout", "-text"]);
    assert!(ok, "{text}");
    text.contains(&format!("Serial Number: {serial}"))
}

/// Revocation of department certificates (handshake and call, open connections too, across a
/// restart, published as a CRL openssl accepts), reactivation, and a client CA rotation.
// Multi-threaded: the server runs in this process while the test waits for the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn department_certificates_are_revoked_and_the_client_ca_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let (data, pki) = (dir.path().join("data"), dir.path().join("pki"));
    let boot_toml = boot_toml(dir.path());
    bootstrap_with(&data, &boot_toml, &pki, &[]);
    let mut server = start_tls(&data, &pki).await;
    let ca = std::fs::read_to_string(pki.join("client-ca.pem")).unwrap();
    let admin_id = (
        std::fs::read_to_string(pki.join("admin.pem")).unwrap(),
        std::fs::read_to_string(pki.join("admin.key")).unwrap(),
    );
    let admin_ch = channel(server.addr, &ca, Some(&admin_id)).await.unwrap();
    let (a, b, d) = (dept_code(41), dept_code(42), dept_code(44));
    let mut depts = DepartmentServiceClient::new(admin_ch.clone());
    let mut policies = PolicyServiceClient::new(admin_ch.clone());
    for (code, role) in [
        (&a, pb::Role::Verifier),
        (&b, pb::Role::Verifier),
        (&d, pb::Role::Auditor),
    ] {
        register(&mut depts, code, "某局").await;
        policies
            .set_department_policy(pb::SetDepartmentPolicyRequest {
                department: code.clone(),
                roles: vec![role as i32],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let (a_id, a_serial, _) = certify_serial(&admin_ch, &a, pb::Role::Verifier).await;
    let (b_id, b_serial, _) = certify_serial(&admin_ch, &b, pb::Role::Verifier).await;
    let (d_id, _, _) = certify_serial(&admin_ch, &d, pb::Role::Auditor).await;
    // The serial answered is the certificate's, as openssl prints it.
    std::fs::write(dir.path().join("a.pem"), &a_id.0).unwrap();
    let (_, printed) = openssl(dir.path(), &["x509", "-in", "a.pem", "-noout", "-serial"]);
    assert_eq!(printed.trim(), format!("serial={a_serial}"));

    // A's system has a connection open and working.
    let a_ch = channel(server.addr, &ca, Some(&a_id)).await.unwrap();
    list_with(a_ch.clone()).await.unwrap();

    // Bad revocations change nothing.
    let bad = |serial: &str, reason: &str| pb::RevokeDepartmentCertificateRequest {
        request_id: String::new(),
        serial: serial.into(),
        reason: reason.into(),
    };
    let fields = expect_code(
        policies
            .revoke_department_certificate(bad("not hex", ""))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
    );
    assert!(
        fields.iter().any(|(f, _)| f == "serial") && fields.iter().any(|(f, _)| f == "reason"),
        "{fields:?}"
    );
    expect_code(
        policies
            .revoke_department_certificate(bad("0123ABCD", "lost"))
            .await
            .unwrap_err(),
        Code::NotFound,
    );
    expect_code(
        PolicyServiceClient::new(channel(server.addr, &ca, Some(&b_id)).await.unwrap())
            .revoke_department_certificate(bad(&a_serial, "lost"))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    list_with(a_ch.clone()).await.unwrap();

    // The administrator revokes A's certificate: refused from the answer on, on the open
    // connection and on a new one (in the handshake); B's keeps working.
    let out = succeeded(cli_tls(
        server.addr,
        &pki,
        "admin",
        &["dept-cert", "revoke", &a_serial, "--reason", "key stolen"],
    ));
    assert!(out.contains(&a_serial), "{out}");
    let e = list_with(a_ch.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains(&a_serial) && e.message().contains("revoked"),
        "{e:?}"
    );
    let refused = refusal_on_new_connection(server.addr, &ca, &a_id).await;
    let refused = refused.expect("a revoked certificate is refused on a new connection");
    // In the handshake, not by the API: under TLS 1.3 the client may send its call before it
    // reads the server's alert, so the refusal surfaces as the alert or as a transport error
    // (connection closed, broken pipe), never as the API's answer.
    assert!(
        (refused.to_lowercase().contains("revoked") || refused.contains("Transport"))
            && !refused.contains("was revoked at"),
        "refused in the handshake: {refused}"
    );
    list_with(channel(server.addr, &ca, Some(&b_id)).await.unwrap())
        .await
        .unwrap();
    expect_code(
        policies
            .revoke_department_certificate(bad(&a_serial, "again"))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );

    // The CRL: signed by the client CA (openssl checks it), listing A and not B.
    succeeded(cli_tls(
        server.addr,
        &pki,
        "admin",
        &[
            "dept-cert",
            "crl",
            "--out",
            dir.path().join("crl.pem").to_str().unwrap(),
        ],
    ));
    let ca_file = pki.join("client-ca.pem");
    let ca_file = ca_file.to_str().unwrap();
    assert!(crl_lists(dir.path(), "crl.pem", ca_file, &a_serial));
    assert!(!crl_lists(dir.path(), "crl.pem", ca_file, &b_serial));

    // Deactivating B stops its calls; reactivating (through the CLI) brings them back.
    depts
        .deactivate_department(pb::DeactivateDepartmentRequest {
            credit_code: b.clone(),
        })
        .await
        .unwrap();
    let b_ch = channel(server.addr, &ca, Some(&b_id)).await.unwrap();
    expect_code(
        list_with(b_ch.clone()).await.unwrap_err(),
        Code::PermissionDenied,
    );
    let out = succeeded(cli_tls(
        server.addr,
        &pki,
        "admin",
        &["department", "reactivate", &b, "--json"],
    ));
    assert!(out.contains("\"active\""), "{out}");
    list_with(b_ch.clone()).await.unwrap();
    expect_code(
        depts
            .reactivate_department(pb::ReactivateDepartmentRequest {
                credit_code: b.clone(),
            })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );

    // A restart keeps the revocation.
    drop((a_ch, b_ch, admin_ch, depts, policies));
    server.stop().await.unwrap();
    server = start_tls(&data, &pki).await;
    assert!(
        refusal_on_new_connection(server.addr, &ca, &a_id)
            .await
            .is_some()
    );
    list_with(channel(server.addr, &ca, Some(&b_id)).await.unwrap())
        .await
        .unwrap();

    // Rotation, offline: a new client CA; the server's and the administrator's certificates
    // renewed from it by the bootstrap.
    server.stop().await.unwrap();
    let (pki2, rotated) = (dir.path().join("pki2"), dir.path().join("rotated"));
    let out = succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args(["ca", "rotate-client", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(&boot_toml)
            .arg("--out")
            .arg(&rotated)
            .output()
            .unwrap(),
    );
    assert!(out.contains("retire-client"), "{out}");
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["ca", "rotate-client", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&boot_toml)
        .arg("--out")
        .arg(&rotated)
        .output()
        .unwrap();
    assert!(
        !second.status.success()
            && String::from_utf8_lossy(&second.stderr).contains("retire the previous"),
        "one rotation at a time"
    );
    bootstrap_with(&data, &boot_toml, &pki2, &[]);
    let both = std::fs::read_to_string(pki2.join("client-ca.pem")).unwrap();
    assert_eq!(both.matches("BEGIN CERTIFICATE").count(), 2, "{both}");
    assert_eq!(
        both,
        std::fs::read_to_string(rotated.join("client-ca.pem")).unwrap()
    );
    let new_ca = x509::certificate_from_pem_or_der(both.as_bytes()).unwrap();
    let old_ca = x509::certificate_from_pem_or_der(ca.as_bytes()).unwrap();
    assert_ne!(new_ca, old_ca);
    server = start_tls(&data, &pki2).await;
    let admin2 = (
        std::fs::read_to_string(pki2.join("admin.pem")).unwrap(),
        std::fs::read_to_string(pki2.join("admin.key")).unwrap(),
    );
    let admin2_ch = channel(server.addr, &both, Some(&admin2)).await.unwrap();
    // New certificates come from the new CA; old and new ones both work.
    let (c_id, c_serial, answered_cas) = certify_serial(&admin2_ch, &a, pb::Role::Verifier).await;
    assert_eq!(answered_cas, both);
    let now = certseal_core::Timestamp::now().0 / 1000;
    let c_der = x509::certificate_from_pem_or_der(c_id.0.as_bytes()).unwrap();
    x509::check_issued_by(&c_der.der, &new_ca.der, now).unwrap();
    for id in [&admin_id, &admin2, &b_id, &c_id] {
        list_with(channel(server.addr, &both, Some(id)).await.unwrap())
            .await
            .unwrap();
    }
    assert!(
        refusal_on_new_connection(server.addr, &both, &a_id)
            .await
            .is_some()
    );
    // Each CA has its CRL: the old one still lists A; the new one lists what it revokes.
    succeeded(cli_tls(
        server.addr,
        &pki2,
        "admin",
        &["dept-cert", "revoke", &c_serial, "--reason", "test"],
    ));
    std::fs::write(dir.path().join("old-ca.pem"), old_ca.pem()).unwrap();
    std::fs::write(dir.path().join("new-ca.pem"), new_ca.pem()).unwrap();
    for (flags, file) in [
        (&[][..], "new-crl.pem"),
        (&["--previous"][..], "old-crl.pem"),
    ] {
        let path = dir.path().join(file);
        let mut args = vec!["dept-cert", "crl", "--out", path.to_str().unwrap()];
        args.extend_from_slice(flags);
        succeeded(cli_tls(server.addr, &pki2, "admin", &args));
    }
    assert!(crl_lists(
        dir.path(),
        "new-crl.pem",
        "new-ca.pem",
        &c_serial
    ));
    assert!(!crl_lists(
        dir.path(),
        "new-crl.pem",
        "new-ca.pem",
        &a_serial
    ));
    assert!(crl_lists(
        dir.path(),
        "old-crl.pem",
        "old-ca.pem",
        &a_serial
    ));

    // The auditor finds every change in the log.
    let mut s = certseal::pb::audit_service_client::AuditServiceClient::new(
        channel(server.addr, &both, Some(&d_id)).await.unwrap(),
    )
    .export_entries(pb::ExportEntriesRequest { start: 0, end: 0 })
    .await
    .unwrap()
    .into_inner();
    let mut kinds = Vec::new();
    while let Some(chunk) = s.message().await.unwrap() {
        if let Some(pb::export_chunk::Item::Entry(e)) = chunk.item {
            kinds.push(certseal_log::Entry::decode(&e.entry).unwrap().kind);
        }
    }
    for kind in [
        "client_certificate.revoked",
        "department.reactivated",
        "client_ca.rotated",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    }
    drop(admin2_ch);

    // Retiring the old CA: its certificates are refused from the next start.
    server.stop().await.unwrap();
    succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args(["ca", "retire-client", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(&boot_toml)
            .output()
            .unwrap(),
    );
    server = start_tls(&data, &pki2).await;
    for old in [&admin_id, &b_id] {
        assert!(
            refusal_on_new_connection(server.addr, &both, old)
                .await
                .is_some(),
            "a certificate of the retired CA is refused"
        );
    }
    list_with(channel(server.addr, &both, Some(&admin2)).await.unwrap())
        .await
        .unwrap();
    expect_code(
        PolicyServiceClient::new(channel(server.addr, &both, Some(&admin2)).await.unwrap())
            .get_client_crl(pb::GetClientCrlRequest {
                ca: pb::ClientCaSlot::Previous as i32,
            })
            .await
            .unwrap_err(),
        Code::NotFound,
    );
    server.stop().await.unwrap();
}

/// A node certificate (role node) forwards other callers' certificates and acts for nobody
/// itself; a forwarded certificate passes the handshake's checks again (chain, revocation);
/// only a node may forward one; only the registry operator gets node certificates.
#[tokio::test]
async fn node_certificates_forward_callers_and_act_for_nobody() {
    use tonic::metadata::BinaryMetadataValue;
    let dir = tempfile::tempdir().unwrap();
    let (data, pki) = (dir.path().join("data"), dir.path().join("pki"));
    bootstrap_with(&data, &boot_toml(dir.path()), &pki, &["--node", "node-1"]);
    let server = start_tls(&data, &pki).await;
    let addr = server.addr;
    let read = |name: &str| std::fs::read_to_string(pki.join(name)).unwrap();
    let ca = read("client-ca.pem");
    let (admin, node) = (
        (read("admin.pem"), read("admin.key")),
        (read("node-1.pem"), read("node-1.key")),
    );
    let der = |pem: &str| {
        x509::certificate_from_pem_or_der(pem.as_bytes())
            .unwrap()
            .der
    };
    let node_ch = channel(addr, &ca, Some(&node)).await.unwrap();
    let admin_ch = channel(addr, &ca, Some(&admin)).await.unwrap();
    let for_caller = |cert: &[u8], m: pb::RegisterDepartmentRequest| {
        let mut r = tonic::Request::new(m);
        r.metadata_mut().insert_bin(
            "x-certseal-forwarded-client-cert-bin",
            BinaryMetadataValue::from_bytes(cert),
        );
        r
    };
    let dept = |n: u32| pb::RegisterDepartmentRequest {
        credit_code: dept_code(n),
        name: "某局".into(),
        region_code: "350200".into(),
    };

    // The node alone is nobody.
    let e = DepartmentServiceClient::new(node_ch.clone())
        .register_department(dept(31))
        .await
        .unwrap_err();
    expect_code(e.clone(), Code::PermissionDenied);
    assert!(e.message().contains("node certificate"), "{e:?}");

    // With the administrator's certificate it acts as the administrator, and only as that.
    let d = DepartmentServiceClient::new(node_ch.clone())
        .register_department(for_caller(&der(&admin.0), dept(31)))
        .await
        .unwrap()
        .into_inner();
    let by = d.record.unwrap().created_by.unwrap();
    assert_eq!(by.department, ADMIN_DEPT);
    assert_eq!(by.role, pb::Role::Admin as i32);

    // A certificate from another CA, or another node's, is refused however it comes.
    let stranger = Pki::new("another CA").client(ADMIN_DEPT, &["admin"]);
    let e = DepartmentServiceClient::new(node_ch.clone())
        .register_department(for_caller(&der(&stranger.0), dept(32)))
        .await
        .unwrap_err();
    expect_code(e, Code::Unauthenticated);
    let e = DepartmentServiceClient::new(node_ch.clone())
        .register_department(for_caller(&der(&node.0), dept(32)))
        .await
        .unwrap_err();
    expect_code(e, Code::PermissionDenied);

    // Only a node forwards: a department that sends a certificate along is refused.
    let e = DepartmentServiceClient::new(admin_ch.clone())
        .register_department(for_caller(&der(&admin.0), dept(32)))
        .await
        .unwrap_err();
    expect_code(e.clone(), Code::PermissionDenied);
    assert!(e.message().contains("only from a cluster node"), "{e:?}");

    // Node certificates: the role node alone, for the registry operator only.
    let mut policies = PolicyServiceClient::new(admin_ch.clone());
    expect_code(
        certify(
            &mut policies,
            ADMIN_DEPT,
            &[pb::Role::Node, pb::Role::Admin],
        )
        .await
        .unwrap_err(),
        Code::InvalidArgument,
    );
    expect_code(
        certify(&mut policies, &dept_code(31), &[pb::Role::Node])
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );
    let (second, _) = certify(&mut policies, ADMIN_DEPT, &[pb::Role::Node])
        .await
        .unwrap();
    let (_, roles) = x509::client_identity(&der(&second)).unwrap();
    assert_eq!(roles, ["node"]);

    // A revoked certificate is refused when a node forwards it, as in a handshake.
    let serial: String = x509::certificate_serial(&der(&admin.0))
        .unwrap()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    policies
        .revoke_department_certificate(pb::RevokeDepartmentCertificateRequest {
            serial,
            reason: "the administrator's key is replaced".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let e = DepartmentServiceClient::new(node_ch.clone())
        .register_department(for_caller(&der(&admin.0), dept(33)))
        .await
        .unwrap_err();
    expect_code(e.clone(), Code::Unauthenticated);
    assert!(e.message().contains("forwarded caller"), "{e:?}");
    server.stop().await.unwrap();
}
