use certseal::pb;
use certseal::pb::department_service_client::DepartmentServiceClient;
use certseal::pb::template_service_client::TemplateServiceClient;

use crate::util::*;

#[tokio::test]
async fn data_is_read_back_after_a_graceful_restart() {
    let mut s = TestServer::start().await;
    let mut d = s.departments().await;
    register(&mut d, &dept_code(1), "厦门市市场监督管理局").await;
    let code = format!("{}001", dept_code(1));
    let mut t = s.templates().await;
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: code.clone(),
        base_version: 0,
        content: Some(content("食品经营许可证")),
    }))
    .await
    .unwrap();
    let published = t
        .publish_template(admin(pb::PublishTemplateRequest {
            type_code: code.clone(),
            version: 1,
        }))
        .await
        .unwrap()
        .into_inner();

    s.restart().await;

    let mut d = s.departments().await;
    let all = all_departments(&mut d, 0).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "厦门市市场监督管理局");
    let mut t = s.templates().await;
    let got = t
        .get_template(admin(pb::GetTemplateRequest {
            type_code: code,
            version: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, published);
    s.stop().await;
}

#[tokio::test]
async fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let channel = connect(server.addr).await;
    // Concurrent writers, so acknowledgements come from shared group commits.
    let mut tasks = Vec::new();
    for n in 0..64 {
        let mut d = DepartmentServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            register(&mut d, &dept_code(n), &format!("部门{n}")).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut t = TemplateServiceClient::new(channel.clone());
    let code = format!("{}001", dept_code(0));
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: code.clone(),
        base_version: 0,
        content: Some(content("许可证")),
    }))
    .await
    .unwrap();
    server.kill9();

    let server = ChildServer::spawn(&data);
    let channel = connect(server.addr).await;
    let mut d = DepartmentServiceClient::new(channel.clone());
    let all = all_departments(&mut d, 10).await;
    assert_eq!(all.len(), 64);
    let mut t = TemplateServiceClient::new(channel);
    let draft = t
        .get_template(admin(pb::GetTemplateRequest {
            type_code: code,
            version: 1,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(draft.status(), pb::TemplateStatus::Draft);
    // The restarted server keeps going where the old one stopped.
    register(&mut d, &dept_code(64), "新部门").await;
}

/// A data folder restored without its key-encryption key, or with one others may read, is
/// refused with what to do, and no new, useless key is left beside it.
#[test]
fn a_folder_without_its_kek_is_refused_with_the_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    // Up for real (its port alone could be another test's, taken in between).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(data.with_extension("log"))
        .unwrap_or_default()
        .contains("certseal serving")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(server);
    let kek = data.join("keys").join("kek");
    let serve = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args([
                "serve",
                "--dev-auth",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .unwrap()
    };
    {
        // The folders are private, and a KEK others may read is refused with the fix.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "the data folder");
        assert_eq!(mode(&data.join("keys")), 0o700, "the keys folder");
        assert_eq!(mode(&kek), 0o600, "the KEK");
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o640)).unwrap();
        let out = serve();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("mode 0640") && err.contains(&format!("chmod 600 {}", kek.display())),
            "{err}"
        );
    }
    std::fs::remove_file(&kek).unwrap();
    let out = serve();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key-encryption key") && err.contains("is missing") && err.contains("restore"),
        "{err}"
    );
    assert!(!kek.exists(), "no new key was made");
}
