//! `certseal.v1.HolderService`: use codes and the holder's record of checks, for holder agents.

use certseal_core::{Audience, BasisKind, UseCode};
use certseal_registry::{HolderRef, NewUseCode, RegistryError};
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::licence::holder_kind_from_pb;
use super::verification::{indication_to_pb, sub_to_pb};
use super::{Caller, Context};
use crate::pb;
use crate::pb::holder_service_server::HolderService;
use crate::status::to_status;

/// The holder service adapter.
#[derive(Debug, Clone)]
pub struct HolderApi(pub Context);

/// The holder a request names.
pub(crate) fn holder_from_pb(h: Option<&pb::HolderRef>) -> Result<HolderRef, RegistryError> {
    let h =
        h.ok_or_else(|| RegistryError::invalid("holder", "name the holder the agent acts for"))?;
    HolderRef::new(holder_kind_from_pb("holder.kind", h.kind)?, &h.id)
}

fn audience_to_pb(a: &Audience) -> pb::UseCodeAudience {
    pb::UseCodeAudience {
        audience: Some(match a {
            Audience::Department(d) => pb::use_code_audience::Audience::Department(d.to_string()),
            Audience::Anyone => pb::use_code_audience::Audience::Anyone(true),
        }),
    }
}

pub(crate) fn basis_to_pb(b: Option<BasisKind>) -> pb::CheckBasis {
    match b {
        None => pb::CheckBasis::Unspecified,
        Some(BasisKind::Issuer) => pb::CheckBasis::Issuer,
        Some(BasisKind::Grant) => pb::CheckBasis::Grant,
        Some(BasisKind::UseCode) => pb::CheckBasis::UseCode,
        Some(BasisKind::Public) => pb::CheckBasis::Public,
    }
}

fn info_to_pb(c: &UseCode, now: certseal_core::Timestamp) -> pb::UseCodeInfo {
    pb::UseCodeInfo {
        code_id: c.id.to_string(),
        licence_id: c.licence.to_string(),
        purposes: c.purposes.iter().cloned().collect(),
        fields: c.fields.iter().cloned().collect(),
        audience: Some(audience_to_pb(&c.audience)),
        created_at: Some(timestamp(c.created_at)),
        not_after: Some(timestamp(c.not_after)),
        uses: c.uses,
        used: c.used,
        revoked_at: c.revoked_at.map(timestamp),
        agent: c.agent.to_string(),
        live: c.live(now),
    }
}

#[tonic::async_trait]
impl HolderService for HolderApi {
    async fn create_use_code(
        &self,
        request: Request<pb::CreateUseCodeRequest>,
    ) -> Result<Response<pb::CreateUseCodeResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let holder = holder_from_pb(r.holder.as_ref()).map_err(to_status)?;
        let (audience, anyone) = match r.audience.and_then(|a| a.audience) {
            Some(pb::use_code_audience::Audience::Department(d)) => (Some(d), false),
            Some(pb::use_code_audience::Audience::Anyone(true)) => (None, true),
            _ => (None, false),
        };
        let created = self
            .0
            .registry
            .create_use_code(
                &actor,
                &holder,
                &NewUseCode {
                    licence_id: r.licence_id,
                    purposes: r.purposes,
                    fields: r.fields,
                    audience,
                    anyone,
                    validity_seconds: r.validity_seconds.into(),
                    uses: r.uses,
                },
            )
            .await
            .map_err(to_status)?;
        let now = self.0.registry.clock().now();
        Ok(Response::new(pb::CreateUseCodeResponse {
            code: created.code.grouped(),
            qr: created.qr,
            info: Some(info_to_pb(&created.info, now)),
            log_index: created.log_index,
        }))
    }

    async fn revoke_use_code(
        &self,
        request: Request<pb::RevokeUseCodeRequest>,
    ) -> Result<Response<pb::UseCodeInfo>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let holder = holder_from_pb(r.holder.as_ref()).map_err(to_status)?;
        let code = self
            .0
            .registry
            .revoke_use_code(&actor, &holder, &r.code_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(info_to_pb(
            &code,
            self.0.registry.clock().now(),
        )))
    }

    async fn list_use_codes(
        &self,
        request: Request<pb::ListUseCodesRequest>,
    ) -> Result<Response<pb::ListUseCodesResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let holder = holder_from_pb(r.holder.as_ref()).map_err(to_status)?;
        let page = self
            .0
            .registry
            .list_use_codes(&actor, &holder, &self.0.page(r.page_size, r.page_token))
            .await
            .map_err(to_status)?;
        let now = self.0.registry.clock().now();
        Ok(Response::new(pb::ListUseCodesResponse {
            codes: page.items.iter().map(|c| info_to_pb(c, now)).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn list_usage(
        &self,
        request: Request<pb::ListUsageRequest>,
    ) -> Result<Response<pb::ListUsageResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let holder = holder_from_pb(r.holder.as_ref()).map_err(to_status)?;
        let page = self
            .0
            .registry
            .list_usage(&actor, &holder, &self.0.page(r.page_size, r.page_token))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListUsageResponse {
            usage: page
                .items
                .into_iter()
                .map(|u| {
                    let basis = u.receipt.basis.as_ref();
                    pb::UsageRecord {
                        licence_id: u.receipt.licence.clone(),
                        checked_at: Some(timestamp(u.receipt.checked_at)),
                        department: u.receipt.verifier.to_string(),
                        department_name: u.department_name.unwrap_or_default(),
                        purpose: Some(pb::Purpose {
                            code: u.receipt.purpose.code.clone(),
                            text: u.receipt.purpose.text.clone(),
                        }),
                        basis: basis_to_pb(basis.map(|b| b.kind)) as i32,
                        use_code_id: basis.and_then(|b| b.use_code.clone()).unwrap_or_default(),
                        indication: indication_to_pb(u.receipt.result) as i32,
                        sub_indication: sub_to_pb(u.receipt.sub) as i32,
                        receipt_id: u.receipt.id.clone(),
                        receipt: u.signed,
                        log_index: u.log_index,
                    }
                })
                .collect(),
            next_page_token: page.next_token,
        }))
    }
}
