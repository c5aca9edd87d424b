//! `certseal.v1.PolicyService`: the sharing policy and department certificates.

use certseal_core::policy::{DepartmentPolicy, FieldAccess, PolicyContent};
use certseal_registry::{ClientCaSlot, DepartmentCertificateRecord, RegistryError};
use tonic::{Request, Response, Status};

use super::{Caller, Context, convert};
use crate::auth::Authenticator;
use crate::pb;
use crate::pb::policy_service_server::PolicyService;
use crate::status::to_status;

/// The policy service adapter.
#[derive(Debug, Clone)]
pub struct PolicyApi(pub Context);

fn role_names(roles: &[i32], field: &str) -> Result<Vec<String>, Status> {
    roles
        .iter()
        .enumerate()
        .map(|(i, r)| match pb::Role::try_from(*r) {
            Ok(pb::Role::Admin) => Ok("admin".to_owned()),
            Ok(pb::Role::Issuer) => Ok("issuer".to_owned()),
            Ok(pb::Role::Verifier) => Ok("verifier".to_owned()),
            Ok(pb::Role::Auditor) => Ok("auditor".to_owned()),
            Ok(pb::Role::HolderAgent) => Ok("holder_agent".to_owned()),
            Ok(pb::Role::Sync) => Ok("sync".to_owned()),
            Ok(pb::Role::Node) => Ok(certseal_core::NODE_ROLE.to_owned()),
            _ => Err(to_status(RegistryError::invalid(
                format!("{field}[{i}]"),
                "a role: ROLE_ADMIN, ROLE_ISSUER, ROLE_VERIFIER, ROLE_AUDITOR, ROLE_HOLDER_AGENT, ROLE_SYNC or (certificates only) ROLE_NODE",
            ))),
        })
        .collect()
}

