//! Templates: licence types with a versioned field schema, their lifecycle, and the check of a
//! licence's field values against one template version.

use std::collections::{BTreeMap, HashSet};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::department::{Actor, Timestamp};
use crate::error::{Error, FieldViolation, check_name};
use crate::ids::{CreditCode, ResidentId, TypeCode};

/// Most fields a template may have.
pub const MAX_FIELDS: usize = 200;
/// Longest field name, in bytes (names are `[a-z][a-z0-9_]*`).
pub const MAX_FIELD_NAME: usize = 64;
/// Longest template name or field label, in characters.
pub const MAX_LABEL: usize = 200;
/// Longest pattern source, in bytes.
pub const MAX_PATTERN: usize = 512;
/// Most values an enum field may list.
pub const MAX_ENUM_VALUES: usize = 500;
/// Longest text value a field can be given a `max_length` of, in characters.
pub const MAX_VALUE_LENGTH: u32 = 4096;
/// `max_length` of a text field whose schema leaves it at 0.
pub const DEFAULT_VALUE_LENGTH: u32 = 256;
/// Most fraction digits a decimal field may keep.
pub const MAX_DECIMAL_SCALE: u32 = 18;
/// Longest default validity, in days (100 years).
pub const MAX_VALIDITY_DAYS: u32 = 36_525;
/// Compiled-size bound for a field pattern, so a schema cannot make matching expensive.
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// Licence type or approval document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateCategory {
    /// An e-licence (证照).
    Licence,
    /// A licence-approval document (批文).
    Approval,
}

/// Lifecycle of one template version: draft → published (immutable) → deprecated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStatus {
    /// Being written; may change; licences cannot be issued from it.
    Draft,
    /// Frozen; licences are issued from it.
    Published,
    /// Frozen; no new licences, existing ones stay valid.
    Deprecated,
}

impl TemplateStatus {
    /// Lower-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Draft => "draft",
            TemplateStatus::Published => "published",
            TemplateStatus::Deprecated => "deprecated",
        }
    }
}

/// Who may see a field: everyone who may see the licence, or only those allowed personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Shown on the public page and to every verifier.
    Public,
    /// Personal data: shown only to those the sharing policy allows.
    Personal,
}

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text, bounded by `max_length` and optionally a pattern.
    String,
    /// A signed 64-bit integer.
    Integer,
    /// A decimal number, kept as text with exactly `scale` fraction digits (`12.50`).
    Decimal,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// `true` or `false`.
    Boolean,
    /// One of `enum_values`.
    Enum,
    /// A resident ID with a valid GB 11643 check character.
    ResidentId,
    /// A unified social credit code with a valid GB 32100 check character.
    CreditCode,
}

/// One field of a template's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Key of the field in the licence body (`[a-z][a-z0-9_]*`).
    pub name: String,
    /// Label shown to people.
    pub label: String,
    /// Type of its values.
    pub field_type: FieldType,
    /// Whether every licence must have it.
    pub required: bool,
    /// Longest text value in characters (string fields); 0 means the default.
    pub max_length: u32,
    /// Regular expression a string value must match as a whole; empty for none.
    pub pattern: String,
    /// The allowed values of an enum field.
    pub enum_values: Vec<String>,
    /// Fraction digits of a decimal field.
    pub scale: u32,
    /// Public or personal.
    pub visibility: Visibility,
}

/// What the author of a template writes: everything but its identity and lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateContent {
    /// Name of the licence type, e.g. "食品经营许可证".
    pub name: String,
    /// Licence or approval.
    pub category: TemplateCategory,
    /// Validity of a new licence when the issuer gives none; 0 means no expiry.
    pub default_validity_days: u32,
    /// The field schema, in display order.
    pub fields: Vec<FieldSpec>,
}

