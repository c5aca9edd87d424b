//! The holder in the loop: use codes (授权用证) made by a holder agent, checks with them, and
//! the holder's record of every check (用证留痕), over mutual TLS and under concurrency.

use std::collections::BTreeSet;
use std::path::Path;

use certseal::config::{Overrides, RawConfig};
use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::department_service_client::DepartmentServiceClient;
use certseal::pb::holder_service_client::HolderServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::policy_service_client::PolicyServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use certseal::pb::template_service_client::TemplateServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use certseal::server;
use certseal_log::{Entry, VerifierKey};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::licences::PERSON;
use crate::tls::{boot_toml, bootstrap_with, certify_serial, channel, issue_request, read_grant};
use crate::util::*;

/// A second person holder.
const OTHER_PERSON: &str = "35020319900101123X";

/// The reason a refused use code gives (`google.rpc.ErrorInfo`).
fn refusal(status: tonic::Status) -> String {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

/// The reason a check with a use code is refused.
async fn refused(
    v: &mut VerificationServiceClient<Channel>,
    licence: &str,
    purpose: &str,
    code: &str,
) -> String {
    refusal(
        v.verify_licence(check(licence, purpose, code))
            .await
            .unwrap_err(),
    )
}

fn person(id: &str) -> Option<pb::HolderRef> {
    Some(pb::HolderRef {
        kind: pb::HolderKind::Person as i32,
        id: id.into(),
    })
}

fn for_department(d: &str) -> Option<pb::UseCodeAudience> {
    Some(pb::UseCodeAudience {
        audience: Some(pb::use_code_audience::Audience::Department(d.into())),
    })
}

fn code_request(
    holder: &str,
    licence: &str,
    purposes: &[&str],
    fields: &[&str],
    audience: Option<pb::UseCodeAudience>,
    uses: u32,
) -> pb::CreateUseCodeRequest {
    pb::CreateUseCodeRequest {
        holder: person(holder),
        licence_id: licence.into(),
        purposes: purposes.iter().map(|p| (*p).into()).collect(),
        fields: fields.iter().map(|f| (*f).into()).collect(),
        audience,
        validity_seconds: 600,
        uses,
    }
}

fn check(licence: &str, purpose: &str, code: &str) -> pb::VerifyLicenceRequest {
    pb::VerifyLicenceRequest {
        licence_id: licence.into(),
        purpose: Some(pb::Purpose {
            code: purpose.into(),
            text: "办理入学登记".into(),
        }),
        at: None,
        use_code: code.into(),
    }
}

/// A TLS server in this process over `data`, with the clock use codes are judged by.
async fn start_tls(data: &Path, pki: &Path) -> (server::RunningServer, certseal_registry::Clock) {
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
    let clock = config.registry.clock.clone();
    (server::start(&config).await.unwrap(), clock)
}

async fn verifier_key(a: &mut AuditServiceClient<Channel>) -> VerifierKey {
    VerifierKey::parse(
        &a.get_verifier_key(pb::GetVerifierKeyRequest {})
            .await
            .unwrap()
            .into_inner()
            .verifier_key,
    )
    .unwrap()
}

#[tokio::test]
async fn holders_authorise_checks_with_use_codes_and_see_every_use_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (data, pki) = (dir.path().join("data"), dir.path().join("pki"));
    bootstrap_with(&data, &boot_toml(dir.path()), &pki, &[]);
    let (server, clock) = start_tls(&data, &pki).await;
    let ca = std::fs::read_to_string(pki.join("client-ca.pem")).unwrap();
    let admin_id = (
        std::fs::read_to_string(pki.join("admin.pem")).unwrap(),
        std::fs::read_to_string(pki.join("admin.key")).unwrap(),
    );
    let admin_ch = channel(server.addr, &ca, Some(&admin_id)).await.unwrap();

    // Issuer A; verifiers V and W without any read grant; G with a statutory grant; the
    // provincial app H, a holder agent; X a verifier that is no agent; D an auditor.
    let [a, v, w, g, h, x, d] = [61, 62, 63, 64, 65, 66, 67].map(dept_code);
    let mut depts = DepartmentServiceClient::new(admin_ch.clone());
    for code in [&a, &v, &w, &g, &h, &x, &d] {
        register(&mut depts, code, "某局").await;
    }
    let food = format!("{a}001");
    let mut templates = TemplateServiceClient::new(admin_ch.clone());
    templates
        .create_template_draft(pb::CreateTemplateDraftRequest {
            type_code: food.clone(),
            base_version: 0,
            content: Some(crate::licences::food_template("食品经营许可证")),
        })
        .await
        .unwrap();
    templates
        .publish_template(pb::PublishTemplateRequest {
            type_code: food.clone(),
            version: 1,
        })
        .await
        .unwrap();
    let mut seals = SealServiceClient::new(admin_ch.clone());
    let seal = seals
        .register_seal(pb::RegisterSealRequest {
            department: a.clone(),
            name: "专用章".into(),
            r#type: pb::SealType::SpecialPurpose as i32,
            image: png(1),
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
            seal_id: seal.seal_id.clone(),
            note: String::new(),
        })
        .await
        .unwrap();
    let mut policies = PolicyServiceClient::new(admin_ch.clone());
    let policy = |dept: &str, role: pb::Role| pb::SetDepartmentPolicyRequest {
        department: dept.into(),
        roles: vec![role as i32],
        ..Default::default()
    };
    let mut a_policy = policy(&a, pb::Role::Issuer);
    a_policy.issue = vec![pb::IssueGrant {
        type_code: food.clone(),
        seal_ids: vec![],
        collect_regions: vec![],
    }];
    let mut g_policy = policy(&g, pb::Role::Verifier);
    g_policy.read = vec![read_grant(&food, &["ADMIN_APPROVAL"], &[])];
    for p in [
        a_policy,
        policy(&v, pb::Role::Verifier),
        policy(&w, pb::Role::Verifier),
        g_policy,
        policy(&h, pb::Role::HolderAgent),
        policy(&x, pb::Role::Verifier),
        policy(&d, pb::Role::Auditor),
    ] {
        policies.set_department_policy(p).await.unwrap();
    }
    let connect_as = async |dept: &str, role: pb::Role| {
        let (id, _, _) = certify_serial(&admin_ch, dept, role).await;
        channel(server.addr, &ca, Some(&id)).await.unwrap()
    };
    let a_ch = connect_as(&a, pb::Role::Issuer).await;
    let v_ch = connect_as(&v, pb::Role::Verifier).await;
    let w_ch = connect_as(&w, pb::Role::Verifier).await;
    let g_ch = connect_as(&g, pb::Role::Verifier).await;
    let h_ch = connect_as(&h, pb::Role::HolderAgent).await;
    let x_ch = connect_as(&x, pb::Role::Verifier).await;
    let d_ch = connect_as(&d, pb::Role::Auditor).await;

    // Two licences of one person, one of another.
    let mut issuer = LicenceServiceClient::new(a_ch);
    let mut issue = async |holder: &str, key: &str| {
        let mut r = issue_request(&food, &seal.seal_id, key);
        r.holder.as_mut().unwrap().id = holder.into();
        issuer
            .issue_licence(r)
            .await
            .unwrap()
            .into_inner()
            .licence_id
    };
    let mine = issue(PERSON, "p1-a").await;
    let mine_too = issue(PERSON, "p1-b").await;
    let theirs = issue(OTHER_PERSON, "p2").await;

    let mut agent = HolderServiceClient::new(h_ch.clone());
    let mut at_v = VerificationServiceClient::new(v_ch.clone());
    let mut at_w = VerificationServiceClient::new(w_ch);

    // V may not read the type: without a code it is refused.
    expect_code(
        at_v.verify_licence(check(&mine, "ADMIN_APPROVAL", ""))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );

    // The holder lets V check one licence once, for one purpose, seeing one personal field.
    let created = agent
        .create_use_code(code_request(
            PERSON,
            &mine,
            &["ADMIN_APPROVAL"],
            &["staff"],
            for_department(&v),
            0,
        ))
        .await
        .unwrap()
        .into_inner();
    let info = created.info.clone().unwrap();
    assert_eq!((info.uses, info.used, info.live), (1, 0, true));
    assert_eq!(
        created.code.len(),
        20,
        "three groups of six: {}",
        created.code
    );
    assert!(created.qr.starts_with("CSU:1:") && created.qr.ends_with(&mine));
    let passed = at_v
        .verify_licence(check(&mine, "ADMIN_APPROVAL", &created.code))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(passed.indication(), pb::Indication::TotalPassed);
    assert_eq!(passed.basis(), pb::CheckBasis::UseCode);
    let shown: BTreeSet<String> = passed
        .licence
        .as_ref()
        .unwrap()
        .fields
        .keys()
        .cloned()
        .collect();
    // The public fields and the one the code opens; no other personal field.
    assert_eq!(
        shown,
        ["capital", "operator_name", "staff"]
            .map(String::from)
            .into()
    );
    // A code opens fields, not the person: the holder is masked as on the public page.
    let shown_holder = passed.licence.as_ref().unwrap().holder.clone().unwrap();
    assert_eq!(
        (shown_holder.id.as_str(), shown_holder.name.as_str()),
        ("1********X", "张*")
    );
    // Its receipt says so: version 2, basis use code, naming the code's ID.
    let sign1 = certseal_crypto::cose::parse_sign1(&passed.receipt, 1 << 16).unwrap();
    sign1
        .verify_with_certificate(sign1.x5chain.as_ref().unwrap())
        .unwrap();
    let receipt = certseal_core::Receipt::decode(&sign1.payload).unwrap();
    assert_eq!(receipt.v, 2);
    let basis = receipt.basis.unwrap();
    assert_eq!(basis.kind, certseal_core::BasisKind::UseCode);
    assert_eq!(basis.use_code.as_deref(), Some(info.code_id.as_str()));

    // Another department learns only that the code is not for it, not that it was used.
    assert_eq!(
        refused(&mut at_w, &mine, "ADMIN_APPROVAL", &created.code).await,
        "USE_CODE_OTHER_AUDIENCE"
    );
    // A second use of a one-use code is refused, with no licence data.
    assert_eq!(
        refused(&mut at_v, &mine, "ADMIN_APPROVAL", &created.code).await,
        "USE_CODE_USED_UP"
    );

    // A code of five uses: another purpose, another department, another licence are refused.
    let five = agent
        .create_use_code(code_request(
            PERSON,
            &mine,
            &["ADMIN_APPROVAL"],
            &[],
            for_department(&v),
            5,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        refused(&mut at_v, &mine, "PUBLIC_SERVICE", &five.code).await,
        "USE_CODE_OTHER_PURPOSE"
    );
    assert_eq!(
        refused(&mut at_w, &mine, "ADMIN_APPROVAL", &five.code).await,
        "USE_CODE_OTHER_AUDIENCE"
    );
    assert_eq!(
        refused(&mut at_v, &mine_too, "ADMIN_APPROVAL", &five.code).await,
        "USE_CODE_OTHER_LICENCE"
    );
    // The QR string alone names the licence; it counts one use.
    let by_qr = at_v
        .verify_licence(check("", "ADMIN_APPROVAL", &five.qr))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_qr.indication(), pb::Indication::TotalPassed);
    // A QR string naming another licence than the one checked is refused as malformed.
    expect_code(
        at_v.verify_licence(check(&mine_too, "ADMIN_APPROVAL", &five.qr))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
    );
    // A mistyped code is malformed, not unknown; an unknown one is refused.
    let mut typo = five.code.clone().into_bytes();
    typo[0] = if typo[0] == b'7' { b'8' } else { b'7' };
    expect_code(
        at_v.verify_licence(check(
            &mine,
            "ADMIN_APPROVAL",
            std::str::from_utf8(&typo).unwrap(),
        ))
        .await
        .unwrap_err(),
        Code::InvalidArgument,
    );
    let unknown = certseal_core::UseCodeText::from_random(&[9; 10]).grouped();
    assert_eq!(
        refused(&mut at_v, &mine, "ADMIN_APPROVAL", &unknown).await,
        "USE_CODE_UNKNOWN"
    );

    // Revoked by the holder: refused.
    let revoked = agent
        .create_use_code(code_request(
            PERSON,
            &mine_too,
            &["ADMIN_APPROVAL"],
            &[],
            for_department(&v),
            3,
        ))
        .await
        .unwrap()
        .into_inner();
    let after = agent
        .revoke_use_code(pb::RevokeUseCodeRequest {
            holder: person(PERSON),
            code_id: revoked.info.as_ref().unwrap().code_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(after.revoked_at.is_some() && !after.live);
    assert_eq!(
        refused(&mut at_v, &mine_too, "ADMIN_APPROVAL", &revoked.code).await,
        "USE_CODE_REVOKED"
    );
    // Another holder cannot revoke it (nor learn it exists).
    expect_code(
        agent
            .revoke_use_code(pb::RevokeUseCodeRequest {
                holder: person(OTHER_PERSON),
                code_id: five.info.as_ref().unwrap().code_id.clone(),
            })
            .await
            .unwrap_err(),
        Code::NotFound,
    );

    // Expired: ten minutes later by the registry's clock.
    clock.advance(std::time::Duration::from_secs(601));
    assert_eq!(
        refused(&mut at_v, &mine, "ADMIN_APPROVAL", &five.code).await,
        "USE_CODE_EXPIRED"
    );

    // Only a holder agent makes codes, and only for the holder's own licences.
    expect_code(
        HolderServiceClient::new(x_ch)
            .create_use_code(code_request(
                PERSON,
                &mine,
                &["ADMIN_APPROVAL"],
                &[],
                for_department(&v),
                1,
            ))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    expect_code(
        agent
            .create_use_code(code_request(
                OTHER_PERSON,
                &mine,
                &["ADMIN_APPROVAL"],
                &[],
                for_department(&v),
                1,
            ))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    // Bad requests name each problem and change nothing.
    let mut bad = code_request(PERSON, &mine, &["NOPE"], &["no_such_field"], None, 1000);
    bad.validity_seconds = 10;
    let fields = expect_code(
        agent.create_use_code(bad).await.unwrap_err(),
        Code::InvalidArgument,
    );
    for f in [
        "purposes[0]",
        "fields[0]",
        "audience",
        "validity_seconds",
        "uses",
    ] {
        assert!(fields.iter().any(|(n, _)| n == f), "{f} not in {fields:?}");
    }

    // A code for a department that cannot check licences (the auditor) would open nothing.
    let fields = expect_code(
        agent
            .create_use_code(code_request(
                PERSON,
                &mine,
                &["ADMIN_APPROVAL"],
                &[],
                for_department(&d),
                1,
            ))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
    );
    assert!(
        fields
            .iter()
            .any(|(f, m)| f == "audience.department" && m.contains("neither the verifier")),
        "{fields:?}"
    );

    // A department with a statutory grant checks without a code; its receipt says so.
    let granted = VerificationServiceClient::new(g_ch)
        .verify_licence(check(&mine, "ADMIN_APPROVAL", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.indication(), pb::Indication::TotalPassed);
    assert_eq!(granted.basis(), pb::CheckBasis::Grant);

    // The holder's record: every check of their licences, newest first, nothing of others'.
    let usage = agent
        .list_usage(pb::ListUsageRequest {
            holder: person(PERSON),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let rest = agent
        .list_usage(pb::ListUsageRequest {
            holder: person(PERSON),
            page_size: 0,
            page_token: usage.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rest.next_page_token.is_empty());
    let all: Vec<pb::UsageRecord> = usage.usage.into_iter().chain(rest.usage).collect();
    let receipts: Vec<&str> = all.iter().map(|u| u.receipt_id.as_str()).collect();
    assert_eq!(
        receipts,
        [
            granted.receipt_id.as_str(),
            by_qr.receipt_id.as_str(),
            passed.receipt_id.as_str()
        ]
    );
    assert_eq!(all[0].basis(), pb::CheckBasis::Grant);
    assert_eq!(all[2].basis(), pb::CheckBasis::UseCode);
    assert_eq!(all[2].use_code_id, info.code_id);
    assert_eq!(
        (all[2].department.as_str(), all[2].department_name.as_str()),
        (v.as_str(), "某局")
    );
    assert_eq!(all[2].purpose.as_ref().unwrap().text, "办理入学登记");
    assert!(
        all.windows(2)
            .all(|p| p[0].checked_at.as_ref().unwrap().seconds
                >= p[1].checked_at.as_ref().unwrap().seconds)
    );
    // Each receipt verifies, and its inclusion proof holds, read by the agent for the holder.
    let mut audit_h = AuditServiceClient::new(h_ch.clone());
    let key = verifier_key(&mut audit_h).await;
    for u in &all {
        let sign1 = certseal_crypto::cose::parse_sign1(&u.receipt, 1 << 16).unwrap();
        sign1
            .verify_with_certificate(sign1.x5chain.as_ref().unwrap())
            .unwrap();
        assert_eq!(
            certseal_core::Receipt::decode(&sign1.payload).unwrap().id,
            u.receipt_id
        );
        let proof = audit_h
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                target: Some(pb::get_inclusion_proof_request::Target::Index(u.log_index)),
                holder: person(PERSON),
            })
            .await
            .unwrap()
            .into_inner();
        certseal_verify::verify_tlog_proof(&proof.tlog_proof, &proof.entry, &key).unwrap();
        let entry = Entry::decode(&proof.entry).unwrap();
        assert_eq!(
            (entry.kind.as_str(), entry.subject.as_str()),
            ("receipt.issued", u.receipt_id.as_str())
        );
    }
    // Not for another holder, and not without naming the holder.
    for holder in [person(OTHER_PERSON), None] {
        expect_code(
            audit_h
                .get_inclusion_proof(pb::GetInclusionProofRequest {
                    target: Some(pb::get_inclusion_proof_request::Target::Index(
                        all[0].log_index,
                    )),
                    holder,
                })
                .await
                .unwrap_err(),
            Code::PermissionDenied,
        );
    }
    let other = agent
        .list_usage(pb::ListUsageRequest {
            holder: person(OTHER_PERSON),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.usage.is_empty(), "{:?}", other.usage);
    let theirs_code = agent
        .create_use_code(code_request(
            OTHER_PERSON,
            &theirs,
            &["ADMIN_APPROVAL"],
            &[],
            for_department(&v),
            1,
        ))
        .await
        .unwrap()
        .into_inner();
    let codes = agent
        .list_use_codes(pb::ListUseCodesRequest {
            holder: person(PERSON),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .codes;
    assert_eq!(codes.len(), 3, "{codes:?}");
    assert!(codes.iter().all(|c| c.licence_id != theirs));
    assert_eq!(codes[0].code_id, revoked.info.as_ref().unwrap().code_id);

    // No log leaf carries a resident ID or a code: every entry, read by the auditor.
    let mut audit_d = AuditServiceClient::new(d_ch);
    let size = audit_d
        .get_latest_checkpoint(pb::GetLatestCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .size;
    let secrets: Vec<String> = [PERSON, OTHER_PERSON]
        .iter()
        .map(|s| s.to_string())
        .chain(
            [&created, &five, &revoked, &theirs_code]
                .iter()
                .map(|c| c.code.replace('-', "")),
        )
        .collect();
    let mut holder_entries = 0;
    for i in 0..size {
        let entry = audit_d
            .get_entry(pb::GetEntryRequest { index: i })
            .await
            .unwrap()
            .into_inner()
            .entry;
        for s in &secrets {
            assert!(
                !entry.windows(s.len()).any(|w| w == s.as_bytes()),
                "entry {i} carries {s}"
            );
        }
        let e = Entry::decode(&entry).unwrap();
        if e.kind.starts_with("use_code.") || e.kind == "usage.listed" {
            holder_entries += 1;
            assert!(e.extra.contains_key("holder"), "{e:?}");
        }
    }
    // Four codes created, two uses (the granted check uses none), one revocation, one listing
    // of codes, three of usage (two pages for the holder, one for the other).
    assert_eq!(holder_entries, 4 + 2 + 1 + 1 + 3, "holder entries");
    server.stop().await.unwrap();
}

/// A licence of [`PERSON`] from issuer `n`, and two registered departments: a holder agent
/// (`n + 1`) and a verifier (`n + 2`).
async fn licence_agent_and_verifier(server: &TestServer, n: u32) -> (String, String, String) {
    let addr = server.addr();
    let i = crate::licences::issuer(addr, n, pb::SealAlgorithm::Ed25519).await;
    let licence = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(
            &i.dept,
            "issuer",
            crate::licences::request(&i, &format!("holder-{n}")),
        ))
        .await
        .unwrap()
        .into_inner()
        .licence_id;
    let (agent, verifier) = (dept_code(n + 1), dept_code(n + 2));
    let mut depts = DepartmentServiceClient::new(server.channel().await);
    register(&mut depts, &agent, "省政务服务平台").await;
    register(&mut depts, &verifier, "某区教育局").await;
    (licence, agent, verifier)
}

#[tokio::test]
async fn a_one_use_code_presented_32_times_at_once_passes_once() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let (licence, agent, verifier) = licence_agent_and_verifier(&server, 71).await;
    let code = HolderServiceClient::new(connect(addr).await)
        .create_use_code(as_actor(
            &agent,
            "holder_agent",
            code_request(
                PERSON,
                &licence,
                &["ADMIN_APPROVAL"],
                &[],
                for_department(&verifier),
                1,
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .code;
    // 32 connections present it at the same instant; on a cluster, half of them to the
    // follower and half to the leader.
    let mut channels = Vec::new();
    for n in 0..32 {
        let node = match server.leader_addr() {
            Some(leader) if n % 2 == 1 => leader,
            _ => addr,
        };
        channels.push(connect(node).await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = channels
        .into_iter()
        .map(|ch| {
            let (start, licence, code, verifier) = (
                start.clone(),
                licence.clone(),
                code.clone(),
                verifier.clone(),
            );
            tokio::spawn(async move {
                start.wait().await;
                VerificationServiceClient::new(ch)
                    .verify_licence(as_actor(
                        &verifier,
                        "verifier",
                        check(&licence, "ADMIN_APPROVAL", &code),
                    ))
                    .await
            })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.get_ref().indication(), pb::Indication::TotalPassed);
                passed += 1;
            }
            Err(e) => assert_eq!(refusal(e), "USE_CODE_USED_UP"),
        }
    }
    assert_eq!(passed, 1, "a one-use code passed {passed} times");
    // The holder's record holds that one check, and the code says it is used up.
    let mut holders = HolderServiceClient::new(connect(addr).await);
    let usage = holders
        .list_usage(as_actor(
            &agent,
            "holder_agent",
            pb::ListUsageRequest {
                holder: person(PERSON),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .usage;
    assert_eq!(
        usage
            .iter()
            .filter(|u| u.basis() == pb::CheckBasis::UseCode)
            .count(),
        1
    );
    let codes = holders
        .list_use_codes(as_actor(
            &agent,
            "holder_agent",
            pb::ListUseCodesRequest {
                holder: person(PERSON),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .codes;
    assert_eq!((codes[0].used, codes[0].live), (1, false));
    server.stop().await;
}

/// `certseal usecode …`, `certseal licence verify --use-code` and `certseal usage`, as a holder
/// agent's and a department's operators run them.
// Multi-threaded: the server runs in this process while the test waits for the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_makes_lists_uses_and_revokes_codes() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let (licence, agent, verifier) = licence_agent_and_verifier(&server, 81).await;
    let url = format!("http://{addr}");
    let run = |dept: &str, role: &str, args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args(args)
            .args([
                "--server",
                &url,
                "--as-department",
                dept,
                "--as-role",
                role,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let created = run(
        &agent,
        "holder_agent",
        &[
            "usecode",
            "create",
            PERSON,
            "--licence",
            &licence,
            "--purpose",
            "ADMIN_APPROVAL",
            "--field",
            "staff",
            "--audience",
            &verifier,
            "--valid-for",
            "2h",
            "--uses",
            "2",
        ],
    );
    let qr = created["qr"].as_str().unwrap();
    assert_eq!(created["uses"], 2);
    // The QR string alone names the licence.
    let checked = run(
        &verifier,
        "verifier",
        &[
            "licence",
            "verify",
            "--use-code",
            qr,
            "--purpose",
            "ADMIN_APPROVAL",
            "--why",
            "入学材料核验",
        ],
    );
    assert_eq!(checked["indication"], "TOTAL_PASSED");
    assert_eq!(checked["basis"], "USE_CODE");
    let listed = run(&agent, "holder_agent", &["usecode", "list", PERSON]);
    assert_eq!(listed["items"][0]["used"], 1, "{listed}");
    let usage = run(&agent, "holder_agent", &["usage", PERSON]);
    assert_eq!(
        usage["items"][0]["department_name"], "某区教育局",
        "{usage}"
    );
    assert_eq!(usage["items"][0]["basis"], "USE_CODE");
    let revoked = run(
        &agent,
        "holder_agent",
        &[
            "usecode",
            "revoke",
            PERSON,
            listed["items"][0]["code_id"].as_str().unwrap(),
        ],
    );
    assert_eq!(revoked["live"], false);
    // Refused now, with the reason printed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "licence",
            "verify",
            "--use-code",
            qr,
            "--purpose",
            "ADMIN_APPROVAL",
            "--why",
            "再查",
            "--server",
            &url,
            "--as-department",
            &verifier,
            "--as-role",
            "verifier",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PERMISSION_DENIED") && err.contains("USE_CODE_REVOKED"),
        "{err}"
    );
    server.stop().await;
}

/// Checks made before the holder's record existed are in it after the upgrade: the first start
/// indexes them once.
#[tokio::test]
async fn checks_made_before_the_upgrade_are_in_the_holders_record() {
    use certseal_store::{Batch, Direction, KvStore, Read, Table};
    let mut server = TestServer::start().await;
    let addr = server.addr();
    let i = crate::licences::issuer(addr, 91, pb::SealAlgorithm::Ed25519).await;
    let licence = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(
            &i.dept,
            "issuer",
            crate::licences::request(&i, "old"),
        ))
        .await
        .unwrap()
        .into_inner()
        .licence_id;
    let verifier = dept_code(92);
    let mut receipts = Vec::new();
    for _ in 0..2 {
        let r = VerificationServiceClient::new(connect(addr).await)
            .verify_licence(as_actor(
                &verifier,
                "verifier",
                check(&licence, "ADMIN_APPROVAL", ""),
            ))
            .await
            .unwrap()
            .into_inner();
        receipts.push(r.receipt_id);
    }
    // The data folder as the previous version left it: no holder index, not marked built.
    server.server.take().unwrap().stop().await.unwrap();
    {
        let store = certseal_store_rocks::RocksStore::open(
            &server.dir.path().join("db"),
            &Default::default(),
        )
        .unwrap();
        let rows = store
            .scan(Table::ReceiptsByHolder, b"", None, 100, Direction::Forward)
            .unwrap();
        assert_eq!(rows.items.len(), 2);
        let mut b = Batch::new();
        for (k, _) in rows.items {
            b.delete(Table::ReceiptsByHolder, k);
        }
        b.delete(Table::Meta, b"usage_index".to_vec());
        store.write(&b, true).unwrap();
    }
    server.server = Some(start_in(server.dir.path(), true).await);
    let usage = HolderServiceClient::new(server.channel().await)
        .list_usage(as_actor(
            &dept_code(93),
            "holder_agent",
            pb::ListUsageRequest {
                holder: person(PERSON),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .usage;
    let listed: Vec<&str> = usage.iter().map(|u| u.receipt_id.as_str()).collect();
    assert_eq!(listed, [receipts[1].as_str(), receipts[0].as_str()]);
    assert!(usage.iter().all(|u| u.licence_id == licence));
    server.stop().await;
}
