//! `certseal.v1.VerificationService`.

use super::Caller;
use std::pin::Pin;

use certseal_core::{Indication, SubIndication};
use certseal_registry::{Registry, RegistryError, Subject, Verification};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Context;
use super::convert::{optional_time, timestamp};
use super::licence::{fields_to_pb, item_error, licence_state_to_pb};
use crate::pb;
use crate::pb::verification_service_server::VerificationService;
use crate::status::to_status;

/// The verification service adapter.
#[derive(Debug, Clone)]
pub struct VerificationApi(pub Context);

pub(crate) fn indication_to_pb(i: Indication) -> pb::Indication {
    match i {
        Indication::TotalPassed => pb::Indication::TotalPassed,
        Indication::TotalFailed => pb::Indication::TotalFailed,
        Indication::Indeterminate => pb::Indication::Indeterminate,
    }
}

pub(crate) fn sub_to_pb(s: Option<SubIndication>) -> pb::SubIndication {
    use SubIndication as S;
    match s {
        None => pb::SubIndication::Unspecified,
        Some(S::SigCryptoFailure) => pb::SubIndication::SigCryptoFailure,
        Some(S::FormatFailure) => pb::SubIndication::FormatFailure,
        Some(S::Revoked) => pb::SubIndication::Revoked,
        Some(S::Suspended) => pb::SubIndication::Suspended,
        Some(S::Superseded) => pb::SubIndication::Superseded,
        Some(S::Expired) => pb::SubIndication::Expired,
        Some(S::NotYetValid) => pb::SubIndication::NotYetValid,
        Some(S::SealRevoked) => pb::SubIndication::SealRevoked,
        Some(S::SealNotActive) => pb::SubIndication::SealNotActive,
        Some(S::NoCertificateChainFound) => pb::SubIndication::NoCertificateChainFound,
        Some(S::UnknownLicence) => pb::SubIndication::UnknownLicence,
        Some(S::DocumentMismatch) => pb::SubIndication::DocumentMismatch,
        Some(S::TryLater) => pb::SubIndication::TryLater,
        Some(S::HashFailure) => pb::SubIndication::HashFailure,
    }
}

fn result_to_pb(v: Verification) -> pb::VerificationResult {
    let licence = v.licence.as_ref().map(|l| {
        let mut out = licence_state_to_pb(l);
        if let (Some(h), Some(c)) = (out.holder.as_mut(), v.claims.as_ref()) {
            h.name = c.holder.name.clone();
        }
        out.fields = fields_to_pb(&v.visible_fields);
        out
    });
    pb::VerificationResult {
        indication: indication_to_pb(v.indication) as i32,
        sub_indication: sub_to_pb(v.sub) as i32,
        reason: v.reason,
        licence,
        receipt: v.receipt,
        receipt_id: v.receipt_payload.id.clone(),
        receipt_log_index: v.log_index,
        checked_at: Some(timestamp(v.receipt_payload.checked_at)),
        basis: super::holder::basis_to_pb(v.receipt_payload.basis.as_ref().map(|b| b.kind)) as i32,
    }
}

