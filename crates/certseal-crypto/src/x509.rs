//! Seal keys and certificates (DESIGN.md, "Seal certificate profile"): the seal CA, seal
//! certificates issued from it, CSRs for an external CA, and the checks an imported seal
//! certificate must pass. rcgen writes certificates; x509-parser reads and verifies them.
//!
//! Profile: X.509 v3; key usage digitalSignature + contentCommitment; extended key usage
//! id-kp-documentSigning (1.3.6.1.5.5.7.3.36); subject O = department name,
//! organizationIdentifier (2.5.4.97) = `NTRCN-<credit code>`, CN = seal name.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{CryptoError, SecretBytes, random, sha256};

/// id-kp-documentSigning (RFC 9336).
pub const DOCUMENT_SIGNING_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 36];
/// organizationIdentifier (X.520).
pub const ORGANIZATION_IDENTIFIER_OID: &[u64] = &[2, 5, 4, 97];

/// Signature algorithm of a seal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519 (COSE alg -8). The default.
    Ed25519,
    /// ECDSA P-256 with SHA-256 (COSE alg -7).
    EcdsaP256,
    /// SM2 with SM3 and the default distinguishing ID (COSE alg -65537, private use; see
    /// [`crate::cose::SM2_ALG`]). Certificates come from [`crate::sm_x509`]: rcgen cannot
    /// make them.
    Sm2,
}

/// A freshly generated key: its PKCS#8 document (seal it before storing) and raw public key.
pub struct NewKey {
    /// PKCS#8 v1/v2 document.
    pub pkcs8: SecretBytes,
    /// Raw public key (Ed25519: 32 bytes; P-256 and SM2: uncompressed point, 65 bytes).
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("public_key", &self.public_key.len())
            .finish_non_exhaustive()
    }
}

/// The named curve of an id-ecPublicKey key, if it is one.
pub(crate) fn ec_curve(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Option<String> {
    (spki.algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1")
        .then(|| spki.algorithm.parameters.as_ref()?.as_oid().ok())
        .flatten()
        .map(|c| c.to_id_string())
}

/// Generates a key pair (from ring's generator).
pub fn generate_key(alg: KeyAlgorithm) -> Result<NewKey, CryptoError> {
    let rng = ring::rand::SystemRandom::new();
    let bad = |e: ring::error::KeyRejected| CryptoError::InvalidKey(e.to_string());
    match alg {
        KeyAlgorithm::Sm2 => {
            let (key, pkcs8) = crate::sm::Sm2Key::generate()?;
            Ok(NewKey {
                public_key: key.public_key().to_vec(),
                pkcs8,
            })
        }
        KeyAlgorithm::Ed25519 => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CryptoError::Rng)?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(bad)?;
            Ok(NewKey {
                public_key: pair.public_key().as_ref().to_vec(),
                pkcs8: SecretBytes::new(doc.as_ref().to_vec()),
            })
        }
        KeyAlgorithm::EcdsaP256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| CryptoError::Rng)?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
                    .map_err(bad)?;
            Ok(NewKey {
                public_key: pair.public_key().as_ref().to_vec(),
                pkcs8: SecretBytes::new(doc.as_ref().to_vec()),
            })
        }
    }
}

/// A DER certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// DER bytes.
    pub der: Vec<u8>,
}

impl Certificate {
    /// PEM text.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// Key ID of a seal certificate in COSE documents: the first 8 bytes of SHA-256 of its DER.
    pub fn kid(&self) -> [u8; 8] {
        let h = sha256(&[&self.der]);
        h[..8].try_into().expect("8 bytes")
    }
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads the first PEM block labelled `CERTIFICATE`, or takes DER as it is.
pub fn certificate_from_pem_or_der(bytes: &[u8]) -> Result<Certificate, CryptoError> {
    use base64::Engine;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(Certificate {
            der: bytes.to_vec(),
        });
    };
    let Some(start) = text.find("-----BEGIN CERTIFICATE-----") else {
        return Ok(Certificate {
            der: bytes.to_vec(),
        });
    };
    let body = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
    let end = body
        .find("-----END CERTIFICATE-----")
        .ok_or_else(|| cert_err("PEM certificate without an END line"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| cert_err("PEM certificate body is not base64"))?;
    Ok(Certificate { der })
}

fn cert_err(msg: impl Into<String>) -> CryptoError {
    CryptoError::Certificate(msg.into())
}

fn time(unix_seconds: i64) -> Result<time::OffsetDateTime, CryptoError> {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .map_err(|_| cert_err(format!("{unix_seconds} is not a representable time")))
}

fn rcgen_err(e: rcgen::Error) -> CryptoError {
    cert_err(e.to_string())
}

fn key_pair(pkcs8: &[u8]) -> Result<KeyPair, CryptoError> {
    KeyPair::try_from(pkcs8).map_err(|e| CryptoError::InvalidKey(e.to_string()))
}

fn serial() -> Result<SerialNumber, CryptoError> {
    let mut s = [0u8; 16];
    random(&mut s)?;
    s[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&s))
}

