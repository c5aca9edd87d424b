//! `certseal catalogue export`: the licence types this registry defines, with their data items,
//! in the shape of GB/T 36902's catalogue, as JSON (docs/catalogue.schema.json) or XML.

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::ClientArgs;
use super::client::{Client, explain};
use crate::pb;

/// Format name and version of an exported catalogue.
pub const CATALOGUE_FORMAT: &str = "certseal-catalogue/1";

/// `certseal catalogue …`
#[derive(Debug, Subcommand)]
pub enum CatalogueCommand {
    /// Write the catalogue: every licence type with a published version, at its latest.
    Export {
        /// json or xml.
        #[arg(long, default_value = "json")]
        format: String,
        /// Write it here (default: standard output).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn type_name(t: pb::FieldType) -> &'static str {
    match t {
        pb::FieldType::String => "string",
        pb::FieldType::Integer => "integer",
        pb::FieldType::Decimal => "decimal",
        pb::FieldType::Date => "date",
        pb::FieldType::Boolean => "boolean",
        pb::FieldType::Enum => "enum",
        pb::FieldType::ResidentId => "resident_id",
        pb::FieldType::CreditCode => "credit_code",
        pb::FieldType::Unspecified => "unspecified",
    }
}

fn category(e: &pb::CatalogueEntry) -> &'static str {
    match e.category() {
        pb::TemplateCategory::Approval => "approval",
        _ => "licence",
    }
}

fn time(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_string()))
}

/// The catalogue as JSON.
pub fn to_json(c: &pb::Catalogue) -> Value {
    json!({
        "format": CATALOGUE_FORMAT,
        "standard": "GB/T 36902",
        "registry": c.registry,
        "generated_at": time(c.generated_at.as_ref()),
        "licence_types": c.entries.iter().map(|e| json!({
            "type_code": e.type_code,
            "name": e.name,
            "category": category(e),
            "version": e.version,
            "issuing_authority": {"credit_code": e.authority, "name": e.authority_name},
            "holder_kinds": e.holder_kinds,
            // No expiry is null, not 0 days.
            "validity_days": if e.default_validity_days == 0 { Value::Null } else { json!(e.default_validity_days) },
            "published_at": time(e.published_at.as_ref()),
            "data_items": e.data_items.iter().map(|d| {
                let mut item = json!({
                    "name": d.name,
                    "label": d.label,
                    "type": type_name(d.r#type()),
                    "required": d.required,
                    "personal": d.personal,
                });
                if d.max_length > 0 {
                    item["max_length"] = json!(d.max_length);
                }
                if !d.enum_values.is_empty() {
                    item["enum_values"] = json!(d.enum_values);
                }
                if d.r#type() == pb::FieldType::Decimal {
                    item["scale"] = json!(d.scale);
                }
                item
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Text for an XML element or attribute. Characters XML 1.0 cannot carry at all (C0 controls
/// but tab and newline, U+FFFE, U+FFFF) become U+FFFD; a carriage return is a reference, so a
/// parser does not turn it into a newline.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The catalogue as XML: the same content as the JSON, one element per licence type.
pub fn to_xml(c: &pb::Catalogue) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<Catalogue format=\"{CATALOGUE_FORMAT}\" standard=\"GB/T 36902\" registry=\"{}\" generatedAt=\"{}\">\n",
        escape(&c.registry),
        c.generated_at.as_ref().map(ToString::to_string).unwrap_or_default()
    ));
    for e in &c.entries {
        x.push_str(&format!(
            "  <LicenceType typeCode=\"{}\" version=\"{}\" category=\"{}\"{}>\n    <Name>{}</Name>\n    <IssuingAuthority creditCode=\"{}\">{}</IssuingAuthority>\n",
            escape(&e.type_code),
            e.version,
            category(e),
            e.published_at
                .as_ref()
                .map(|t| format!(" publishedAt=\"{t}\""))
                .unwrap_or_default(),
            escape(&e.name),
            escape(&e.authority),
            escape(&e.authority_name)
        ));
        x.push_str("    <HolderKinds>");
        for k in &e.holder_kinds {
            x.push_str(&format!("<HolderKind>{}</HolderKind>", escape(k)));
        }
        x.push_str("</HolderKinds>\n");
        if e.default_validity_days > 0 {
            x.push_str(&format!(
                "    <ValidityDays>{}</ValidityDays>\n",
                e.default_validity_days
            ));
        }
        x.push_str("    <DataItems>\n");
        for d in &e.data_items {
            let mut attrs = format!(
                "name=\"{}\" type=\"{}\" required=\"{}\" personal=\"{}\"",
                escape(&d.name),
                type_name(d.r#type()),
                d.required,
                d.personal
            );
            if d.max_length > 0 {
                attrs.push_str(&format!(" maxLength=\"{}\"", d.max_length));
            }
            if d.r#type() == pb::FieldType::Decimal {
                attrs.push_str(&format!(" scale=\"{}\"", d.scale));
            }
            x.push_str(&format!(
                "      <DataItem {attrs}><Label>{}</Label>",
                escape(&d.label)
            ));
            for v in &d.enum_values {
                x.push_str(&format!("<Value>{}</Value>", escape(v)));
            }
            x.push_str("</DataItem>\n");
        }
        x.push_str("    </DataItems>\n  </LicenceType>\n");
    }
    x.push_str("</Catalogue>\n");
    x
}

/// Runs `certseal catalogue …`.
pub async fn run(c: CatalogueCommand) -> anyhow::Result<()> {
    let CatalogueCommand::Export {
        format,
        out,
        client,
    } = c;
    if format != "json" && format != "xml" {
        anyhow::bail!("--format: json or xml, not '{format}'");
    }
    let cl = Client::connect(&client).await?;
    let catalogue =
        crate::pb::template_service_client::TemplateServiceClient::new(cl.channel().clone())
            .max_decoding_message_size(64 << 20)
            .get_catalogue(cl.request(pb::GetCatalogueRequest {})?)
            .await
            .map_err(explain)?
            .into_inner();
    let text = if format == "json" {
        serde_json::to_string_pretty(&to_json(&catalogue))? + "\n"
    } else {
        to_xml(&catalogue)
    };
    match out {
        Some(p) => {
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_xml_cannot_carry_is_replaced_and_the_rest_escaped() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(escape("x\ry\tz\n"), "x&#13;y\tz\n");
        assert_eq!(escape("bell\u{7}\u{FFFF}"), "bell\u{FFFD}\u{FFFD}");
        assert_eq!(escape("食品经营许可证"), "食品经营许可证");
    }
}
