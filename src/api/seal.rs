//! `certseal.v1.SealService`.

use super::Caller;
use certseal_core::{
    CertificateSource, ImageFormat, RevocationReason, Seal, SealAction, SealAlgorithm, SealStatus,
    SealType, Timestamp, Usability,
};
use certseal_crypto::Certificate;
use certseal_registry::{CertificateRequest, NewSeal, RegistryError, SealFilter};
use tonic::{Request, Response, Status};

use super::Context;
use super::convert::{self, optional_time, timestamp};
use crate::pb;
use crate::pb::seal_service_server::SealService;
use crate::status::to_status;

/// The seal service adapter.
#[derive(Debug, Clone)]
pub struct SealApi(pub Context);

pub(crate) fn seal_status_to_pb(s: SealStatus) -> pb::SealStatus {
    match s {
        SealStatus::Pending => pb::SealStatus::Pending,
        SealStatus::Active => pb::SealStatus::Active,
        SealStatus::Suspended => pb::SealStatus::Suspended,
        SealStatus::Revoked => pb::SealStatus::Revoked,
    }
}

fn seal_type_to_pb(t: SealType) -> pb::SealType {
    match t {
        SealType::Official => pb::SealType::Official,
        SealType::SpecialPurpose => pb::SealType::SpecialPurpose,
        SealType::Contract => pb::SealType::Contract,
        SealType::Finance => pb::SealType::Finance,
        SealType::PersonalName => pb::SealType::PersonalName,
    }
}

fn seal_type_from_pb(v: i32) -> Result<SealType, RegistryError> {
    match pb::SealType::try_from(v) {
        Ok(pb::SealType::Official) => Ok(SealType::Official),
        Ok(pb::SealType::SpecialPurpose) => Ok(SealType::SpecialPurpose),
        Ok(pb::SealType::Contract) => Ok(SealType::Contract),
        Ok(pb::SealType::Finance) => Ok(SealType::Finance),
        Ok(pb::SealType::PersonalName) => Ok(SealType::PersonalName),
        Ok(pb::SealType::Unspecified) => Err(RegistryError::invalid(
            "type",
            "a seal has a type: official, special-purpose, contract, finance or personal-name",
        )),
        Err(_) => Err(RegistryError::invalid("type", "unknown seal type")),
    }
}

fn algorithm_from_pb(v: i32) -> Result<SealAlgorithm, RegistryError> {
    match pb::SealAlgorithm::try_from(v) {
        Ok(pb::SealAlgorithm::Unspecified | pb::SealAlgorithm::Ed25519) => {
            Ok(SealAlgorithm::Ed25519)
        }
        Ok(pb::SealAlgorithm::EcdsaP256) => Ok(SealAlgorithm::EcdsaP256),
        Ok(pb::SealAlgorithm::Sm2) => Ok(SealAlgorithm::Sm2),
        Err(_) => Err(RegistryError::invalid("algorithm", "unknown algorithm")),
    }
}

fn reason_to_pb(r: Option<RevocationReason>) -> (pb::RevocationReason, Option<Timestamp>) {
    match r {
        None => (pb::RevocationReason::Unspecified, None),
        Some(RevocationReason::KeyCompromise { compromised_at }) => {
            (pb::RevocationReason::KeyCompromise, Some(compromised_at))
        }
        Some(RevocationReason::Superseded) => (pb::RevocationReason::Superseded, None),
        Some(RevocationReason::Retired) => (pb::RevocationReason::Retired, None),
    }
}

pub(crate) fn seal_to_pb(s: Seal) -> pb::Seal {
    let status = seal_status_to_pb(s.status()) as i32;
    let (pem, kid) = match &s.certificate {
        Some(der) => {
            let c = Certificate { der: der.clone() };
            (c.pem(), c.kid().to_vec())
        }
        None => (String::new(), Vec::new()),
    };
    pb::Seal {
        seal_id: s.id.to_string(),
        department: s.lifecycle.department.to_string(),
        name: s.name,
        r#type: seal_type_to_pb(s.seal_type) as i32,
        national_code: s.national_code.unwrap_or_default(),
        algorithm: match s.algorithm {
            SealAlgorithm::Ed25519 => pb::SealAlgorithm::Ed25519,
            SealAlgorithm::EcdsaP256 => pb::SealAlgorithm::EcdsaP256,
            SealAlgorithm::Sm2 => pb::SealAlgorithm::Sm2,
        } as i32,
        public_key: s.public_key,
        not_before: Some(timestamp(s.lifecycle.not_before)),
        not_after: Some(timestamp(s.lifecycle.not_after)),
        status,
        history: s
            .lifecycle
            .history
            .iter()
            .map(|e| {
                let (reason, compromised_at) = reason_to_pb(e.revocation);
                pb::SealEvent {
                    at: Some(timestamp(e.at)),
                    by: Some(convert::actor(&e.by)),
                    status: seal_status_to_pb(e.status) as i32,
                    reason: reason as i32,
                    compromised_at: compromised_at.map(timestamp),
                    note: e.note.clone(),
                }
            })
            .collect(),
        image_sha256: s.image_digest,
        image_media_type: match s.image_format {
            ImageFormat::Png => "image/png",
            ImageFormat::Svg => "image/svg+xml",
        }
        .to_owned(),
        certificate_der: s.certificate.unwrap_or_default(),
        certificate_pem: pem,
        certificate_source: match s.certificate_source {
            None => pb::CertificateSource::Unspecified,
            Some(CertificateSource::RegistryCa) => pb::CertificateSource::SealCa,
            Some(CertificateSource::External) => pb::CertificateSource::External,
        } as i32,
        kid,
    }
}

