//! `certseal.v1.DepartmentService`.

use super::Caller;
use tonic::{Request, Response, Status};

use super::Context;
use super::convert;
use crate::pb;
use crate::pb::department_service_server::DepartmentService;
use crate::status::to_status;

/// The department service adapter.
#[derive(Debug, Clone)]
pub struct DepartmentApi(pub Context);

#[tonic::async_trait]
impl DepartmentService for DepartmentApi {
    async fn register_department(
        &self,
        request: Request<pb::RegisterDepartmentRequest>,
    ) -> Result<Response<pb::Department>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let d = self
            .0
            .registry
            .register_department(&actor, &r.credit_code, &r.name, &r.region_code)
            .await
            .map_err(to_status)?;
        tracing::info!(department = %d.credit_code, by = %actor.department, "department registered");
        Ok(Response::new(convert::department(d)))
    }

    async fn get_department(
        &self,
        request: Request<pb::GetDepartmentRequest>,
    ) -> Result<Response<pb::Department>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let d = self
            .0
            .registry
            .get_department(&actor, &request.get_ref().credit_code)
            .map_err(to_status)?;
        Ok(Response::new(convert::department(d)))
    }

    async fn list_departments(
        &self,
        request: Request<pb::ListDepartmentsRequest>,
    ) -> Result<Response<pb::ListDepartmentsResponse>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let page = self
            .0
            .registry
            .list_departments(&actor, &self.0.page(r.page_size, r.page_token))
            .map_err(to_status)?;
        Ok(Response::new(pb::ListDepartmentsResponse {
            departments: page.items.into_iter().map(convert::department).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn update_department_name(
        &self,
        request: Request<pb::UpdateDepartmentNameRequest>,
    ) -> Result<Response<pb::Department>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let r = request.into_inner();
        let d = self
            .0
            .registry
            .update_department_name(&actor, &r.credit_code, &r.name)
            .await
            .map_err(to_status)?;
        tracing::info!(department = %d.credit_code, by = %actor.department, "department renamed");
        Ok(Response::new(convert::department(d)))
    }

    async fn deactivate_department(
        &self,
        request: Request<pb::DeactivateDepartmentRequest>,
    ) -> Result<Response<pb::Department>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let d = self
            .0
            .registry
            .deactivate_department(&actor, &request.get_ref().credit_code)
            .await
            .map_err(to_status)?;
        tracing::info!(department = %d.credit_code, by = %actor.department, "department deactivated");
        Ok(Response::new(convert::department(d)))
    }

    async fn reactivate_department(
        &self,
        request: Request<pb::ReactivateDepartmentRequest>,
    ) -> Result<Response<pb::Department>, Status> {
        let Caller { actor, slot: _slot } = self.0.admit(&request)?;
        let d = self
            .0
            .registry
            .reactivate_department(&actor, &request.get_ref().credit_code)
            .await
            .map_err(to_status)?;
        tracing::info!(department = %d.credit_code, by = %actor.department, "department reactivated");
        Ok(Response::new(convert::department(d)))
    }
}
