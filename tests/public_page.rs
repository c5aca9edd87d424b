//! The public verification page, opened in headless Chromium (`tests/browser/render.sh`) for a
//! valid, a revoked and an unknown licence, with a screenshot of each in the test output
//! folder; then the paste and upload forms, bad input, and the per-client budget over HTTP.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use certseal::pb;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;

use crate::licences::{PERSON, issuer, request};
use crate::util::*;

/// Where the screenshots go: `CERTSEAL_TEST_OUTPUT`, else the target's test folder.
fn output_dir() -> PathBuf {
    let dir = std::env::var_os("CERTSEAL_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_owned())
        .join("public-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Renders `url` in Chromium; returns the rendered document, leaving `name`.png beside it.
fn browse(url: &str, name: &str) -> String {
    let out = output_dir().join(name);
    let status = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/render.sh"
        ))
        .arg(url)
        .arg(&out)
        .status()
        .expect("bash and Debian's chromium (scripts/ensure-deps --test installs it)");
    assert!(
        status.success(),
        "chromium failed on {url}: {}",
        std::fs::read_to_string(out.with_extension("chromium.log")).unwrap_or_default()
    );
    let png = std::fs::read(out.with_extension("png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{name}.png is a real screenshot"
    );
    eprintln!("screenshot: {}", out.with_extension("png").display());
    std::fs::read_to_string(out.with_extension("html")).unwrap()
}

/// One HTTP/1.1 exchange; returns the status code and the whole response, headers first.
/// A server that answers before the body is all sent (413) may close the connection under the
/// client: then the response read, or code 0 if the reset lost it.
fn http(addr: &str, request: &[u8]) -> (u16, String) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    if let Err(e) = s.write_all(request) {
        assert!(matches!(e.kind(), BrokenPipe | ConnectionReset), "{e}");
    }
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        assert_eq!(e.kind(), ConnectionReset, "{e}");
    }
    if out.len() < 12 {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text[9..12].parse().unwrap();
    (code, text)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    get_with(addr, path, "")
}

/// GET with extra header lines, each ending in CRLF.
fn get_with(addr: &str, path: &str, headers: &str) -> (u16, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// POST /check with one multipart field.
fn post_field(addr: &str, field: &str, filename: Option<&str>, value: &[u8]) -> (u16, String) {
    let boundary = "certsealboundary7MA4YWxkTrZu0gW";
    let disposition = match filename {
        Some(f) => {
            format!("form-data; name=\"{field}\"; filename=\"{f}\"\r\nContent-Type: image/png")
        }
        None => format!("form-data; name=\"{field}\""),
    };
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").into_bytes();
    body.extend_from_slice(value);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = format!(
        "POST /check HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    http(addr, &req)
}

/// The text of the element with this id (its first text run), from a rendered document.
fn element<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in\n{html}"));
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap() + open;
    &rest[open..close]
}

async fn log_size(addr: std::net::SocketAddr) -> u64 {
    certseal::pb::audit_service_client::AuditServiceClient::new(connect(addr).await)
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size
}

/// A server whose page records its checks in `department`'s name.
fn start(dir: &Path, department: &str, checks_per_minute: u32) -> (ChildServer, String) {
    start_with(dir, department, checks_per_minute, "")
}

/// The same, with more `[public_page]` lines.
fn start_with(
    dir: &Path,
    department: &str,
    checks_per_minute: u32,
    more: &str,
) -> (ChildServer, String) {
    let page = free_addr();
    let config = dir.join("certseal.toml");
    std::fs::write(
        &config,
        format!(
            "[public_page]\nlisten = \"{page}\"\nbase_url = \"http://{page}\"\ndepartment = \"{department}\"\nchecks_per_minute = {checks_per_minute}\n{more}"
        ),
    )
    .unwrap();
    let server =
        ChildServer::spawn_with(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&page).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the page did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, page)
}

#[tokio::test]
async fn a_browser_sees_valid_revoked_and_unknown_licences_and_each_view_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (server, page) = start(dir.path(), ADMIN_DEPT, 1000);
    let i = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
    let channel = connect(server.addr).await;
    let mut l = LicenceServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    for key in ["valid", "revoked"] {
        let r = l
            .issue_licence(as_actor(&i.dept, "issuer", request(&i, key)))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.licence_id);
    }
    l.revoke_licence(as_actor(
        &i.dept,
        "issuer",
        pb::RevokeLicenceRequest {
            request_id: String::new(),
            licence_id: ids[1].clone(),
            reason: pb::LicenceRevocationReason::Penalty as i32,
            note: "厦市监罚〔2026〕7号".into(),
        },
    ))
    .await
    .unwrap();
    let type_code: certseal_core::TypeCode = i.type_code.parse().unwrap();
    let unknown =
        certseal_core::LicenceId::new(&type_code, &i.dept.parse().unwrap(), "ZZZZZZZZZZZZ", 1)
            .unwrap()
            .to_string();
    let before = log_size(server.addr).await;

    // Valid: the verdict, the type, the issuer, the seal, the public fields; nothing personal.
    let html = browse(&format!("http://{page}/v/{}", ids[0]), "valid");
    assert_eq!(element(&html, "verdict"), "有效 Valid");
    assert_eq!(element(&html, "type-name"), "食品经营许可证");
    assert_eq!(element(&html, "licence-id"), ids[0]);
    assert!(
        element(&html, "issuer").contains("厦门市市场监督管理局"),
        "{html}"
    );
    assert_eq!(
        element(&html, "seal-name"),
        "厦门市市场监督管理局行政审批专用章"
    );
    assert!(
        html.contains("src=\"data:image/png;base64,"),
        "the seal image is shown"
    );
    assert!(
        html.contains("张三小吃店"),
        "a public field's value is shown"
    );
    // The personal fields (staff 12, chain, opened 2026-03-01, the legal representative's
    // ID): neither their values nor even their labels.
    for personal in [
        PERSON,
        "从业人数",
        "连锁",
        "开业日期",
        "2026-03-01",
        "法定代表人",
    ] {
        assert!(!html.contains(personal), "{personal} appears in\n{html}");
    }
    assert_eq!(element(&html, "holder"), "张* ");
    assert!(!html.contains("张三 "), "the holder's name is masked");
    let qr = html
        .find("<svg")
        .expect("the printable page carries a QR code");
    assert!(html[qr..].contains("</svg>"));
    assert!(element(&html, "status").contains("active"));

    // Revoked: not valid, and why.
    let html = browse(&format!("http://{page}/v/{}", ids[1]), "revoked");
    assert_eq!(element(&html, "verdict"), "无效 Not valid");
    assert!(element(&html, "why").contains("revoked"), "{html}");
    // In the national platforms' terms: revoked as a penalty, 吊销.
    assert!(element(&html, "status").contains("吊销 revoked"), "{html}");
    assert!(
        !html.contains("厦市监罚〔2026〕7号"),
        "the issuer's note is its own business"
    );

    // Each of those views is a check in the log: a receipt naming the page's purpose and
    // department.
    let viewed = log_size(server.addr).await;
    assert!(viewed >= before + 2, "{before} -> {viewed}");

    // Unknown: said plainly, with no licence card, and not logged: it concerns no licence.
    let html = browse(&format!("http://{page}/v/{unknown}"), "unknown");
    assert_eq!(element(&html, "verdict"), "无效 Not valid");
    assert!(element(&html, "why").contains("no such licence"), "{html}");
    assert_eq!(element(&html, "asked"), unknown);
    assert!(!html.contains("id=\"licence\""));
    assert!(element(&html, "receipt").contains("not recorded"));
    assert_eq!(get(&page, &format!("/v/{unknown}")).0, 404);
    assert_eq!(log_size(server.addr).await, viewed);

    // Another site cannot make its visitors' browsers check licences: a page of ours loaded
    // as an image is refused, unlogged.
    let (code, _) = get_with(
        &page,
        &format!("/v/{}", ids[0]),
        "Sec-Fetch-Dest: image\r\n",
    );
    assert_eq!(code, 403);
    let (code, response) = get_with(
        &page,
        &format!("/v/{}", ids[0]),
        "Sec-Fetch-Dest: document\r\n",
    );
    assert_eq!(code, 200);
    let headers = response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("content-security-policy: default-src 'none'"),
        "{headers}"
    );
    assert!(headers.contains("cache-control: no-store"), "{headers}");
    assert_eq!(log_size(server.addr).await, viewed + 1);

    let receipts = VerificationServiceClient::new(channel.clone())
        .list_receipts(as_actor(
            &i.dept,
            "issuer",
            pb::ListReceiptsRequest {
                licence_id: ids[0].clone(),
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .receipts;
    assert!(receipts.len() >= 2, "{receipts:?}");
    for r in &receipts {
        assert_eq!(r.verifier, ADMIN_DEPT);
        assert_eq!(r.purpose.as_ref().unwrap().code, "PUBLIC_PAGE");
    }
    // A department's own check may not pass for a page view.
    let refused = VerificationServiceClient::new(channel.clone())
        .verify_licence(as_actor(
            &i.dept,
            "issuer",
            pb::VerifyLicenceRequest {
                licence_id: ids[0].clone(),
                purpose: Some(pb::Purpose {
                    code: "PUBLIC_PAGE".into(),
                    text: "看看".into(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    let v = expect_code(refused, tonic::Code::InvalidArgument);
    assert!(v.iter().any(|(f, _)| f == "purpose.code"), "{v:?}");
    drop(server);
}

#[tokio::test]
async fn the_forms_read_a_pasted_string_and_an_uploaded_qr_picture_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    // The page's department is the issuer itself: the page still shows only public fields.
    let (server, page) = start(dir.path(), &dept_code(1), 1000);
    let i = issuer(server.addr, 1, pb::SealAlgorithm::EcdsaP256).await;
    let mut l = LicenceServiceClient::new(connect(server.addr).await);
    let issued = l
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "qr")))
        .await
        .unwrap()
        .into_inner();

    let (code, body) = get(&page, "/");
    assert_eq!(code, 200);
    assert!(body.contains("enctype=\"multipart/form-data\""));

    // Pasted.
    let (code, body) = post_field(&page, "qr", None, issued.qr.as_bytes());
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("有效 Valid") && body.contains(&issued.licence_id),
        "{body}"
    );

    // Uploaded: the PNG `certseal licence qr --png` draws.
    let png = dir.path().join("qr.png");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["licence", "qr", &issued.licence_id, "--png"])
        .arg(&png)
        .args([
            "--server",
            &server.url(),
            "--as-department",
            &i.dept,
            "--as-role",
            "issuer",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, body) = post_field(
        &page,
        "image",
        Some("qr.png"),
        &std::fs::read(&png).unwrap(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("有效 Valid") && body.contains(&issued.licence_id),
        "{body}"
    );

    // The page's department issued the licence, yet the page shows only the public fields.
    let (_, body) = get(&page, &format!("/v/{}", issued.licence_id));
    assert!(
        body.contains("有效 Valid") && body.contains("张三小吃店"),
        "{body}"
    );
    for personal in [PERSON, "从业人数", "开业日期", "张三 "] {
        assert!(!body.contains(personal), "{personal} appears in\n{body}");
    }

    // A document with one claim changed (the operator's name) and its signature kept: checked
    // and recorded against the licence it names, shown as not valid and not dressed in the
    // real licence's record.
    let mut forged = certseal_core::qr::decode(&issued.qr).unwrap();
    let name = "张三小吃店".as_bytes();
    let at = forged
        .windows(name.len())
        .position(|w| w == name)
        .expect("the claim is in the document");
    forged[at..at + name.len()].copy_from_slice("李四小吃店".as_bytes());
    let before = log_size(server.addr).await;
    let (code, body) = post_field(
        &page,
        "qr",
        None,
        certseal_core::qr::encode(&forged).as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("无效 Not valid") && body.contains("signature does not match"),
        "{body}"
    );
    for dressing in [
        "李四小吃店",
        "id=\"licence\"",
        "id=\"seal-name\"",
        "食品经营许可证",
    ] {
        assert!(!body.contains(dressing), "{dressing} appears in\n{body}");
    }
    assert!(body.contains("This check is recorded"), "{body}");
    assert_eq!(log_size(server.addr).await, before + 1);

    // Junk pasted: answered, not logged (it concerns no licence held here).
    let (code, body) = post_field(&page, "qr", None, b"CS1:NOT-A-LICENCE");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("无效 Not valid") && body.contains("not recorded"),
        "{body}"
    );
    assert_eq!(log_size(server.addr).await, before + 1);

    // Bad input changes nothing: a malformed ID, a picture without a code, an empty form.
    let before = log_size(server.addr).await;
    let (code, body) = get(&page, "/v/not-a-licence");
    assert_eq!(code, 400);
    assert!(body.contains("does not hold a licence ID"), "{body}");
    assert!(
        !body.contains("not-a-licence"),
        "text from the address is not repeated back"
    );
    let (code, body) = post_field(&page, "image", Some("x.png"), &png_of_nothing());
    assert_eq!(code, 400);
    assert!(body.contains("no QR code was found"), "{body}");
    let (code, body) = post_field(&page, "image", Some("x.png"), b"not an image");
    assert_eq!(code, 400);
    assert!(body.contains("not a PNG or JPEG"), "{body}");
    let (code, _) = post_field(&page, "qr", None, b"   ");
    assert_eq!(code, 400);
    let (code, _) = post_field(&page, "image", Some("big.png"), &vec![0u8; 9 << 20]);
    // 413, or the connection closed while the client was still sending: refused either way.
    assert!(code == 413 || code == 0, "{code}");
    // A form posted from another site is refused.
    let (code, _) = http(
        &page,
        format!("POST /check HTTP/1.1\r\nHost: {page}\r\nSec-Fetch-Site: cross-site\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(code, 403);
    assert_eq!(get(&page, "/nowhere").0, 404);
    // axum's own refusals carry the same headers.
    let (code, response) = get(&page, "/check");
    assert_eq!(code, 405);
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{response}"
    );
    assert_eq!(log_size(server.addr).await, before);
}

/// A real picture with no QR code in it.
fn png_of_nothing() -> Vec<u8> {
    let blank = image::GrayImage::from_pixel(300, 200, image::Luma([230]));
    let mut out = Vec::new();
    blank
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[tokio::test]
async fn one_client_gets_a_bounded_number_of_checks_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let (server, page) = start(dir.path(), ADMIN_DEPT, 3);
    let i = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
    let id = LicenceServiceClient::new(connect(server.addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "budget")))
        .await
        .unwrap()
        .into_inner()
        .licence_id;
    // Seven calls within a moment cross at most one minute's turn, which refills the budget
    // once: the first three pass, and at least one of the others is refused.
    let before = log_size(server.addr).await;
    let answers: Vec<(u16, String)> = (0..7).map(|_| get(&page, &format!("/v/{id}"))).collect();
    let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(codes[..3].iter().all(|c| *c == 200), "{codes:?}");
    // Only the views answered are logged.
    let answered = codes.iter().filter(|c| **c == 200).count() as u64;
    assert_eq!(log_size(server.addr).await, before + answered, "{codes:?}");
    let refused = answers
        .iter()
        .find(|a| a.0 == 429)
        .unwrap_or_else(|| panic!("{codes:?}"));
    assert!(refused.1.contains("too many checks"), "{}", refused.1);
    // The landing page costs nothing.
    assert_eq!(get(&page, "/").0, 200);
    drop(server);
}

/// The picture seen in issue 17: 1600×1600 pixels holding ~3,000 QR finder patterns (7×7
/// modules of 2 pixels, 28 pixels apart), compressed to a few kilobytes.
fn finder_pattern_lattice() -> Vec<u8> {
    let mut img = image::GrayImage::from_pixel(1600, 1600, image::Luma([255]));
    for top in (14..1600 - 14).step_by(28) {
        for left in (14..1600 - 14).step_by(28) {
            for (my, mx) in (0..7).flat_map(|y| (0..7).map(move |x| (y, x))) {
                let ring = my == 0 || my == 6 || mx == 0 || mx == 6;
                let stone = (2..=4).contains(&my) && (2..=4).contains(&mx);
                if ring || stone {
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        img.put_pixel(left + 2 * mx + dx, top + 2 * my + dy, image::Luma([0]));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    img.write_with_encoder(image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    ))
    .unwrap();
    out
}

/// A phone photo (3264×2448 JPEG) of `qr`'s code: uneven light, sensor noise, the code
/// somewhere in the frame and softened by the lens.
fn photo_of(qr: &str) -> Vec<u8> {
    let code = image::load_from_memory(&certseal::qr_image::png(qr).unwrap())
        .unwrap()
        .into_luma8();
    let (w, h) = (3264u32, 2448u32);
    let mut noise = 0x2545_f491u32;
    let mut photo = image::GrayImage::from_fn(w, h, |x, y| {
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        image::Luma([(120 + 100 * x / w + 20 * y / h - noise % 24) as u8])
    });
    // Drawn at 4 pixels a module, enlarged to 8 (about 4 once the photo is scaled down to
    // the pixels searched). rqrr misses some codes at some module sizes (4.6 pixels, for one),
    // whatever the picture: this size read every one of 240 random codes of 500 to 1,100
    // characters.
    let code = image::imageops::resize(
        &code,
        code.width() * 2,
        code.height() * 2,
        image::imageops::FilterType::Triangle,
    );
    image::imageops::overlay(&mut photo, &code, 1400, 700);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&photo)
        .unwrap();
    out
}

/// The CPU time a process has used, in clock ticks (user and system, from /proc).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: state is the first, utime the
    // 12th, stime the 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_lattice_of_finder_patterns_is_refused_at_once_and_leaves_no_work_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, page) = start_with(
        dir.path(),
        &dept_code(1),
        1000,
        "decoders = 2\ndecode_queue = 4\n",
    );
    // On a runtime of its own, dropped with its gRPC connections: the SIGTERM below is not
    // kept waiting for an idle client of ours.
    let issued = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let i = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
        LicenceServiceClient::new(connect(server.addr).await)
            .issue_licence(as_actor(&i.dept, "issuer", request(&i, "photo")))
            .await
            .unwrap()
            .into_inner()
    });

    // Four uploads at once (they held both cores for minutes): each refused by the cap, with
    // the reason, before the decoder's pairwise search.
    let lattice = finder_pattern_lattice();
    assert!(lattice.len() < 20_000, "{} bytes", lattice.len());
    let uploads: Vec<_> = (0..4)
        .map(|_| {
            let (page, lattice) = (page.clone(), lattice.clone());
            std::thread::spawn(move || post_field(&page, "image", Some("x.png"), &lattice))
        })
        .collect();
    for u in uploads {
        let (code, body) = u.join().unwrap();
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("no licence QR code found"), "{body}");
        assert!(body.contains("corner squares"), "{body}");
    }
    // Nothing runs on once the last answer is sent: over the next two seconds the server uses
    // at most half a second of CPU (a decode left running would use up to 4 seconds).
    let pid = server.child.id();
    let after = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let later = cpu_ticks(pid);
    let per_second = tick_rate();
    assert!(
        later - after <= per_second / 2,
        "{} ticks used after the answers ({per_second} a second)",
        later - after
    );

    // A phone photo of the licence's code still reads.
    let photo = photo_of(&issued.qr);
    let (code, body) = post_field(&page, "image", Some("photo.jpg"), &photo);
    assert_eq!(
        code,
        200,
        "a code of {} characters: {body}",
        issued.qr.len()
    );
    assert!(
        body.contains("有效 Valid") && body.contains(&issued.licence_id),
        "{body}"
    );

    // SIGTERM stops it: no decode holds the shutdown.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// Clock ticks a second, as /proc counts CPU time.
fn tick_rate() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_decode_queue_get_503_and_shutdown_does_not_wait_for_a_decode() {
    use certseal::decoders::Decoders;
    // One decoder, one place in its queue; the decoder is held busy by a job of ours.
    let decoders = std::sync::Arc::new(Decoders::new(1, 1).unwrap());
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let busy = decoders
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = held.recv();
        })
        .unwrap();
    started.recv().unwrap();

    let listen = free_addr();
    let config = certseal::config::PublicPageConfig {
        listen: listen.parse().unwrap(),
        department: ADMIN_DEPT.parse().unwrap(),
        base_url: None,
        checks_per_minute: 1000,
        concurrency: 64,
        total_checks_per_minute: 6000,
        trusted_proxies: Vec::new(),
        decoders: 1,
        decode_queue: 1,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = certseal::public_page::bind(
        config,
        std::sync::Weak::new(),
        decoders.clone(),
        async move {
            let _ = stopped.await;
        },
    )
    .unwrap();
    let serving = tokio::spawn(serving);

    // The first upload takes the place in the queue and waits.
    let (page, picture) = (listen.clone(), png_of_nothing());
    let waiting = std::thread::spawn(move || post_field(&page, "image", Some("a.png"), &picture));
    while decoders.waiting() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The next is refused at once: 503, with Retry-After and the reason in both languages.
    let page = listen.clone();
    let (code, response) = tokio::task::spawn_blocking(move || {
        post_field(&page, "image", Some("b.png"), &finder_pattern_lattice())
    })
    .await
    .unwrap();
    assert_eq!(code, 503, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: "),
        "{response}"
    );
    assert!(
        response.contains("系统繁忙") && response.contains("Too many pictures are being read"),
        "{response}"
    );

    // Stopping the page answers the waiting upload and ends, while the decoder is still busy.
    stop.send(()).unwrap();
    serving.await.unwrap();
    let (code, response) = waiting.join().unwrap();
    assert_eq!(code, 503, "{response}");
    assert!(response.contains("restarting"), "{response}");
    release.send(()).unwrap();
    busy.await.unwrap();
}