/// Who a seal certificate names.
#[derive(Debug, Clone)]
pub struct SealSubject<'a> {
    /// Department name (O).
    pub department_name: &'a str,
    /// Department credit code (organizationIdentifier `NTRCN-<code>`).
    pub credit_code: &'a str,
    /// Seal name (CN).
    pub seal_name: &'a str,
}

/// An end-entity certificate for document signing (DESIGN's key usage and EKU), named `dn`.
fn signing_params(
    dn: DistinguishedName,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, CryptoError> {
    let mut p = service_params(dn, not_before, not_after)?;
    p.key_usages.push(KeyUsagePurpose::ContentCommitment);
    Ok(p)
}

/// A certificate for one of the registry's own keys: digitalSignature and documentSigning, but
/// no contentCommitment and no organizationIdentifier, so it can never pass for a seal's.
fn service_params(
    dn: DistinguishedName,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, CryptoError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.not_before = time(not_before)?;
    p.not_after = time(not_after)?;
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
        DOCUMENT_SIGNING_OID.to_vec(),
    )];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn seal_params(
    subject: &SealSubject<'_>,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, CryptoError> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, subject.department_name);
    dn.push(
        DnType::CustomDnType(ORGANIZATION_IDENTIFIER_OID.to_vec()),
        format!("NTRCN-{}", subject.credit_code),
    );
    dn.push(DnType::CommonName, subject.seal_name);
    signing_params(dn, not_before, not_after)
}

/// Signs `params` for the key in `key_pkcs8` with the CA.
fn sign_with_ca(
    params: CertificateParams,
    ca: &Certificate,
    ca_pkcs8: &[u8],
    key_pkcs8: &[u8],
) -> Result<Certificate, CryptoError> {
    let ca_key = key_pair(ca_pkcs8)?;
    let issuer = Issuer::from_ca_cert_der(&ca.der.clone().into(), ca_key).map_err(rcgen_err)?;
    let key = key_pair(key_pkcs8)?;
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_err)?;
    Ok(Certificate {
        der: cert.der().to_vec(),
    })
}

/// Creates the registry's self-signed seal CA certificate for the key in `ca_pkcs8`.
pub fn create_ca(
    common_name: &str,
    ca_pkcs8: &[u8],
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    let key = key_pair(ca_pkcs8)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.not_before = time(not_before)?;
    p.not_after = time(not_after)?;
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).map_err(rcgen_err)?;
    Ok(Certificate {
        der: cert.der().to_vec(),
    })
}

/// Issues a seal certificate for the seal key in `seal_pkcs8`, signed by the CA.
pub fn issue_seal_certificate(
    ca: &Certificate,
    ca_pkcs8: &[u8],
    seal_pkcs8: &[u8],
    subject: &SealSubject<'_>,
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    sign_with_ca(
        seal_params(subject, not_before, not_after)?,
        ca,
        ca_pkcs8,
        seal_pkcs8,
    )
}

/// Issues a certificate for one of the registry's own signing keys (the trust-list key, the
/// receipt key), named by `common_name`, signed by the seal CA. Unlike a seal certificate it
/// has no contentCommitment and no organizationIdentifier (see [`check_service_certificate`]).
pub fn issue_service_certificate(
    ca: &Certificate,
    ca_pkcs8: &[u8],
    key_pkcs8: &[u8],
    common_name: &str,
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    sign_with_ca(
        service_params(dn, not_before, not_after)?,
        ca,
        ca_pkcs8,
        key_pkcs8,
    )
}

/// Prefix of the organizational unit that lists a department certificate's roles.
pub const ROLES_OU_PREFIX: &str = "certseal-roles=";