impl TemplateContent {
    /// Checks the content and returns it normalised (names trimmed, default lengths filled in),
    /// or every rule it breaks.
    pub fn validate(mut self) -> Result<Self, Error> {
        let mut v = Vec::new();
        match check_name("name", &self.name, MAX_LABEL) {
            Ok(n) => self.name = n,
            Err(e) => v.push(e),
        }
        if self.default_validity_days > MAX_VALIDITY_DAYS {
            v.push(FieldViolation::new(
                "default_validity_days",
                format!("at most {MAX_VALIDITY_DAYS} days"),
            ));
        }
        if self.fields.is_empty() {
            v.push(FieldViolation::new(
                "fields",
                "a template has at least one field",
            ));
        }
        if self.fields.len() > MAX_FIELDS {
            v.push(FieldViolation::new(
                "fields",
                format!(
                    "{} fields, at most {MAX_FIELDS} are allowed",
                    self.fields.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (i, f) in self.fields.iter_mut().enumerate() {
            let at = |what: &str| format!("fields[{i}].{what}");
            if let Err(e) = check_field_name(&f.name) {
                v.push(FieldViolation::new(at("name"), e));
            } else if !seen.insert(f.name.clone()) {
                v.push(FieldViolation::new(
                    at("name"),
                    format!("duplicate field name '{}'", f.name),
                ));
            }
            match check_name(&at("label"), &f.label, MAX_LABEL) {
                Ok(l) => f.label = l,
                Err(e) => v.push(e),
            }
            let text_like = matches!(f.field_type, FieldType::String);
            if f.max_length > MAX_VALUE_LENGTH {
                v.push(FieldViolation::new(
                    at("max_length"),
                    format!("at most {MAX_VALUE_LENGTH}"),
                ));
            } else if text_like && f.max_length == 0 {
                f.max_length = DEFAULT_VALUE_LENGTH;
            } else if !text_like && f.max_length != 0 {
                v.push(FieldViolation::new(
                    at("max_length"),
                    "applies only to string fields",
                ));
            }
            if !f.pattern.is_empty() {
                if !text_like {
                    v.push(FieldViolation::new(
                        at("pattern"),
                        "applies only to string fields",
                    ));
                } else if let Err(e) = compile_pattern(&f.pattern) {
                    v.push(FieldViolation::new(at("pattern"), e));
                }
            }
            if f.field_type == FieldType::Enum {
                check_enum_values(&f.enum_values, &at("enum_values"), &mut v);
            } else if !f.enum_values.is_empty() {
                v.push(FieldViolation::new(
                    at("enum_values"),
                    "applies only to enum fields",
                ));
            }
            if f.field_type == FieldType::Decimal {
                if f.scale > MAX_DECIMAL_SCALE {
                    v.push(FieldViolation::new(
                        at("scale"),
                        format!("at most {MAX_DECIMAL_SCALE} fraction digits"),
                    ));
                }
            } else if f.scale != 0 {
                v.push(FieldViolation::new(
                    at("scale"),
                    "applies only to decimal fields",
                ));
            }
        }
        if v.is_empty() {
            Ok(self)
        } else {
            Err(Error::InvalidArgument(v))
        }
    }
}

pub(crate) fn check_field_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_FIELD_NAME {
        return Err(format!("at most {MAX_FIELD_NAME} characters"));
    }
    let mut chars = name.bytes();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
        return Err(format!(
            "'{name}' is not a field name: a lower-case letter, then lower-case letters, digits or '_'"
        ));
    }
    Ok(())
}

fn check_enum_values(values: &[String], field: &str, v: &mut Vec<FieldViolation>) {
    if values.is_empty() {
        v.push(FieldViolation::new(
            field,
            "an enum field lists at least one value",
        ));
        return;
    }
    if values.len() > MAX_ENUM_VALUES {
        v.push(FieldViolation::new(
            field,
            format!("at most {MAX_ENUM_VALUES} values"),
        ));
    }
    let mut seen = HashSet::new();
    for (j, value) in values.iter().enumerate() {
        if value.trim().is_empty() || value.chars().count() > MAX_LABEL {
            v.push(FieldViolation::new(
                format!("{field}[{j}]"),
                format!("an enum value has 1 to {MAX_LABEL} characters"),
            ));
        } else if value.chars().any(char::is_control) {
            // Shown in pages and written into XML catalogues, which cannot carry them.
            v.push(FieldViolation::new(
                format!("{field}[{j}]"),
                "an enum value has no control characters",
            ));
        } else if !seen.insert(value) {
            v.push(FieldViolation::new(
                format!("{field}[{j}]"),
                format!("duplicate enum value '{value}'"),
            ));
        }
    }
}

/// Compiles a field pattern so that it must match the whole value.
/// A compiled pattern, compiled once per process: a template's patterns are checked on
/// every licence issued from it.
fn cached_pattern(pattern: &str) -> Result<Regex, String> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static COMPILED: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Default::default);
    if let Some(re) = COMPILED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(pattern)
    {
        return Ok(re.clone());
    }
    let re = compile_pattern(pattern)?;
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if compiled.len() >= 4096 {
        compiled.clear();
    }
    compiled.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!("at most {MAX_PATTERN} bytes"));
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("does not compile: {}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    // regex errors draw the pattern over several lines; the last line names the problem.
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_owned()
}

