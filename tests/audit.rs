use std::path::Path;
use std::process::Command;

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal_log::merkle::{leaf_hash, parse_hash, verify_consistency};
use certseal_log::{Checkpoint, Entry, VerifierKey};
use certseal_verify::VerifyError;
use tonic::Code;
use tonic::transport::Channel;

use crate::util::*;

async fn vkey(a: &mut AuditServiceClient<Channel>) -> VerifierKey {
    let text = a
        .get_verifier_key(admin(pb::GetVerifierKeyRequest {}))
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    VerifierKey::parse(&text).unwrap()
}

async fn latest(a: &mut AuditServiceClient<Channel>, key: &VerifierKey) -> (Checkpoint, String) {
    let note = a
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .note;
    (Checkpoint::open(&note, key).unwrap(), note)
}

#[tokio::test]
async fn every_change_appends_one_entry_that_proves_its_inclusion() {
    let s = TestServer::start().await;
    let mut a = AuditServiceClient::new(s.channel().await);
    let key = vkey(&mut a).await;
    let (cp0, _) = latest(&mut a, &key).await;
    assert_eq!(cp0.size, 0, "a new log is signed at size 0");

    let mut d = s.departments().await;
    let mut t = s.templates().await;
    let dept = dept_code(1);
    register(&mut d, &dept, "厦门市市场监督管理局").await;
    let code = format!("{dept}001");
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: code.clone(),
        base_version: 0,
        content: Some(content("食品经营许可证")),
    }))
    .await
    .unwrap();
    t.publish_template(admin(pb::PublishTemplateRequest {
        type_code: code.clone(),
        version: 1,
    }))
    .await
    .unwrap();
    d.update_department_name(admin(pb::UpdateDepartmentNameRequest {
        credit_code: dept.clone(),
        name: "厦门市市场监管局".into(),
    }))
    .await
    .unwrap();
    // Refused requests log nothing.
    let dup = d
        .register_department(admin(pb::RegisterDepartmentRequest {
            credit_code: dept.clone(),
            name: "x".into(),
            region_code: "350200".into(),
        }))
        .await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);
    let bad = t
        .publish_template(admin(pb::PublishTemplateRequest {
            type_code: code.clone(),
            version: 1,
        }))
        .await;
    assert_eq!(bad.unwrap_err().code(), Code::FailedPrecondition);

    let (cp, _) = latest(&mut a, &key).await;
    assert_eq!(cp.size, 4, "one entry per change, none for refusals");
    let kinds = [
        "department.registered",
        "template.draft_created",
        "template.published",
        "department.renamed",
    ];
    for (i, kind) in kinds.iter().enumerate() {
        let p = a
            .get_inclusion_proof(admin(pb::GetInclusionProofRequest {
                target: Some(pb::get_inclusion_proof_request::Target::Index(i as u64)),
                holder: None,
            }))
            .await
            .unwrap()
            .into_inner();
        let entry = Entry::decode(&p.entry).unwrap();
        assert_eq!(entry.seq, i as u64);
        assert_eq!(entry.kind, *kind);
        assert_eq!(entry.actor_department, ADMIN_DEPT);
        assert_eq!(entry.actor_role, "admin");
        // The single proof checks alone, with an independent verifier and the key.
        let proved = certseal_verify::verify_tlog_proof(&p.tlog_proof, &p.entry, &key).unwrap();
        assert_eq!(proved.size, 4);
        // Tampering with the entry breaks the proof.
        let mut forged = p.entry.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(certseal_verify::verify_tlog_proof(&p.tlog_proof, &forged, &key).is_err());
        // Found by leaf hash too.
        let by_hash = a
            .get_inclusion_proof(admin(pb::GetInclusionProofRequest {
                target: Some(pb::get_inclusion_proof_request::Target::LeafHash(
                    leaf_hash(&p.entry).to_vec(),
                )),
                holder: None,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_hash.index, i as u64);
    }
    // Entries hold digests; the exported records hash to them.
    let entry = a
        .get_entry(admin(pb::GetEntryRequest { index: 3 }))
        .await
        .unwrap()
        .into_inner();
    let entry = Entry::decode(&entry.entry).unwrap();
    assert_eq!(entry.subject, dept);
    assert!(
        !String::from_utf8_lossy(&entry.encode()).contains("市场监管局"),
        "no record content in entries"
    );
    assert_eq!(
        a.get_entry(admin(pb::GetEntryRequest { index: 4 }))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Consistency from every size to the latest.
    for from in 1..=4u64 {
        let c = a
            .get_consistency_proof(admin(pb::GetConsistencyProofRequest {
                from_size: from,
                to_size: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        let old = a
            .get_consistency_proof(admin(pb::GetConsistencyProofRequest {
                from_size: from,
                to_size: from,
            }))
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap();
        let old = Checkpoint::open(&old.note, &key).unwrap();
        let hashes: Vec<_> = c.hashes.iter().map(|h| parse_hash(h).unwrap()).collect();
        verify_consistency(from, cp.size, &hashes, &old.root, &cp.root).unwrap();
    }
    let e = a
        .get_consistency_proof(admin(pb::GetConsistencyProofRequest {
            from_size: 5,
            to_size: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Export needs the auditor role.
    let e = a
        .export_entries(admin(pb::ExportEntriesRequest { start: 0, end: 0 }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    s.stop().await;
}

fn certseal_cli(server: &ChildServer, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(args)
        .args([
            "--server",
            &server.url(),
            "--as-department",
            ADMIN_DEPT,
            "--as-role",
            "auditor",
        ])
        .output()
        .unwrap()
}

fn offline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn frames(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let n = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        out.push(b[i + 4..i + 4 + n].to_vec());
        i += 4 + n;
    }
    out
}

fn write_frames(path: &Path, items: &[Vec<u8>]) {
    let mut b = Vec::new();
    for it in items {
        b.extend_from_slice(&(it.len() as u32).to_be_bytes());
        b.extend_from_slice(it);
    }
    std::fs::write(path, b).unwrap();
}

fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["bundle.json", "checkpoint", "entries.bin", "records.bin"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

async fn write_some(server: &ChildServer, from: u32, n: u32) {
    let mut d = certseal::pb::department_service_client::DepartmentServiceClient::new(
        connect(server.addr).await,
    );
    for i in from..from + n {
        register(&mut d, &dept_code(i), &format!("部门{i}")).await;
    }
}

#[tokio::test]
async fn export_verifies_offline_and_every_tampering_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(&dir.path().join("data"));
    write_some(&server, 0, 40).await;
    let vk = ok(certseal_cli(&server, &["audit", "vkey"]))
        .trim()
        .to_owned();
    let cp_file = dir.path().join("cp40");
    std::fs::write(
        &cp_file,
        ok(certseal_cli(&server, &["audit", "checkpoint"])),
    )
    .unwrap();
    let out = dir.path().join("bundle");
    let msg = ok(certseal_cli(
        &server,
        &["audit", "export", "--out", out.to_str().unwrap()],
    ));
    assert!(msg.contains("40 entries"), "{msg}");
    let key = VerifierKey::parse(&vk).unwrap();

    // Offline, by the CLI: no server flag, no data folder.
    let report = ok(offline(&[
        "audit",
        "verify",
        out.to_str().unwrap(),
        "--vkey",
        &vk,
    ]));
    assert!(report.starts_with("OK: entries 0..40"), "{report}");
    // The same for scripts: JSON from the export, the verification and the checkpoint.
    let j: serde_json::Value = serde_json::from_str(&ok(offline(&[
        "audit",
        "verify",
        out.to_str().unwrap(),
        "--vkey",
        &vk,
        "--json",
    ])))
    .unwrap();
    assert_eq!(j["ok"], true);
    assert_eq!(j["entries"], 40);
    assert_eq!(j["end"], 40);
    let again = dir.path().join("bundle-json");
    let j: serde_json::Value = serde_json::from_str(&ok(certseal_cli(
        &server,
        &[
            "audit",
            "export",
            "--out",
            again.to_str().unwrap(),
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(j["entries"], 40);
    let j: serde_json::Value = serde_json::from_str(&ok(certseal_cli(
        &server,
        &["audit", "checkpoint", "--json"],
    )))
    .unwrap();
    assert!(j["size"].as_u64().unwrap() >= 40, "{j}");
    assert_eq!(j["root_hash"].as_str().unwrap().len(), 64);
    // A single proof, as text, checks alone.
    let proof = ok(certseal_cli(&server, &["audit", "proof", "7"]));
    let entry7 = frames(&out.join("entries.bin"))[7].clone();
    certseal_verify::verify_tlog_proof(&proof, &entry7, &key).unwrap();

    let check = |name: &str, tamper: &dyn Fn(&Path)| -> VerifyError {
        let d = dir.path().join(name);
        copy_bundle(&out, &d);
        tamper(&d);
        certseal_verify::verify_bundle(&d, &key, None, |_, _| {}).unwrap_err()
    };
    // One byte of an entry (inside its subject text): the range holding it is named.
    let e = check("byte", &|d| {
        let mut en = frames(&d.join("entries.bin"));
        let pos = en[13].len() - 40;
        en[13][pos] ^= 0x01;
        write_frames(&d.join("entries.bin"), &en);
    });
    match &e {
        VerifyError::Range { start, end, .. } => assert!(*start <= 13 && 13 < *end, "{e}"),
        VerifyError::Entry { index, .. } => assert_eq!(*index, 13, "{e}"),
        other => panic!("unexpected {other}"),
    }
    // One byte of a record: the entry committing to it is named.
    let e = check("record", &|d| {
        let mut rec = frames(&d.join("records.bin"));
        rec[21][5] ^= 0x01;
        write_frames(&d.join("records.bin"), &rec);
    });
    assert!(matches!(e, VerifyError::Entry { index: 21, .. }), "{e}");
    // A dropped entry.
    let e = check("drop", &|d| {
        let mut en = frames(&d.join("entries.bin"));
        en.remove(30);
        write_frames(&d.join("entries.bin"), &en);
    });
    assert!(matches!(e, VerifyError::Entry { index: 30, .. }), "{e}");
    // Two entries swapped.
    let e = check("swap", &|d| {
        let mut en = frames(&d.join("entries.bin"));
        en.swap(5, 6);
        write_frames(&d.join("entries.bin"), &en);
    });
    assert!(matches!(e, VerifyError::Entry { index: 5, .. }), "{e}");
    // Junk after the last entry.
    let e = check("junk", &|d| {
        let mut b = std::fs::read(d.join("entries.bin")).unwrap();
        b.extend_from_slice(&[0, 1]);
        std::fs::write(d.join("entries.bin"), b).unwrap();
    });
    assert!(e.to_string().contains("truncated"), "{e}");
    // The checkpoint swapped for an older one.
    let older = dir.path().join("cp-older");
    // Writes were sequential, so the log signed a checkpoint at every size, 20 among them.
    let older_note = {
        let mut a = AuditServiceClient::new(connect(server.addr).await);
        a.get_consistency_proof(admin(pb::GetConsistencyProofRequest {
            from_size: 1,
            to_size: 20,
        }))
        .await
        .map(|r| r.into_inner().checkpoint.unwrap().note)
    };
    std::fs::write(&older, older_note.unwrap()).unwrap();
    let e = check("older-checkpoint", &|d| {
        std::fs::copy(&older, d.join("checkpoint")).unwrap();
    });
    assert!(matches!(e, VerifyError::Checkpoint(_)), "{e}");
    assert!(e.to_string().contains("size 20"), "{e}");
    // The CLI says where, and fails.
    let d = dir.path().join("cli-drop");
    copy_bundle(&out, &d);
    let mut en = frames(&d.join("entries.bin"));
    en.remove(30);
    write_frames(&d.join("entries.bin"), &en);
    let o = offline(&["audit", "verify", d.to_str().unwrap(), "--vkey", &vk]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("entry 30"));

    // A later bundle from the earlier checkpoint links to it.
    write_some(&server, 40, 9).await;
    let later = dir.path().join("later");
    ok(certseal_cli(
        &server,
        &[
            "audit",
            "export",
            "--out",
            later.to_str().unwrap(),
            "--since",
            cp_file.to_str().unwrap(),
        ],
    ));
    let report = ok(offline(&[
        "audit",
        "verify",
        later.to_str().unwrap(),
        "--vkey",
        &vk,
        "--previous",
        cp_file.to_str().unwrap(),
    ]));
    assert!(report.contains("entries 40..49"), "{report}");
    assert!(
        report.contains("previous checkpoint is a prefix"),
        "{report}"
    );
    let manifest = std::fs::read_to_string(later.join("bundle.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        m["compact_range"].as_array().unwrap().len(),
        2,
        "40 = 32 + 8: two hashes"
    );
    // A forked history (a previous checkpoint the log never signed) is refused.
    let forged = Checkpoint {
        origin: key.name().to_owned(),
        size: 40,
        root: [0; 32],
    };
    let (other_key, _) = certseal_crypto::Ed25519Key::generate().unwrap();
    let forged_note = forged.sign(&other_key).unwrap();
    let e =
        certseal_verify::verify_bundle(&later, &key, Some(&forged_note), |_, _| {}).unwrap_err();
    assert!(matches!(e, VerifyError::Checkpoint(_)), "{e}");
    // With a wrong verifier key nothing verifies.
    let wrong =
        VerifierKey::new(key.name(), certseal_crypto::Signer::public_key(&other_key)).unwrap();
    assert!(certseal_verify::verify_bundle(&out, &wrong, None, |_, _| {}).is_err());
}

#[tokio::test]
async fn after_kill_9_tree_entries_and_checkpoint_agree() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let channel = connect(server.addr).await;
    let mut a = AuditServiceClient::new(channel.clone());
    let key = vkey(&mut a).await;
    // Writers run while checkpoints are sampled; the server is killed mid-stream.
    let mut writers = Vec::new();
    for w in 0..4u32 {
        let ch = channel.clone();
        writers.push(tokio::spawn(async move {
            let mut d = certseal::pb::department_service_client::DepartmentServiceClient::new(ch);
            for i in 0..1000u32 {
                let r = d
                    .register_department(admin(pb::RegisterDepartmentRequest {
                        credit_code: dept_code(w * 1000 + i),
                        name: "部门".into(),
                        region_code: "350200".into(),
                    }))
                    .await;
                if r.is_err() {
                    return i; // the server died
                }
            }
            1000
        }));
    }
    let mut seen = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        seen.push(latest(&mut a, &key).await);
    }
    server.kill9();
    let mut acked = 0;
    for w in writers {
        acked += w.await.unwrap();
    }
    assert!(seen.last().unwrap().0.size > 0);

    let server = ChildServer::spawn(&data);
    let mut a = AuditServiceClient::new(connect(server.addr).await);
    assert_eq!(vkey(&mut a).await, key, "the same log key after restart");
    let (now, _) = latest(&mut a, &key).await;
    assert!(
        now.size >= acked as u64,
        "every acknowledged change is logged"
    );
    // The stored entries end exactly at the checkpoint.
    a.get_entry(admin(pb::GetEntryRequest {
        index: now.size - 1,
    }))
    .await
    .unwrap();
    let e = a
        .get_entry(admin(pb::GetEntryRequest { index: now.size }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Every checkpoint signed before the crash is a prefix of the newest.
    for (cp, _) in &seen {
        if cp.size == 0 {
            continue;
        }
        let c = a
            .get_consistency_proof(admin(pb::GetConsistencyProofRequest {
                from_size: cp.size,
                to_size: now.size,
            }))
            .await
            .unwrap()
            .into_inner();
        let hashes: Vec<_> = c.hashes.iter().map(|h| parse_hash(h).unwrap()).collect();
        verify_consistency(cp.size, now.size, &hashes, &cp.root, &now.root)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", cp.size, now.size));
    }
    // And the whole log, exported, recomputes the checkpoint's root.
    let out = dir.path().join("bundle");
    let o = Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "audit",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--server",
            &server.url(),
        ])
        .args(["--as-department", ADMIN_DEPT, "--as-role", "auditor"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = certseal_verify::verify_bundle(&out, &key, None, |_, _| {}).unwrap();
    assert!(report.checkpoint.size >= now.size);
}

/// Every way to read an entry applies GetEntry's rule: a department reads its own acts, an
/// auditor everything; proofs give others only hashes, and a leaf hash taken from a proof opens
/// nothing the caller may not read.
#[tokio::test]
async fn proofs_do_not_open_entries_the_reading_rule_refuses() {
    use certseal::pb::policy_service_client::PolicyServiceClient;
    use pb::get_inclusion_proof_request::Target;

    let dir = tempfile::tempdir().unwrap();
    let server = start_with_config(
        dir.path(),
        &format!("[policy]\nenforce = true\nadmin_department = \"{ADMIN_DEPT}\"\n"),
    )
    .await;
    let ch = connect(server.addr).await;
    let mut d = certseal::pb::department_service_client::DepartmentServiceClient::new(ch.clone());
    let mut p = PolicyServiceClient::new(ch.clone());
    let (other_admin, verifier, auditor) = (dept_code(1), dept_code(2), dept_code(3));
    for (dept, role) in [
        (&other_admin, pb::Role::Admin),
        (&verifier, pb::Role::Verifier),
        (&auditor, pb::Role::Auditor),
    ] {
        register(&mut d, dept, "某局").await;
        p.set_department_policy(admin(pb::SetDepartmentPolicyRequest {
            department: dept.clone(),
            roles: vec![role as i32],
            ..Default::default()
        }))
        .await
        .unwrap();
    }
    // Entries 0..6 are the registry administrator's acts, entry 6 the other administrator's.
    d.register_department(as_actor(
        &other_admin,
        "admin",
        pb::RegisterDepartmentRequest {
            credit_code: dept_code(4),
            name: "另一局".into(),
            region_code: "350200".into(),
        },
    ))
    .await
    .unwrap();

    let mut a = AuditServiceClient::new(ch);
    // Any caller gets a consistency proof: hashes only, but some of them are leaf hashes.
    let proof = a
        .get_consistency_proof(as_actor(
            &verifier,
            "verifier",
            pb::GetConsistencyProofRequest {
                from_size: 5,
                to_size: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.checkpoint.unwrap().size, 7);
    let by_hash = |h: &[u8]| pb::GetInclusionProofRequest {
        target: Some(Target::LeafHash(h.to_vec())),
        holder: None,
    };
    let mut leaves = Vec::new();
    for h in &proof.hashes {
        match a
            .get_inclusion_proof(as_actor(&auditor, "auditor", by_hash(h)))
            .await
        {
            Ok(r) => leaves.push((r.into_inner().index, h.clone())),
            Err(e) => assert_eq!(e.code(), Code::NotFound, "an interior hash: {e:?}"),
        }
    }
    let indexes: Vec<u64> = leaves.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indexes,
        [4, 5, 6],
        "the proof from 5 to 7 starts with leaves 4, 5 and 6"
    );

    // The verifier with no grants: refused every entry, whichever way it asks; a hash it cannot
    // read and one that is no leaf get the same answer.
    for (index, hash) in &leaves {
        let e = a
            .get_entry(as_actor(
                &verifier,
                "verifier",
                pb::GetEntryRequest { index: *index },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e = a
            .get_inclusion_proof(as_actor(&verifier, "verifier", by_hash(hash)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "entry {index}: {e:?}");
        assert!(
            e.message().contains("only auditors read every entry"),
            "{e:?}"
        );
        let e = a
            .get_inclusion_proof(as_actor(
                &verifier,
                "verifier",
                pb::GetInclusionProofRequest {
                    target: Some(Target::Index(*index)),
                    holder: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let interior = proof.hashes.last().unwrap();
    let e = a
        .get_inclusion_proof(as_actor(&verifier, "verifier", by_hash(interior)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Each administrator reads its own acts, by index and by leaf hash, and not the other's.
    for (dept, own, others) in [(ADMIN_DEPT, 4u64, 6u64), (other_admin.as_str(), 6, 4)] {
        let hash = |i: u64| &leaves.iter().find(|(x, _)| *x == i).unwrap().1;
        let mine = a
            .get_inclusion_proof(as_actor(dept, "admin", by_hash(hash(own))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(mine.index, own);
        assert_eq!(Entry::decode(&mine.entry).unwrap().actor_department, dept);
        a.get_entry(as_actor(dept, "admin", pb::GetEntryRequest { index: own }))
            .await
            .unwrap();
        for e in [
            a.get_entry(as_actor(
                dept,
                "admin",
                pb::GetEntryRequest { index: others },
            ))
            .await
            .unwrap_err(),
            a.get_inclusion_proof(as_actor(dept, "admin", by_hash(hash(others))))
                .await
                .unwrap_err(),
        ] {
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        }
    }
    // The auditor reads everything, and the proofs it gets check.
    let key = vkey(&mut a).await;
    for (index, hash) in &leaves {
        let entry = a
            .get_entry(as_actor(
                &auditor,
                "auditor",
                pb::GetEntryRequest { index: *index },
            ))
            .await
            .unwrap()
            .into_inner()
            .entry;
        let p = a
            .get_inclusion_proof(as_actor(&auditor, "auditor", by_hash(hash)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(p.entry, entry);
        certseal_verify::verify_tlog_proof(&p.tlog_proof, &entry, &key).unwrap();
    }
    server.stop().await.unwrap();
}