/// Who a department's client certificate names.
#[derive(Debug, Clone, Copy)]
pub struct ClientSubject<'a> {
    /// Department name (O).
    pub department_name: &'a str,
    /// Credit code (organizationIdentifier `NTRCN-<code>`).
    pub credit_code: &'a str,
    /// Roles it grants.
    pub roles: &'a [&'a str],
}

/// Issues a TLS client certificate for a department's system: organizationIdentifier
/// `NTRCN-<credit code>`, O = department name, OU = `certseal-roles=<role>,<role>`, EKU
/// clientAuth.
pub fn issue_client_certificate(
    ca: &Certificate,
    ca_pkcs8: &[u8],
    key_pkcs8: &[u8],
    client: &ClientSubject<'_>,
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    sign_with_ca(
        client_params(client, not_before, not_after)?,
        ca,
        ca_pkcs8,
        key_pkcs8,
    )
}

/// Issues a department's client certificate for the key of a PKCS#10 request (PEM) whose
/// signature is checked. Only the key is taken from the request: the subject, roles and
/// validity are the registry's.
pub fn issue_client_certificate_for_csr(
    ca: &Certificate,
    ca_pkcs8: &[u8],
    csr_pem: &str,
    client: &ClientSubject<'_>,
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| cert_err(format!("certificate request: {e}")))?;
    let request = rcgen::CertificateSigningRequestParams {
        params: client_params(client, not_before, not_after)?,
        public_key: csr.public_key,
    };
    let ca_key = key_pair(ca_pkcs8)?;
    let issuer = Issuer::from_ca_cert_der(&ca.der.clone().into(), ca_key).map_err(rcgen_err)?;
    let cert = request.signed_by(&issuer).map_err(rcgen_err)?;
    Ok(Certificate {
        der: cert.der().to_vec(),
    })
}

/// A PKCS#10 request (PEM) for a client key, to send to the registry.
pub fn client_csr(key_pkcs8: &[u8], common_name: &str) -> Result<String, CryptoError> {
    let key = key_pair(key_pkcs8)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.serialize_request(&key)
        .map_err(rcgen_err)?
        .pem()
        .map_err(rcgen_err)
}

fn client_params(
    client: &ClientSubject<'_>,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, CryptoError> {
    let ClientSubject {
        department_name,
        credit_code,
        roles,
    } = *client;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, department_name);
    dn.push(
        DnType::CustomDnType(ORGANIZATION_IDENTIFIER_OID.to_vec()),
        format!("NTRCN-{credit_code}"),
    );
    dn.push(
        DnType::OrganizationalUnitName,
        format!("{ROLES_OU_PREFIX}{}", roles.join(",")),
    );
    dn.push(DnType::CommonName, format!("{department_name} system"));
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.not_before = time(not_before)?;
    p.not_after = time(not_after)?;
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// Issues a TLS server certificate for `hosts` (DNS names or IP addresses).
pub fn issue_server_certificate(
    ca: &Certificate,
    ca_pkcs8: &[u8],
    key_pkcs8: &[u8],
    hosts: &[String],
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    let mut p = CertificateParams::new(hosts.to_vec()).map_err(rcgen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    p.distinguished_name = dn;
    p.not_before = time(not_before)?;
    p.not_after = time(not_after)?;
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    sign_with_ca(p, ca, ca_pkcs8, key_pkcs8)
}

/// The department (credit code, from organizationIdentifier `NTRCN-…`) and the roles (from the
/// `certseal-roles=` OU) of a client certificate.
pub fn client_identity(der: &[u8]) -> Result<(String, Vec<String>), CryptoError> {
    let (_, x) =
        X509Certificate::from_der(der).map_err(|_| cert_err("not a DER X.509 certificate"))?;
    let org_id = x509_parser::der_parser::oid::Oid::from(ORGANIZATION_IDENTIFIER_OID)
        .map_err(|_| cert_err("OID"))?;
    let ids: Vec<&str> = x
        .subject()
        .iter_by_oid(&org_id)
        .filter_map(|a| a.as_str().ok())
        .collect();
    let [id] = ids[..] else {
        return Err(cert_err(
            "a department certificate has one organizationIdentifier",
        ));
    };
    let code = id
        .strip_prefix("NTRCN-")
        .ok_or_else(|| cert_err("organizationIdentifier is not NTRCN-<credit code>"))?;
    let roles = x
        .subject()
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .filter_map(|ou| ou.strip_prefix(ROLES_OU_PREFIX))
        .flat_map(|r| r.split(','))
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    Ok((code.to_owned(), roles))
}

/// The serial number of a certificate: the big-endian bytes of its positive integer, without
/// leading zero bytes (as `openssl x509 -serial` prints it, in hex).
pub fn certificate_serial(der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (_, x) =
        X509Certificate::from_der(der).map_err(|_| cert_err("not a DER X.509 certificate"))?;
    Ok(trim_serial(x.raw_serial()).to_vec())
}

/// A serial's bytes without the leading zeros DER adds to keep the integer positive.
pub fn trim_serial(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[zeros.min(bytes.len().saturating_sub(1))..]
}

/// A certificate on a revocation list: its serial and when it was revoked (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Serial number bytes, as [`certificate_serial`] gives them.
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub revoked_at: i64,
}

