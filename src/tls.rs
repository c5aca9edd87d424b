//! The server side of mutual TLS: the certificate the server presents, the client CAs it
//! trusts, and a check of each department certificate against the revoked ones in the
//! handshake itself. Tonic's own acceptor takes only a fixed CA list, so the server accepts
//! TLS here and hands tonic the established streams.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use certseal_registry::RevokedCertificates;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::ClientCertVerified;
pub use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio_rustls::server::TlsStream;

/// Longest a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake is done, waiting for the server to take them.
const ESTABLISHED_QUEUE: usize = 64;

/// WebPKI's verification of the chain, then the revoked set: a revoked certificate never
/// completes a handshake.
#[derive(Debug)]
struct RevocationChecking {
    chain: Arc<dyn ClientCertVerifier>,
    revoked: Arc<RevokedCertificates>,
}

impl ClientCertVerifier for RevocationChecking {
    fn offer_client_auth(&self) -> bool {
        self.chain.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.chain.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Err(e) = self.revoked.check(end_entity.as_ref()) {
            tracing::warn!(reason = %e, "TLS handshake refused");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The check of a department certificate: its chain to one of the client CAs (PEM, one or
/// more), then the revoked set. The handshake runs it, and a leader runs it again on the
/// certificate a node forwards with a caller's write.
pub fn client_verifier(
    client_roots_pem: &[u8],
    revoked: Arc<RevokedCertificates>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_roots_pem) {
        roots
            .add(c.context("client CA: not a PEM certificate")?)
            .context("client CA")?;
    }
    let chain = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .context("client CAs")?;
    Ok(Arc::new(RevocationChecking { chain, revoked }))
}

/// The server's TLS configuration: its certificate chain and key (PEM) and the check of
/// client certificates. A caller without a certificate completes the handshake and gets
/// UNAUTHENTICATED from the API.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    clients: Arc<dyn ClientCertVerifier>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("[tls] cert_file: not a PEM certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("[tls] key_file: not a PEM key")?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)
        .context("[tls] cert_file and key_file")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections on `listener` and runs each handshake in its own task, so that a slow
/// client holds up nobody; established connections come out of the stream. Dropping the
/// stream stops accepting.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(ESTABLISHED_QUEUE);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Without TCP_NODELAY a reply waits for the peer's delayed ACK.
            let _ = stream.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
