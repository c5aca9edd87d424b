//! COSE_Sign1 (RFC 9052, tag 18) signed through the [`Signer`] trait and checked against a
//! certificate's public key. Protected header: `1` alg, `3` content type, `4` kid, and
//! optionally `33` x5chain (the signer's certificate, for lists whose signer is not a seal).

use coset::iana::{self, EnumI64};
use coset::{
    CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, Label, RegisteredLabel,
    RegisteredLabelWithPrivate, TaggedCborSerializable,
};
use ring::signature::{self, UnparsedPublicKey};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::x509::KeyAlgorithm;
use crate::{CryptoError, Signer};

/// COSE header label of x5chain (RFC 9360).
const X5CHAIN: i64 = 33;

/// A parsed COSE_Sign1 whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct Sign1 {
    /// Algorithm of the protected header.
    pub alg: KeyAlgorithm,
    /// Key ID of the protected header.
    pub kid: Vec<u8>,
    /// Content type of the protected header.
    pub content_type: String,
    /// Certificate carried in the protected header (x5chain), if any.
    pub x5chain: Option<Vec<u8>>,
    /// The payload.
    pub payload: Vec<u8>,
    inner: CoseSign1,
}

fn cose_err(msg: impl Into<String>) -> CryptoError {
    CryptoError::Format(msg.into())
}

/// The COSE algorithm certseal gives SM2 with SM3 (no value is registered): the first of the
/// private-use range. The signature is raw r ‖ s over ToBeSigned, with Z_A of the default
/// distinguishing ID.
pub const SM2_ALG: i64 = -65537;

fn cose_alg(alg: KeyAlgorithm) -> RegisteredLabelWithPrivate<iana::Algorithm> {
    match alg {
        KeyAlgorithm::Ed25519 => RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA),
        KeyAlgorithm::EcdsaP256 => RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256),
        KeyAlgorithm::Sm2 => RegisteredLabelWithPrivate::PrivateUse(SM2_ALG),
    }
}

/// Signs `payload` as a tagged COSE_Sign1.
pub fn sign1(
    signer: &dyn Signer,
    kid: &[u8],
    content_type: &str,
    x5chain: Option<&[u8]>,
    payload: Vec<u8>,
) -> Result<Vec<u8>, CryptoError> {
    let mut h = HeaderBuilder::new()
        .key_id(kid.to_vec())
        .content_type(content_type.to_owned());
    if let Some(der) = x5chain {
        h = h.value(X5CHAIN, ciborium::Value::Bytes(der.to_vec()));
    }
    let mut header = h.build();
    header.alg = Some(cose_alg(signer.algorithm()));
    CoseSign1Builder::new()
        .protected(header)
        .payload(payload)
        .try_create_signature(&[], |tbs| signer.sign(tbs))?
        .build()
        .to_tagged_vec()
        .map_err(|e| cose_err(format!("cannot encode COSE_Sign1: {e}")))
}

/// Parses a tagged COSE_Sign1 of at most `max_len` bytes with an attached payload and an
/// algorithm certseal signs with.
pub fn parse_sign1(bytes: &[u8], max_len: usize) -> Result<Sign1, CryptoError> {
    if bytes.len() > max_len {
        return Err(cose_err(format!(
            "{} bytes, at most {max_len} are accepted",
            bytes.len()
        )));
    }
    let inner = CoseSign1::from_tagged_slice(bytes)
        .map_err(|e| cose_err(format!("not a tagged COSE_Sign1: {e}")))?;
    let h = &inner.protected.header;
    let alg = match &h.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) if *a == iana::Algorithm::EdDSA => {
            KeyAlgorithm::Ed25519
        }
        Some(RegisteredLabelWithPrivate::Assigned(a)) if *a == iana::Algorithm::ES256 => {
            KeyAlgorithm::EcdsaP256
        }
        Some(RegisteredLabelWithPrivate::PrivateUse(SM2_ALG)) => KeyAlgorithm::Sm2,
        Some(other) => return Err(cose_err(format!("unsupported algorithm {other:?}"))),
        None => return Err(cose_err("no algorithm in the protected header")),
    };
    let content_type = match &h.content_type {
        Some(RegisteredLabel::Text(t)) => t.clone(),
        _ => return Err(cose_err("no text content type in the protected header")),
    };
    let x5chain = h
        .rest
        .iter()
        .find(|(l, _)| *l == Label::Int(X5CHAIN))
        .map(|(_, v)| match v {
            ciborium::Value::Bytes(b) => Ok(b.clone()),
            _ => Err(cose_err("x5chain must hold one certificate")),
        })
        .transpose()?;
    let payload = inner
        .payload
        .clone()
        .ok_or_else(|| cose_err("detached payloads are not accepted"))?;
    Ok(Sign1 {
        alg,
        kid: h.key_id.clone(),
        content_type,
        x5chain,
        payload,
        inner,
    })
}