/// A certificate revocation list (RFC 5280 v2) of the CA, signed by its key: the revoked
/// serials, CRL number `number`, valid from `this_update` to `next_update` (Unix seconds).
/// Returns the DER.
pub fn sign_crl(
    ca: &Certificate,
    ca_pkcs8: &[u8],
    revoked: &[RevokedSerial],
    number: u64,
    this_update: i64,
    next_update: i64,
) -> Result<Vec<u8>, CryptoError> {
    let params = rcgen::CertificateRevocationListParams {
        this_update: time(this_update)?,
        next_update: time(next_update)?,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| {
                Ok(rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: time(r.revoked_at)?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<_, CryptoError>>()?,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let ca_key = key_pair(ca_pkcs8)?;
    let issuer = Issuer::from_ca_cert_der(&ca.der.clone().into(), ca_key).map_err(rcgen_err)?;
    let crl = params.signed_by(&issuer).map_err(rcgen_err)?;
    Ok(crl.der().to_vec())
}

/// PEM text of a DER certificate revocation list.
pub fn crl_pem(der: &[u8]) -> String {
    pem_encode("X509 CRL", der)
}

/// PEM text of a PKCS#8 private key.
pub fn pkcs8_pem(pkcs8: &[u8]) -> String {
    pem_encode("PRIVATE KEY", pkcs8)
}

/// Checks that `cert` is one of the registry's service certificates named `common_name`, and
/// not a seal certificate: a seal's key must never pass for the trust-list or receipt key.
pub fn check_service_certificate(cert: &[u8], common_name: &str) -> Result<(), CryptoError> {
    let (_, x) =
        X509Certificate::from_der(cert).map_err(|_| cert_err("not a DER X.509 certificate"))?;
    let org_id = x509_parser::der_parser::oid::Oid::from(ORGANIZATION_IDENTIFIER_OID)
        .map_err(|_| cert_err("OID"))?;
    if x.subject().iter_by_oid(&org_id).next().is_some() {
        return Err(cert_err("a seal certificate cannot sign for the registry"));
    }
    let commitment = x
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.non_repudiation());
    if commitment || x.is_ca() {
        return Err(cert_err("not a registry service certificate"));
    }
    let cn: Vec<&str> = x
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if cn != [common_name] {
        return Err(cert_err(format!(
            "the signer is {cn:?}, expected \"{common_name}\""
        )));
    }
    Ok(())
}

/// Checks that `cert` is signed by `issuer` (both DER) and was valid at `at` (Unix seconds).
pub fn check_issued_by(cert: &[u8], issuer: &[u8], at: i64) -> Result<(), CryptoError> {
    let (_, x) =
        X509Certificate::from_der(cert).map_err(|_| cert_err("not a DER X.509 certificate"))?;
    let (_, a) =
        X509Certificate::from_der(issuer).map_err(|_| cert_err("issuer is not DER X.509"))?;
    if a.subject() != x.issuer() || !a.is_ca() {
        return Err(cert_err("not issued by the given CA"));
    }
    if !issuer_signed(&x, &a) {
        return Err(cert_err("the CA's signature does not verify"));
    }
    let v = x.validity();
    if at < v.not_before.timestamp() || at >= v.not_after.timestamp() {
        return Err(cert_err("the certificate is not valid at that time"));
    }
    Ok(())
}

/// The raw public key a certificate holds (Ed25519: 32 bytes; EC: the SEC1 point).
pub fn subject_public_key(der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (_, x) =
        X509Certificate::from_der(der).map_err(|_| cert_err("not a DER X.509 certificate"))?;
    Ok(x.public_key().subject_public_key.data.to_vec())
}

/// The validity window of a certificate (Unix seconds).
pub fn validity(der: &[u8]) -> Result<(i64, i64), CryptoError> {
    let (_, x) =
        X509Certificate::from_der(der).map_err(|_| cert_err("not a DER X.509 certificate"))?;
    let v = x.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Reads a PKCS#8 private key from PEM (`PRIVATE KEY`) or takes DER as it is.
pub fn pkcs8_from_pem_or_der(bytes: &[u8]) -> Result<SecretBytes, CryptoError> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    let Some(start) = std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.find(BEGIN).map(|i| (t, i)))
    else {
        return Ok(SecretBytes::new(bytes.to_vec()));
    };
    let (text, i) = start;
    let body = &text[i + BEGIN.len()..];
    let end = body
        .find("-----END PRIVATE KEY-----")
        .ok_or_else(|| CryptoError::InvalidKey("PEM key without an END line".into()))?;
    let b64 = zeroize::Zeroizing::new(
        body[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>(),
    );
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map(SecretBytes::new)
        .map_err(|_| CryptoError::InvalidKey("PEM key body is not base64".into()))
}

/// Checks that a certificate is a CA certificate (for configured trust anchors).
pub fn check_is_ca(cert: &Certificate) -> Result<(), CryptoError> {
    let (_, x) = X509Certificate::from_der(&cert.der)
        .map_err(|_| cert_err("not a DER X.509 certificate"))?;
    if x.is_ca() {
        Ok(())
    } else {
        Err(cert_err("not a CA certificate (basicConstraints CA:TRUE)"))
    }
}

/// Checks that a configured CA certificate and key belong together and that it is a CA.
pub fn check_ca_pair(cert: &Certificate, pkcs8: &[u8]) -> Result<(), CryptoError> {
    let (_, x) = X509Certificate::from_der(&cert.der)
        .map_err(|_| cert_err("the CA certificate is not DER X.509"))?;
    if !x.is_ca() {
        return Err(cert_err("the configured CA certificate is not a CA"));
    }
    let key = key_pair(pkcs8)?;
    if x.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(cert_err(
            "the configured CA key does not match the CA certificate",
        ));
    }
    Ok(())
}

/// A PKCS#10 request (PEM) for an external CA, signed by the seal key, in the seal profile.
pub fn seal_csr(
    seal_pkcs8: &[u8],
    subject: &SealSubject<'_>,
    not_before: i64,
    not_after: i64,
) -> Result<String, CryptoError> {
    let key = match key_pair(seal_pkcs8) {
        Ok(k) => k,
        // ring's keys only: an SM2 key's request is built with x509-cert.
        Err(e) => {
            return match crate::sm::Sm2Key::from_pkcs8(seal_pkcs8) {
                Ok(sm2) => crate::sm_x509::seal_csr(&sm2, subject),
                Err(_) => Err(e),
            };
        }
    };
    let mut p = seal_params(subject, not_before, not_after)?;
    p.serial_number = None;
    p.use_authority_key_identifier_extension = false;
    p.serialize_request(&key)
        .map_err(rcgen_err)?
        .pem()
        .map_err(rcgen_err)
}

/// What an imported seal certificate must show.
#[derive(Debug, Clone)]
pub struct SealCertificateCheck<'a> {
    /// The seal's raw public key.
    pub public_key: &'a [u8],
    /// The owning department's credit code.
    pub credit_code: &'a str,
    /// The seal's validity window (Unix seconds); the certificate's must lie inside it.
    pub not_before: i64,
    /// End of the seal's validity window.
    pub not_after: i64,
    /// The seal key's algorithm: the certificate's key must be of that kind.
    pub algorithm: KeyAlgorithm,
    /// Trust anchors (CA certificates, DER): the certificate must chain to one of them.
    pub anchors: &'a [Certificate],
    /// Intermediate CA certificates that may link the certificate to an anchor.
    pub intermediates: &'a [Certificate],
    /// Now (Unix seconds): the certificate must be valid at this instant.
    pub at: i64,
}

