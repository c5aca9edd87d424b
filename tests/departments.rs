use certseal::pb;
use tonic::Code;

use crate::util::*;

#[tokio::test]
async fn register_get_list_rename_deactivate() {
    let s = TestServer::start().await;
    let mut c = s.departments().await;
    let code = dept_code(1);
    let d = register(&mut c, &code, "厦门市市场监督管理局").await;
    assert_eq!(d.credit_code, code);
    assert_eq!(d.status(), pb::DepartmentStatus::Active);
    let rec = d.record.unwrap();
    let by = rec.created_by.unwrap();
    assert_eq!(by.department, ADMIN_DEPT, "the actor is recorded");
    assert_eq!(by.role(), pb::Role::Admin);

    let got = c
        .get_department(admin(pb::GetDepartmentRequest {
            credit_code: code.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "厦门市市场监督管理局");
    assert_eq!(got.region_code, "350200");

    let renamed = c
        .update_department_name(admin(pb::UpdateDepartmentNameRequest {
            credit_code: code.clone(),
            name: "  厦门市市场监管局 ".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "厦门市市场监管局", "names are trimmed");

    let off = c
        .deactivate_department(admin(pb::DeactivateDepartmentRequest {
            credit_code: code.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(off.status(), pb::DepartmentStatus::Deactivated);
    let got = c
        .get_department(admin(pb::GetDepartmentRequest { credit_code: code }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status(), pb::DepartmentStatus::Deactivated);
    assert_eq!(got.name, "厦门市市场监管局");
    s.stop().await;
}

#[tokio::test]
async fn list_pages_through_every_department_in_order() {
    let s = TestServer::start().await;
    let mut c = s.departments().await;
    let mut codes: Vec<String> = (0..7).map(dept_code).collect();
    for code in codes.iter().rev() {
        register(&mut c, code, "部门").await;
    }
    codes.sort();
    for size in [1, 2, 3, 7, 0] {
        let listed: Vec<String> = all_departments(&mut c, size)
            .await
            .into_iter()
            .map(|d| d.credit_code)
            .collect();
        assert_eq!(listed, codes, "page size {size}");
    }
    let first = c
        .list_departments(admin(pb::ListDepartmentsRequest {
            page_size: 7,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.departments.len(), 7);
    assert!(
        first.next_page_token.is_empty(),
        "an exact last page has no token"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_precisely_and_changes_nothing() {
    let s = TestServer::start().await;
    let mut c = s.departments().await;
    let code = dept_code(1);
    register(&mut c, &code, "原名").await;

    let reg = |credit_code: &str, name: &str, region: &str| {
        admin(pb::RegisterDepartmentRequest {
            credit_code: credit_code.into(),
            name: name.into(),
            region_code: region.into(),
        })
    };
    // Wrong check character.
    let mut wrong = code.clone();
    wrong.pop();
    wrong.push(if code.ends_with('0') { '1' } else { '0' });
    let e = c
        .register_department(reg(&wrong, "x", "350200"))
        .await
        .unwrap_err();
    let v = expect_code(e, Code::InvalidArgument);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, "credit_code");
    assert!(v[0].1.contains("check character"), "{v:?}");

    // Every field wrong at once: each is named.
    let e = c
        .register_department(reg("91440300I83341734R", "", "99000"))
        .await
        .unwrap_err();
    let fields: Vec<String> = expect_code(e, Code::InvalidArgument)
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(fields, ["credit_code", "name", "region_code"]);

    // Oversize name.
    let e = c
        .register_department(reg(&dept_code(2), &"名".repeat(201), "350200"))
        .await
        .unwrap_err();
    assert_eq!(expect_code(e, Code::InvalidArgument)[0].0, "name");

    // Duplicate.
    let e = c
        .register_department(reg(&code, "另一个名字", "350200"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // Unknown.
    let e = c
        .get_department(admin(pb::GetDepartmentRequest {
            credit_code: dept_code(3),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .update_department_name(admin(pb::UpdateDepartmentNameRequest {
            credit_code: dept_code(3),
            name: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Bad page token.
    let e = c
        .list_departments(admin(pb::ListDepartmentsRequest {
            page_size: 1,
            page_token: "zz".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(expect_code(e, Code::InvalidArgument)[0].0, "page_token");

    // Deactivated: no rename, no second deactivation.
    c.deactivate_department(admin(pb::DeactivateDepartmentRequest {
        credit_code: code.clone(),
    }))
    .await
    .unwrap();
    let e = c
        .update_department_name(admin(pb::UpdateDepartmentNameRequest {
            credit_code: code.clone(),
            name: "新名".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .deactivate_department(admin(pb::DeactivateDepartmentRequest {
            credit_code: code.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Nothing above changed the stored state.
    let all = all_departments(&mut c, 0).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "原名");
    assert_eq!(all[0].status(), pb::DepartmentStatus::Deactivated);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_code_admit_exactly_one() {
    let s = TestServer::start().await;
    let code = dept_code(9);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut c = s.departments().await;
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            c.register_department(admin(pb::RegisterDepartmentRequest {
                credit_code: code,
                name: format!("名{i}"),
                region_code: "350200".into(),
            }))
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::AlreadyExists),
        }
    }
    assert_eq!(ok, 1);
    s.stop().await;
}
