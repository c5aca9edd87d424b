//! `certseal.v1.TemplateService`.

use super::Caller;
use certseal_core::{TemplateCategory, TemplateStatus};
use certseal_registry::{RegistryError, TemplateFilter, TemplateSelector};
use tonic::{Request, Response, Status};

use super::Context;
use super::convert;
use crate::pb;
use crate::pb::template_service_server::TemplateService;
use crate::status::to_status;

/// The template service adapter.
#[derive(Debug, Clone)]
pub struct TemplateApi(pub Context);

fn logged(t: certseal_core::Template, what: &str, by: &certseal_core::Actor) -> pb::Template {
    tracing::info!(type_code = %t.type_code, version = t.version, by = %by.department, "template {what}");
    convert::template(t)
}

#[tonic::async_trait]
impl TemplateService for TemplateApi {
    async fn create_template_draft(
        &self,
        request: Request<pb::CreateTemplateDraftRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let content = convert::content_from_pb(r.content).map_err(to_status)?;
        let t = self
            .0
            .registry
            .create_template_draft(&actor, &r.type_code, r.base_version, content)
            .await
            .map_err(to_status)?;
        Ok(Response::new(logged(t, "draft created", &actor)))
    }

    async fn update_template_draft(
        &self,
        request: Request<pb::UpdateTemplateDraftRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let content = convert::content_from_pb(r.content).map_err(to_status)?;
        let t = self
            .0
            .registry
            .update_template_draft(&actor, &r.type_code, r.version, content)
            .await
            .map_err(to_status)?;
        Ok(Response::new(logged(t, "draft updated", &actor)))
    }

    async fn publish_template(
        &self,
        request: Request<pb::PublishTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let t = self
            .0
            .registry
            .publish_template(&actor, &r.type_code, r.version)
            .await
            .map_err(to_status)?;
        Ok(Response::new(logged(t, "published", &actor)))
    }

    async fn deprecate_template(
        &self,
        request: Request<pb::DeprecateTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let t = self
            .0
            .registry
            .deprecate_template(&actor, &r.type_code, r.version)
            .await
            .map_err(to_status)?;
        Ok(Response::new(logged(t, "deprecated", &actor)))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.get_ref();
        let selector = match r.version {
            0 => TemplateSelector::LatestPublished,
            v => TemplateSelector::Version(v),
        };
        let t = self
            .0
            .registry
            .get_template(&actor, &r.type_code, selector)
            .map_err(to_status)?;
        Ok(Response::new(convert::template(t)))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let filter = filter(&r).map_err(to_status)?;
        let page = self
            .0
            .registry
            .list_templates(&actor, &filter, &self.0.page(r.page_size, r.page_token))
            .map_err(to_status)?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: page.items.into_iter().map(convert::template).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn get_catalogue(
        &self,
        request: Request<pb::GetCatalogueRequest>,
    ) -> Result<Response<pb::Catalogue>, Status> {
        self.catalogue(request).await
    }
}

impl TemplateApi {
    async fn catalogue(
        &self,
        request: Request<pb::GetCatalogueRequest>,
    ) -> Result<Response<pb::Catalogue>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let entries = self.0.registry.catalogue(&actor).map_err(to_status)?;
        Ok(Response::new(pb::Catalogue {
            registry: self.0.registry.latest_checkpoint().checkpoint.origin,
            generated_at: Some(convert::timestamp(certseal_core::Timestamp::now())),
            entries: entries.into_iter().map(convert::catalogue_entry).collect(),
        }))
    }
}

fn filter(r: &pb::ListTemplatesRequest) -> Result<TemplateFilter, RegistryError> {
    let category = match pb::TemplateCategory::try_from(r.category) {
        Ok(pb::TemplateCategory::Unspecified) => None,
        Ok(pb::TemplateCategory::Licence) => Some(TemplateCategory::Licence),
        Ok(pb::TemplateCategory::Approval) => Some(TemplateCategory::Approval),
        Err(_) => return Err(RegistryError::invalid("category", "unknown category")),
    };
    let status = match pb::TemplateStatus::try_from(r.status) {
        Ok(pb::TemplateStatus::Unspecified) => None,
        Ok(pb::TemplateStatus::Draft) => Some(TemplateStatus::Draft),
        Ok(pb::TemplateStatus::Published) => Some(TemplateStatus::Published),
        Ok(pb::TemplateStatus::Deprecated) => Some(TemplateStatus::Deprecated),
        Err(_) => return Err(RegistryError::invalid("status", "unknown status")),
    };
    Ok(TemplateFilter {
        category,
        status,
        defining_department: (!r.defining_department.is_empty())
            .then(|| r.defining_department.clone()),
    })
}