/// Checks a seal certificate against the profile, the seal and the trust anchors; the error
/// names the first rule broken.
pub fn check_seal_certificate(
    cert: &Certificate,
    check: &SealCertificateCheck<'_>,
) -> Result<(), CryptoError> {
    let (rest, x) = X509Certificate::from_der(&cert.der)
        .map_err(|_| cert_err("not a DER X.509 certificate"))?;
    if !rest.is_empty() {
        return Err(cert_err("trailing bytes after the certificate"));
    }
    let spki = x.public_key();
    let key_kind_ok = match check.algorithm {
        KeyAlgorithm::Ed25519 => spki.algorithm.algorithm.to_id_string() == "1.3.101.112",
        KeyAlgorithm::EcdsaP256 => ec_curve(spki) == Some("1.2.840.10045.3.1.7".into()),
        KeyAlgorithm::Sm2 => ec_curve(spki) == Some(crate::sm::CURVE_OID.into()),
    };
    if spki.subject_public_key.data.as_ref() != check.public_key || !key_kind_ok {
        return Err(cert_err("the certificate is for another public key"));
    }
    if x.is_ca() {
        return Err(cert_err("a seal certificate cannot be a CA certificate"));
    }
    let ku = x
        .key_usage()
        .map_err(|_| cert_err("malformed key usage"))?
        .ok_or_else(|| cert_err("no key usage extension"))?;
    if !ku.value.digital_signature() || !ku.value.non_repudiation() {
        return Err(cert_err(
            "key usage must include digitalSignature and contentCommitment",
        ));
    }
    let eku = x
        .extended_key_usage()
        .map_err(|_| cert_err("malformed extended key usage"))?
        .ok_or_else(|| cert_err("no extended key usage extension"))?;
    let doc_signing = x509_parser::der_parser::oid::Oid::from(DOCUMENT_SIGNING_OID)
        .map_err(|_| cert_err("OID"))?;
    if !eku.value.other.contains(&doc_signing) {
        return Err(cert_err(
            "extended key usage must include id-kp-documentSigning (1.3.6.1.5.5.7.3.36)",
        ));
    }
    let org_id = x509_parser::der_parser::oid::Oid::from(ORGANIZATION_IDENTIFIER_OID)
        .map_err(|_| cert_err("OID"))?;
    let want = format!("NTRCN-{}", check.credit_code);
    let found: Vec<&str> = x
        .subject()
        .iter_by_oid(&org_id)
        .filter_map(|a| a.as_str().ok())
        .collect();
    if found != [want.as_str()] {
        return Err(cert_err(format!(
            "the subject's organizationIdentifier must be {want}, it is {found:?}"
        )));
    }
    let v = x.validity();
    if v.not_before.timestamp() < check.not_before || v.not_after.timestamp() > check.not_after {
        return Err(cert_err(format!(
            "the certificate is valid {}..{}, outside the seal's window {}..{}",
            v.not_before.timestamp(),
            v.not_after.timestamp(),
            check.not_before,
            check.not_after
        )));
    }
    if check.at < v.not_before.timestamp() {
        return Err(cert_err(format!(
            "the certificate is not yet valid (from {})",
            v.not_before.timestamp()
        )));
    }
    if check.at >= v.not_after.timestamp() {
        return Err(cert_err(format!(
            "the certificate has expired (at {})",
            v.not_after.timestamp()
        )));
    }
    chain_to_anchor(&x, check.anchors, check.intermediates, check.at)
}

