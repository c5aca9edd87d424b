//! Request IDs (AIP-155) on every change a client may retry: a retry returns the first answer
//! and changes nothing, a reused ID with another request is refused, no ID behaves as before.

use std::net::SocketAddr;

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::policy_service_client::PolicyServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use tonic::Code;

use crate::licences::{Issuer, fields, issuer, request};
use crate::util::*;

async fn log_size(addr: SocketAddr) -> u64 {
    AuditServiceClient::new(connect(addr).await)
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size
}

fn as_issuer<T>(i: &Issuer, m: T) -> tonic::Request<T> {
    as_actor(&i.dept, "issuer", m)
}

async fn issue(addr: SocketAddr, i: &Issuer, key: &str) -> pb::Licence {
    LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_issuer(i, request(i, key)))
        .await
        .unwrap()
        .into_inner()
}

fn amend(licence_id: &str, name: &str, request_id: &str) -> pb::AmendLicenceRequest {
    pb::AmendLicenceRequest {
        licence_id: licence_id.into(),
        fields: fields(name),
        note: "new name".into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn renew(licence_id: &str, request_id: &str) -> pb::RenewLicenceRequest {
    pb::RenewLicenceRequest {
        licence_id: licence_id.into(),
        note: "renewed".into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

const R1: &str = "0190c6a8-7b2e-7c3d-9f00-000000000001";
const R2: &str = "0190c6a8-7b2e-7c3d-9f00-000000000002";
const R3: &str = "0190c6a8-7b2e-7c3d-9f00-000000000003";
const R4: &str = "0190c6a8-7b2e-7c3d-9f00-000000000004";

#[tokio::test]
async fn amend_and_renew_retries_return_the_first_licence() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let i = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let mut c = LicenceServiceClient::new(server.channel().await);
    let l1 = issue(addr, &i, "k-1").await;

    let before = log_size(addr).await;
    let l2 = c
        .amend_licence(as_issuer(&i, amend(&l1.licence_id, "李四小吃店", R1)))
        .await
        .unwrap()
        .into_inner();
    // The new licence and the superseded old one: two entries.
    let after = log_size(addr).await;
    assert_eq!(after, before + 2);
    for _ in 0..2 {
        let again = c
            .amend_licence(as_issuer(&i, amend(&l1.licence_id, "李四小吃店", R1)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            again, l2,
            "the same answer: same ID, same document, same state"
        );
    }
    assert_eq!(log_size(addr).await, after, "a retry logs nothing");

    let l3 = c
        .renew_licence(as_issuer(&i, renew(&l2.licence_id, R2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l3.prev, l2.licence_id);
    let after = log_size(addr).await;
    // Even after the renewed licence changed state, a retry answers what the renewal made.
    c.suspend_licence(as_issuer(
        &i,
        pb::LicenceTransitionRequest {
            licence_id: l3.licence_id.clone(),
            note: "check".into(),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    let suspended = log_size(addr).await;
    assert_eq!(suspended, after + 1);
    let again = c
        .renew_licence(as_issuer(&i, renew(&l2.licence_id, R2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, l3);
    assert_eq!(log_size(addr).await, suspended);

    // The same ID with another request (another licence, other fields, another kind of
    // change) is refused and changes nothing.
    let l4 = issue(addr, &i, "k-2").await;
    let before = log_size(addr).await;
    for refused in [
        c.amend_licence(as_issuer(&i, amend(&l4.licence_id, "李四小吃店", R1)))
            .await
            .unwrap_err(),
        c.amend_licence(as_issuer(&i, amend(&l1.licence_id, "王五小吃店", R1)))
            .await
            .unwrap_err(),
        c.renew_licence(as_issuer(&i, renew(&l1.licence_id, R1)))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
        assert!(refused.message().contains(R1), "{}", refused.message());
    }
    assert_eq!(log_size(addr).await, before);
    let l4_now = c
        .get_licence(as_issuer(
            &i,
            pb::GetLicenceRequest {
                licence_id: l4.licence_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l4_now.status(), pb::LicenceStatus::Active);

    // Without a request ID, a retry is a new request, as before: the old licence is
    // superseded, so it is refused.
    let e = c
        .amend_licence(as_issuer(&i, amend(&l1.licence_id, "李四小吃店", "")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Request IDs belong to the calling department: another one may use the same ID.
    let j = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    let m1 = issue(addr, &j, "k-1").await;
    let m2 = c
        .amend_licence(as_issuer(&j, amend(&m1.licence_id, "李四小吃店", R1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m2.prev, m1.licence_id);

    // The ID is bounded: its length and characters.
    for bad in ["a".repeat(65), "not a uuid".into(), "文字".into()] {
        let e = c
            .amend_licence(as_issuer(&i, amend(&l4.licence_id, "李四小吃店", &bad)))
            .await
            .unwrap_err();
        assert_eq!(expect_code(e, Code::InvalidArgument)[0].0, "request_id");
    }
    let e = c
        .amend_licence(as_issuer(
            &i,
            amend(&l4.licence_id, "李四小吃店", &"a".repeat(64)),
        ))
        .await;
    assert!(e.is_ok(), "{e:?}");
}

#[tokio::test]
async fn status_seal_and_policy_retries_change_nothing() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let i = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let mut c = LicenceServiceClient::new(server.channel().await);
    let l = issue(addr, &i, "k-1").await;
    let transition = |request_id: &str| pb::LicenceTransitionRequest {
        licence_id: l.licence_id.clone(),
        note: "inspection".into(),
        request_id: request_id.into(),
    };

    // Suspend, then a retry: the same suspended state, no second entry, no error.
    let suspended = c
        .suspend_licence(as_issuer(&i, transition(R1)))
        .await
        .unwrap()
        .into_inner();
    let size = log_size(addr).await;
    let again = c
        .suspend_licence(as_issuer(&i, transition(R1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, suspended);
    assert_eq!(log_size(addr).await, size);
    // Without an ID, the second suspension is refused as before.
    let e = c
        .suspend_licence(as_issuer(&i, transition("")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // The same ID for another kind of change is refused.
    let e = c
        .reinstate_licence(as_issuer(&i, transition(R1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(log_size(addr).await, size);

    let revoke = |reason: pb::LicenceRevocationReason| pb::RevokeLicenceRequest {
        licence_id: l.licence_id.clone(),
        reason: reason as i32,
        note: "closed".into(),
        request_id: R2.into(),
    };
    let revoked = c
        .revoke_licence(as_issuer(
            &i,
            revoke(pb::LicenceRevocationReason::Withdrawn),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.status(), pb::LicenceStatus::Revoked);
    let size = log_size(addr).await;
    let again = c
        .revoke_licence(as_issuer(
            &i,
            revoke(pb::LicenceRevocationReason::Withdrawn),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, revoked);
    let e = c
        .revoke_licence(as_issuer(
            &i,
            revoke(pb::LicenceRevocationReason::Cancelled),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(log_size(addr).await, size);

    // A seal change.
    let mut s = SealServiceClient::new(server.channel().await);
    let seal_change = |request_id: &str| pb::SealTransitionRequest {
        seal_id: i.seal_id.clone(),
        note: "lost".into(),
        request_id: request_id.into(),
    };
    let seal = s
        .suspend_seal(admin(seal_change(R1)))
        .await
        .unwrap()
        .into_inner();
    let size = log_size(addr).await;
    let again = s
        .suspend_seal(admin(seal_change(R1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, seal);
    assert_eq!(log_size(addr).await, size);
    let e = s.reinstate_seal(admin(seal_change(R1))).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(log_size(addr).await, size);

    // A seal registration: the retry names the seal registered first, not a second one.
    let register = pb::RegisterSealRequest {
        department: i.dept.clone(),
        name: "厦门市市场监督管理局合同专用章".into(),
        r#type: pb::SealType::Contract as i32,
        image: png(3),
        algorithm: pb::SealAlgorithm::Ed25519 as i32,
        request_id: R3.into(),
        ..Default::default()
    };
    let first = s
        .register_seal(admin(register.clone()))
        .await
        .unwrap()
        .into_inner();
    let size = log_size(addr).await;
    let again = s
        .register_seal(admin(register.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(log_size(addr).await, size);

    // A policy change. The administrator used R1 for the seal above: its IDs are its own.
    let mut p = PolicyServiceClient::new(server.channel().await);
    let policy = |roles: Vec<pb::Role>| pb::SetDepartmentPolicyRequest {
        department: i.dept.clone(),
        roles: roles.into_iter().map(|r| r as i32).collect(),
        request_id: R4.into(),
        ..Default::default()
    };
    let set = p
        .set_department_policy(admin(policy(vec![pb::Role::Issuer])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.revision, 1);
    let size = log_size(addr).await;
    let again = p
        .set_department_policy(admin(policy(vec![pb::Role::Issuer])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, set, "the same revision, not a second one");
    let e = p
        .set_department_policy(admin(policy(vec![pb::Role::Verifier])))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(log_size(addr).await, size);
    let now = p
        .get_department_policy(admin(pb::GetDepartmentPolicyRequest {
            department: i.dept.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now, set, "the refused request changed nothing");
}

#[tokio::test]
async fn remembered_outcomes_survive_a_restart() {
    let mut server = TestServer::start().await;
    let i = issuer(server.addr(), 1, pb::SealAlgorithm::Ed25519).await;
    let l1 = issue(server.addr(), &i, "k-1").await;
    let l2 = LicenceServiceClient::new(server.channel().await)
        .amend_licence(as_issuer(&i, amend(&l1.licence_id, "李四小吃店", R1)))
        .await
        .unwrap()
        .into_inner();
    let size = log_size(server.addr()).await;
    server.restart().await;
    let mut c = LicenceServiceClient::new(server.channel().await);
    let again = c
        .amend_licence(as_issuer(&i, amend(&l1.licence_id, "李四小吃店", R1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, l2);
    assert_eq!(log_size(server.addr()).await, size);
    let e = c
        .amend_licence(as_issuer(&i, amend(&l1.licence_id, "王五小吃店", R1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    server.stop().await;
}

/// A client that timed out and retried at once, several times: the attempts race through the
/// writer (some in one group), and all get the one licence the first made.
#[tokio::test]
async fn racing_retries_make_one_change() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let i = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let l1 = issue(addr, &i, "k-1").await;
    let before = log_size(addr).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let req = as_issuer(&i, amend(&l1.licence_id, "李四小吃店", R1));
        let channel = server.channel().await;
        tasks.spawn(async move {
            LicenceServiceClient::new(channel)
                .amend_licence(req)
                .await
                .map(|r| r.into_inner())
        });
    }
    let answers: Vec<pb::Licence> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
    assert_eq!(answers[0].prev, l1.licence_id);
    assert_eq!(log_size(addr).await, before + 2, "one amendment");
}
