//! `certseal licence …`.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use super::client::{Client, explain};
use super::files::{time_arg, write};
use super::output::{self, print_list, print_one};
use super::{LicenceCommand, LicenceContent};
use crate::pb;

fn holder_kind(v: &str) -> anyhow::Result<pb::HolderKind> {
    Ok(match v {
        "person" => pb::HolderKind::Person,
        "organisation" | "organization" => pb::HolderKind::Organisation,
        other => bail!("holder kind '{other}': person or organisation"),
    })
}

fn json_value(name: &str, v: &serde_json::Value) -> anyhow::Result<pb::FieldValue> {
    use pb::field_value::Value as V;
    let value = match v {
        serde_json::Value::String(s) => V::Text(s.clone()),
        serde_json::Value::Bool(b) => V::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => V::Integer(i),
            // JSON readers pass such numbers through binary floating point, which can change
            // their digits: decimals must be written as text.
            None => bail!("field {name}: write decimals as text, e.g. \"12.50\", not as {n}"),
        },
        _ => bail!("field {name}: text, a number or true/false"),
    };
    Ok(pb::FieldValue { value: Some(value) })
}

fn json_fields(
    map: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<HashMap<String, pb::FieldValue>> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), json_value(k, v)?)))
        .collect()
}

fn content_fields(c: &LicenceContent) -> anyhow::Result<HashMap<String, pb::FieldValue>> {
    let mut out = HashMap::new();
    if let Some(path) = &c.fields_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object", path.display()))?;
        out.extend(json_fields(&map)?);
    }
    for f in &c.fields {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("--field '{f}': NAME=VALUE"))?;
        out.insert(
            k.to_owned(),
            pb::FieldValue {
                value: Some(pb::field_value::Value::Text(v.to_owned())),
            },
        );
    }
    Ok(out)
}

