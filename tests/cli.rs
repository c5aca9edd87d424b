use std::process::{Command, Output};

use serde_json::Value;

use crate::util::*;

fn certseal(server: &ChildServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(args)
        .args(["--server", &server.url()])
        .output()
        .unwrap()
}

fn as_admin<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--as-department", ADMIN_DEPT, "--as-role", "admin"]);
    v
}

fn json_ok(out: Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn departments_and_templates_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(&dir.path().join("data"));
    let dept = dept_code(1);

    let d = json_ok(certseal(
        &server,
        &as_admin(&[
            "department",
            "register",
            "--credit-code",
            &dept,
            "--name",
            "厦门市市场监督管理局",
            "--region",
            "350200",
            "--json",
        ]),
    ));
    assert_eq!(d["credit_code"], dept.as_str());
    assert_eq!(d["status"], "active");
    assert_eq!(d["record"]["created_by"]["role"], "admin");

    let list = json_ok(certseal(
        &server,
        &as_admin(&["department", "list", "--json"]),
    ));
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let text = certseal(&server, &as_admin(&["department", "list"]));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("CREDIT_CODE"), "{text}");
    assert!(text.contains("厦门市市场监督管理局"));

    let schema = dir.path().join("schema.toml");
    std::fs::write(
        &schema,
        r#"
name = "食品经营许可证"
category = "licence"
default_validity_days = 1825

[[fields]]
name = "operator_name"
label = "经营者名称"
type = "string"
required = true
max_length = 100
visibility = "public"

[[fields]]
name = "business_kind"
label = "经营项目"
type = "enum"
enum_values = ["预包装食品销售", "热食类食品制售"]
visibility = "public"

[[fields]]
name = "legal_rep_id"
label = "法定代表人身份证号"
type = "resident_id"
required = true
"#,
    )
    .unwrap();
    let code = format!("{dept}001");
    let t = json_ok(certseal(
        &server,
        &as_admin(&[
            "template",
            "create",
            "--type-code",
            &code,
            "--file",
            schema.to_str().unwrap(),
            "--json",
        ]),
    ));
    assert_eq!(t["version"], 1);
    assert_eq!(t["status"], "draft");
    assert_eq!(
        t["fields"][2]["visibility"], "personal",
        "personal is the default"
    );
    json_ok(certseal(
        &server,
        &as_admin(&["template", "publish", &code, "1", "--json"]),
    ));
    let got = json_ok(certseal(
        &server,
        &as_admin(&["template", "get", &code, "--json"]),
    ));
    assert_eq!(got["status"], "published");
    assert_eq!(got["fields"][1]["enum_values"][1], "热食类食品制售");
    let listed = json_ok(certseal(
        &server,
        &as_admin(&["template", "list", "--status", "published", "--json"]),
    ));
    assert_eq!(listed["items"][0]["type_code"], code.as_str());

    // A refused call exits non-zero and explains the status and the field.
    let out = certseal(
        &server,
        &as_admin(&[
            "department",
            "register",
            "--credit-code",
            "9135052155323005XM",
            "--name",
            "x",
            "--region",
            "350200",
        ]),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INVALID_ARGUMENT: the request was refused as malformed; nothing changed")
            && err.contains("credit_code")
            && err.contains("request ID "),
        "{err}"
    );
    let out = certseal(&server, &["department", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UNAUTHENTICATED: the server does not know who is calling")
            && err.contains("--as-department"),
        "{err}"
    );
}

