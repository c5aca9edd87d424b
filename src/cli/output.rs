//! How the client prints results: aligned text for people, JSON with `--json`.

use serde_json::{Value, json};

use crate::pb;

fn time(t: Option<&prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => json!(t.to_string()),
        None => Value::Null,
    }
}

fn actor(a: Option<&pb::Actor>) -> Value {
    match a {
        Some(a) => json!({
            "department": a.department,
            "role": short(pb::Role::try_from(a.role).map(|r| r.as_str_name()).unwrap_or("?"), "ROLE_"),
        }),
        None => Value::Null,
    }
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn record(r: Option<&pb::RecordInfo>) -> Value {
    let r = r.cloned().unwrap_or_default();
    json!({
        "created_at": time(r.created_at.as_ref()),
        "created_by": actor(r.created_by.as_ref()),
        "updated_at": time(r.updated_at.as_ref()),
        "updated_by": actor(r.updated_by.as_ref()),
    })
}

/// A department as JSON.
pub fn department(d: &pb::Department) -> Value {
    json!({
        "credit_code": d.credit_code,
        "name": d.name,
        "region_code": d.region_code,
        "status": short(d.status().as_str_name(), "DEPARTMENT_STATUS_"),
        "record": record(d.record.as_ref()),
    })
}

/// A template as JSON.
pub fn template(t: &pb::Template) -> Value {
    let c = t.content.clone().unwrap_or_default();
    json!({
        "type_code": t.type_code,
        "version": t.version,
        "status": short(t.status().as_str_name(), "TEMPLATE_STATUS_"),
        "defining_department": t.defining_department,
        "name": c.name,
        "category": short(c.category().as_str_name(), "TEMPLATE_CATEGORY_"),
        "default_validity_days": c.default_validity_days,
        "fields": c.fields.iter().map(|f| json!({
            "name": f.name,
            "label": f.label,
            "type": short(f.r#type().as_str_name(), "FIELD_TYPE_"),
            "required": f.required,
            "max_length": f.max_length,
            "pattern": f.pattern,
            "enum_values": f.enum_values,
            "scale": f.scale,
            "visibility": short(f.visibility().as_str_name(), "VISIBILITY_"),
        })).collect::<Vec<_>>(),
        "published_at": time(t.published_at.as_ref()),
        "record": record(t.record.as_ref()),
    })
}

/// Prints one record: JSON, or `key: value` lines.
pub fn print_one(v: &Value, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(v).expect("JSON values print")
        );
        return;
    }
    if let Value::Object(map) = v {
        print_object(map, 0);
    }
}

/// `key  value` lines; a nested record is printed below its key, indented.
fn print_object(map: &serde_json::Map<String, Value>, indent: usize) {
    let pad = " ".repeat(indent);
    let width = map.keys().map(String::len).max().unwrap_or(0);
    {
        for (k, val) in map {
            let k = &format!("{pad}{k}");
            let width = width + indent;
            match val {
                Value::Array(items) if k == "fields" => {
                    println!("{k:width$}  {} field(s)", items.len());
                    for f in items {
                        println!(
                            "  - {:<24} {:<12} {:<9} {}{}",
                            f["name"].as_str().unwrap_or(""),
                            f["type"].as_str().unwrap_or(""),
                            f["visibility"].as_str().unwrap_or(""),
                            if f["required"] == json!(true) {
                                "required "
                            } else {
                                ""
                            },
                            f["label"].as_str().unwrap_or(""),
                        );
                    }
                }
                Value::Object(m) if k == "fields" => {
                    println!("{k:width$}  {} field(s)", m.len());
                    for (name, value) in m {
                        println!("  - {name:<24} {}", scalar(value));
                    }
                }
                Value::Array(items) if k == "history" => {
                    println!("{k:width$}  {} change(s)", items.len());
                    for e in items {
                        println!(
                            "  - {}  {:<9} by {} ({}){}{}",
                            scalar(&e["at"]),
                            scalar(&e["status"]),
                            scalar(&e["by"]["department"]),
                            scalar(&e["by"]["role"]),
                            e.get("reason")
                                .map(|r| format!("  reason {}", scalar(r)))
                                .unwrap_or_default(),
                            match e["note"].as_str() {
                                Some(n) if !n.is_empty() => format!("  \"{n}\""),
                                _ => String::new(),
                            },
                        );
                    }
                }
                Value::Object(m) if !m.contains_key("created_at") && !m.is_empty() => {
                    println!("{k}");
                    print_object(m, indent + 2);
                }
                _ => println!("{k:width$}  {}", scalar(val)),
            }
        }
    }
}

