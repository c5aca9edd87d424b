//! certseal nodes on one database: every node answers every call; a follower forwards the
//! calls that write to the node holding the write lease, and catches up with the database's
//! latest changes before it answers a read itself.
//!
//! Forwarding happens on the HTTP/2 request, before tonic decodes it: the caller's metadata
//! (its identity in development mode, its deadline in `grpc-timeout`, its request ID) and its
//! message go through unchanged, streams included. The follower checks the caller's identity
//! first, so a call it would refuse never reaches the leader.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use certseal_registry::Registry;
use certseal_store_mysql::MysqlStore;
use tonic::body::Body;

use crate::auth::Authenticator;

/// Metadata a follower adds to a forwarded call: its own node name (for the leader's logs).
pub const FORWARDED_BY_HEADER: &str = "x-certseal-forwarded-by";

/// Metadata a follower adds to a call it forwards over mutual TLS: the caller's certificate
/// (DER, base64), which the leader accepts only from a peer whose certificate has the role
/// `node`, and checks again (chain and revocation) before it takes it as the caller's.
pub const FORWARDED_CERT_HEADER: &str = "x-certseal-forwarded-client-cert-bin";

/// The certificate of the caller a node forwarded, once the leader accepted it: the identity
/// the call runs for, in place of the node's own.
#[derive(Debug, Clone)]
pub struct ForwardedCaller(pub Arc<Vec<u8>>);

/// The calls that write, by gRPC path: a follower forwards them to the leader. Every check
/// writes its receipt.
const WRITES: &[&str] = &[
    "/certseal.v1.DepartmentService/RegisterDepartment",
    "/certseal.v1.DepartmentService/UpdateDepartmentName",
    "/certseal.v1.DepartmentService/DeactivateDepartment",
    "/certseal.v1.DepartmentService/ReactivateDepartment",
    "/certseal.v1.TemplateService/CreateTemplateDraft",
    "/certseal.v1.TemplateService/UpdateTemplateDraft",
    "/certseal.v1.TemplateService/PublishTemplate",
    "/certseal.v1.TemplateService/DeprecateTemplate",
    "/certseal.v1.SealService/RegisterSeal",
    "/certseal.v1.SealService/ImportSealCertificate",
    "/certseal.v1.SealService/ActivateSeal",
    "/certseal.v1.SealService/SuspendSeal",
    "/certseal.v1.SealService/ReinstateSeal",
    "/certseal.v1.SealService/RevokeSeal",
    "/certseal.v1.LicenceService/IssueLicence",
    "/certseal.v1.LicenceService/IssueLicences",
    "/certseal.v1.LicenceService/AmendLicence",
    "/certseal.v1.LicenceService/RenewLicence",
    "/certseal.v1.LicenceService/SuspendLicence",
    "/certseal.v1.LicenceService/ReinstateLicence",
    "/certseal.v1.LicenceService/RevokeLicence",
    "/certseal.v1.PolicyService/SetDepartmentPolicy",
    "/certseal.v1.PolicyService/IssueDepartmentCertificate",
    "/certseal.v1.PolicyService/RevokeDepartmentCertificate",
    "/certseal.v1.VerificationService/VerifyLicence",
    "/certseal.v1.VerificationService/VerifyDocument",
    "/certseal.v1.VerificationService/VerifyLicences",
    // Every call for a holder is an audit-log entry.
    "/certseal.v1.HolderService/CreateUseCode",
    "/certseal.v1.HolderService/RevokeUseCode",
    "/certseal.v1.HolderService/ListUseCodes",
    "/certseal.v1.HolderService/ListUsage",
    "/certseal.v1.SyncService/ApplyUpstreamChange",
    // Its first call for a licence of an SM2 seal seals the file and logs it.
    "/certseal.v1.LicenceService/GetLicenceFile",
];

