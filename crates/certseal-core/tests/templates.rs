//! Template schemas and the check of licence field values against them.

use std::collections::BTreeMap;

use certseal_core::{
    Actor, Error, FieldSpec, FieldType, FieldValue, Role, Template, TemplateCategory,
    TemplateContent, TemplateStatus, Timestamp, Visibility,
};

fn field(name: &str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name: name.into(),
        label: format!("label of {name}"),
        field_type: ty,
        required: false,
        max_length: 0,
        pattern: String::new(),
        enum_values: vec![],
        scale: 0,
        visibility: Visibility::Public,
    }
}

fn content(fields: Vec<FieldSpec>) -> TemplateContent {
    TemplateContent {
        name: "食品经营许可证".into(),
        category: TemplateCategory::Licence,
        default_validity_days: 1825,
        fields,
    }
}

fn violations(e: Error) -> Vec<(String, String)> {
    match e {
        Error::InvalidArgument(v) => v.into_iter().map(|v| (v.field, v.description)).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

fn template(fields: Vec<FieldSpec>) -> Template {
    let actor = Actor {
        department: "11100000000013338W".parse().unwrap(),
        role: Role::Admin,
    };
    Template {
        type_code: "11100000000013338W032".parse().unwrap(),
        version: 1,
        content: content(fields).validate().expect("a valid schema"),
        status: TemplateStatus::Published,
        created_at: Timestamp(0),
        created_by: actor.clone(),
        updated_at: Timestamp(0),
        updated_by: actor,
        published_at: Some(Timestamp(0)),
    }
}

fn values(pairs: &[(&str, FieldValue)]) -> BTreeMap<String, FieldValue> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn text(s: &str) -> FieldValue {
    FieldValue::Text(s.into())
}

#[test]
fn schema_errors_are_all_reported_with_their_field() {
    let mut dup = field("name", FieldType::String);
    dup.label = "again".into();
    let mut bad_pattern = field("code", FieldType::String);
    bad_pattern.pattern = "([a-z".into();
    let empty_enum = field("kind", FieldType::Enum);
    let mut misplaced = field("count", FieldType::Integer);
    misplaced.pattern = "[0-9]+".into();
    let v = violations(
        content(vec![
            field("name", FieldType::String),
            dup,
            bad_pattern,
            empty_enum,
            misplaced,
            field("Bad-Name", FieldType::String),
        ])
        .validate()
        .unwrap_err(),
    );
    let fields: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "fields[1].name",
            "fields[2].pattern",
            "fields[3].enum_values",
            "fields[4].pattern",
            "fields[5].name"
        ],
        "{v:?}"
    );
    assert!(v[0].1.contains("duplicate"));
    assert!(v[1].1.contains("does not compile"));
}

#[test]
fn schema_limits() {
    let v = violations(content(vec![]).validate().unwrap_err());
    assert_eq!(v[0].0, "fields");
    let mut long = field("notes", FieldType::String);
    long.max_length = 100_000;
    assert_eq!(
        violations(content(vec![long]).validate().unwrap_err())[0].0,
        "fields[0].max_length"
    );
    let mut c = content(vec![field("a", FieldType::String)]);
    c.name = "x".repeat(201);
    assert_eq!(violations(c.validate().unwrap_err())[0].0, "name");
    let mut e = field("kind", FieldType::Enum);
    e.enum_values = vec!["a".into(), "a".into()];
    assert_eq!(
        violations(content(vec![e]).validate().unwrap_err())[0].0,
        "fields[0].enum_values[1]"
    );
    // A control character cannot be shown in a page nor written into an XML catalogue.
    let mut e = field("kind", FieldType::Enum);
    e.enum_values = vec!["a".into(), "b\u{7}".into()];
    assert_eq!(
        violations(content(vec![e]).validate().unwrap_err())[0],
        (
            "fields[0].enum_values[1]".to_owned(),
            "an enum value has no control characters".to_owned()
        )
    );
}

#[test]
fn text_fields_get_a_default_length() {
    let c = content(vec![field("a", FieldType::String)])
        .validate()
        .unwrap();
    assert_eq!(c.fields[0].max_length, 256);
}

