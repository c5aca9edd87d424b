use certseal::pb;
use certseal::pb::template_service_client::TemplateServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::util::*;

async fn setup() -> (TestServer, TemplateServiceClient<Channel>, String) {
    let s = TestServer::start().await;
    let mut d = s.departments().await;
    let dept = dept_code(1);
    register(&mut d, &dept, "厦门市市场监督管理局").await;
    let t = s.templates().await;
    (s, t, format!("{dept}001"))
}

async fn create(
    t: &mut TemplateServiceClient<Channel>,
    type_code: &str,
    base_version: u32,
    name: &str,
) -> Result<pb::Template, tonic::Status> {
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: type_code.into(),
        base_version,
        content: Some(content(name)),
    }))
    .await
    .map(|r| r.into_inner())
}

async fn get(
    t: &mut TemplateServiceClient<Channel>,
    type_code: &str,
    version: u32,
) -> Result<pb::Template, tonic::Status> {
    t.get_template(admin(pb::GetTemplateRequest {
        type_code: type_code.into(),
        version,
    }))
    .await
    .map(|r| r.into_inner())
}

async fn publish(
    t: &mut TemplateServiceClient<Channel>,
    type_code: &str,
    version: u32,
) -> Result<pb::Template, tonic::Status> {
    t.publish_template(admin(pb::PublishTemplateRequest {
        type_code: type_code.into(),
        version,
    }))
    .await
    .map(|r| r.into_inner())
}

async fn list(
    t: &mut TemplateServiceClient<Channel>,
    req: pb::ListTemplatesRequest,
) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut req = req;
    loop {
        let r = t
            .list_templates(admin(req.clone()))
            .await
            .unwrap()
            .into_inner();
        out.extend(r.templates.into_iter().map(|t| (t.type_code, t.version)));
        if r.next_page_token.is_empty() {
            return out;
        }
        req.page_token = r.next_page_token;
    }
}