/// The calls a node answers itself, from the database.
#[cfg(test)]
const READS: &[&str] = &[
    "/certseal.v1.AdminService/Backup",
    "/certseal.v1.AdminService/GetRestoreState",
    "/certseal.v1.AdminService/ConfirmRestore",
    "/certseal.v1.AdminService/GetWriterState",
    "/certseal.v1.AuditService/GetLatestCheckpoint",
    "/certseal.v1.AuditService/GetVerifierKey",
    "/certseal.v1.AuditService/GetEntry",
    "/certseal.v1.AuditService/GetInclusionProof",
    "/certseal.v1.AuditService/GetConsistencyProof",
    "/certseal.v1.AuditService/ExportEntries",
    "/certseal.v1.DepartmentService/GetDepartment",
    "/certseal.v1.DepartmentService/ListDepartments",
    "/certseal.v1.LicenceService/GetLicence",
    "/certseal.v1.LicenceService/ListLicences",
    "/certseal.v1.PolicyService/GetDepartmentPolicy",
    "/certseal.v1.PolicyService/ListDepartmentPolicies",
    "/certseal.v1.PolicyService/GetClientCa",
    "/certseal.v1.PolicyService/GetClientCrl",
    "/certseal.v1.SealService/GetCaCertificate",
    "/certseal.v1.SealService/GetSealCsr",
    "/certseal.v1.SealService/GetSeal",
    "/certseal.v1.SealService/ListSeals",
    "/certseal.v1.SealService/CheckSealUsable",
    "/certseal.v1.SealService/GetTrustList",
    "/certseal.v1.TemplateService/GetTemplate",
    "/certseal.v1.TemplateService/ListTemplates",
    "/certseal.v1.TemplateService/GetCatalogue",
    "/certseal.v1.VerificationService/ListReceipts",
    "/certseal.v1.VerificationService/GetStatusList",
    "/certseal.v1.VerificationService/ListPurposes",
    // A follower reads the log from the database and polls for the leader's checkpoints.
    "/certseal.v1.SyncService/WatchChanges",
];

/// Whether a call at `path` writes.
pub fn writes(path: &str) -> bool {
    WRITES.contains(&path)
}

/// This node's part in the cluster.
#[derive(Debug)]
pub struct Cluster {
    store: Arc<MysqlStore>,
    node: String,
    /// The leader's address and a channel to it, read from the lease row, for a short while.
    leader: Mutex<Option<(String, tonic::transport::Channel, Instant)>>,
    /// With mutual TLS: the node certificate the forwarding connections present.
    tls: std::sync::OnceLock<tonic::transport::ClientTlsConfig>,
}

/// How long a follower trusts the leader's address it read, before it reads it again.
const LEADER_TTL: Duration = Duration::from_millis(500);

impl Cluster {
    /// The cluster part of a node over `store`.
    pub fn new(store: Arc<MysqlStore>, node: String) -> Self {
        Self {
            store,
            node,
            leader: Mutex::new(None),
            tls: std::sync::OnceLock::new(),
        }
    }

    /// Forwards over mutual TLS with this configuration (the node certificate, the CA of the
    /// other nodes' server certificates).
    pub fn set_tls(&self, config: tonic::transport::ClientTlsConfig) {
        let _ = self.tls.set(config);
    }

    /// The store, for the lease's renewal and release.
    pub fn store(&self) -> &Arc<MysqlStore> {
        &self.store
    }