fn random_key() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    certseal_crypto::random(&mut b).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Runs `certseal licence …`.
pub async fn run(c: LicenceCommand) -> anyhow::Result<()> {
    use LicenceCommand as L;
    let (L::Issue { client, .. }
    | L::Get { client, .. }
    | L::List { client, .. }
    | L::Amend { client, .. }
    | L::Renew { client, .. }
    | L::Suspend { client, .. }
    | L::Reinstate { client, .. }
    | L::Revoke { client, .. }
    | L::Import { client, .. }
    | L::Verify { client, .. }
    | L::Receipts { client, .. }
    | L::Qr { client, .. }
    | L::Ofd { client, .. }) = &c;
    let cl = Client::connect(client).await?;
    let json = client.json;
    let licence = match c {
        L::Issue {
            type_code,
            holder_kind: kind,
            holder_id,
            holder_name,
            seal,
            idempotency_key,
            content,
            out,
            ..
        } => {
            let key = match idempotency_key {
                Some(k) => k,
                None => {
                    let k = random_key()?;
                    eprintln!("idempotency key {k} (pass --idempotency-key {k} to retry safely)");
                    k
                }
            };
            let l = cl
                .licences()
                .issue_licence(cl.request(pb::IssueLicenceRequest {
                    type_code,
                    template_version: content.template_version,
                    holder: Some(pb::Holder {
                        kind: holder_kind(&kind)? as i32,
                        id: holder_id,
                        name: holder_name,
                    }),
                    fields: content_fields(&content)?,
                    not_before: time_arg("--not-before", content.not_before.as_deref())?,
                    not_after: time_arg("--not-after", content.not_after.as_deref())?,
                    seal_id: seal,
                    idempotency_key: key,
                    existing_id: String::new(),
                    collected: None,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(p) = out {
                write(&p, &l.document)?;
            }
            l
        }
        L::Get {
            licence_id, out, ..
        } => {
            let l = cl
                .licences()
                .get_licence(cl.request(pb::GetLicenceRequest { licence_id })?)
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(p) = out {
                write(&p, &l.document)?;
            }
            l
        }
        L::Ofd {
            licence_id, out, ..
        } => {
            let f = cl
                .licences()
                .get_licence_file(cl.request(pb::GetLicenceFileRequest {
                    licence_id,
                    format: pb::LicenceFileFormat::Ofd as i32,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            super::files::write(&out, &f.content)?;
            if f.sealed {
                eprintln!(
                    "wrote {} ({} bytes): licence {} sealed with its SM2 seal (log entry {})",
                    out.display(),
                    f.content.len(),
                    f.licence_id,
                    f.log_index
                );
            } else {
                eprintln!(
                    "wrote {} ({} bytes): an unsigned view of licence {}; its proof is its COSE document",
                    out.display(),
                    f.content.len(),
                    f.licence_id
                );
            }
            return Ok(());
        }
        L::Qr {
            licence_id, png, ..
        } => {
            let l = cl
                .licences()
                .get_licence(cl.request(pb::GetLicenceRequest { licence_id })?)
                .await
                .map_err(explain)?
                .into_inner();
            match png {
                None => println!("{}", l.qr),
                Some(path) => {
                    // Checked here to say what prints instead: the page address is the
                    // server's setting, which no call returns.
                    let max = certseal_core::qr::MAX_PRINTABLE_QR_CHARS;
                    if l.qr.len() > max {
                        bail!(
                            "licence {id} has a QR string of {} characters; a printable QR code \
                             (version 40, level M) holds at most {max}. Such a licence is printed \
                             with the QR code of its public page address, \
                             <public_page.base_url>/v/{id}, and is checked online by its ID: \
                             the public page shows that code on the licence's page (扫码查看最新状态) \
                             when the server sets [public_page] base_url, ready to print; \
                             `certseal licence qr {id}` without --png prints the whole string for \
                             machines",
                            l.qr.len(),
                            id = l.licence_id,
                        );
                    }
                    let image = crate::qr_image::png(&l.qr)?;
                    super::files::write(&path, &image)?;
                    eprintln!(
                        "wrote {} ({} bytes): the QR code of {} characters",
                        path.display(),
                        image.len(),
                        l.qr.len()
                    );
                }
            }
            return Ok(());
        }
        L::List {
            holder_kind: kind,
            holder_id,
            issuer,
            type_code,
            page_size,
            mut page_token,
            ..
        } => {
            let kind = match kind.as_deref() {
                Some(k) => holder_kind(k)? as i32,
                None if holder_id.is_some() => bail!("--holder-id needs --holder-kind"),
                None => 0,
            };
            let mut items = Vec::new();
            loop {
                let r = cl
                    .licences()
                    .list_licences(cl.request(pb::ListLicencesRequest {
                        holder_kind: kind,
                        holder_id: holder_id.clone().unwrap_or_default(),
                        issuer: issuer.clone().unwrap_or_default(),
                        type_code: type_code.clone().unwrap_or_default(),
                        page_size: page_size.unwrap_or(0),
                        page_token,
                    })?)
                    .await
                    .map_err(explain)?
                    .into_inner();
                items.extend(r.licences.iter().map(output::licence));
                page_token = r.next_page_token;
                if page_token.is_empty() || page_size.is_some() {
                    break;
                }
            }
            print_list(
                &items,
                &["licence_id", "status", "issued_at", "not_after"],
                &page_token,
                json,
            );
            return Ok(());
        }
        L::Amend {
            licence_id,
            content,
            holder_name,
            seal,
            note,
            request_id,
            ..
        } => cl
            .licences()
            .amend_licence(cl.request(pb::AmendLicenceRequest {
                licence_id,
                fields: content_fields(&content)?,
                holder_name: holder_name.unwrap_or_default(),
                template_version: content.template_version,
                not_before: time_arg("--not-before", content.not_before.as_deref())?,
                not_after: time_arg("--not-after", content.not_after.as_deref())?,
                seal_id: seal.unwrap_or_default(),
                note,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        L::Renew {
            licence_id,
            not_before,
            not_after,
            seal,
            note,
            request_id,
            ..
        } => cl
            .licences()
            .renew_licence(cl.request(pb::RenewLicenceRequest {
                licence_id,
                template_version: 0,
                not_before: time_arg("--not-before", not_before.as_deref())?,
                not_after: time_arg("--not-after", not_after.as_deref())?,
                seal_id: seal.unwrap_or_default(),
                note,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        L::Suspend {
            licence_id,
            note,
            request_id,
            ..
        } => cl
            .licences()
            .suspend_licence(cl.request(pb::LicenceTransitionRequest {
                licence_id,
                note,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        L::Reinstate {
            licence_id,
            note,
            request_id,
            ..
        } => cl
            .licences()
            .reinstate_licence(cl.request(pb::LicenceTransitionRequest {
                licence_id,
                note,
                request_id,
            })?)
            .await
            .map_err(explain)?
            .into_inner(),
        L::Revoke {
            licence_id,
            reason,
            note,
            request_id,
            ..
        } => {
            let reason = match reason.as_str() {
                "issued-in-error" => pb::LicenceRevocationReason::IssuedInError,
                "withdrawn" => pb::LicenceRevocationReason::Withdrawn,
                "cancelled" => pb::LicenceRevocationReason::Cancelled,
                "other" => pb::LicenceRevocationReason::Other,
                "penalty" => pb::LicenceRevocationReason::Penalty,
                "lapsed" => pb::LicenceRevocationReason::Lapsed,
                other => {
                    bail!(
                        "--reason '{other}': issued-in-error, withdrawn (撤销), cancelled (注销), penalty (吊销), lapsed (失效) or other"
                    )
                }
            };
            cl.licences()
                .revoke_licence(cl.request(pb::RevokeLicenceRequest {
                    licence_id,
                    reason: reason as i32,
                    note,
                    request_id,
                })?)
                .await
                .map_err(explain)?
                .into_inner()
        }
        L::Import { file, failures, .. } => return import(&cl, &file, failures.as_deref()).await,
        L::Verify {
            licence_id,
            purpose,
            why,
            at,
            receipt_out,
            use_code,
            ..
        } => {
            let r = cl
                .verification()
                .verify_licence(cl.request(pb::VerifyLicenceRequest {
                    licence_id: licence_id.unwrap_or_default(),
                    purpose: Some(pb::Purpose {
                        code: purpose,
                        text: why,
                    }),
                    at: time_arg("--at", at.as_deref())?,
                    use_code: use_code.unwrap_or_default(),
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(p) = receipt_out {
                write(&p, &r.receipt)?;
            }
            print_one(&super::verify::result_json(&r), json);
            return Ok(());
        }
        L::Receipts { licence_id, .. } => {
            let mut items = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = cl
                    .verification()
                    .list_receipts(cl.request(pb::ListReceiptsRequest {
                        licence_id: licence_id.clone(),
                        page_size: 0,
                        page_token,
                    })?)
                    .await
                    .map_err(explain)?
                    .into_inner();
                items.extend(r.receipts.iter().map(|x| {
                    json!({
                        "checked_at": x.checked_at.as_ref().map(ToString::to_string),
                        "verifier": x.verifier,
                        "purpose": x.purpose.as_ref().map(|p| format!("{} {}", p.code, p.text)),
                        "result": x.indication().as_str_name(),
                        "sub_indication": x.sub_indication().as_str_name(),
                        "basis": x.basis().as_str_name().trim_start_matches("CHECK_BASIS_"),
                        "receipt_id": x.receipt_id,
                        "log_index": x.log_index,
                    })
                }));
                page_token = r.next_page_token;
                if page_token.is_empty() {
                    break;
                }
            }
            print_list(
                &items,
                &["checked_at", "verifier", "result", "purpose"],
                "",
                json,
            );
            return Ok(());
        }
    };
    print_one(&output::licence(&licence), json);
    Ok(())
}

/// One line of an import file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRow {
    type_code: String,
    #[serde(default)]
    template_version: u32,
    holder: ImportHolder,
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
    seal_id: String,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// A licence being collected keeps the ID another platform gave it.
    #[serde(default)]
    existing_id: Option<String>,
    /// Where and when it was first issued (with existing_id).
    #[serde(default)]
    collected: Option<ImportCollected>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportCollected {
    source: String,
    first_issued_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportHolder {
    kind: String,
    id: String,
    name: String,
}

fn row_request(line: &str) -> anyhow::Result<pb::IssueLicenceRequest> {
    let row: ImportRow = serde_json::from_str(line).context("not a licence row")?;
    // Without a key, the row's own bytes make one: importing a file twice issues nothing twice.
    let key = row.idempotency_key.unwrap_or_else(|| {
        let d = certseal_crypto::sha256(&[line.trim().as_bytes()]);
        format!(
            "import:{}",
            d[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    });
    Ok(pb::IssueLicenceRequest {
        type_code: row.type_code,
        template_version: row.template_version,
        holder: Some(pb::Holder {
            kind: holder_kind(&row.holder.kind)? as i32,
            id: row.holder.id,
            name: row.holder.name,
        }),
        fields: json_fields(&row.fields)?,
        not_before: time_arg("not_before", row.not_before.as_deref())?,
        not_after: time_arg("not_after", row.not_after.as_deref())?,
        seal_id: row.seal_id,
        idempotency_key: key,
        existing_id: row.existing_id.unwrap_or_default(),
        collected: row
            .collected
            .map(|c| {
                Ok::<_, anyhow::Error>(pb::Collected {
                    source: c.source,
                    first_issued_at: time_arg(
                        "collected.first_issued_at",
                        Some(&c.first_issued_at),
                    )?,
                })
            })
            .transpose()?,
    })
}

/// The rows of an import file: JSON lines, or one JSON array (then each element is a row,
/// numbered from 1 as if it were a line).
fn import_rows(file: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_ascii_start().first() != Some(&b'[') {
        return Ok(None);
    }
    let items: Vec<serde_json::Value> = serde_json::from_slice(&text)
        .with_context(|| format!("{} starts with '[' but is not a JSON array", file.display()))?;
    Ok(Some(items.iter().map(ToString::to_string).collect()))
}

async fn import(cl: &Client, file: &Path, failures_file: Option<&Path>) -> anyhow::Result<()> {
    let open =
        || std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()));
    let array = import_rows(file)?;
    let total = match &array {
        Some(rows) => rows.len() as u64,
        None => std::io::BufReader::new(open()?)
            .split(b'\n')
            .map_while(Result::ok)
            .filter(|l| !l.trim_ascii().is_empty())
            .count() as u64,
    };
    let bar = super::output::progress(total, "licences");
    let mut failures: Vec<serde_json::Value> = Vec::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IssueLicencesItem>(1024);
    // Rows are read and checked on a thread; good ones stream to the server as they come.
    let reader = {
        let file = file.to_owned();
        let bar = bar.clone();
        std::thread::spawn(move || -> anyhow::Result<Vec<serde_json::Value>> {
            let mut bad = Vec::new();
            let lines: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>>> = match array {
                Some(rows) => Box::new(rows.into_iter().map(|r| Ok(r.into_bytes()))),
                None => Box::new(std::io::BufReader::new(std::fs::File::open(&file)?).split(b'\n')),
            };
            for (n, line) in lines.enumerate() {
                let line = line.with_context(|| format!("reading line {}", n + 1))?;
                let line = match String::from_utf8(line) {
                    Ok(l) => l,
                    Err(_) => {
                        bar.inc(1);
                        bad.push(json!({"line": n + 1, "code": "INVALID_ARGUMENT", "message": "not UTF-8 text"}));
                        continue;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                match row_request(&line) {
                    Ok(licence) => {
                        let item = pb::IssueLicencesItem {
                            r#ref: (n + 1).to_string(),
                            licence: Some(licence),
                        };
                        if tx.blocking_send(item).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        bar.inc(1);
                        bad.push(json!({"line": n + 1, "code": "INVALID_ARGUMENT", "message": format!("{e:#}")}));
                    }
                }
            }
            Ok(bad)
        })
    };
    let mut results = cl
        .licences()
        .issue_licences(cl.request(tokio_stream::wrappers::ReceiverStream::new(rx))?)
        .await
        .map_err(explain)?
        .into_inner();
    let mut issued = 0u64;
    while let Some(r) = results.message().await.map_err(explain)? {
        bar.inc(1);
        match r.outcome {
            Some(pb::issue_licences_result::Outcome::LicenceId(_)) => issued += 1,
            Some(pb::issue_licences_result::Outcome::Error(e)) => failures.push(json!({
                "line": r.r#ref.parse::<u64>().unwrap_or(0),
                "code": e.code,
                "message": e.message,
                "fields": e.fields.iter().map(|f| json!({"field": f.field, "description": f.description})).collect::<Vec<_>>(),
            })),
            None => {}
        }
    }
    let bad_rows = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the file reader failed"))??;
    bar.finish_and_clear();
    failures.extend(bad_rows);
    failures.sort_by_key(|f| f["line"].as_u64().unwrap_or(0));
    for f in &failures {
        let mut line = format!(
            "line {}: {} {}",
            f["line"],
            f["code"].as_str().unwrap_or(""),
            f["message"].as_str().unwrap_or("")
        );
        for v in f["fields"].as_array().into_iter().flatten() {
            line.push_str(&format!(
                "\n    {}: {}",
                v["field"].as_str().unwrap_or(""),
                v["description"].as_str().unwrap_or("")
            ));
        }
        eprintln!("{line}");
    }
    if let Some(path) = failures_file {
        let text: String = failures.iter().map(|f| format!("{f}\n")).collect();
        write(path, text.as_bytes())?;
    }
    println!(
        "{} rows: {issued} licences issued, {} failed",
        issued + failures.len() as u64,
        failures.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} of {} rows failed (each row is issued whole or not at all; fix them and import again: rows already issued are not issued twice)",
            failures.len(),
            issued + failures.len() as u64
        );
    }
    Ok(())
}