/// Longest chain from a certificate to an anchor: the certificate, intermediates, the anchor.
const MAX_CHAIN: usize = 5;

/// Whether `issuer` is a CA that signed `cert` and could sign certificates at `at`.
fn signed_by_ca(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>, at: i64) -> bool {
    let v = issuer.validity();
    let can_sign = issuer
        .key_usage()
        .ok()
        .flatten()
        .is_none_or(|ku| ku.value.key_cert_sign());
    issuer.subject() == cert.issuer()
        && issuer.is_ca()
        && can_sign
        && v.not_before.timestamp() <= at
        && at < v.not_after.timestamp()
        && issuer_signed(cert, issuer)
}

/// Whether `issuer`'s key made `cert`'s signature. x509-parser checks ring's algorithms;
/// SM2-with-SM3 (default distinguishing ID) is checked here, with a key on the SM2 curve only.
fn issuer_signed(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    if cert.signature_algorithm.algorithm.to_id_string() == crate::ses::SM2_WITH_SM3_OID {
        let spki = issuer.public_key();
        return ec_curve(spki).as_deref() == Some(crate::sm::CURVE_OID)
            && crate::sm::verify_sm2(
                spki.subject_public_key.data.as_ref(),
                cert.tbs_certificate.as_ref(),
                cert.signature_value.data.as_ref(),
            )
            .is_ok();
    }
    cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Checks that `cert` (DER) chains to one of `anchors` through `intermediates`, each CA valid
/// and allowed to sign certificates at `at` (Unix seconds).
pub fn check_chain(
    cert: &[u8],
    anchors: &[Certificate],
    intermediates: &[Certificate],
    at: i64,
) -> Result<(), CryptoError> {
    let (_, x) =
        X509Certificate::from_der(cert).map_err(|_| cert_err("not a DER X.509 certificate"))?;
    chain_to_anchor(&x, anchors, intermediates, at)
}

fn chain_to_anchor(
    leaf: &X509Certificate<'_>,
    anchors: &[Certificate],
    intermediates: &[Certificate],
    at: i64,
) -> Result<(), CryptoError> {
    fn parse(c: &Certificate) -> Option<X509Certificate<'_>> {
        X509Certificate::from_der(&c.der).ok().map(|(_, x)| x)
    }
    let anchors: Vec<X509Certificate<'_>> = anchors.iter().filter_map(parse).collect();
    let intermediates: Vec<X509Certificate<'_>> = intermediates.iter().filter_map(parse).collect();
    let mut current = leaf;
    for _ in 0..MAX_CHAIN {
        if anchors.iter().any(|a| signed_by_ca(current, a, at)) {
            return Ok(());
        }
        match intermediates.iter().find(|i| signed_by_ca(current, i, at)) {
            Some(next) if next.subject() != current.subject() => current = next,
            _ => break,
        }
    }
    Err(cert_err(
        "no chain to a configured trust anchor (each CA in it must be valid now and allowed to sign certificates)",
    ))
}