impl Sign1 {
    /// Checks the signature with the public key of `cert_der`, whose key type must match the
    /// algorithm of the header.
    pub fn verify_with_certificate(&self, cert_der: &[u8]) -> Result<(), CryptoError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|_| CryptoError::Certificate("not a DER X.509 certificate".into()))?;
        let spki = cert.public_key();
        let key_alg = spki.algorithm.algorithm.to_id_string();
        let curve = crate::x509::ec_curve(spki);
        let key = spki.subject_public_key.data.as_ref();
        let algorithm: &dyn signature::VerificationAlgorithm = match (self.alg, curve.as_deref()) {
            (KeyAlgorithm::Ed25519, _) if key_alg == "1.3.101.112" => &signature::ED25519,
            (KeyAlgorithm::EcdsaP256, Some("1.2.840.10045.3.1.7")) => {
                &signature::ECDSA_P256_SHA256_FIXED
            }
            (KeyAlgorithm::Sm2, Some(crate::sm::CURVE_OID)) => {
                return self.inner.verify_signature(&[], |sig, tbs| {
                    if sig.len() != 64 {
                        return Err(CryptoError::BadSignature);
                    }
                    crate::sm::verify_sm2(key, tbs, sig)
                });
            }
            (alg, curve) => {
                return Err(cose_err(format!(
                    "the header names {alg:?} but the certificate holds a {key_alg} key{}",
                    curve.map(|c| format!(" on curve {c}")).unwrap_or_default()
                )));
            }
        };
        self.inner.verify_signature(&[], |sig, tbs| {
            UnparsedPublicKey::new(algorithm, key)
                .verify(tbs, sig)
                .map_err(|_| CryptoError::BadSignature)
        })
    }

    /// The COSE algorithm number of the header.
    pub fn cose_alg(&self) -> i64 {
        match self.alg {
            KeyAlgorithm::Ed25519 => iana::Algorithm::EdDSA.to_i64(),
            KeyAlgorithm::EcdsaP256 => iana::Algorithm::ES256.to_i64(),
            KeyAlgorithm::Sm2 => SM2_ALG,
        }
    }

    /// Re-encodes the document (for comparing with stored bytes).
    pub fn to_vec(&self) -> Result<Vec<u8>, CryptoError> {
        self.inner
            .clone()
            .to_vec()
            .map_err(|e| cose_err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::{self, SealSubject, generate_key};

    #[test]
    fn sign1_verifies_against_its_certificate_and_nothing_else() {
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = x509::create_ca("test CA", &ca_key.pkcs8, 0, 4_000_000_000).unwrap();
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let key = generate_key(alg).unwrap();
            let subject = SealSubject {
                department_name: "某局",
                credit_code: "11100000000013338W",
                seal_name: "章",
            };
            let cert = x509::issue_seal_certificate(
                &ca,
                &ca_key.pkcs8,
                &key.pkcs8,
                &subject,
                0,
                4_000_000_000,
            )
            .unwrap();
            let signer = crate::load_signer(alg, &key.pkcs8).unwrap();
            let doc = sign1(
                signer.as_ref(),
                &cert.kid(),
                "application/test",
                Some(&cert.der),
                b"payload".to_vec(),
            )
            .unwrap();
            assert_eq!(doc[0], 0xd2, "tag 18");
            let p = parse_sign1(&doc, 10_000).unwrap();
            assert_eq!(p.alg, alg);
            assert_eq!(p.kid, cert.kid());
            assert_eq!(p.content_type, "application/test");
            assert_eq!(p.x5chain.as_deref(), Some(cert.der.as_slice()));
            assert_eq!(p.payload, b"payload");
            p.verify_with_certificate(&cert.der).unwrap();
            // Another key's certificate, a changed payload, a wrong-type key: all refused.
            assert!(p.verify_with_certificate(&ca.der).is_err());
            let mut tampered = doc.clone();
            let at = tampered.windows(7).position(|w| w == b"payload").unwrap();
            tampered[at] = b'P';
            let t = parse_sign1(&tampered, 10_000).unwrap();
            assert_eq!(
                t.verify_with_certificate(&cert.der),
                Err(CryptoError::BadSignature)
            );
            assert!(parse_sign1(&doc, 10).is_err(), "size bound");
            assert!(parse_sign1(&doc[1..], 10_000).is_err(), "untagged");
            assert!(
                parse_sign1(&doc[..doc.len() - 3], 10_000).is_err(),
                "truncated"
            );
        }
    }
}
