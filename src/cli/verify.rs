//! `certseal verify` (offline) and `certseal statuslist …`.

use anyhow::Context;
use serde_json::{Value, json};

use super::client::{Client, explain};
use super::files::{read, time_arg, write};
use super::output::print_one;
use super::{StatuslistCommand, VerifyArgs};
use crate::pb;

/// A verification result as JSON.
pub fn result_json(r: &pb::VerificationResult) -> Value {
    let mut v = json!({
        "indication": r.indication().as_str_name(),
        "sub_indication": if r.sub_indication == 0 { Value::Null } else { json!(r.sub_indication().as_str_name()) },
        "reason": r.reason,
        "receipt_id": r.receipt_id,
        "receipt_log_index": r.receipt_log_index,
        "basis": r.basis().as_str_name().trim_start_matches("CHECK_BASIS_"),
    });
    if let Some(l) = &r.licence {
        v["licence"] = super::output::licence(l);
    }
    v
}

/// `certseal verify`: a document checked with files only.
pub fn offline(a: VerifyArgs) -> anyhow::Result<()> {
    if let Some(anchor) = &a.anchor {
        return seal_signature_only(&a, anchor);
    }
    let (Some(ca_file), Some(trust_list_file)) = (&a.ca, &a.trust_list) else {
        anyhow::bail!("give --trust-list and --ca (or --anchor for an OFD file's seal alone)");
    };
    let ca = certseal_crypto::x509::certificate_from_pem_or_der(&read(ca_file)?).context("--ca")?;
    let trust_list = certseal_verify::verify_trust_list(&read(trust_list_file)?, &ca.der)
        .context("--trust-list")?;
    let status = a
        .status
        .as_ref()
        .map(|p| certseal_verify::verify_status_list(&read(p)?, &ca.der).context("--status"))
        .transpose()?;
    let input = if a.document.starts_with("CS1:") {
        a.document.clone().into_bytes()
    } else {
        read(std::path::Path::new(&a.document))?
    };
    let document = match std::str::from_utf8(&input) {
        Ok(text) if text.trim_start().starts_with("CS1:") => {
            certseal_core::qr::decode(text.trim()).unwrap_or_else(|_| input.clone())
        }
        _ => input,
    };
    let at = match time_arg("--at", a.at.as_deref())? {
        Some(t) => certseal_core::Timestamp(t.seconds * 1000 + i64::from(t.nanos / 1_000_000)),
        None => certseal_core::Timestamp::now(),
    };
    if let Some(s) = &status {
        certseal_verify::check_status_list_fits(
            s,
            &trust_list,
            certseal_core::Timestamp::now().max(at),
            a.status_max_age_hours.saturating_mul(3_600_000),
        )
        .context("--status")?;
    }
    let o = if is_ofd(&document) {
        certseal_verify::verify_ofd_offline(&document, &trust_list, status.as_ref(), at)
    } else {
        certseal_verify::verify_document_offline(&document, &trust_list, status.as_ref(), at)
    };
    let v = json!({
        "indication": o.indication.as_str(),
        "sub_indication": o.sub.map(|s| s.as_str()),
        "reason": o.reason,
        "status_checked": o.status_checked,
        "licence_id": o.claims.as_ref().map(|c| c.id.to_string()),
        "issuer": o.claims.as_ref().map(|c| c.issuer.to_string()),
        "type_code": o.claims.as_ref().map(|c| c.type_code.to_string()),
        "seal_id": o.seal_id.map(|s| s.to_string()),
        "trust_list_issued_at_ms": trust_list.issued_at.0,
        "status_list_issued_at_ms": status.as_ref().map(|s| s.issued_at().0),
        "status_list_version": status.as_ref().map(|s| s.version()),
    });
    print_one(&v, a.json);
    Ok(())
}

/// An OFD file is a ZIP package.
fn is_ofd(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// `certseal verify FILE.ofd --anchor CERT`: the seal signature of any sealed OFD file.
fn seal_signature_only(a: &VerifyArgs, anchor: &std::path::Path) -> anyhow::Result<()> {
    let anchor =
        certseal_crypto::x509::certificate_from_pem_or_der(&read(anchor)?).context("--anchor")?;
    let file = read(std::path::Path::new(&a.document))?;
    // Judged at the file's own signing time, which only the signer vouches for: a signature
    // check, not a verdict on any licence.
    let (verdict, reason, sealed) = match certseal_ofd::open_sealed(&file) {
        Err(e) => ("INVALID", e.to_string(), None),
        Ok(f) => {
            let at = f.signed_at;
            let in_validity = certseal_crypto::x509::validity(&f.signature.cert)
                .is_ok_and(|(nb, na)| nb <= at && at < na);
            let trusted = f.signature.cert == anchor.der
                || certseal_crypto::x509::check_chain(
                    &f.signature.cert,
                    std::slice::from_ref(&anchor),
                    &[],
                    at,
                )
                .is_ok();
            if trusted {
                let note = if in_validity {
                    String::new()
                } else {
                    "the signer certificate was not valid at the file's signing time".into()
                };
                ("VALID", note, Some(f))
            } else {
                (
                    "UNTRUSTED",
                    "the signer certificate is not the anchor and does not chain to it".into(),
                    Some(f),
                )
            }
        }
    };
    let v = json!({
        "seal_signature": verdict,
        "checked": "the seal signature only, at the file's own signing time: no licence, status or revocation",
        "reason": reason,
        "signer_valid_at_signing": sealed.as_ref().map(|f| {
            certseal_crypto::x509::validity(&f.signature.cert)
                .is_ok_and(|(nb, na)| nb <= f.signed_at && f.signed_at < na)
        }),
        "seal_name": sealed.as_ref().map(|f| f.seal().name.clone()),
        "seal_es_id": sealed.as_ref().map(|f| f.seal().es_id.clone()),
        "signed_at": sealed.as_ref().map(|f| f.signature.time.clone()),
        "covered_files": sealed.as_ref().map(|f| f.covered.clone()),
    });
    print_one(&v, a.json);
    Ok(())
}

/// `certseal statuslist …`
pub async fn statuslist(c: StatuslistCommand) -> anyhow::Result<()> {
    match c {
        StatuslistCommand::Export {
            file,
            format_version,
            client,
        } => {
            let cl = Client::connect(&client).await?;
            let r = cl
                .verification()
                .get_status_list(cl.request(pb::GetStatusListRequest {
                    version: format_version,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            write(&file, &r.signed)?;
            eprintln!(
                "wrote the status list (version {}, {} entries, log size {}, {} bytes) to {}",
                r.version,
                r.entries,
                r.log_size,
                r.signed.len(),
                file.display()
            );
            Ok(())
        }
    }
}
