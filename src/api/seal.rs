//! `certseal.v1.SealService`.

use tonic::{Request, Response, Status};

use super::Context;
use crate::pb;
use crate::pb::seal_service_server::SealService;

/// The seal service adapter.
#[derive(Debug, Clone)]
pub struct SealApi(pub Context);

#[tonic::async_trait]
impl SealService for SealApi {
    async fn get_ca_certificate(
        &self,
        request: Request<pb::GetCaCertificateRequest>,
    ) -> Result<Response<pb::CaCertificate>, Status> {
        self.0.auth.actor(&request)?;
        let ca = self.0.registry.seal_ca_certificate();
        Ok(Response::new(pb::CaCertificate {
            der: ca.der.clone(),
            pem: ca.pem(),
        }))
    }
}
