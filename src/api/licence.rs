//! `certseal.v1.LicenceService`.

use super::Caller;
use std::collections::BTreeMap;
use std::pin::Pin;

use certseal_core::{
    FieldValue, HolderKind, Licence, LicenceAction, LicenceRevocationReason, LicenceStatus,
    Timestamp,
};
use certseal_registry::{
    CollectedRequest, IssueRequest, LicenceFilter, LicenceView, RegistryError, Reissue,
    ReissueRequest,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Context;
use super::convert::{self, optional_time, timestamp};
use crate::pb;
use crate::pb::licence_service_server::LicenceService;
use crate::status::to_status;

/// The licence service adapter.
#[derive(Debug, Clone)]
pub struct LicenceApi(pub Context);

pub(crate) fn holder_kind_from_pb(field: &str, v: i32) -> Result<HolderKind, RegistryError> {
    match pb::HolderKind::try_from(v) {
        Ok(pb::HolderKind::Person) => Ok(HolderKind::Person),
        Ok(pb::HolderKind::Organisation) => Ok(HolderKind::Organisation),
        Ok(pb::HolderKind::Unspecified) => Err(RegistryError::invalid(
            field,
            "a holder is a PERSON or an ORGANISATION",
        )),
        Err(_) => Err(RegistryError::invalid(field, "unknown holder kind")),
    }
}

fn holder_kind_to_pb(k: HolderKind) -> pb::HolderKind {
    match k {
        HolderKind::Person => pb::HolderKind::Person,
        HolderKind::Organisation => pb::HolderKind::Organisation,
    }
}

fn fields_from_pb(
    fields: std::collections::HashMap<String, pb::FieldValue>,
) -> Result<BTreeMap<String, FieldValue>, RegistryError> {
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for (name, v) in fields {
        match v.value {
            Some(pb::field_value::Value::Text(t)) => {
                out.insert(name, FieldValue::Text(t));
            }
            Some(pb::field_value::Value::Integer(i)) => {
                out.insert(name, FieldValue::Integer(i));
            }
            Some(pb::field_value::Value::Boolean(b)) => {
                out.insert(name, FieldValue::Boolean(b));
            }
            None => bad.push(certseal_core::FieldViolation::new(
                format!("fields.{name}"),
                "has no value",
            )),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(RegistryError::InvalidArgument(bad))
    }
}

pub(crate) fn fields_to_pb(
    fields: &BTreeMap<String, FieldValue>,
) -> std::collections::HashMap<String, pb::FieldValue> {
    fields
        .iter()
        .map(|(k, v)| {
            let value = match v {
                FieldValue::Text(t) => pb::field_value::Value::Text(t.clone()),
                FieldValue::Integer(i) => pb::field_value::Value::Integer(*i),
                FieldValue::Boolean(b) => pb::field_value::Value::Boolean(*b),
            };
            (k.clone(), pb::FieldValue { value: Some(value) })
        })
        .collect()
}

pub(crate) fn status_to_pb(s: LicenceStatus) -> pb::LicenceStatus {
    match s {
        LicenceStatus::Active => pb::LicenceStatus::Active,
        LicenceStatus::Suspended => pb::LicenceStatus::Suspended,
        LicenceStatus::Revoked => pb::LicenceStatus::Revoked,
        LicenceStatus::Superseded => pb::LicenceStatus::Superseded,
    }
}

/// The status a reader sees now: an active licence outside its window shows why.
pub(crate) fn effective_status(l: &Licence, now: Timestamp) -> pb::LicenceStatus {
    match l.status() {
        LicenceStatus::Active if l.expired_at(now) => pb::LicenceStatus::Expired,
        LicenceStatus::Active if now < l.not_before => pb::LicenceStatus::NotYetValid,
        s => status_to_pb(s),
    }
}

fn reason_to_pb(r: Option<LicenceRevocationReason>) -> pb::LicenceRevocationReason {
    match r {
        None => pb::LicenceRevocationReason::Unspecified,
        Some(LicenceRevocationReason::IssuedInError) => pb::LicenceRevocationReason::IssuedInError,
        Some(LicenceRevocationReason::Withdrawn) => pb::LicenceRevocationReason::Withdrawn,
        Some(LicenceRevocationReason::Cancelled) => pb::LicenceRevocationReason::Cancelled,
        Some(LicenceRevocationReason::Other) => pb::LicenceRevocationReason::Other,
        Some(LicenceRevocationReason::Penalty) => pb::LicenceRevocationReason::Penalty,
        Some(LicenceRevocationReason::Lapsed) => pb::LicenceRevocationReason::Lapsed,
    }
}

/// A revocation reason from its message: `None` when unspecified.
pub(crate) fn reason_from_pb(r: i32) -> Result<Option<LicenceRevocationReason>, RegistryError> {
    Ok(Some(match pb::LicenceRevocationReason::try_from(r) {
        Ok(pb::LicenceRevocationReason::Unspecified) => return Ok(None),
        Ok(pb::LicenceRevocationReason::IssuedInError) => LicenceRevocationReason::IssuedInError,
        Ok(pb::LicenceRevocationReason::Withdrawn) => LicenceRevocationReason::Withdrawn,
        Ok(pb::LicenceRevocationReason::Cancelled) => LicenceRevocationReason::Cancelled,
        Ok(pb::LicenceRevocationReason::Other) => LicenceRevocationReason::Other,
        Ok(pb::LicenceRevocationReason::Penalty) => LicenceRevocationReason::Penalty,
        Ok(pb::LicenceRevocationReason::Lapsed) => LicenceRevocationReason::Lapsed,
        Err(_) => {
            return Err(RegistryError::invalid(
                "reason",
                format!("unknown reason {r}"),
            ));
        }
    }))
}

/// An upstream decision as a message.
pub(crate) fn upstream_to_pb(u: &certseal_core::Upstream) -> pb::UpstreamSource {
    pb::UpstreamSource {
        source: u.source.clone(),
        reference: u.reference.clone(),
        decided_at: Some(timestamp(u.decided_at)),
    }
}

/// The stored state as a message (what lists carry).
pub(crate) fn licence_state_to_pb(l: &Licence) -> pb::Licence {
    pb::Licence {
        licence_id: l.id.to_string(),
        type_code: l.type_code.to_string(),
        template_version: l.template_version,
        issuer: l.issuer.to_string(),
        seal_id: l.seal.to_string(),
        holder: Some(pb::Holder {
            kind: holder_kind_to_pb(l.holder_kind) as i32,
            id: l.holder_id.clone(),
            name: String::new(),
        }),
        fields: Default::default(),
        issued_at: Some(timestamp(l.issued_at)),
        not_before: Some(timestamp(l.not_before)),
        not_after: l.not_after.map(timestamp),
        status: effective_status(l, Timestamp::now()) as i32,
        history: l
            .history
            .iter()
            .map(|e| pb::LicenceEvent {
                at: Some(timestamp(e.at)),
                by: Some(convert::actor(&e.by)),
                status: status_to_pb(e.status) as i32,
                reason: reason_to_pb(e.reason) as i32,
                note: e.note.clone(),
                upstream: e.upstream.as_ref().map(upstream_to_pb),
            })
            .collect(),
        prev: l.prev.as_ref().map(ToString::to_string).unwrap_or_default(),
        next: l.next.as_ref().map(ToString::to_string).unwrap_or_default(),
        document: Vec::new(),
        qr: String::new(),
        document_sha256: l.document_digest.clone(),
        collected: l.collected.as_ref().map(|c| pb::Collected {
            source: c.source.clone(),
            first_issued_at: Some(timestamp(c.first_issued_at)),
        }),
    }
}

/// A licence with its document, fields and QR string.
pub(crate) fn licence_to_pb(v: LicenceView) -> pb::Licence {
    let mut out = licence_state_to_pb(&v.licence);
    if let Some(h) = out.holder.as_mut() {
        h.name = v.claims.holder.name.clone();
    }
    out.fields = fields_to_pb(&v.claims.fields);
    out.document = v.document;
    out.qr = v.qr;
    out
}

/// A proto issue request as the registry's.
pub(crate) fn issue_request(r: pb::IssueLicenceRequest) -> Result<IssueRequest, RegistryError> {
    let holder = r.holder.unwrap_or_default();
    Ok(IssueRequest {
        type_code: r.type_code,
        template_version: r.template_version,
        holder_kind: holder_kind_from_pb("holder.kind", holder.kind)?,
        holder_id: holder.id,
        holder_name: holder.name,
        fields: fields_from_pb(r.fields)?,
        not_before: optional_time("not_before", &r.not_before)?,
        not_after: optional_time("not_after", &r.not_after)?,
        seal_id: r.seal_id,
        idempotency_key: r.idempotency_key,
        existing_id: r.existing_id,
        collected: r
            .collected
            .map(|c| {
                Ok::<_, RegistryError>(CollectedRequest {
                    source: c.source,
                    first_issued_at: optional_time(
                        "collected.first_issued_at",
                        &c.first_issued_at,
                    )?,
                })
            })
            .transpose()?,
    })
}

/// The canonical name of a status code, as the proto documents it.
pub(crate) fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match c {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

pub(crate) fn item_error(s: &Status) -> pb::ItemError {
    use tonic_types::StatusExt;
    pb::ItemError {
        code: code_name(s.code()).to_owned(),
        message: s.message().to_owned(),
        fields: s
            .get_error_details()
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| pb::FieldError {
                        field: v.field.clone(),
                        description: v.description.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        reason: s
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone())
            .unwrap_or_default(),
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::IssueLicencesResult, Status>> + Send>>;

impl LicenceApi {
    async fn transition(
        &self,
        request: Request<pb::LicenceTransitionRequest>,
        action: LicenceAction,
    ) -> Result<Response<pb::Licence>, Status> {
        let caller = self.0.admit(&request)?;
        self.change_status(caller, request.into_inner(), action)
            .await
    }

    async fn change_status(
        &self,
        caller: Caller,
        r: pb::LicenceTransitionRequest,
        action: LicenceAction,
    ) -> Result<Response<pb::Licence>, Status> {
        let actor = &caller.actor;
        let l = self
            .0
            .registry
            .change_licence_status(actor, &r.licence_id, action, &r.note, &r.request_id)
            .await
            .map_err(to_status)?;
        tracing::info!(licence = %l.id, status = l.status().as_str(), "licence status changed");
        Ok(Response::new(licence_state_to_pb(&l)))
    }

    async fn reissue(
        &self,
        actor: &certseal_core::Actor,
        how: Reissue,
        req: ReissueRequest,
    ) -> Result<Response<pb::Licence>, Status> {
        let v = self
            .0
            .registry
            .reissue_licence(actor, how, req)
            .await
            .map_err(to_status)?;
        tracing::info!(licence = %v.licence.id, prev = ?v.licence.prev.as_ref().map(ToString::to_string), "licence reissued");
        Ok(Response::new(licence_to_pb(v)))
    }
}

#[tonic::async_trait]
impl LicenceService for LicenceApi {
    async fn issue_licence(
        &self,
        request: Request<pb::IssueLicenceRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let req = issue_request(request.into_inner()).map_err(to_status)?;
        let v = self
            .0
            .registry
            .issue_licence(&actor, req)
            .await
            .map_err(to_status)?;
        tracing::info!(licence = %v.licence.id, "licence issued");
        self.0.registry.seal_file_in_background(&actor, &v);
        Ok(Response::new(licence_to_pb(v)))
    }

    type IssueLicencesStream = ResultStream;

    async fn issue_licences(
        &self,
        request: Request<Streaming<pb::IssueLicencesItem>>,
    ) -> Result<Response<ResultStream>, Status> {
        let results = super::bulk(
            &self.0,
            request,
            |registry, actor, item, index| async move {
                let outcome = match item
                    .licence
                    .ok_or_else(|| RegistryError::invalid("licence", "each item carries a licence"))
                {
                    Ok(r) => match issue_request(r) {
                        Ok(req) => registry.issue_licence(&actor, req).await.map(|v| {
                            registry.seal_file_in_background(&actor, &v);
                            v.licence.id.to_string()
                        }),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                pb::IssueLicencesResult {
                    r#ref: item.r#ref,
                    index,
                    outcome: Some(match outcome {
                        Ok(id) => pb::issue_licences_result::Outcome::LicenceId(id),
                        Err(e) => {
                            pb::issue_licences_result::Outcome::Error(item_error(&to_status(e)))
                        }
                    }),
                }
            },
        )?;
        Ok(Response::new(Box::pin(results)))
    }

    async fn get_licence(
        &self,
        request: Request<pb::GetLicenceRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let v = self
            .0
            .registry
            .get_licence(&actor, &request.get_ref().licence_id)
            .map_err(to_status)?;
        Ok(Response::new(licence_to_pb(v)))
    }

    async fn get_licence_file(
        &self,
        request: Request<pb::GetLicenceFileRequest>,
    ) -> Result<Response<pb::LicenceFile>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let format = match pb::LicenceFileFormat::try_from(r.format) {
            Ok(pb::LicenceFileFormat::Unspecified | pb::LicenceFileFormat::Ofd) => {
                pb::LicenceFileFormat::Ofd
            }
            Err(_) => {
                return Err(to_status(certseal_registry::RegistryError::invalid(
                    "format",
                    "unknown file format; OFD is the one there is",
                )));
            }
        };
        let f = self
            .0
            .registry
            .licence_file(&actor, &r.licence_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LicenceFile {
            licence_id: r.licence_id,
            format: format as i32,
            sha256: certseal_crypto::sha256(&[&f.bytes]).to_vec(),
            content: f.bytes,
            sealed: f.sealed,
            log_index: f.log_index.unwrap_or_default(),
        }))
    }

    async fn list_licences(
        &self,
        request: Request<pb::ListLicencesRequest>,
    ) -> Result<Response<pb::ListLicencesResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let by_holder = r.holder_kind != 0 || !r.holder_id.is_empty();
        let filter = match (by_holder, r.issuer.is_empty(), r.type_code.is_empty()) {
            (true, true, true) => LicenceFilter::Holder(
                holder_kind_from_pb("holder_kind", r.holder_kind).map_err(to_status)?,
                r.holder_id,
            ),
            (false, false, true) => LicenceFilter::Issuer(r.issuer),
            (false, true, false) => LicenceFilter::Type(r.type_code),
            _ => {
                return Err(to_status(RegistryError::invalid(
                    "request",
                    "give exactly one of holder (holder_kind and holder_id), issuer or type_code",
                )));
            }
        };
        let page = self
            .0
            .registry
            .list_licences(&actor, &filter, &self.0.page(r.page_size, r.page_token))
            .map_err(to_status)?;
        Ok(Response::new(pb::ListLicencesResponse {
            licences: page.items.iter().map(licence_state_to_pb).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn amend_licence(
        &self,
        request: Request<pb::AmendLicenceRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        if r.fields.is_empty() {
            return Err(to_status(RegistryError::invalid(
                "fields",
                "an amendment gives all the new field values",
            )));
        }
        let req = ReissueRequest {
            licence_id: r.licence_id,
            fields: Some(fields_from_pb(r.fields).map_err(to_status)?),
            holder_name: (!r.holder_name.is_empty()).then_some(r.holder_name),
            template_version: r.template_version,
            not_before: optional_time("not_before", &r.not_before).map_err(to_status)?,
            not_after: optional_time("not_after", &r.not_after).map_err(to_status)?,
            seal_id: (!r.seal_id.is_empty()).then_some(r.seal_id),
            note: r.note,
            request_id: r.request_id,
        };
        self.reissue(&actor, Reissue::Amend, req).await
    }

    async fn renew_licence(
        &self,
        request: Request<pb::RenewLicenceRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let req = ReissueRequest {
            licence_id: r.licence_id,
            fields: None,
            holder_name: None,
            template_version: r.template_version,
            not_before: optional_time("not_before", &r.not_before).map_err(to_status)?,
            not_after: optional_time("not_after", &r.not_after).map_err(to_status)?,
            seal_id: (!r.seal_id.is_empty()).then_some(r.seal_id),
            note: r.note,
            request_id: r.request_id,
        };
        self.reissue(&actor, Reissue::Renew, req).await
    }

    async fn suspend_licence(
        &self,
        request: Request<pb::LicenceTransitionRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        self.transition(request, LicenceAction::Suspend).await
    }

    async fn reinstate_licence(
        &self,
        request: Request<pb::LicenceTransitionRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        self.transition(request, LicenceAction::Reinstate).await
    }

    async fn revoke_licence(
        &self,
        request: Request<pb::RevokeLicenceRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        let caller = self.0.admit(&request)?;
        let reason = reason_from_pb(request.get_ref().reason)
            .map_err(to_status)?
            .ok_or_else(|| {
                to_status(RegistryError::invalid(
                    "reason",
                    "a revocation has a reason: ISSUED_IN_ERROR, WITHDRAWN, CANCELLED, PENALTY, LAPSED or OTHER",
                ))
            })?;
        let r = request.into_inner();
        self.change_status(
            caller,
            pb::LicenceTransitionRequest {
                licence_id: r.licence_id,
                note: r.note,
                request_id: r.request_id,
            },
            LicenceAction::Revoke(reason),
        )
        .await
    }
}