/// The load generator runs every service workload against a server it starts itself and
/// reports figures a reader can compare: counts, latencies, and the ratio to its baseline.
#[test]
fn the_load_generator_reports_each_workload() {
    let dir = tempfile::tempdir().unwrap();
    for (workload, extra, baseline) in [
        (
            "issue",
            &["--duration", "1", "--baseline-seconds", "1"][..],
            true,
        ),
        (
            "mixed",
            &["--duration", "1", "--baseline-seconds", "0"][..],
            false,
        ),
        (
            "verify-code",
            &["--duration", "1", "--baseline-seconds", "0"][..],
            false,
        ),
        (
            "import",
            &["--count", "300", "--baseline-seconds", "1"][..],
            true,
        ),
    ] {
        let report = dir.path().join(format!("{workload}.json"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args(["bench", workload, "--concurrency", "4", "--report"])
            .arg(&report)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{workload}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(r["errors"], 0, "{workload}: {r}");
        assert!(r["ok"].as_u64().unwrap() > 0, "{workload}: {r}");
        assert!(r["per_second"].as_f64().unwrap() > 0.0, "{workload}: {r}");
        if workload == "import" {
            assert_eq!(r["ok"], 300, "every licence of the stream is issued");
        } else {
            assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");
        }
        if baseline {
            assert!(r["ratio_to_baseline"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
}

/// The catalogue of the quick start's registry (its department and the food licence type of
/// `examples/food-licence.toml`), exported as JSON that validates against the schema published
/// in `docs/`, and as XML with the same content.
#[test]
fn the_catalogue_exports_as_json_valid_against_its_schema_and_as_xml() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(&dir.path().join("data"));
    let dept = "11350200MB0123456A";
    let food = format!("{dept}001");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/food-licence.toml");
    for args in [
        vec![
            "department",
            "register",
            "--credit-code",
            dept,
            "--name",
            "厦门市市场监督管理局",
            "--region",
            "350200",
        ],
        vec![
            "template",
            "create",
            "--type-code",
            &food,
            "--file",
            example,
        ],
        vec!["template", "publish", &food, "1"],
        // A type with only a draft is not in the catalogue.
        vec![
            "template",
            "create",
            "--type-code",
            "11350200MB0123456A002",
            "--file",
            example,
        ],
    ] {
        let out = certseal(&server, &as_admin(&args));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json_file = dir.path().join("catalogue.json");
    let xml_file = dir.path().join("catalogue.xml");
    for (format, file) in [("json", &json_file), ("xml", &xml_file)] {
        let out = certseal(
            &server,
            &as_admin(&[
                "catalogue",
                "export",
                "--format",
                format,
                "--out",
                file.to_str().unwrap(),
            ]),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Checked by an implementation of JSON Schema we did not write.
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/validate_json.py"
        ))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/catalogue.schema.json"
        ))
        .arg(&json_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let c: Value = serde_json::from_slice(&std::fs::read(&json_file).unwrap()).unwrap();
    let types = c["licence_types"].as_array().unwrap();
    assert_eq!(types.len(), 1, "{c}");
    let t = &types[0];
    assert_eq!(t["type_code"], food.as_str());
    assert_eq!(t["name"], "食品经营许可证");
    assert_eq!(t["issuing_authority"]["name"], "厦门市市场监督管理局");
    assert_eq!(t["validity_days"], 1825);
    let template: toml::Value = toml::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    let fields = template["fields"].as_array().unwrap();
    let items = t["data_items"].as_array().unwrap();
    assert_eq!(items.len(), fields.len());
    for (item, field) in items.iter().zip(fields) {
        assert_eq!(item["name"].as_str(), field["name"].as_str());
        assert_eq!(item["label"].as_str(), field["label"].as_str());
        assert_eq!(item["type"].as_str(), field["type"].as_str());
        assert_eq!(
            item["personal"].as_bool().unwrap(),
            field["visibility"].as_str() == Some("personal")
        );
    }
    // The XML says the same.
    let xml = std::fs::read_to_string(&xml_file).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let types: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("LicenceType"))
        .collect();
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].attribute("typeCode"), Some(food.as_str()));
    assert_eq!(
        types[0].attribute("publishedAt"),
        t["published_at"].as_str(),
        "the same publication time"
    );
    let names: Vec<_> = types[0]
        .descendants()
        .filter(|n| n.has_tag_name("DataItem"))
        .map(|n| {
            (
                n.attribute("name").unwrap(),
                n.attribute("personal").unwrap(),
            )
        })
        .collect();
    let from_json: Vec<_> = items
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                if i["personal"].as_bool().unwrap() {
                    "true"
                } else {
                    "false"
                },
            )
        })
        .collect();
    assert_eq!(names, from_json);
}
