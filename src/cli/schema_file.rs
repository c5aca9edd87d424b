//! Template schema files for `certseal template create|update`: JSON or TOML, by extension.
//!
//! ```toml
//! name = "食品经营许可证"
//! category = "licence"            # or "approval"
//! default_validity_days = 1825    # 0: no expiry
//! [[fields]]
//! name = "operator_name"
//! label = "经营者名称"
//! type = "string"                 # string integer decimal date boolean enum resident_id credit_code
//! required = true
//! max_length = 100
//! visibility = "public"           # or "personal" (the default)
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::pb;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: String,
    category: String,
    #[serde(default)]
    default_validity_days: u32,
    fields: Vec<FieldFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    name: String,
    label: String,
    #[serde(rename = "type")]
    field_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    max_length: u32,
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    enum_values: Vec<String>,
    #[serde(default)]
    scale: u32,
    #[serde(default)]
    visibility: Option<String>,
}

/// Reads a schema file into the API's template content.
pub fn read(path: &Path) -> anyhow::Result<pb::TemplateContent> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: SchemaFile = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a schema in JSON", path.display()))?,
        Some("toml") => toml::from_str(&text)
            .with_context(|| format!("{} is not a schema in TOML", path.display()))?,
        _ => bail!("{}: a schema file ends in .json or .toml", path.display()),
    };
    to_content(file)
}

fn to_content(file: SchemaFile) -> anyhow::Result<pb::TemplateContent> {
    let category = match file.category.as_str() {
        "licence" => pb::TemplateCategory::Licence,
        "approval" => pb::TemplateCategory::Approval,
        other => bail!("category '{other}': licence or approval"),
    };
    let fields = file
        .fields
        .into_iter()
        .map(|f| {
            let ty = match f.field_type.as_str() {
                "string" => pb::FieldType::String,
                "integer" => pb::FieldType::Integer,
                "decimal" => pb::FieldType::Decimal,
                "date" => pb::FieldType::Date,
                "boolean" => pb::FieldType::Boolean,
                "enum" => pb::FieldType::Enum,
                "resident_id" => pb::FieldType::ResidentId,
                "credit_code" => pb::FieldType::CreditCode,
                other => bail!(
                    "field '{}': type '{other}' is not one of string, integer, decimal, date, boolean, enum, resident_id, credit_code",
                    f.name
                ),
            };
            let visibility = match f.visibility.as_deref() {
                None | Some("personal") => pb::Visibility::Personal,
                Some("public") => pb::Visibility::Public,
                Some(other) => bail!("field '{}': visibility '{other}': public or personal", f.name),
            };
            Ok(pb::FieldSpec {
                name: f.name,
                label: f.label,
                r#type: ty as i32,
                required: f.required,
                max_length: f.max_length,
                pattern: f.pattern,
                enum_values: f.enum_values,
                scale: f.scale,
                visibility: visibility as i32,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(pb::TemplateContent {
        name: file.name,
        category: category as i32,
        default_validity_days: file.default_validity_days,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_schema_reads() {
        let file: SchemaFile =
            toml::from_str(include_str!("../../examples/food-licence.toml")).unwrap();
        let c = to_content(file).unwrap();
        assert_eq!(c.category(), pb::TemplateCategory::Licence);
        assert_eq!(c.fields.len(), 6);
        assert_eq!(c.fields[2].visibility(), pb::Visibility::Personal);
        assert_eq!(c.fields[4].scale, 2);
    }

    #[test]
    fn unknown_types_and_keys_are_refused() {
        let bad = r#"name = "x"
category = "licence"
[[fields]]
name = "a"
label = "a"
type = "float"
"#;
        let e = to_content(toml::from_str(bad).unwrap()).unwrap_err();
        assert!(e.to_string().contains("float"), "{e}");
        let unknown_key = "name = \"x\"\ncategory = \"licence\"\ncolour = 1\nfields = []\n";
        assert!(toml::from_str::<SchemaFile>(unknown_key).is_err());
    }
}
