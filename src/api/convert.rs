//! Conversions between the v1 proto messages and the domain types.

use certseal_core::{
    Actor, Department, DepartmentStatus, FieldSpec, FieldType, Role, Template, TemplateCategory,
    TemplateContent, TemplateStatus, Timestamp, Visibility,
};
use certseal_registry::RegistryError;

use crate::pb;

pub(crate) fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.0.div_euclid(1000),
        nanos: (t.0.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn role(r: Role) -> pb::Role {
    match r {
        Role::Admin => pb::Role::Admin,
        Role::Issuer => pb::Role::Issuer,
        Role::Verifier => pb::Role::Verifier,
        Role::Auditor => pb::Role::Auditor,
        Role::HolderAgent => pb::Role::HolderAgent,
        Role::Sync => pb::Role::Sync,
    }
}

pub(crate) fn actor(a: &Actor) -> pb::Actor {
    pb::Actor {
        department: a.department.to_string(),
        role: role(a.role) as i32,
    }
}

pub(crate) fn department(d: Department) -> pb::Department {
    pb::Department {
        credit_code: d.credit_code.to_string(),
        name: d.name,
        region_code: d.region.to_string(),
        status: match d.status {
            DepartmentStatus::Active => pb::DepartmentStatus::Active,
            DepartmentStatus::Deactivated => pb::DepartmentStatus::Deactivated,
        } as i32,
        record: Some(pb::RecordInfo {
            created_at: Some(timestamp(d.created_at)),
            created_by: Some(actor(&d.created_by)),
            updated_at: Some(timestamp(d.updated_at)),
            updated_by: Some(actor(&d.updated_by)),
        }),
    }
}

pub(crate) fn template(t: Template) -> pb::Template {
    let defining_department = t.defining_department().to_string();
    pb::Template {
        type_code: t.type_code.to_string(),
        version: t.version,
        content: Some(content_to_pb(t.content)),
        status: template_status_to_pb(t.status) as i32,
        defining_department,
        record: Some(pb::RecordInfo {
            created_at: Some(timestamp(t.created_at)),
            created_by: Some(actor(&t.created_by)),
            updated_at: Some(timestamp(t.updated_at)),
            updated_by: Some(actor(&t.updated_by)),
        }),
        published_at: t.published_at.map(timestamp),
    }
}

pub(crate) fn template_status_to_pb(s: TemplateStatus) -> pb::TemplateStatus {
    match s {
        TemplateStatus::Draft => pb::TemplateStatus::Draft,
        TemplateStatus::Published => pb::TemplateStatus::Published,
        TemplateStatus::Deprecated => pb::TemplateStatus::Deprecated,
    }
}

fn content_to_pb(c: TemplateContent) -> pb::TemplateContent {
    pb::TemplateContent {
        name: c.name,
        category: category_to_pb(c.category) as i32,
        default_validity_days: c.default_validity_days,
        fields: c
            .fields
            .into_iter()
            .map(|f| pb::FieldSpec {
                name: f.name,
                label: f.label,
                r#type: field_type_to_pb(f.field_type) as i32,
                required: f.required,
                max_length: f.max_length,
                pattern: f.pattern,
                enum_values: f.enum_values,
                scale: f.scale,
                visibility: match f.visibility {
                    Visibility::Public => pb::Visibility::Public,
                    Visibility::Personal => pb::Visibility::Personal,
                } as i32,
            })
            .collect(),
    }
}

fn category_to_pb(c: TemplateCategory) -> pb::TemplateCategory {
    match c {
        TemplateCategory::Licence => pb::TemplateCategory::Licence,
        TemplateCategory::Approval => pb::TemplateCategory::Approval,
    }
}

/// One licence type of the catalogue.
pub(crate) fn catalogue_entry(e: certseal_registry::CatalogueEntry) -> pb::CatalogueEntry {
    let t = e.template;
    pb::CatalogueEntry {
        authority: t.defining_department().to_string(),
        authority_name: e.authority_name.unwrap_or_default(),
        type_code: t.type_code.to_string(),
        name: t.content.name,
        category: category_to_pb(t.content.category) as i32,
        version: t.version,
        default_validity_days: t.content.default_validity_days,
        // Every type may be held by a person or an organisation: templates do not restrict it.
        holder_kinds: vec!["person".into(), "organisation".into()],
        data_items: t
            .content
            .fields
            .into_iter()
            .map(|f| pb::CatalogueDataItem {
                name: f.name,
                label: f.label,
                r#type: field_type_to_pb(f.field_type) as i32,
                required: f.required,
                personal: f.visibility == Visibility::Personal,
                max_length: f.max_length,
                enum_values: f.enum_values,
                scale: f.scale,
            })
            .collect(),
        published_at: t.published_at.map(timestamp),
    }
}

fn field_type_to_pb(t: FieldType) -> pb::FieldType {
    match t {
        FieldType::String => pb::FieldType::String,
        FieldType::Integer => pb::FieldType::Integer,
        FieldType::Decimal => pb::FieldType::Decimal,
        FieldType::Date => pb::FieldType::Date,
        FieldType::Boolean => pb::FieldType::Boolean,
        FieldType::Enum => pb::FieldType::Enum,
        FieldType::ResidentId => pb::FieldType::ResidentId,
        FieldType::CreditCode => pb::FieldType::CreditCode,
    }
}

/// Reads template content from a request, reporting every unreadable enum at once. The rules
/// of a valid schema are checked by the core afterwards.
pub(crate) fn content_from_pb(
    c: Option<pb::TemplateContent>,
) -> Result<TemplateContent, RegistryError> {
    let c = c.ok_or_else(|| RegistryError::invalid("content", "is required"))?;
    let mut bad = Vec::new();
    let category = match pb::TemplateCategory::try_from(c.category) {
        Ok(pb::TemplateCategory::Licence) => Some(TemplateCategory::Licence),
        Ok(pb::TemplateCategory::Approval) => Some(TemplateCategory::Approval),
        _ => {
            bad.push(violation("content.category", "must be LICENCE or APPROVAL"));
            None
        }
    };
    let mut fields = Vec::with_capacity(c.fields.len());
    for (i, f) in c.fields.into_iter().enumerate() {
        let field_type = match pb::FieldType::try_from(f.r#type) {
            Ok(pb::FieldType::String) => FieldType::String,
            Ok(pb::FieldType::Integer) => FieldType::Integer,
            Ok(pb::FieldType::Decimal) => FieldType::Decimal,
            Ok(pb::FieldType::Date) => FieldType::Date,
            Ok(pb::FieldType::Boolean) => FieldType::Boolean,
            Ok(pb::FieldType::Enum) => FieldType::Enum,
            Ok(pb::FieldType::ResidentId) => FieldType::ResidentId,
            Ok(pb::FieldType::CreditCode) => FieldType::CreditCode,
            _ => {
                bad.push(violation(
                    &format!("content.fields[{i}].type"),
                    "must be one of STRING, INTEGER, DECIMAL, DATE, BOOLEAN, ENUM, RESIDENT_ID, CREDIT_CODE",
                ));
                continue;
            }
        };
        let visibility = match pb::Visibility::try_from(f.visibility) {
            Ok(pb::Visibility::Public) => Visibility::Public,
            // Unspecified is personal: data is private unless the schema says otherwise.
            Ok(pb::Visibility::Personal | pb::Visibility::Unspecified) => Visibility::Personal,
            Err(_) => {
                bad.push(violation(
                    &format!("content.fields[{i}].visibility"),
                    "must be PUBLIC or PERSONAL",
                ));
                continue;
            }
        };
        fields.push(FieldSpec {
            name: f.name,
            label: f.label,
            field_type,
            required: f.required,
            max_length: f.max_length,
            pattern: f.pattern,
            enum_values: f.enum_values,
            scale: f.scale,
            visibility,
        });
    }
    match category {
        Some(category) if bad.is_empty() => Ok(TemplateContent {
            name: c.name,
            category,
            default_validity_days: c.default_validity_days,
            fields,
        }),
        _ => Err(RegistryError::InvalidArgument(bad)),
    }
}

fn violation(field: &str, description: &str) -> certseal_core::FieldViolation {
    certseal_core::FieldViolation::new(field, description)
}

/// A request time in milliseconds; `field` names it in the error.
pub(crate) fn timestamp_from_pb(
    field: &str,
    t: &prost_types::Timestamp,
) -> Result<Timestamp, RegistryError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(RegistryError::invalid(field, "nanos must be in 0..1e9"));
    }
    // Years 1970..=9999 cover every licence and seal.
    if !(0..=253_402_300_799).contains(&t.seconds) {
        return Err(RegistryError::invalid(
            field,
            "must lie between 1970 and 9999",
        ));
    }
    Ok(Timestamp(t.seconds * 1000 + i64::from(t.nanos / 1_000_000)))
}

/// An optional request time in milliseconds.
pub(crate) fn optional_time(
    field: &str,
    t: &Option<prost_types::Timestamp>,
) -> Result<Option<Timestamp>, RegistryError> {
    t.as_ref().map(|t| timestamp_from_pb(field, t)).transpose()
}
