//! `certseal seal …`, `certseal trustlist …` and `certseal keys …`.

use anyhow::{Context, bail};
use serde_json::json;

use super::client::{Client, explain};
use super::files::{read, time_arg, write};
use super::output::{self, print_list, print_one};
use super::{KeysCommand, SealCommand, TrustlistCommand};
use crate::config::{Overrides, RawConfig};
use crate::pb;

fn seal_type(v: &str) -> anyhow::Result<pb::SealType> {
    Ok(match v {
        "official" => pb::SealType::Official,
        "special-purpose" => pb::SealType::SpecialPurpose,
        "contract" => pb::SealType::Contract,
        "finance" => pb::SealType::Finance,
        "personal-name" => pb::SealType::PersonalName,
        other => {
            bail!("--type '{other}': official, special-purpose, contract, finance or personal-name")
        }
    })
}

/// Runs `certseal seal …`.
pub async fn run(c: SealCommand) -> anyhow::Result<()> {
    use SealCommand as S;
    let (S::Register { client, .. }
    | S::Csr { client, .. }
    | S::ImportCert { client, .. }
    | S::Activate { client, .. }
    | S::Suspend { client, .. }
    | S::Reinstate { client, .. }
    | S::Revoke { client, .. }
    | S::Get { client, .. }
    | S::List { client, .. }
    | S::Usable { client, .. }) = &c;
    let cl = Client::connect(client).await?;
    let json = client.json;
    let seal = match c {
        S::Register {
            department,
            name,
            seal_type: t,
            image,
            algorithm,
            not_before,
            not_after,
            national_code,
            external_ca,
            csr_out,
            request_id,
            ..
        } => {
            let algorithm = match algorithm.as_str() {
                "ed25519" => pb::SealAlgorithm::Ed25519,
                "p256" | "ecdsa-p256" => pb::SealAlgorithm::EcdsaP256,
                "sm2" => pb::SealAlgorithm::Sm2,
                other => bail!("--algorithm '{other}': ed25519, p256 or sm2"),
            };
            let r = cl
                .seals()
                .register_seal(cl.request(pb::RegisterSealRequest {
                    department,
                    name,
                    r#type: seal_type(&t)? as i32,
                    image: read(&image)?,
                    algorithm: algorithm as i32,
                    not_before: time_arg("--not-before", not_before.as_deref())?,
                    not_after: time_arg("--not-after", not_after.as_deref())?,
                    national_code,
                    external_ca,
                    request_id,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(path) = csr_out {
                write(&path, r.csr_pem.as_bytes())?;
                eprintln!(
                    "CSR written to {}; have it signed, then: certseal seal import-cert {} --certificate FILE",
                    path.display(),
                    r.seal.as_ref().map(|s| s.seal_id.as_str()).unwrap_or("")
                );
            }
            r.seal.unwrap_or_default()
        }
        S::Csr { seal_id, .. } => {
            let r = cl
                .seals()
                .get_seal_csr(cl.request(pb::GetSealCsrRequest { seal_id })?)
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", r.csr_pem);
            return Ok(());
        }
        S::ImportCert {
            seal_id,
            certificate,
            request_id,
            ..
        } => cl
            .seals()
            .import_seal_certificate(cl.request(pb::ImportSealCertificateRequest {
                seal_id,
                certificate: read(&certificate)?,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        S::Activate {
            seal_id,
            note,
            request_id,
            ..
        } => cl
            .seals()
            .activate_seal(cl.request(pb::SealTransitionRequest {
                seal_id,
                note,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        S::Suspend {
            seal_id,
            note,
            request_id,
            ..
        } => cl
            .seals()
            .suspend_seal(cl.request(pb::SealTransitionRequest {
                seal_id,
                note,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        S::Reinstate {
            seal_id,
            note,
            request_id,
            ..
        } => cl
            .seals()
            .reinstate_seal(cl.request(pb::SealTransitionRequest {
                seal_id,
                note,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        S::Revoke {
            seal_id,
            reason,
            compromised_at,
            note,
            request_id,
            ..
        } => {
            let reason = match reason.as_str() {
                "key-compromise" => pb::RevocationReason::KeyCompromise,
                "superseded" => pb::RevocationReason::Superseded,
                "retired" => pb::RevocationReason::Retired,
                other => bail!("--reason '{other}': key-compromise, superseded or retired"),
            };
            cl.seals()
                .revoke_seal(cl.request(pb::RevokeSealRequest {
                    seal_id,
                    reason: reason as i32,
                    compromised_at: time_arg("--compromised-at", compromised_at.as_deref())?,
                    note,
                    request_id,
                })?)
                .await
                .map_err(explain)?
                .into_inner()
        }
        S::Get {
            seal_id,
            cert_out,
            cert_der_out,
            image_out,
            esl_out,
            ..
        } => {
            let r = cl
                .seals()
                .get_seal(cl.request(pb::GetSealRequest {
                    seal_id,
                    include_image: image_out.is_some(),
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            let seal = r.seal.unwrap_or_default();
            if (cert_out.is_some() || cert_der_out.is_some()) && seal.certificate_der.is_empty() {
                bail!("seal {} has no certificate yet", seal.seal_id);
            }
            if let Some(p) = cert_out {
                write(&p, seal.certificate_pem.as_bytes())?;
            }
            if let Some(p) = cert_der_out {
                write(&p, &seal.certificate_der)?;
            }
            if let Some(p) = image_out {
                write(&p, &r.image)?;
            }
            if let Some(p) = esl_out {
                if r.esl.is_empty() {
                    bail!(
                        "seal {} has no GB/T 38540 seal: only SM2 seals with a certificate have one",
                        seal.seal_id
                    );
                }
                write(&p, &r.esl)?;
            }
            seal
        }
        S::List {
            department,
            status,
            page_size,
            mut page_token,
            ..
        } => {
            let status = match status.as_deref() {
                None => pb::SealStatus::Unspecified,
                Some("pending") => pb::SealStatus::Pending,
                Some("active") => pb::SealStatus::Active,
                Some("suspended") => pb::SealStatus::Suspended,
                Some("revoked") => pb::SealStatus::Revoked,
                Some(other) => bail!("--status '{other}': pending, active, suspended or revoked"),
            };
            let mut items = Vec::new();
            loop {
                let r = cl
                    .seals()
                    .list_seals(cl.request(pb::ListSealsRequest {
                        department: department.clone().unwrap_or_default(),
                        status: status as i32,
                        page_size: page_size.unwrap_or(0),
                        page_token,
                    })?)
                    .await
                    .map_err(explain)?
                    .into_inner();
                items.extend(r.seals.iter().map(output::seal));
                page_token = r.next_page_token;
                if page_token.is_empty() || page_size.is_some() {
                    break;
                }
            }
            print_list(
                &items,
                &[
                    "seal_id",
                    "department",
                    "status",
                    "type",
                    "algorithm",
                    "name",
                ],
                &page_token,
                json,
            );
            return Ok(());
        }
        S::Usable { seal_id, at, .. } => {
            let r = cl
                .seals()
                .check_seal_usable(cl.request(pb::CheckSealUsableRequest {
                    seal_id,
                    at: time_arg("--at", at.as_deref())?,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            print_one(
                &json!({
                    "usable": r.usable,
                    "status_at": r.status_at().as_str_name().trim_start_matches("SEAL_STATUS_").to_ascii_lowercase(),
                    "reason": r.reason,
                }),
                json,
            );
            return Ok(());
        }
    };
    print_one(&output::seal(&seal), json);
    Ok(())
}

/// Runs `certseal trustlist …`.
pub async fn trustlist(c: TrustlistCommand) -> anyhow::Result<()> {
    match c {
        TrustlistCommand::Export { file, client } => {
            let cl = Client::connect(&client).await?;
            let r = cl
                .seals()
                .get_trust_list(cl.request(pb::GetTrustListRequest {})?)
                .await
                .map_err(explain)?
                .into_inner();
            write(&file, &r.signed)?;
            eprintln!(
                "wrote the trust list ({} seals, {} bytes) to {}",
                r.seal_count,
                r.signed.len(),
                file.display()
            );
            Ok(())
        }
        TrustlistCommand::Verify { file, ca, json } => {
            let ca =
                certseal_crypto::x509::certificate_from_pem_or_der(&read(&ca)?).context("--ca")?;
            let list = certseal_verify::verify_trust_list(&read(&file)?, &ca.der)?;
            let seals: Vec<_> = list
                .seals
                .iter()
                .map(|s| {
                    json!({
                        "seal_id": s.id.to_string(),
                        "department": s.department.to_string(),
                        "status": s.status().as_str(),
                        "name": s.name,
                        "kid": s.kid.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    })
                })
                .collect();
            if json {
                print_one(
                    &json!({
                        "verified": true,
                        "issuer": list.issuer,
                        "issued_at_ms": list.issued_at.0,
                        "log_size": list.log_size,
                        "seals": seals,
                    }),
                    true,
                );
            } else {
                println!(
                    "trust list verified: issuer {}, issued at {} ms, log size {}, {} seal(s)",
                    list.issuer,
                    list.issued_at.0,
                    list.log_size,
                    seals.len()
                );
                print_list(
                    &seals,
                    &["seal_id", "department", "status", "kid", "name"],
                    "",
                    false,
                );
            }
            Ok(())
        }
    }
}

/// Runs `certseal keys …` (offline).
pub fn keys(c: KeysCommand) -> anyhow::Result<()> {
    match c {
        KeysCommand::Rewrap {
            data_dir,
            config,
            new_kek,
        } => {
            let raw = match &config {
                Some(p) => RawConfig::load(p)?,
                None => RawConfig::default(),
            };
            let config = raw.validate(Overrides {
                data_dir: Some(data_dir.clone()),
                ..Overrides::default()
            })?;
            let n = crate::storage::open_existing(&config)
                .and_then(|store| {
                    certseal_registry::rewrap_keys(
                        store.as_ref(),
                        &config.registry.kek_file(&data_dir),
                        &new_kek,
                    )
                })
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("re-wrapping the keys (is the server stopped?)")?;
            println!(
                "re-sealed {n} key(s) under {}.\nNext: set [keys] kek_file = \"{}\" in the server's config (or move it to {}), start the server, then destroy the old key file.",
                new_kek.display(),
                new_kek.display(),
                data_dir.join("keys").join("kek").display()
            );
            Ok(())
        }
    }
}