/// The holder's use code on the page: only a code for anyone that names the page's purpose,
/// each view one use and one receipt, public fields only.
#[tokio::test]
async fn a_use_code_for_anyone_opens_the_page_once_per_use() {
    use certseal::pb::holder_service_client::HolderServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let (server, page) = start(dir.path(), &dept_code(3), 1000);
    let i = issuer(server.addr, 2, pb::SealAlgorithm::Ed25519).await;
    let issued = LicenceServiceClient::new(connect(server.addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "page-code")))
        .await
        .unwrap()
        .into_inner();
    let agent = dept_code(4);
    let mut holders = HolderServiceClient::new(connect(server.addr).await);
    let create = |audience: pb::use_code_audience::Audience, purposes: &[&str]| {
        as_actor(
            &agent,
            "holder_agent",
            pb::CreateUseCodeRequest {
                holder: Some(pb::HolderRef {
                    kind: pb::HolderKind::Person as i32,
                    id: PERSON.into(),
                }),
                licence_id: issued.licence_id.clone(),
                purposes: purposes.iter().map(|p| (*p).into()).collect(),
                fields: vec!["staff".into()],
                audience: Some(pb::UseCodeAudience {
                    audience: Some(audience),
                }),
                validity_seconds: 3600,
                uses: 2,
            },
        )
    };
    let anyone = holders
        .create_use_code(create(
            pb::use_code_audience::Audience::Anyone(true),
            &["PUBLIC_PAGE"],
        ))
        .await
        .unwrap()
        .into_inner();
    let before = log_size(server.addr).await;
    // Pasted, then as a photo of its QR code: two views, two uses.
    let (code, body) = post_field(&page, "qr", None, anyone.qr.as_bytes());
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("有效 Valid") && body.contains("张三小吃店"),
        "{body}"
    );
    // The code opens `staff`, but the page is anonymous: public fields only.
    for personal in [PERSON, "从业人数", "张三 "] {
        assert!(!body.contains(personal), "{personal} appears in\n{body}");
    }
    let (code, body) = post_field(&page, "image", Some("code.jpg"), &photo_of(&anyone.qr));
    assert_eq!(code, 200, "{body}");
    // Each view: its receipt and the code's use.
    assert_eq!(log_size(server.addr).await, before + 4);
    let (code, body) = post_field(&page, "qr", None, anyone.qr.as_bytes());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("used as many times"), "{body}");
    assert!(!body.contains("张三小吃店"), "{body}");

    // A code for one department, or one without the page's purpose, opens nothing here.
    let for_one = holders
        .create_use_code(create(
            pb::use_code_audience::Audience::Department(dept_code(5)),
            &["ADMIN_APPROVAL"],
        ))
        .await;
    // The department is not registered: refused when the code is made.
    expect_code(for_one.unwrap_err(), tonic::Code::InvalidArgument);
    register(
        &mut certseal::pb::department_service_client::DepartmentServiceClient::new(
            connect(server.addr).await,
        ),
        &dept_code(5),
        "某区教育局",
    )
    .await;
    let for_one = holders
        .create_use_code(create(
            pb::use_code_audience::Audience::Department(dept_code(5)),
            &["ADMIN_APPROVAL"],
        ))
        .await
        .unwrap()
        .into_inner();
    let (code, body) = post_field(&page, "qr", None, for_one.qr.as_bytes());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("for another department"), "{body}");
    let no_page = holders
        .create_use_code(create(
            pb::use_code_audience::Audience::Anyone(true),
            &["ADMIN_APPROVAL"],
        ))
        .await
        .unwrap()
        .into_inner();
    let (code, body) = post_field(&page, "qr", None, no_page.qr.as_bytes());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("does not allow this purpose"), "{body}");
    // The holder's record shows the two page views, by the code.
    let usage = holders
        .list_usage(as_actor(
            &agent,
            "holder_agent",
            pb::ListUsageRequest {
                holder: Some(pb::HolderRef {
                    kind: pb::HolderKind::Person as i32,
                    id: PERSON.into(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .usage;
    assert_eq!(usage.len(), 2, "{usage:?}");
    for u in &usage {
        assert_eq!(u.basis(), pb::CheckBasis::UseCode);
        assert_eq!(u.purpose.as_ref().unwrap().code, "PUBLIC_PAGE");
        assert_eq!(u.use_code_id, anyone.info.as_ref().unwrap().code_id);
    }
}