fn logged(s: Seal, what: &str, by: &certseal_core::Actor) -> pb::Seal {
    tracing::info!(seal = %s.id, status = s.status().as_str(), by = %by.department, "seal {what}");
    seal_to_pb(s)
}

impl SealApi {
    async fn transition(
        &self,
        request: Request<pb::SealTransitionRequest>,
        action: SealAction,
        what: &str,
    ) -> Result<Response<pb::Seal>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let s = self
            .0
            .registry
            .change_seal_status(&actor, &r.seal_id, action, &r.note, &r.request_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(logged(s, what, &actor)))
    }
}

#[tonic::async_trait]
impl SealService for SealApi {
    async fn get_ca_certificate(
        &self,
        request: Request<pb::GetCaCertificateRequest>,
    ) -> Result<Response<pb::CaCertificate>, Status> {
        let _caller = self.0.admit_checked(&request)?;
        let r = &self.0.registry;
        let ca = r.seal_ca_certificate();
        Ok(Response::new(pb::CaCertificate {
            der: ca.der.clone(),
            pem: ca.pem(),
            trust_anchors_pem: r.trust_anchors().iter().map(Certificate::pem).collect(),
            trust_list_certificate_pem: r.trust_list_certificate().pem(),
            receipt_certificate_pem: r.receipt_certificate().pem(),
            sm2_pem: r.sm2_seal_ca_certificate().pem(),
        }))
    }