/// Every certificate in PEM text (leaf first), or the one DER certificate.
pub fn certificates_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Certificate>, CryptoError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let text = match std::str::from_utf8(bytes) {
        Ok(t) if t.contains(BEGIN) => t,
        _ => return Ok(vec![certificate_from_pem_or_der(bytes)?]),
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(BEGIN) {
        let block = &rest[i..];
        out.push(certificate_from_pem_or_der(block.as_bytes())?);
        rest = &block[BEGIN.len()..];
        if out.len() > MAX_CHAIN {
            return Err(cert_err(format!(
                "at most {MAX_CHAIN} certificates (the seal's and its intermediates)"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let c = Certificate {
            der: vec![1, 2, 3, 200],
        };
        assert_eq!(certificate_from_pem_or_der(c.pem().as_bytes()).unwrap(), c);
        assert_eq!(certificate_from_pem_or_der(&c.der).unwrap(), c);
    }

    #[test]
    fn a_client_certificate_from_a_request_names_the_department_not_the_requester() {
        let now = 1_800_000_000;
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = create_ca("client CA", &ca_key.pkcs8, now - 10, now + 1000).unwrap();
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = client_csr(&key.pkcs8, "anything the requester likes").unwrap();
        let subject = ClientSubject {
            department_name: "市场监督管理局",
            credit_code: "11100000000013338W",
            roles: &["issuer", "verifier"],
        };
        let cert =
            issue_client_certificate_for_csr(&ca, &ca_key.pkcs8, &csr, &subject, now, now + 100)
                .unwrap();
        check_issued_by(&cert.der, &ca.der, now + 1).unwrap();
        let (code, roles) = client_identity(&cert.der).unwrap();
        assert_eq!(code, "11100000000013338W");
        assert_eq!(roles, ["issuer", "verifier"]);
        // A request whose signature does not match its key is refused.
        use base64::Engine;
        let b64: String = csr.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        let bad = pem_encode("CERTIFICATE REQUEST", &der);
        assert!(
            issue_client_certificate_for_csr(&ca, &ca_key.pkcs8, &bad, &subject, now, now + 100)
                .is_err()
        );
        assert!(
            issue_client_certificate_for_csr(&ca, &ca_key.pkcs8, "junk", &subject, now, now + 100)
                .is_err()
        );
    }
}
