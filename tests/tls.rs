use std::path::Path;

use certseal::config::{Overrides, RawConfig};
use certseal::pb;
use certseal::pb::department_service_client::DepartmentServiceClient;
use certseal::server;
use certseal_crypto::x509::{self, KeyAlgorithm};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::util::*;

struct Pki {
    ca: certseal_crypto::Certificate,
    ca_key: certseal_crypto::SecretBytes,
}

impl Pki {
    fn new(name: &str) -> Self {
        let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let now = certseal_core::Timestamp::now().0 / 1000;
        Self {
            ca: x509::create_ca(name, &key.pkcs8, now - 60, now + 86400).unwrap(),
            ca_key: key.pkcs8,
        }
    }

    /// (certificate PEM, key PEM) of a department system with `roles`.
    fn client(&self, dept: &str, roles: &[&str]) -> (String, String) {
        let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let now = certseal_core::Timestamp::now().0 / 1000;
        let cert = x509::issue_client_certificate(
            &self.ca,
            &self.ca_key,
            &key.pkcs8,
            &x509::ClientSubject {
                department_name: "某局",
                credit_code: dept,
                roles,
            },
            now - 60,
            now + 3600,
        )
        .unwrap();
        (cert.pem(), x509::pkcs8_pem(&key.pkcs8))
    }
}

async fn channel(
    addr: std::net::SocketAddr,
    ca: &str,
    id: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = id {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

fn config(
    dir: &Path,
    pki: &Pki,
    dev_auth: bool,
) -> Result<certseal::config::Config, certseal::config::ConfigError> {
    let key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let now = certseal_core::Timestamp::now().0 / 1000;
    let cert = x509::issue_server_certificate(
        &pki.ca,
        &pki.ca_key,
        &key.pkcs8,
        &["127.0.0.1".to_owned(), "localhost".to_owned()],
        now - 60,
        now + 3600,
    )
    .unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), x509::pkcs8_pem(&key.pkcs8)).unwrap();
    std::fs::write(dir.join("ca.pem"), pki.ca.pem()).unwrap();
    let toml = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display(),
        dir.join("ca.pem").display()
    );
    RawConfig::parse(&toml).unwrap().validate(Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.join("data")),
        dev_auth,
        log_format: None,
    })
}

#[tokio::test]
async fn mutual_tls_identifies_departments_by_their_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("client CA");
    assert!(
        config(dir.path(), &pki, true).is_err(),
        "development mode is refused with TLS"
    );
    let server = server::start(&config(dir.path(), &pki, false).unwrap())
        .await
        .unwrap();
    let ca = pki.ca.pem();
    let admin_id = pki.client(ADMIN_DEPT, &["admin"]);
    let dept = dept_code(5);
    let system = pki.client(&dept, &["issuer", "verifier"]);

    // The admin's certificate registers a department; metadata cannot claim another identity.
    let mut d =
        DepartmentServiceClient::new(channel(server.addr, &ca, Some(&admin_id)).await.unwrap());
    let mut req = tonic::Request::new(pb::RegisterDepartmentRequest {
        credit_code: dept.clone(),
        name: "某局".into(),
        region_code: "350200".into(),
    });
    req.metadata_mut()
        .insert("x-certseal-department", dept.parse().unwrap());
    let created = d.register_department(req).await.unwrap().into_inner();
    assert_eq!(
        created.record.unwrap().created_by.unwrap().department,
        ADMIN_DEPT,
        "the department comes from the certificate"
    );

    // A system with two roles picks one; a role the certificate does not grant is refused.
    let mut s =
        DepartmentServiceClient::new(channel(server.addr, &ca, Some(&system)).await.unwrap());
    let list = |role: Option<&str>| {
        let mut r = tonic::Request::new(pb::ListDepartmentsRequest::default());
        if let Some(role) = role {
            r.metadata_mut()
                .insert("x-certseal-role", role.parse().unwrap());
        }
        r
    };
    expect_code(
        s.list_departments(list(None)).await.unwrap_err(),
        Code::Unauthenticated,
    );
    s.list_departments(list(Some("verifier"))).await.unwrap();
    expect_code(
        s.list_departments(list(Some("admin"))).await.unwrap_err(),
        Code::PermissionDenied,
    );
    let mut r = tonic::Request::new(pb::RegisterDepartmentRequest {
        credit_code: dept_code(6),
        name: "x".into(),
        region_code: "350200".into(),
    });
    r.metadata_mut()
        .insert("x-certseal-role", "issuer".parse().unwrap());
    expect_code(
        d_clone(&mut s).register_department(r).await.unwrap_err(),
        Code::PermissionDenied,
    );

    // No client certificate: UNAUTHENTICATED. One from another CA: no connection at all.
    let mut anon = DepartmentServiceClient::new(channel(server.addr, &ca, None).await.unwrap());
    expect_code(
        anon.list_departments(list(None)).await.unwrap_err(),
        Code::Unauthenticated,
    );
    let stranger = Pki::new("another CA").client(ADMIN_DEPT, &["admin"]);
    let refused = match channel(server.addr, &ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => DepartmentServiceClient::new(ch)
            .list_departments(list(None))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from an unknown CA is refused");
    // Plain text is refused too.
    assert!(
        DepartmentServiceClient::new(connect_plain(server.addr).await)
            .list_departments(admin(pb::ListDepartmentsRequest::default()))
            .await
            .is_err()
    );
    server.stop().await.unwrap();
}

fn d_clone(c: &mut DepartmentServiceClient<Channel>) -> DepartmentServiceClient<Channel> {
    c.clone()
}

async fn connect_plain(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}
