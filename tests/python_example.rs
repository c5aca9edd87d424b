//! `examples/python`: a client generated from `proto/` with grpcio-tools issues and verifies a
//! licence against a real server, as a department's engineer would run it.

use crate::util::*;

#[test]
fn the_python_example_issues_and_verifies_a_licence() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(&dir.path().join("data"));
    let run = |key: &str| {
        std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/python/run.sh"
            ))
            .arg(server.addr.to_string())
            .args(["--idempotency-key", key])
            .output()
            .expect("bash")
    };
    let out = run("python-example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verify by ID: TOTAL_PASSED"), "{stdout}");
    assert!(
        stdout.contains("verify by document: TOTAL_PASSED"),
        "{stdout}"
    );
    let licence_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("licence ID: "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    // The licence is in the registry, and a second run finds everything it set up.
    let again = run("python-example");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("licence ID: {licence_id}")),
        "{stdout}"
    );
    drop(server);
}
