//! `certseal serve`: opens the registry, serves the v1 API with health and reflection, and
//! shuts down gracefully, draining acknowledged writes before the store closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use certseal_registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::{
    AdminApi, AuditApi, Context, DepartmentApi, HolderApi, LicenceApi, PolicyApi, SealApi, SyncApi,
    TemplateApi, VerificationApi,
};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::pb;
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::audit_service_server::AuditServiceServer;
use crate::pb::department_service_server::DepartmentServiceServer;
use crate::pb::holder_service_server::HolderServiceServer;
use crate::pb::licence_service_server::LicenceServiceServer;
use crate::pb::policy_service_server::PolicyServiceServer;
use crate::pb::seal_service_server::SealServiceServer;
use crate::pb::sync_service_server::SyncServiceServer;
use crate::pb::template_service_server::TemplateServiceServer;
use crate::pb::verification_service_server::VerificationServiceServer;

/// A server running in this process.
#[derive(Debug)]
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Stops accepting calls, finishes those in flight, closes the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.task.await.context("server task")?
    }
}

/// Opens the data folder and starts serving; returns once the listener is bound.
pub async fn start(config: &Config) -> anyhow::Result<RunningServer> {
    let (tx, rx) = oneshot::channel::<()>();
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let serving = serve_on(config, listener, async {
        let _ = rx.await;
    })?;
    let task = tokio::spawn(serving);
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// Serves on `listener` until `shutdown` resolves.
pub fn serve_on(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let (store, database) = crate::storage::open_node(config)
        .with_context(|| format!("cannot open the store of {}", config.data_dir.display()))?;
    let registry = Registry::with_store(
        store,
        &config.registry,
        &config.registry.kek_file(&config.data_dir),
    )
    .with_context(|| format!("cannot open the registry of {}", config.data_dir.display()))?;
    let registry = Arc::new(registry);
    let cluster = match (&config.storage, database) {
        (crate::config::StorageConfig::Mysql(o), Some(db)) => {
            tracing::info!(node = %o.node, advertise = %o.advertise, database = %db.current_node(), leader = !registry.following(), "cluster node");
            Some((
                Arc::new(crate::cluster::Cluster::new(db, o.node.clone())),
                o.lease,
            ))
        }
        _ => None,
    };
    let auth = if config.tls.is_some() {
        tracing::info!("mutual TLS: callers are identified by their client certificates");
        Authenticator::ClientCert
    } else if config.dev_auth {
        tracing::warn!(
            "DEVELOPMENT MODE: caller identity is taken from request metadata without proof; never use --dev-auth in production"
        );
        Authenticator::DevMetadata
    } else {
        tracing::warn!(
            "no authentication is configured: every API call will be refused (use --dev-auth for development)"
        );
        Authenticator::Refuse
    };
    if registry.policy_enforced() {
        match &config.registry.access.admin_department {
            Some(d) => tracing::info!(admin_department = %d, "the sharing policy is enforced"),
            None => tracing::info!(
                "the sharing policy is enforced; no bootstrap admin department is configured"
            ),
        }
    } else {
        tracing::warn!(
            "the sharing policy is NOT enforced (development mode): roles are taken as claimed and every department may issue and read every type"
        );
    }
    let metrics = Arc::new(crate::metrics::Metrics::new(Arc::downgrade(&registry)));
    let metrics_server = match config.metrics_listen {
        Some(addr) => Some(
            crate::metrics::bind(addr, metrics.clone())
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        ),
        None => None,
    };
    let (page_stop, page_stopped) = tokio::sync::oneshot::channel::<()>();
    let public_page = match &config.public_page {
        Some(p) => Some(
            crate::public_page::bind(
                p.clone(),
                Arc::downgrade(&registry),
                Arc::new(
                    crate::decoders::Decoders::new(p.decoders, p.decode_queue)
                        .context("cannot start the public page's picture decoders")?,
                ),
                async move {
                    let _ = page_stopped.await;
                },
            )
            .with_context(|| format!("cannot serve the public page on {}", p.listen))?,
        ),
        None => None,
    };
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let ctx = Context {
        registry: registry.clone(),
        auth,
        limits: config.limits,
        in_flight: Arc::new(crate::api::DepartmentSlots::new(
            config.limits.per_department_concurrency,
        )),
        stopping: stopping_rx,
    };
    // Department certificates from the registry's client CAs (two during a rotation), and
    // from an external one if set; revoked ones are refused in the handshake.
    let mut client_roots: Vec<u8> = registry
        .client_ca_certificates()
        .iter()
        .flat_map(|c| c.pem().into_bytes())
        .collect();
    if let Some(t) = &config.tls
        && let Some(external) = &t.client_ca_pem
    {
        client_roots.push(b'\n');
        client_roots.extend_from_slice(external);
    }
    let clients = config
        .tls
        .as_ref()
        .map(|_| crate::tls::client_verifier(&client_roots, registry.revoked_certificates()))
        .transpose()?;
    let tls = match (&config.tls, &clients) {
        (Some(t), Some(c)) => Some(crate::tls::server_config(
            &t.cert_pem,
            &t.key_pem,
            c.clone(),
        )?),
        _ => None,
    };
    // A node forwards writes to the leader over mutual TLS with its node certificate,
    // trusting the server certificates of the registry's client CAs unless told otherwise.
    if let (Some((c, _)), Some(n)) = (&cluster, &config.node_tls) {
        let ca = n
            .server_ca_pem
            .clone()
            .unwrap_or_else(|| client_roots.clone());
        c.set_tls(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .identity(tonic::transport::Identity::from_pem(
                    &n.cert_pem,
                    &n.key_pem,
                )),
        );
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        let (_, roles) = certseal_crypto::x509::client_identity(
            &tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(&n.cert_pem)
                .context("[cluster] node_cert_file: not a PEM certificate")?,
        )
        .context("[cluster] node_cert_file")?;
        if roles != [certseal_core::NODE_ROLE] {
            anyhow::bail!(
                "[cluster] node_cert_file: a node certificate names the role node alone, not {roles:?} (certseal dept-cert bootstrap --node NAME)"
            );
        }
    }
    let limits = config.limits;
    let max = config.max_message_bytes;
    let departments =
        DepartmentServiceServer::new(DepartmentApi(ctx.clone())).max_decoding_message_size(max);
    let templates =
        TemplateServiceServer::new(TemplateApi(ctx.clone())).max_decoding_message_size(max);
    let audit = AuditServiceServer::new(AuditApi(ctx.clone())).max_decoding_message_size(max);
    let admin = AdminServiceServer::new(AdminApi(ctx.clone())).max_decoding_message_size(max);
    let seals = SealServiceServer::new(SealApi(ctx.clone())).max_decoding_message_size(max);
    let licences =
        LicenceServiceServer::new(LicenceApi(ctx.clone())).max_decoding_message_size(max);
    let policy = PolicyServiceServer::new(PolicyApi(ctx.clone())).max_decoding_message_size(max);
    let holders = HolderServiceServer::new(HolderApi(ctx.clone())).max_decoding_message_size(max);
    let sync = SyncServiceServer::new(SyncApi(ctx.clone())).max_decoding_message_size(max);
    let verification =
        VerificationServiceServer::new(VerificationApi(ctx)).max_decoding_message_size(max);

    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let addr = listener.local_addr()?;
    let data_dir = config.data_dir.clone();

    Ok(async move {
        // The health service says SERVING while the store answers a read, for the server as a
        // whole ("") and for each service. While the writer is stopped (a full disk), the
        // services that take writes say NOT_SERVING; "" and the read-only ones stay SERVING,
        // since reads are served and a restart would not help. Looked at every second.
        use tonic::server::NamedService;
        const READ_SERVICES: [&str; 3] = [
            "",
            <AdminServiceServer<AdminApi> as NamedService>::NAME,
            <AuditServiceServer<AuditApi> as NamedService>::NAME,
        ];
        const WRITE_SERVICES: [&str; 8] = [
            <DepartmentServiceServer<DepartmentApi> as NamedService>::NAME,
            <TemplateServiceServer<TemplateApi> as NamedService>::NAME,
            <SealServiceServer<SealApi> as NamedService>::NAME,
            <LicenceServiceServer<LicenceApi> as NamedService>::NAME,
            <PolicyServiceServer<PolicyApi> as NamedService>::NAME,
            // Every check writes its receipt.
            <VerificationServiceServer<VerificationApi> as NamedService>::NAME,
            // Every call for a holder is logged.
            <HolderServiceServer<HolderApi> as NamedService>::NAME,
            // Upstream changes write; the feed reads.
            <SyncServiceServer<SyncApi> as NamedService>::NAME,
        ];
        for s in READ_SERVICES.iter().chain(&WRITE_SERVICES) {
            health
                .set_service_status(*s, tonic_health::ServingStatus::Serving)
                .await;
        }
        let watched = Arc::downgrade(&registry);
        let health_task = tokio::spawn(async move {
            use tonic_health::ServingStatus::{NotServing, Serving};
            let mut last = (true, true);
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let Some(r) = watched.upgrade() else { break };
                let reads = r.check_health().is_ok();
                // A follower takes writes by forwarding them.
                let stopped = r
                    .writer_stopped()
                    .filter(|s| s.cause != certseal_store::StopCause::NotLeader);
                drop(r);
                let now = (reads, reads && stopped.is_none());
                if now == last {
                    continue;
                }
                if !reads {
                    tracing::error!("the store does not answer: health is NOT_SERVING");
                } else if let Some(stop) = &stopped {
                    tracing::error!(cause = stop.cause.as_str(), error = %stop.error, "writes are stopped: the services that take writes are NOT_SERVING");
                } else {
                    tracing::info!("health is SERVING");
                }
                let status = |ok| if ok { Serving } else { NotServing };
                for s in READ_SERVICES {
                    health.set_service_status(s, status(now.0)).await;
                }
                for s in WRITE_SERVICES {
                    health.set_service_status(s, status(now.1)).await;
                }
                last = now;
            }
        });
        tracing::info!(%addr, data_dir = %data_dir.display(), version = env!("CARGO_PKG_VERSION"), "certseal serving");
        let builder = tonic::transport::Server::builder();
        let renewal = cluster
            .as_ref()
            .map(|(c, lease)| crate::cluster::spawn_renewal(c.clone(), *lease));
        let cluster_layer = crate::cluster::ClusterLayer {
            cluster: cluster.as_ref().map(|(c, _)| c.clone()),
            registry: Arc::downgrade(&registry),
            auth,
            clients,
        };
        let metrics_task = metrics_server.map(tokio::spawn);
        let public_task = public_page.map(tokio::spawn);
        let router = builder
            .layer(crate::metrics::CallLayer(metrics))
            .layer(cluster_layer)
            // Unary calls end in time; dead peers are found; no connection takes everything.
            .timeout(limits.request_timeout)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
            .tcp_keepalive(Some(std::time::Duration::from_secs(60)))
            .concurrency_limit_per_connection(limits.per_connection_concurrency)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(departments)
            .add_service(templates)
            .add_service(audit)
            .add_service(admin)
            .add_service(seals)
            .add_service(licences)
            .add_service(verification)
            .add_service(holders)
            .add_service(sync)
            .add_service(policy);
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing calls in flight");
            // The page stops taking checks too; those in progress finish, except that one
            // waiting for its picture answers at once (the decode is not waited for).
            let _ = page_stop.send(());
            // Change feeds end, telling their consumers where to resume.
            let _ = stopping.send(true);
        };
        let result = match tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(crate::tls::incoming(listener, tls), stop)
                    .await
            }
            None => {
                // Tonic applies its TCP options only to listeners it binds itself: without
                // TCP_NODELAY a reply waits for the peer's delayed ACK, 40 ms per call in turn.
                let incoming =
                    tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |s| {
                        if let Ok(s) = &s {
                            let _ = s.set_nodelay(true);
                        }
                        s
                    });
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
        };
        // The page's checks in progress finish while the store is open.
        if let Some(t) = public_task
            && tokio::time::timeout(std::time::Duration::from_secs(5), t)
                .await
                .is_err()
        {
            tracing::warn!("the public page did not stop within 5 s");
        }
        if let Some(t) = metrics_task {
            t.abort();
        }
        health_task.abort();
        if let Some(r) = renewal {
            r.abort();
        }
        // Connection tasks may still hold service clones for a moment after the server returns.
        // Once ours is the last reference, dropping it drains the sequencer (every queued write
        // is synced) and closes the store, releasing its lock for the next server.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&registry) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&registry) > 1 {
            tracing::warn!("calls still hold the registry; the store closes when they end");
        }
        drop(registry);
        // The writer has drained: another node may take the lease at once.
        if let Some((c, _)) = cluster {
            let store = c.store().clone();
            let _ = tokio::task::spawn_blocking(move || store.release()).await;
        }
        tracing::info!("stopped");
        result.context("gRPC server")
    })
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
