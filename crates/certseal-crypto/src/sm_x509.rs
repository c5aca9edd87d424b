//! SM2 certificates (SM2-with-SM3, 1.2.156.10197.1.501, on curve 1.2.156.10197.1.301) in the
//! same profile as the others (see [`crate::x509`]): the seal CA's own, and seal certificates
//! with digitalSignature, contentCommitment and documentSigning, O = department name,
//! organizationIdentifier = `NTRCN-<credit code>`, CN = seal name.
//!
//! rcgen signs only with ring's algorithms, so these are built with RustCrypto's `x509-cert`.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use sm2::dsa::signature::{self, Keypair};
use sm2::dsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::request::RequestBuilder;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned,
    SubjectPublicKeyInfoRef,
};
use x509_cert::time::{Time, Validity};

use crate::sm::Sm2Key;
use crate::x509::{Certificate, SealSubject};
use crate::{CryptoError, random};

/// id-kp-documentSigning (RFC 9336).
const DOCUMENT_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.36");

fn cert_err(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Certificate(e.to_string())
}

/// Escapes a value for an RFC 4514 name string.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A name from its attributes in DER order (RFC 4514 strings list them in reverse).
fn name(attributes: &[(&str, &str)]) -> Result<Name, CryptoError> {
    let s: Vec<String> = attributes
        .iter()
        .rev()
        .map(|(oid, v)| format!("{oid}={}", escape(v)))
        .collect();
    Name::from_str(&s.join(",")).map_err(cert_err)
}

fn time(unix_s: i64) -> Result<Time, CryptoError> {
    let t = UNIX_EPOCH
        + Duration::from_secs(u64::try_from(unix_s).map_err(|_| cert_err("a time before 1970"))?);
    Time::try_from(t).map_err(cert_err)
}

fn serial() -> Result<SerialNumber, CryptoError> {
    let mut s = [0u8; 16];
    random(&mut s)?;
    s[0] &= 0x7f; // positive, and a leading zero byte is not needed
    s[0] |= 0x01;
    SerialNumber::new(&s).map_err(cert_err)
}

/// The two profiles: the seal CA (issuer = subject) and a seal.
struct Profile {
    issuer: Name,
    subject: Name,
    ca: bool,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut ext: Vec<Extension> = Vec::new();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let aki = SubjectKeyIdentifier::try_from(issuer_spk)?;
        ext.push(
            BasicConstraints {
                ca: self.ca,
                path_len_constraint: self.ca.then_some(0),
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        let usage = if self.ca {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign
        } else {
            KeyUsages::DigitalSignature | KeyUsages::NonRepudiation
        };
        ext.push(KeyUsage(usage).to_extension(tbs.subject(), &ext)?);
        if !self.ca {
            ext.push(ExtendedKeyUsage(vec![DOCUMENT_SIGNING]).to_extension(tbs.subject(), &ext)?);
            ext.push(
                AuthorityKeyIdentifier {
                    key_identifier: Some(aki.0),
                    ..Default::default()
                }
                .to_extension(tbs.subject(), &ext)?,
            );
        }
        ext.push(ski.to_extension(tbs.subject(), &ext)?);
        Ok(ext)
    }
}

/// Signs with an SM2 key, the signature DER-encoded as X.509 carries it.
struct DerSigner<'a>(&'a SigningKey);

impl Keypair for DerSigner<'_> {
    type VerifyingKey = VerifyingKey;

    fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key().clone()
    }
}

impl DynSignatureAlgorithmIdentifier for DerSigner<'_> {
    fn signature_algorithm_identifier(&self) -> x509_cert::spki::Result<AlgorithmIdentifierOwned> {
        self.0.signature_algorithm_identifier()
    }
}

impl signature::Signer<DerSignature> for DerSigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<DerSignature, signature::Error> {
        let sig: Signature = signature::Signer::try_sign(self.0, msg)?;
        Ok(sig.to_der())
    }
}

fn build(
    profile: Profile,
    subject_spki_der: &[u8],
    signer: &Sm2Key,
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(subject_spki_der).map_err(cert_err)?;
    let validity = Validity::new(time(not_before)?, time(not_after)?);
    let builder = CertificateBuilder::new(profile, serial()?, validity, spki).map_err(cert_err)?;
    let cert = builder
        .build::<_, DerSignature>(&DerSigner(signer.signing_key()))
        .map_err(cert_err)?;
    Ok(Certificate {
        der: cert.to_der().map_err(cert_err)?,
    })
}

/// Creates a self-signed SM2 seal CA certificate for `ca`.
pub fn create_ca(
    common_name: &str,
    ca: &Sm2Key,
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    let dn = name(&[("CN", common_name)])?;
    let profile = Profile {
        issuer: dn.clone(),
        subject: dn,
        ca: true,
    };
    build(profile, &ca.public_key_der()?, ca, not_before, not_after)
}

/// The seal's subject: O, organizationIdentifier `NTRCN-<code>`, CN, in that DER order.
fn seal_subject(subject: &SealSubject<'_>) -> Result<Name, CryptoError> {
    let code = format!("NTRCN-{}", subject.credit_code);
    name(&[
        ("O", subject.department_name),
        ("2.5.4.97", &code),
        ("CN", subject.seal_name),
    ])
}

/// A PKCS#10 request (PEM) signed by the SM2 seal key, naming the seal as its certificate
/// would and asking for the seal profile's key usages, for an external SM2 CA.
pub fn seal_csr(key: &Sm2Key, subject: &SealSubject<'_>) -> Result<String, CryptoError> {
    let mut b = RequestBuilder::new(seal_subject(subject)?).map_err(cert_err)?;
    b.add_extension(&KeyUsage(
        KeyUsages::DigitalSignature | KeyUsages::NonRepudiation,
    ))
    .map_err(cert_err)?;
    b.add_extension(&ExtendedKeyUsage(vec![DOCUMENT_SIGNING]))
        .map_err(cert_err)?;
    let req = b
        .build::<_, DerSignature>(&DerSigner(key.signing_key()))
        .map_err(cert_err)?;
    Ok(crate::x509::pem_encode(
        "CERTIFICATE REQUEST",
        &req.to_der().map_err(cert_err)?,
    ))
}

/// Issues an SM2 seal certificate for the public key `seal_spki_der` (a DER
/// SubjectPublicKeyInfo), signed by the SM2 CA `ca` whose certificate is `ca_cert`.
pub fn issue_seal_certificate(
    ca_cert: &Certificate,
    ca: &Sm2Key,
    seal_spki_der: &[u8],
    subject: &SealSubject<'_>,
    not_before: i64,
    not_after: i64,
) -> Result<Certificate, CryptoError> {
    let issuer = x509_cert::Certificate::from_der(&ca_cert.der)
        .map_err(cert_err)?
        .tbs_certificate()
        .subject()
        .clone();
    let profile = Profile {
        issuer,
        subject: seal_subject(subject)?,
        ca: false,
    };
    build(profile, seal_spki_der, ca, not_before, not_after)
}