/// One stored version of a licence type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The licence type code.
    pub type_code: TypeCode,
    /// Version, from 1.
    pub version: u32,
    /// What its author wrote.
    pub content: TemplateContent,
    /// Draft, published or deprecated.
    pub status: TemplateStatus,
    /// When the draft was created.
    pub created_at: Timestamp,
    /// Who created the draft.
    pub created_by: Actor,
    /// When it last changed (content or status).
    pub updated_at: Timestamp,
    /// Who changed it last.
    pub updated_by: Actor,
    /// When it was published, once it is.
    pub published_at: Option<Timestamp>,
}

impl Template {
    /// The department that defines this licence type.
    pub fn defining_department(&self) -> CreditCode {
        self.type_code.defining_department()
    }

    /// Checks a licence's field values against this template version. Returns the values in
    /// their canonical form (integers as integers, decimals with exactly `scale` fraction
    /// digits, booleans as booleans), or every failing field with its reason. Empty text for
    /// an optional field counts as absent.
    pub fn validate_values(
        &self,
        values: &BTreeMap<String, FieldValue>,
    ) -> Result<BTreeMap<String, FieldValue>, Error> {
        let mut out = BTreeMap::new();
        let mut v = Vec::new();
        for name in values.keys() {
            if !self.content.fields.iter().any(|f| &f.name == name) {
                v.push(FieldViolation::new(
                    format!("fields.{name}"),
                    format!(
                        "not a field of template {} version {}",
                        self.type_code, self.version
                    ),
                ));
            }
        }
        for spec in &self.content.fields {
            let at = format!("fields.{}", spec.name);
            let value = values
                .get(&spec.name)
                .filter(|val| !matches!(val, FieldValue::Text(t) if t.is_empty()));
            match value {
                None if spec.required => v.push(FieldViolation::new(at, "is required")),
                None => {}
                Some(value) => match canonical_value(spec, value) {
                    Ok(c) => {
                        out.insert(spec.name.clone(), c);
                    }
                    Err(reason) => v.push(FieldViolation::new(at, reason)),
                },
            }
        }
        if v.is_empty() {
            Ok(out)
        } else {
            Err(Error::InvalidArgument(v))
        }
    }
}

/// A field value as given by an issuer, and as stored in a licence body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// Text (also dates, decimals, enum values and identifiers).
    Text(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
}

fn canonical_value(spec: &FieldSpec, value: &FieldValue) -> Result<FieldValue, String> {
    use FieldValue::{Boolean, Integer, Text};
    match (spec.field_type, value) {
        (FieldType::String, Text(t)) => {
            let len = t.chars().count();
            if len > spec.max_length as usize {
                return Err(format!(
                    "has {len} characters, at most {} are allowed",
                    spec.max_length
                ));
            }
            if t.chars().any(char::is_control) {
                return Err("must not contain control characters".into());
            }
            if !spec.pattern.is_empty() {
                let re = cached_pattern(&spec.pattern)?;
                if !re.is_match(t) {
                    return Err(format!("does not match the pattern '{}'", spec.pattern));
                }
            }
            Ok(Text(t.clone()))
        }
        (FieldType::Integer, Integer(i)) => Ok(Integer(*i)),
        (FieldType::Integer, Text(t)) => t
            .parse::<i64>()
            .map(Integer)
            .map_err(|_| format!("'{}' is not an integer", clip(t))),
        (FieldType::Decimal, Integer(i)) => canonical_decimal(&i.to_string(), spec.scale).map(Text),
        (FieldType::Decimal, Text(t)) => canonical_decimal(t, spec.scale).map(Text),
        (FieldType::Date, Text(t)) => check_date(t).map(|()| Text(t.clone())),
        (FieldType::Boolean, Boolean(b)) => Ok(Boolean(*b)),
        (FieldType::Boolean, Text(t)) => match t.as_str() {
            "true" => Ok(Boolean(true)),
            "false" => Ok(Boolean(false)),
            _ => Err(format!("'{}' is not true or false", clip(t))),
        },
        (FieldType::Enum, Text(t)) => {
            if spec.enum_values.contains(t) {
                Ok(Text(t.clone()))
            } else {
                Err(format!(
                    "'{}' is not one of: {}",
                    clip(t),
                    spec.enum_values.join(", ")
                ))
            }
        }
        (FieldType::ResidentId, Text(t)) => t
            .parse::<ResidentId>()
            .map(|id| Text(id.into()))
            .map_err(|e| e.0),
        (FieldType::CreditCode, Text(t)) => t
            .parse::<CreditCode>()
            .map(|c| Text(c.into()))
            .map_err(|e| e.0),
        (ty, other) => Err(format!("a {ty:?} field cannot take {}", kind_of(other))),
    }
}