    async fn register_seal(
        &self,
        request: Request<pb::RegisterSealRequest>,
    ) -> Result<Response<pb::RegisterSealResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let new = NewSeal {
            department: r.department,
            name: r.name,
            seal_type: seal_type_from_pb(r.r#type).map_err(to_status)?,
            image: r.image,
            algorithm: algorithm_from_pb(r.algorithm).map_err(to_status)?,
            not_before: optional_time("not_before", &r.not_before).map_err(to_status)?,
            not_after: optional_time("not_after", &r.not_after).map_err(to_status)?,
            national_code: r.national_code,
            certificate: if r.external_ca {
                CertificateRequest::Csr
            } else {
                CertificateRequest::SealCa
            },
            request_id: r.request_id,
        };
        let view = self
            .0
            .registry
            .register_seal(&actor, new)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RegisterSealResponse {
            seal: Some(logged(view.seal, "registered", &actor)),
            csr_pem: view.csr.unwrap_or_default(),
        }))
    }

    async fn get_seal_csr(
        &self,
        request: Request<pb::GetSealCsrRequest>,
    ) -> Result<Response<pb::GetSealCsrResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let csr_pem = self
            .0
            .registry
            .seal_csr(&actor, &request.get_ref().seal_id)
            .map_err(to_status)?;
        Ok(Response::new(pb::GetSealCsrResponse { csr_pem }))
    }

    async fn import_seal_certificate(
        &self,
        request: Request<pb::ImportSealCertificateRequest>,
    ) -> Result<Response<pb::Seal>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let s = self
            .0
            .registry
            .import_seal_certificate(&actor, &r.seal_id, &r.certificate, &r.request_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(logged(s, "certificate imported", &actor)))
    }

    async fn activate_seal(
        &self,
        request: Request<pb::SealTransitionRequest>,
    ) -> Result<Response<pb::Seal>, Status> {
        self.transition(request, SealAction::Activate, "activated")
            .await
    }

    async fn suspend_seal(
        &self,
        request: Request<pb::SealTransitionRequest>,
    ) -> Result<Response<pb::Seal>, Status> {
        self.transition(request, SealAction::Suspend, "suspended")
            .await
    }

    async fn reinstate_seal(
        &self,
        request: Request<pb::SealTransitionRequest>,
    ) -> Result<Response<pb::Seal>, Status> {
        self.transition(request, SealAction::Reinstate, "reinstated")
            .await
    }

    async fn revoke_seal(
        &self,
        request: Request<pb::RevokeSealRequest>,
    ) -> Result<Response<pb::Seal>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let reason = revocation(&r).map_err(to_status)?;
        let s = self
            .0
            .registry
            .change_seal_status(
                &actor,
                &r.seal_id,
                SealAction::Revoke(reason),
                &r.note,
                &r.request_id,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(logged(s, "revoked", &actor)))
    }

    async fn get_seal(
        &self,
        request: Request<pb::GetSealRequest>,
    ) -> Result<Response<pb::GetSealResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let view = self
            .0
            .registry
            .get_seal(&actor, &r.seal_id)
            .map_err(to_status)?;
        let esl = view.seal.esl.clone().unwrap_or_default();
        Ok(Response::new(pb::GetSealResponse {
            esl,
            seal: Some(seal_to_pb(view.seal)),
            image: if r.include_image {
                view.image
            } else {
                Vec::new()
            },
        }))
    }

    async fn list_seals(
        &self,
        request: Request<pb::ListSealsRequest>,
    ) -> Result<Response<pb::ListSealsResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let status = match pb::SealStatus::try_from(r.status) {
            Ok(pb::SealStatus::Unspecified) => None,
            Ok(pb::SealStatus::Pending) => Some(SealStatus::Pending),
            Ok(pb::SealStatus::Active) => Some(SealStatus::Active),
            Ok(pb::SealStatus::Suspended) => Some(SealStatus::Suspended),
            Ok(pb::SealStatus::Revoked) => Some(SealStatus::Revoked),
            Err(_) => {
                return Err(to_status(RegistryError::invalid(
                    "status",
                    "unknown status",
                )));
            }
        };
        let filter = SealFilter {
            department: (!r.department.is_empty()).then_some(r.department),
            status,
        };
        let page = self
            .0
            .registry
            .list_seals(&actor, &filter, &self.0.page(r.page_size, r.page_token))
            .map_err(to_status)?;
        Ok(Response::new(pb::ListSealsResponse {
            seals: page.items.into_iter().map(seal_to_pb).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn check_seal_usable(
        &self,
        request: Request<pb::CheckSealUsableRequest>,
    ) -> Result<Response<pb::CheckSealUsableResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let at = optional_time("at", &r.at)
            .map_err(to_status)?
            .unwrap_or_else(Timestamp::now);
        let a = self
            .0
            .registry
            .seal_usability(&actor, &r.seal_id, at)
            .map_err(to_status)?;
        let status_at = match a.usability {
            Usability::Usable => pb::SealStatus::Active,
            Usability::NotActive(Some(s)) => seal_status_to_pb(s),
            Usability::KeyCompromised(_) => pb::SealStatus::Revoked,
            _ => pb::SealStatus::Unspecified,
        };
        Ok(Response::new(pb::CheckSealUsableResponse {
            usable: a.usability == Usability::Usable,
            status_at: status_at as i32,
            reason: a.usability.describe(),
        }))
    }

    async fn get_trust_list(
        &self,
        request: Request<pb::GetTrustListRequest>,
    ) -> Result<Response<pb::TrustList>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let registry = self.0.registry.clone();
        // Scanning and signing take a while on a large registry: off the async threads.
        let t = tokio::task::spawn_blocking(move || registry.trust_list(&actor))
            .await
            .map_err(|_| Status::internal("trust list task failed"))?
            .map_err(to_status)?;
        Ok(Response::new(pb::TrustList {
            signed: t.signed,
            issued_at: Some(timestamp(t.list.issued_at)),
            seal_count: t.list.seals.len() as u32,
        }))
    }
}

fn revocation(r: &pb::RevokeSealRequest) -> Result<RevocationReason, RegistryError> {
    let compromised_at = optional_time("compromised_at", &r.compromised_at)?;
    match pb::RevocationReason::try_from(r.reason) {
        Ok(pb::RevocationReason::KeyCompromise) => {
            let compromised_at = compromised_at.ok_or_else(|| {
                RegistryError::invalid(
                    "compromised_at",
                    "a revocation for key compromise says from when the key is not trusted",
                )
            })?;
            Ok(RevocationReason::KeyCompromise { compromised_at })
        }
        Ok(other) if compromised_at.is_some() => Err(RegistryError::invalid(
            "compromised_at",
            format!(
                "only a KEY_COMPROMISE revocation has a time of compromise, not {}",
                other.as_str_name()
            ),
        )),
        Ok(pb::RevocationReason::Superseded) => Ok(RevocationReason::Superseded),
        Ok(pb::RevocationReason::Retired) => Ok(RevocationReason::Retired),
        Ok(pb::RevocationReason::Unspecified) => Err(RegistryError::invalid(
            "reason",
            "a revocation has a reason: KEY_COMPROMISE, SUPERSEDED or RETIRED",
        )),
        Err(_) => Err(RegistryError::invalid("reason", "unknown reason")),
    }
}
