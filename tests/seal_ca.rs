use std::process::Command;

use crate::util::*;

fn ca_pem(server: &ChildServer) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["ca", "cert", "--server", &server.url()])
        .args(["--as-department", ADMIN_DEPT, "--as-role", "verifier"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_seal_ca_is_created_once_and_is_a_ca_to_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let pem = ca_pem(&server);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    std::fs::write(dir.path().join("ca.pem"), &pem).unwrap();
    let text = Command::new("openssl")
        .args(["x509", "-in", "ca.pem", "-noout", "-text"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign"), "{text}");
    // Self-signed: openssl verifies it against itself.
    let v = Command::new("openssl")
        .args(["verify", "-CAfile", "ca.pem", "ca.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("ca.pem: OK"));
    server.kill9();
    let server = ChildServer::spawn(&data);
    assert_eq!(ca_pem(&server), pem, "the same CA after a restart");
}