    /// A channel to the leader, or UNAVAILABLE saying why there is none.
    fn leader_channel(&self) -> Result<tonic::transport::Channel, tonic::Status> {
        {
            let l = self.leader.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, ch, at)) = l.as_ref()
                && at.elapsed() < LEADER_TTL
            {
                return Ok(ch.clone());
            }
        }
        let leader = self
            .store
            .leader()
            .map_err(|e| tonic::Status::unavailable(format!("cannot read the write lease: {e}")))?
            .filter(|l| l.expires_in_ms > 0 && l.node != self.node)
            .ok_or_else(|| {
                tonic::Status::unavailable(
                    "no node holds the write lease now (a fail-over is under way): retry, with the same idempotency key or request ID",
                )
            })?;
        let mut l = self.leader.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((addr, ch, at)) = l.as_mut()
            && *addr == leader.address
        {
            *at = Instant::now();
            return Ok(ch.clone());
        }
        let scheme = if self.tls.get().is_some() {
            "https"
        } else {
            "http"
        };
        let bad = |e: &dyn std::fmt::Display| {
            tonic::Status::internal(format!("the leader's address '{}': {e}", leader.address))
        };
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", leader.address))
                .map_err(|e| bad(&e))?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(2));
        if let Some(tls) = self.tls.get() {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| bad(&e))?;
        }
        let ch = endpoint.connect_lazy();
        tracing::info!(leader = %leader.node, address = %leader.address, epoch = leader.epoch, "forwarding writes to the leader");
        *l = Some((leader.address, ch.clone(), Instant::now()));
        Ok(ch)
    }

    fn forget_leader(&self) {
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The layer that forwards writes from a follower and keeps its reads current.
#[derive(Debug, Clone)]
pub struct ClusterLayer {
    /// None on a node of its own (RocksDB): the layer passes everything through.
    pub cluster: Option<Arc<Cluster>>,
    /// The registry, to ask whether this node leads and to catch up.
    pub registry: std::sync::Weak<Registry>,
    /// How callers are identified, checked before a call is forwarded.
    pub auth: Authenticator,
    /// With mutual TLS: the check of department certificates, run again on a forwarded one.
    pub clients: Option<Arc<dyn crate::tls::ClientCertVerifier>>,
}

impl<S> tower::Layer<S> for ClusterLayer {
    type Service = Forward<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Forward {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ClusterLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Forward<S> {
    inner: S,
    layer: ClusterLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Forward<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if let Err(status) = accept_forwarded(self.layer.clients.as_deref(), &mut req) {
            return Box::pin(std::future::ready(Ok(status_response(status))));
        }
        let Some(cluster) = self.layer.cluster.clone() else {
            return Box::pin(self.inner.call(req));
        };
        let Some(registry) = self.layer.registry.upgrade() else {
            return Box::pin(self.inner.call(req));
        };
        // The service that was made ready answers this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.layer.auth;
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            if writes(&path) && registry.following() {
                drop(registry);
                return Ok(forward(&cluster, auth, req).await);
            }
            // The writer's own state is current: no hop to a blocking thread on its reads.
            if !registry.must_follow() {
                drop(registry);
                return inner.call(req).await;
            }
            // A follower answers only from state at least as new as the last change the
            // leader acknowledged.
            let caught_up = tokio::task::spawn_blocking(move || registry.follow()).await;
            match caught_up {
                Ok(Ok(())) => inner.call(req).await,
                Ok(Err(e)) => Ok(status_response(tonic::Status::unavailable(format!(
                    "this node cannot read the cluster's latest changes: {e}"
                )))),
                Err(e) => Ok(status_response(tonic::Status::internal(e.to_string()))),
            }
        })
    }
}

/// On the leader: takes the caller's certificate a node forwarded as the call's identity,
/// once the peer is proven a node and the certificate passes the handshake's checks again.
/// The metadata never reaches the API, from a node or from anyone else.
fn accept_forwarded(
    clients: Option<&dyn crate::tls::ClientCertVerifier>,
    req: &mut http::Request<Body>,
) -> Result<(), tonic::Status> {
    let Some(value) = req.headers_mut().remove(FORWARDED_CERT_HEADER) else {
        return Ok(());
    };
    // Without mutual TLS (development mode) identities travel as metadata already.
    let Some(clients) = clients else {
        return Ok(());
    };
    let is_node = peer_certificate(req.extensions())
        .as_deref()
        .and_then(|der| certseal_crypto::x509::client_identity(der).ok())
        .is_some_and(|(_, roles)| roles == [certseal_core::NODE_ROLE]);
    if !is_node {
        tracing::warn!("a forwarded caller's certificate from a peer that is not a node: refused");
        return Err(tonic::Status::permission_denied(format!(
            "metadata '{FORWARDED_CERT_HEADER}' is accepted only from a cluster node (a certificate with the role node)"
        )));
    }
    use base64::Engine as _;
    let text = value.to_str().unwrap_or_default().trim_end_matches('=');
    let der = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .map_err(|_| {
            tonic::Status::unauthenticated(format!(
                "metadata '{FORWARDED_CERT_HEADER}': not base64"
            ))
        })?;
    let cert = tokio_rustls::rustls::pki_types::CertificateDer::from(der.as_slice());
    let now = tokio_rustls::rustls::pki_types::UnixTime::now();
    clients.verify_client_cert(&cert, &[], now).map_err(|e| {
        tracing::warn!(error = %e, "a forwarded caller's certificate was refused");
        tonic::Status::unauthenticated(format!("the forwarded caller's certificate: {e}"))
    })?;
    req.extensions_mut().insert(ForwardedCaller(Arc::new(der)));
    Ok(())
}