fn kind_of(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Text(_) => "text",
        FieldValue::Integer(_) => "an integer",
        FieldValue::Boolean(_) => "a boolean",
    }
}

/// Cuts a long value for an error message.
fn clip(t: &str) -> String {
    if t.chars().count() <= 40 {
        t.to_owned()
    } else {
        format!("{}…", t.chars().take(40).collect::<String>())
    }
}

/// `12.5` with scale 2 becomes `12.50`; more fraction digits than `scale` is an error.
fn canonical_decimal(t: &str, scale: u32) -> Result<String, String> {
    let bad = || format!("'{}' is not a decimal number such as 12.50", clip(t));
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || int.len() > 30
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
        || (digits.contains('.') && frac.is_empty())
        || (int.len() > 1 && int.starts_with('0'))
    {
        return Err(bad());
    }
    if frac.len() > scale as usize {
        return Err(format!(
            "'{}' has {} fraction digits, at most {scale} are allowed",
            clip(t),
            frac.len()
        ));
    }
    let mut out = String::with_capacity(t.len() + scale as usize);
    let zero = int == "0" && frac.bytes().all(|c| c == b'0');
    if neg && !zero {
        out.push('-');
    }
    out.push_str(int);
    if scale > 0 {
        out.push('.');
        out.push_str(frac);
        out.extend(std::iter::repeat_n('0', scale as usize - frac.len()));
    }
    Ok(out)
}

fn check_date(t: &str) -> Result<(), String> {
    let bad = || format!("'{}' is not a date in the form YYYY-MM-DD", clip(t));
    let b = t.as_bytes();
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || ![0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
    {
        return Err(bad());
    }
    let year: u32 = t[..4].parse().map_err(|_| bad())?;
    let month: u32 = t[5..7].parse().map_err(|_| bad())?;
    let day: u32 = t[8..].parse().map_err(|_| bad())?;
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("'{t}' has no month {month}")),
    };
    if year == 0 || day == 0 || day > days {
        return Err(format!("'{t}' is not a day of the calendar"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_canonical() {
        assert_eq!(canonical_decimal("12.5", 2).unwrap(), "12.50");
        assert_eq!(canonical_decimal("12", 2).unwrap(), "12.00");
        assert_eq!(canonical_decimal("-0.0", 1).unwrap(), "0.0");
        assert_eq!(canonical_decimal("7", 0).unwrap(), "7");
        assert!(canonical_decimal("12.505", 2).is_err());
        assert!(canonical_decimal("012", 2).is_err());
        assert!(canonical_decimal("1.", 2).is_err());
        assert!(canonical_decimal(".5", 2).is_err());
        assert!(canonical_decimal("1e3", 2).is_err());
    }

    #[test]
    fn dates_are_calendar_days() {
        assert!(check_date("2024-02-29").is_ok());
        assert!(check_date("2023-02-29").is_err());
        assert!(check_date("2026-13-01").is_err());
        assert!(check_date("2026-1-01").is_err());
        assert!(check_date("2026-04-31").is_err());
    }
}