#[tokio::test]
async fn create_publish_get_list() {
    let (s, mut t, code) = setup().await;
    let draft = create(&mut t, &code, 0, "食品经营许可证").await.unwrap();
    assert_eq!(draft.version, 1);
    assert_eq!(draft.status(), pb::TemplateStatus::Draft);
    assert_eq!(draft.defining_department, dept_code(1));
    let fields = draft.content.as_ref().unwrap().fields.clone();
    assert_eq!(fields[1].max_length, 0, "non-string fields keep no length");
    assert_eq!(
        get(&mut t, &code, 0).await.unwrap_err().code(),
        Code::NotFound,
        "a draft is not the latest published version"
    );

    let published = publish(&mut t, &code, 1).await.unwrap();
    assert_eq!(published.status(), pb::TemplateStatus::Published);
    assert!(published.published_at.is_some());
    let latest = get(&mut t, &code, 0).await.unwrap();
    assert_eq!(latest.version, 1);
    assert_eq!(latest.content.unwrap().name, "食品经营许可证");

    // A change is a new version; the latest published stays v1 until v2 is published.
    let v2 = create(&mut t, &code, 1, "食品经营许可证（2026版）")
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(get(&mut t, &code, 0).await.unwrap().version, 1);
    let updated = t
        .update_template_draft(admin(pb::UpdateTemplateDraftRequest {
            type_code: code.clone(),
            version: 2,
            content: Some(content("食品经营许可证（2027版）")),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.content.unwrap().name, "食品经营许可证（2027版）");
    publish(&mut t, &code, 2).await.unwrap();
    assert_eq!(get(&mut t, &code, 0).await.unwrap().version, 2);
    let dep = t
        .deprecate_template(admin(pb::DeprecateTemplateRequest {
            type_code: code.clone(),
            version: 1,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dep.status(), pb::TemplateStatus::Deprecated);
    // Deprecating the newest falls back to the newest still published.
    t.deprecate_template(admin(pb::DeprecateTemplateRequest {
        type_code: code.clone(),
        version: 2,
    }))
    .await
    .unwrap();
    assert_eq!(
        get(&mut t, &code, 0).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        get(&mut t, &code, 1).await.unwrap().status(),
        pb::TemplateStatus::Deprecated
    );

    // A second type, an approval, from another department.
    let mut d = s.departments().await;
    register(&mut d, &dept_code(2), "厦门市卫生健康委员会").await;
    let other = format!("{}007", dept_code(2));
    let mut approval = content("批文");
    approval.category = pb::TemplateCategory::Approval as i32;
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: other.clone(),
        base_version: 0,
        content: Some(approval),
    }))
    .await
    .unwrap();

    let all = list(
        &mut t,
        pb::ListTemplatesRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        all,
        [(code.clone(), 1), (code.clone(), 2), (other.clone(), 1)]
    );
    let approvals = list(
        &mut t,
        pb::ListTemplatesRequest {
            category: pb::TemplateCategory::Approval as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(approvals, [(other.clone(), 1)]);
    let drafts = list(
        &mut t,
        pb::ListTemplatesRequest {
            status: pb::TemplateStatus::Draft as i32,
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(drafts, [(other.clone(), 1)]);
    let of_first = list(
        &mut t,
        pb::ListTemplatesRequest {
            defining_department: dept_code(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(of_first, [(code.clone(), 1), (code, 2)]);
    s.stop().await;
}

#[tokio::test]
async fn bad_schemas_name_every_field() {
    let (s, mut t, code) = setup().await;
    let mut c = content("x");
    let dup = c.fields[0].clone();
    c.fields.push(dup);
    c.fields.push(pb::FieldSpec {
        name: "plate".into(),
        label: "车牌".into(),
        r#type: pb::FieldType::String as i32,
        pattern: "[A-Z(".into(),
        ..Default::default()
    });
    c.fields.push(pb::FieldSpec {
        name: "kind".into(),
        label: "类别".into(),
        r#type: pb::FieldType::Enum as i32,
        ..Default::default()
    });
    c.fields.push(pb::FieldSpec {
        name: "mystery".into(),
        label: "?".into(),
        r#type: 0,
        ..Default::default()
    });
    let e = t
        .create_template_draft(admin(pb::CreateTemplateDraftRequest {
            type_code: code.clone(),
            base_version: 0,
            content: Some(c),
        }))
        .await
        .unwrap_err();
    let fields: Vec<String> = expect_code(e, Code::InvalidArgument)
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(
        fields,
        ["content.fields[5].type"],
        "unreadable types are reported first"
    );

    let mut c = content("x");
    let dup = c.fields[0].clone();
    c.fields.push(dup);
    c.fields.push(pb::FieldSpec {
        name: "plate".into(),
        label: "车牌".into(),
        r#type: pb::FieldType::String as i32,
        pattern: "[A-Z(".into(),
        ..Default::default()
    });
    c.fields.push(pb::FieldSpec {
        name: "kind".into(),
        label: "类别".into(),
        r#type: pb::FieldType::Enum as i32,
        ..Default::default()
    });
    c.name = "名".repeat(5000);
    let e = t
        .create_template_draft(admin(pb::CreateTemplateDraftRequest {
            type_code: "11100000000013338W03".into(),
            base_version: 0,
            content: Some(c),
        }))
        .await
        .unwrap_err();
    let v = expect_code(e, Code::InvalidArgument);
    let fields: Vec<&str> = v.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        fields,
        [
            "type_code",
            "content.name",
            "content.fields[2].name",
            "content.fields[3].pattern",
            "content.fields[4].enum_values"
        ],
        "{v:?}"
    );

    let e = t
        .create_template_draft(admin(pb::CreateTemplateDraftRequest {
            type_code: code.clone(),
            base_version: 0,
            content: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(expect_code(e, Code::InvalidArgument)[0].0, "content");

    let listed = list(&mut t, pb::ListTemplatesRequest::default()).await;
    assert!(listed.is_empty(), "no bad request stored anything");
    s.stop().await;
}

#[tokio::test]
async fn lifecycle_violations_change_nothing() {
    let (s, mut t, code) = setup().await;
    create(&mut t, &code, 0, "v1").await.unwrap();
    // Only one draft at a time, and the base must be the latest version.
    assert_eq!(
        create(&mut t, &code, 1, "v2").await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    publish(&mut t, &code, 1).await.unwrap();
    let before = get(&mut t, &code, 1).await.unwrap();

    assert_eq!(
        create(&mut t, &code, 0, "again").await.unwrap_err().code(),
        Code::AlreadyExists
    );
    assert_eq!(
        create(&mut t, &code, 7, "skip").await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        publish(&mut t, &code, 1).await.unwrap_err().code(),
        Code::FailedPrecondition,
        "publishing a published template"
    );
    let e = t
        .update_template_draft(admin(pb::UpdateTemplateDraftRequest {
            type_code: code.clone(),
            version: 1,
            content: Some(content("edited")),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "editing a published template"
    );
    assert_eq!(
        publish(&mut t, &code, 9).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        publish(&mut t, &code, 0).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let e = t
        .deprecate_template(admin(pb::DeprecateTemplateRequest {
            type_code: code.clone(),
            version: 2,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let after = get(&mut t, &code, 1).await.unwrap();
    assert_eq!(before, after, "the published version is untouched");
    assert_eq!(
        list(&mut t, pb::ListTemplatesRequest::default())
            .await
            .len(),
        1
    );

    // An unregistered or deactivated defining department.
    let stranger = format!("{}001", dept_code(5));
    assert_eq!(
        create(&mut t, &stranger, 0, "x").await.unwrap_err().code(),
        Code::NotFound
    );
    let mut d = s.departments().await;
    d.deactivate_department(admin(pb::DeactivateDepartmentRequest {
        credit_code: dept_code(1),
    }))
    .await
    .unwrap();
    assert_eq!(
        create(&mut t, &code, 1, "v2").await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    s.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let (s, mut t, code) = setup().await;
    let mut c = content("big");
    c.fields[0].label = "x".repeat(5 << 20);
    let e = t
        .create_template_draft(admin(pb::CreateTemplateDraftRequest {
            type_code: code.clone(),
            base_version: 0,
            content: Some(c),
        }))
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    assert!(
        list(&mut t, pb::ListTemplatesRequest::default())
            .await
            .is_empty()
    );
    s.stop().await;
}