async fn verify_by_id(
    registry: &Registry,
    actor: &certseal_core::Actor,
    r: pb::VerifyLicenceRequest,
) -> Result<Verification, RegistryError> {
    let purpose = r.purpose.unwrap_or_default();
    let at = optional_time("at", &r.at)?;
    // A code's QR string names its licence: the ID may be left out.
    let mut licence_id = r.licence_id;
    if licence_id.trim().is_empty()
        && let Ok((_, Some(l))) = certseal_core::use_code::parse_presented(&r.use_code)
    {
        licence_id = l.to_string();
    }
    registry
        .verify(
            actor,
            Subject::Id(licence_id),
            &purpose.code,
            &purpose.text,
            at,
            Some(r.use_code.as_str()),
        )
        .await
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::VerifyLicencesResult, Status>> + Send>>;

#[tonic::async_trait]
impl VerificationService for VerificationApi {
    async fn verify_licence(
        &self,
        request: Request<pb::VerifyLicenceRequest>,
    ) -> Result<Response<pb::VerificationResult>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let v = verify_by_id(&self.0.registry, &actor, request.into_inner())
            .await
            .map_err(to_status)?;
        Ok(Response::new(result_to_pb(v)))
    }

    async fn verify_document(
        &self,
        request: Request<pb::VerifyDocumentRequest>,
    ) -> Result<Response<pb::VerificationResult>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let subject = match r.document {
            Some(pb::verify_document_request::Document::Cose(b)) => Subject::Document(b),
            Some(pb::verify_document_request::Document::Qr(q)) => Subject::Qr(q),
            Some(pb::verify_document_request::Document::Ofd(b)) => Subject::Ofd(b),
            None => {
                return Err(to_status(RegistryError::invalid(
                    "document",
                    "give the signed document (cose), its QR string (qr) or a sealed OFD file (ofd)",
                )));
            }
        };
        let purpose = r.purpose.unwrap_or_default();
        let at = optional_time("at", &r.at).map_err(to_status)?;
        let v = self
            .0
            .registry
            .verify(
                &actor,
                subject,
                &purpose.code,
                &purpose.text,
                at,
                Some(r.use_code.as_str()),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(result_to_pb(v)))
    }

    type VerifyLicencesStream = ResultStream;

    async fn verify_licences(
        &self,
        request: Request<Streaming<pb::VerifyLicencesItem>>,
    ) -> Result<Response<ResultStream>, Status> {
        let results = super::bulk(
            &self.0,
            request,
            |registry, actor, item, index| async move {
                let outcome = match item.request {
                    Some(r) => verify_by_id(&registry, &actor, r).await,
                    None => Err(RegistryError::invalid("request", "each item carries one")),
                };
                pb::VerifyLicencesResult {
                    r#ref: item.r#ref,
                    index,
                    outcome: Some(match outcome {
                        Ok(v) => pb::verify_licences_result::Outcome::Result(result_to_pb(v)),
                        Err(e) => {
                            pb::verify_licences_result::Outcome::Error(item_error(&to_status(e)))
                        }
                    }),
                }
            },
        )?;
        Ok(Response::new(Box::pin(results)))
    }

    async fn list_receipts(
        &self,
        request: Request<pb::ListReceiptsRequest>,
    ) -> Result<Response<pb::ListReceiptsResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let page = self
            .0
            .registry
            .list_receipts(
                &actor,
                &r.licence_id,
                &self.0.page(r.page_size, r.page_token),
            )
            .map_err(to_status)?;
        Ok(Response::new(pb::ListReceiptsResponse {
            receipts: page
                .items
                .into_iter()
                .map(|v| pb::ReceiptSummary {
                    receipt_id: v.receipt.id.clone(),
                    verifier: v.receipt.verifier.to_string(),
                    purpose: Some(pb::Purpose {
                        code: v.receipt.purpose.code.clone(),
                        text: v.receipt.purpose.text.clone(),
                    }),
                    checked_at: Some(timestamp(v.receipt.checked_at)),
                    at: Some(timestamp(v.receipt.at)),
                    indication: indication_to_pb(v.receipt.result) as i32,
                    sub_indication: sub_to_pb(v.receipt.sub) as i32,
                    basis: super::holder::basis_to_pb(v.receipt.basis.as_ref().map(|b| b.kind))
                        as i32,
                    receipt: v.signed,
                    log_index: v.log_index,
                })
                .collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn get_status_list(
        &self,
        request: Request<pb::GetStatusListRequest>,
    ) -> Result<Response<pb::StatusList>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let version = request.get_ref().version;
        let registry = self.0.registry.clone();
        let l = tokio::task::spawn_blocking(move || registry.status_list(&actor, version))
            .await
            .map_err(|_| Status::internal("status list task failed"))?
            .map_err(to_status)?;
        Ok(Response::new(pb::StatusList {
            signed: l.signed.clone(),
            issued_at: Some(timestamp(l.list.issued_at())),
            entries: l.list.len() as u32,
            log_size: l.list.log_size(),
            version: l.list.version(),
        }))
    }

    async fn list_purposes(
        &self,
        request: Request<pb::ListPurposesRequest>,
    ) -> Result<Response<pb::ListPurposesResponse>, Status> {
        let _caller = self.0.admit_checked(&request)?;
        Ok(Response::new(pb::ListPurposesResponse {
            codes: self.0.registry.purposes().to_vec(),
        }))
    }
}
