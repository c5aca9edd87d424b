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