/// Prints a list: a JSON array, or one row per item with the given columns.
pub fn print_list(items: &[Value], columns: &[&str], next_token: &str, as_json: bool) {
    if as_json {
        let v = json!({ "items": items, "next_page_token": next_token });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("JSON values print")
        );
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|c| scalar(&i[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(n, c)| {
            rows.iter()
                .map(|r| r[n].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(r));
    }
    if !next_token.is_empty() {
        println!("(more: --page-token {next_token})");
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Object(m) if m.contains_key("created_at") => format!(
            "created {} by {}, updated {} by {}",
            scalar(&m["created_at"]),
            scalar(&m["created_by"]["department"]),
            scalar(&m["updated_at"]),
            scalar(&m["updated_by"]["department"])
        ),
        other => other.to_string(),
    }
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A seal as JSON.
pub fn seal(s: &pb::Seal) -> Value {
    json!({
        "seal_id": s.seal_id,
        "department": s.department,
        "name": s.name,
        "type": short(s.r#type().as_str_name(), "SEAL_TYPE_").replace('_', "-"),
        "status": short(s.status().as_str_name(), "SEAL_STATUS_"),
        "algorithm": short(s.algorithm().as_str_name(), "SEAL_ALGORITHM_"),
        "national_code": s.national_code,
        "not_before": time(s.not_before.as_ref()),
        "not_after": time(s.not_after.as_ref()),
        "certificate": if s.certificate_der.is_empty() {
            Value::Null
        } else {
            json!(short(s.certificate_source().as_str_name(), "CERTIFICATE_SOURCE_"))
        },
        "kid": hex(&s.kid),
        "public_key": hex(&s.public_key),
        "image": format!("{} sha256:{}", s.image_media_type, hex(&s.image_sha256)),
        "history": s.history.iter().map(|e| {
            let mut v = json!({
                "at": time(e.at.as_ref()),
                "status": short(e.status().as_str_name(), "SEAL_STATUS_"),
                "by": actor(e.by.as_ref()),
                "note": e.note,
            });
            if e.reason != 0 {
                v["reason"] = json!(short(e.reason().as_str_name(), "REVOCATION_REASON_"));
            }
            if e.compromised_at.is_some() {
                v["compromised_at"] = time(e.compromised_at.as_ref());
            }
            v
        }).collect::<Vec<_>>(),
    })
}

fn field_value(v: &pb::FieldValue) -> Value {
    match &v.value {
        Some(pb::field_value::Value::Text(t)) => json!(t),
        Some(pb::field_value::Value::Integer(i)) => json!(i),
        Some(pb::field_value::Value::Boolean(b)) => json!(b),
        None => Value::Null,
    }
}

/// A licence as JSON.
pub fn licence(l: &pb::Licence) -> Value {
    let holder = l.holder.clone().unwrap_or_default();
    let fields: serde_json::Map<String, Value> = l
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), field_value(v)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let mut v = json!({
        "licence_id": l.licence_id,
        "status": short(l.status().as_str_name(), "LICENCE_STATUS_"),
        "type_code": l.type_code,
        "template_version": l.template_version,
        "issuer": l.issuer,
        "seal_id": l.seal_id,
        "holder": {
            "kind": short(holder.kind().as_str_name(), "HOLDER_KIND_"),
            "id": holder.id,
            "name": holder.name,
        },
        "issued_at": time(l.issued_at.as_ref()),
        "not_before": time(l.not_before.as_ref()),
        "not_after": time(l.not_after.as_ref()),
        "prev": l.prev,
        "next": l.next,
        "document_sha256": hex(&l.document_sha256),
        "history": l.history.iter().map(|e| {
            let mut v = json!({
                "at": time(e.at.as_ref()),
                "status": short(e.status().as_str_name(), "LICENCE_STATUS_"),
                "by": actor(e.by.as_ref()),
                "note": e.note,
            });
            if e.reason != 0 {
                v["reason"] = json!(short(e.reason().as_str_name(), "LICENCE_REVOCATION_REASON_"));
            }
            if let Some(u) = &e.upstream {
                v["upstream"] = json!({
                    "source": u.source,
                    "reference": u.reference,
                    "decided_at": time(u.decided_at.as_ref()),
                });
            }
            v
        }).collect::<Vec<_>>(),
    });
    if let Some(c) = &l.collected {
        v["collected"] = json!({
            "source": c.source,
            "first_issued_at": time(c.first_issued_at.as_ref()),
        });
    }
    if !fields.is_empty() {
        v["fields"] = Value::Object(fields);
    }
    if !l.qr.is_empty() {
        v["qr"] = json!(l.qr);
    }
    v
}

/// A progress bar on stderr for a long operation of `total` items, drawn only on a terminal
/// (indicatif hides it otherwise), so piped output and `--json` stay clean.
pub fn progress(total: u64, unit: &str) -> indicatif::ProgressBar {
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}");
    indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    )
    .with_style(indicatif::ProgressStyle::with_template(&template).expect("a valid template"))
}