#[test]
fn each_field_type_accepts_and_canonicalises_its_values() {
    let mut dec = field("fee", FieldType::Decimal);
    dec.scale = 2;
    let mut kind = field("kind", FieldType::Enum);
    kind.enum_values = vec!["retail".into(), "catering".into()];
    let t = template(vec![
        field("name", FieldType::String),
        field("count", FieldType::Integer),
        dec,
        field("issued_on", FieldType::Date),
        field("chain", FieldType::Boolean),
        kind,
        field("holder_id", FieldType::ResidentId),
        field("company", FieldType::CreditCode),
    ]);
    let out = t
        .validate_values(&values(&[
            ("name", text("厦门某某餐饮有限公司")),
            ("count", text("42")),
            ("fee", text("12.5")),
            ("issued_on", text("2026-11-27")),
            ("chain", text("true")),
            ("kind", text("retail")),
            ("holder_id", text("11010519491231002X")),
            ("company", text("91440300L83341734R")),
        ]))
        .unwrap();
    assert_eq!(out["count"], FieldValue::Integer(42));
    assert_eq!(out["fee"], text("12.50"));
    assert_eq!(out["chain"], FieldValue::Boolean(true));
    assert_eq!(out["issued_on"], text("2026-11-27"));
    assert_eq!(out.len(), 8);
}

#[test]
fn each_field_type_refuses_bad_values() {
    let mut dec = field("fee", FieldType::Decimal);
    dec.scale = 2;
    let mut kind = field("kind", FieldType::Enum);
    kind.enum_values = vec!["retail".into()];
    let t = template(vec![
        field("count", FieldType::Integer),
        dec,
        field("issued_on", FieldType::Date),
        field("chain", FieldType::Boolean),
        kind,
        field("holder_id", FieldType::ResidentId),
        field("company", FieldType::CreditCode),
    ]);
    let v = violations(
        t.validate_values(&values(&[
            ("count", text("4x")),
            ("fee", text("1.234")),
            ("issued_on", text("2026-02-30")),
            ("chain", text("yes")),
            ("kind", text("wholesale")),
            ("holder_id", text("110105194912310021")),
            ("company", text("91440300L83341734X")),
            ("unknown", text("?")),
        ]))
        .unwrap_err(),
    );
    let fields: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "fields.unknown",
            "fields.count",
            "fields.fee",
            "fields.issued_on",
            "fields.chain",
            "fields.kind",
            "fields.holder_id",
            "fields.company"
        ]
    );
}

#[test]
fn required_fields_must_be_present() {
    let mut name = field("name", FieldType::String);
    name.required = true;
    let t = template(vec![name, field("note", FieldType::String)]);
    let v = violations(
        t.validate_values(&values(&[("note", text("x"))]))
            .unwrap_err(),
    );
    assert_eq!(v, [("fields.name".into(), "is required".into())]);
    let v = violations(
        t.validate_values(&values(&[("name", text(""))]))
            .unwrap_err(),
    );
    assert_eq!(v[0].0, "fields.name", "empty text counts as absent");
    assert!(t.validate_values(&values(&[("name", text("a"))])).is_ok());
}

#[test]
fn patterns_match_the_whole_value_and_lengths_are_enforced() {
    let mut plate = field("plate", FieldType::String);
    plate.pattern = "[A-Z][0-9]{5}".into();
    plate.max_length = 6;
    let mut short = field("short", FieldType::String);
    short.max_length = 3;
    let t = template(vec![plate, short]);
    assert!(
        t.validate_values(&values(&[("plate", text("A12345"))]))
            .is_ok()
    );
    assert!(
        t.validate_values(&values(&[("plate", text("xA12345"))]))
            .is_err(),
        "anchored at the start"
    );
    assert!(
        t.validate_values(&values(&[("plate", text("A123456"))]))
            .is_err(),
        "anchored at the end"
    );
    assert!(
        t.validate_values(&values(&[("short", text("三个字"))]))
            .is_ok(),
        "length counts characters"
    );
    assert!(
        t.validate_values(&values(&[("short", text("四个汉字"))]))
            .is_err()
    );
}

#[test]
fn enum_values_are_exact() {
    let mut kind = field("kind", FieldType::Enum);
    kind.enum_values = vec!["retail".into(), "catering".into()];
    let t = template(vec![kind]);
    assert!(
        t.validate_values(&values(&[("kind", text("catering"))]))
            .is_ok()
    );
    assert!(
        t.validate_values(&values(&[("kind", text("Catering"))]))
            .is_err()
    );
    assert!(
        t.validate_values(&values(&[("kind", FieldValue::Integer(1))]))
            .is_err()
    );
}