/// The certificate of the caller of `extensions`' call: one a node forwarded, else the peer's.
fn caller_certificate(extensions: &http::Extensions) -> Option<Vec<u8>> {
    if let Some(f) = extensions.get::<ForwardedCaller>() {
        return Some(f.0.as_ref().clone());
    }
    peer_certificate(extensions)
}

/// The TLS peer's own certificate (DER), as tonic keeps it in the connection's extensions.
fn peer_certificate(extensions: &http::Extensions) -> Option<Vec<u8>> {
    tonic::Request::from_parts(tonic::metadata::MetadataMap::new(), extensions.clone(), ())
        .peer_certs()
        .and_then(|c| c.first().map(|c| c.as_ref().to_vec()))
}

/// Sends a write to the leader and hands back its answer, or UNAVAILABLE.
async fn forward(
    cluster: &Cluster,
    auth: Authenticator,
    req: http::Request<Body>,
) -> http::Response<Body> {
    let (mut parts, body) = req.into_parts();
    // The caller's checks, here first: a call this node would refuse goes nowhere.
    let probe = tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(parts.headers.clone()),
        parts.extensions.clone(),
        (),
    );
    if let Err(status) = auth.actor(&probe) {
        return status_response(status);
    }
    if let Ok(v) = http::HeaderValue::from_str(&cluster.node) {
        parts.headers.insert(FORWARDED_BY_HEADER, v);
    }
    // Over mutual TLS the leader sees this node's certificate: the caller's goes along.
    if cluster.tls.get().is_some() {
        use base64::Engine as _;
        let Some(der) = caller_certificate(&parts.extensions) else {
            return status_response(tonic::Status::unauthenticated(
                "no client certificate: present your department's",
            ));
        };
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(der);
        match http::HeaderValue::from_str(&b64) {
            Ok(v) => {
                parts.headers.insert(FORWARDED_CERT_HEADER, v);
            }
            Err(e) => return status_response(tonic::Status::internal(e.to_string())),
        }
    }
    let channel = match cluster.leader_channel() {
        Ok(c) => c,
        Err(s) => return status_response(s),
    };
    let mut uri = http::Uri::builder()
        .scheme(if cluster.tls.get().is_some() {
            "https"
        } else {
            "http"
        })
        .authority("leader");
    if let Some(pq) = parts.uri.path_and_query() {
        uri = uri.path_and_query(pq.clone());
    }
    parts.uri = match uri.build() {
        Ok(u) => u,
        Err(e) => return status_response(tonic::Status::internal(e.to_string())),
    };
    // Only what travels: the connection's own extensions stay here.
    parts.extensions = http::Extensions::new();
    let req = http::Request::from_parts(parts, body);
    let mut channel = channel;
    match tower::ServiceExt::ready(&mut channel).await {
        Ok(ch) => match tower::Service::call(ch, req).await {
            Ok(resp) => resp,
            Err(e) => {
                cluster.forget_leader();
                status_response(tonic::Status::unavailable(format!(
                    "the leader did not answer (a fail-over may be under way): {e}; retry, with the same idempotency key or request ID"
                )))
            }
        },
        Err(e) => {
            cluster.forget_leader();
            status_response(tonic::Status::unavailable(format!(
                "cannot reach the leader: {e}; retry"
            )))
        }
    }
}

fn status_response(status: tonic::Status) -> http::Response<Body> {
    status.into_http()
}

/// Renews the write lease every third of its length while the node runs; a node that is not
/// the leader asks nothing (its writer asks for the lease when it is free).
pub fn spawn_renewal(cluster: Arc<Cluster>, lease: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            // Only a node that took the lease asks the database (renew is a no-op otherwise).
            if cluster.store.lease_state().epoch > 0 {
                let c = cluster.clone();
                let _ = tokio::task::spawn_blocking(move || c.store.renew()).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_is_known_to_write_or_to_read() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut seen = 0;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert!(
                        WRITES.contains(&path.as_str()) != READS.contains(&path.as_str()),
                        "{path}: say whether it writes (forwarded to the leader) or reads"
                    );
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, WRITES.len() + READS.len());
    }
}