fn policy_to_pb(p: DepartmentPolicy) -> pb::DepartmentPolicy {
    pb::DepartmentPolicy {
        department: p.department.to_string(),
        roles: p.roles.iter().map(|r| convert::role(*r) as i32).collect(),
        issue: p
            .issue
            .into_iter()
            .map(|g| pb::IssueGrant {
                type_code: g.type_code.to_string(),
                seal_ids: g.seals.iter().map(ToString::to_string).collect(),
                collect_regions: g.collect_regions.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        read: p
            .read
            .into_iter()
            .map(|g| {
                let (fields, all_fields) = field_access(g.fields);
                pb::ReadGrant {
                    type_code: g.type_code.to_string(),
                    purposes: g.purposes.into_iter().collect(),
                    fields,
                    all_fields,
                }
            })
            .collect(),
        sync: p
            .sync
            .into_iter()
            .map(|g| {
                let (fields, all_fields) = field_access(g.fields);
                pb::SyncGrant {
                    type_code: g.type_code.to_string(),
                    fields,
                    all_fields,
                    apply_issuers: g.apply_issuers.iter().map(ToString::to_string).collect(),
                }
            })
            .collect(),
        revision: p.revision,
        updated_at: Some(convert::timestamp(p.updated_at)),
        updated_by: Some(convert::actor(&p.updated_by)),
    }
}

/// A grant's fields as the proto says them: named, or all.
fn field_access(f: FieldAccess) -> (Vec<String>, bool) {
    match f {
        FieldAccess::All => (Vec::new(), true),
        FieldAccess::Named(n) => (n.into_iter().collect(), false),
    }
}

/// The client CAs to trust, current first, one PEM.
fn ca_bundle(ctx: &Context) -> String {
    ctx.registry
        .client_ca_certificates()
        .iter()
        .map(|c| c.pem())
        .collect()
}

fn certificate_record_to_pb(r: DepartmentCertificateRecord) -> pb::DepartmentCertificateRecord {
    let seconds = |s: i64| prost_types::Timestamp {
        seconds: s,
        nanos: 0,
    };
    let revocation = r.revocation.as_ref();
    pb::DepartmentCertificateRecord {
        serial: r.serial,
        department: r.department.to_string(),
        roles: r
            .roles
            .iter()
            .filter_map(|n| n.parse().ok())
            .map(|role| convert::role(role) as i32)
            .collect(),
        not_before: Some(seconds(r.not_before)),
        not_after: Some(seconds(r.not_after)),
        fingerprint: r.fingerprint,
        issuer_fingerprint: r.issuer_fingerprint,
        issued_at: Some(convert::timestamp(r.issued_at)),
        issued_by: Some(convert::actor(&r.issued_by)),
        revoked_at: revocation.map(|v| convert::timestamp(v.at)),
        revoked_by: revocation.map(|v| convert::actor(&v.by)),
        revocation_reason: revocation.map(|v| v.reason.clone()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn get_department_policy(
        &self,
        request: Request<pb::GetDepartmentPolicyRequest>,
    ) -> Result<Response<pb::DepartmentPolicy>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let p = self
            .0
            .registry
            .department_policy(&actor, &request.get_ref().department)
            .map_err(to_status)?;
        Ok(Response::new(policy_to_pb(p)))
    }

    async fn list_department_policies(
        &self,
        request: Request<pb::ListDepartmentPoliciesRequest>,
    ) -> Result<Response<pb::ListDepartmentPoliciesResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let page = self
            .0
            .registry
            .list_policies(&actor, &self.0.page(r.page_size, r.page_token))
            .map_err(to_status)?;
        Ok(Response::new(pb::ListDepartmentPoliciesResponse {
            policies: page.items.into_iter().map(policy_to_pb).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn set_department_policy(
        &self,
        request: Request<pb::SetDepartmentPolicyRequest>,
    ) -> Result<Response<pb::DepartmentPolicy>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let content = PolicyContent {
            roles: role_names(&r.roles, "roles")?,
            issue: r
                .issue
                .into_iter()
                .map(|g| (g.type_code, g.seal_ids, g.collect_regions))
                .collect(),
            read: r
                .read
                .into_iter()
                .map(|g| (g.type_code, g.purposes, g.fields, g.all_fields))
                .collect(),
            sync: r
                .sync
                .into_iter()
                .map(|g| (g.type_code, g.fields, g.all_fields, g.apply_issuers))
                .collect(),
        };
        let p = self
            .0
            .registry
            .set_department_policy(
                &actor,
                &r.department,
                &content,
                r.expected_revision,
                &r.request_id,
            )
            .await
            .map_err(to_status)?;
        tracing::info!(department = %p.department, revision = p.revision, by = %actor.department, "sharing policy changed");
        Ok(Response::new(policy_to_pb(p)))
    }

    async fn issue_department_certificate(
        &self,
        request: Request<pb::IssueDepartmentCertificateRequest>,
    ) -> Result<Response<pb::DepartmentCertificate>, Status> {
        // Anyone may claim to be the administrator in development mode; a certificate from the
        // persistent client CA would outlive it and work under mutual TLS.
        if self.0.auth == Authenticator::DevMetadata {
            return Err(to_status(RegistryError::FailedPrecondition(
                "department certificates are not issued in development mode (--dev-auth), where callers are not proven: set up mutual TLS offline with `certseal dept-cert bootstrap`, then issue them over TLS".into(),
            )));
        }
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let roles = role_names(&r.roles, "roles")?;
        let days = if r.validity_days == 0 {
            365
        } else {
            r.validity_days
        };
        let cert = self
            .0
            .registry
            .issue_client_certificate(&actor, &r.department, &roles, &r.csr_pem, days)
            .await
            .map_err(to_status)?;
        let serial = certseal_crypto::x509::certificate_serial(&cert.der)
            .map(|s| s.iter().map(|b| format!("{b:02X}")).collect::<String>())
            .unwrap_or_default();
        tracing::info!(department = %r.department, ?roles, %serial, by = %actor.department, "department certificate issued");
        Ok(Response::new(pb::DepartmentCertificate {
            certificate_pem: cert.pem(),
            ca_pem: ca_bundle(&self.0),
            serial,
        }))
    }

    async fn get_client_ca(
        &self,
        request: Request<pb::GetClientCaRequest>,
    ) -> Result<Response<pb::DepartmentCertificate>, Status> {
        let _caller = self.0.admit_checked(&request)?;
        Ok(Response::new(pb::DepartmentCertificate {
            certificate_pem: String::new(),
            ca_pem: ca_bundle(&self.0),
            serial: String::new(),
        }))
    }

    async fn revoke_department_certificate(
        &self,
        request: Request<pb::RevokeDepartmentCertificateRequest>,
    ) -> Result<Response<pb::DepartmentCertificateRecord>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let record = self
            .0
            .registry
            .revoke_client_certificate(&actor, &r.serial, &r.reason, &r.request_id)
            .await
            .map_err(to_status)?;
        tracing::warn!(serial = %record.serial, department = %record.department, by = %actor.department, "department certificate revoked");
        Ok(Response::new(certificate_record_to_pb(record)))
    }

    async fn get_client_crl(
        &self,
        request: Request<pb::GetClientCrlRequest>,
    ) -> Result<Response<pb::ClientCrl>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let slot = match pb::ClientCaSlot::try_from(request.get_ref().ca) {
            Ok(pb::ClientCaSlot::Unspecified | pb::ClientCaSlot::Current) => ClientCaSlot::Current,
            Ok(pb::ClientCaSlot::Previous) => ClientCaSlot::Previous,
            Err(_) => {
                return Err(to_status(RegistryError::invalid(
                    "ca",
                    "CLIENT_CA_SLOT_CURRENT or CLIENT_CA_SLOT_PREVIOUS",
                )));
            }
        };
        let (der, ca) = self
            .0
            .registry
            .client_crl(&actor, slot)
            .map_err(to_status)?;
        Ok(Response::new(pb::ClientCrl {
            crl_pem: certseal_crypto::x509::crl_pem(&der),
            ca_pem: ca.pem(),
        }))
    }
}
