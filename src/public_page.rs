//! The public verification page (`[public_page] listen`, off unless set): a citizen or a shop
//! clerk opens `/v/{licence-id}` from a printed code, or pastes a `CS1:` string or uploads a
//! picture of the QR code at `/`, and sees whether the licence holds and why, with only what
//! its template marks public. Every check is recorded like any other, with purpose
//! `PUBLIC_PAGE`, in the name of the department that runs the page.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use certseal_core::{HolderKind, ImageFormat, Indication, LicenceStatus, SubIndication, Timestamp};
use certseal_registry::{PublicView, Registry, RegistryError, Subject};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::config::PublicPageConfig;
use crate::decoders::Decoders;

/// Largest upload: a phone photo of a QR code, or a pasted string.
const MAX_UPLOAD_BYTES: usize = 8 << 20;
/// Longest pasted text read.
const MAX_PASTE_CHARS: usize = certseal_core::qr::MAX_QR_CHARS;

struct Page {
    registry: Weak<Registry>,
    config: PublicPageConfig,
    budget: ClientBudget,
    /// Checks in progress.
    slots: Arc<tokio::sync::Semaphore>,
    /// Pictures being decoded: CPU-bound work on threads of their own, with a bounded queue.
    decoders: Arc<Decoders>,
    /// Set when the page stops: a check waiting for its picture answers at once.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// Checks per client address per minute, and over all clients. IPv6 clients are counted per
/// /56, the block one subscriber usually holds.
struct ClientBudget {
    per_client: u32,
    total: u32,
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    minute: u64,
    total: u32,
    clients: HashMap<IpAddr, u32>,
}

/// Most client addresses counted in one minute; past it, new addresses wait for the next.
const MAX_CLIENTS: usize = 100_000;

impl ClientBudget {
    fn allow(&self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 72) - 1)).into()),
            },
            v4 => v4,
        };
        let minute = (Timestamp::now().0.max(0) / 60_000) as u64;
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.minute != minute {
            // A new minute: every count starts again.
            *w = Windows {
                minute,
                ..Windows::default()
            };
        }
        if w.total >= self.total {
            return Err("The service has answered as many checks as it may this minute.");
        }
        let full = w.clients.len() >= MAX_CLIENTS;
        let n = match w.clients.get_mut(&ip) {
            Some(n) => n,
            None if full => return Err("The service is answering too many addresses this minute."),
            None => w.clients.entry(ip).or_insert(0),
        };
        if *n >= self.per_client {
            return Err("This address made too many checks in the last minute.");
        }
        *n += 1;
        w.total += 1;
        Ok(())
    }
}

/// Binds `addr` now (so a taken port fails the start), and serves the page there while the
/// returned future runs, reading pictures on `decoders`. Call within the runtime.
pub fn bind(
    config: PublicPageConfig,
    registry: Weak<Registry>,
    decoders: Arc<Decoders>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = config.listen;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let page = Arc::new(Page {
        registry,
        budget: ClientBudget {
            per_client: config.checks_per_minute,
            total: config.total_checks_per_minute,
            windows: Mutex::new(Windows::default()),
        },
        slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency)),
        decoders,
        stopping,
        config,
    });
    let app = axum::Router::new()
        .route("/", axum::routing::get(index))
        .route("/v/{id}", axum::routing::get(by_id))
        .route("/check", axum::routing::post(by_qr))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(axum::middleware::map_response(guard))
        .with_state(page);
    tracing::info!(%addr, "public verification page at /");
    Ok(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await
        {
            tracing::error!(error = %e, "the public verification page stopped");
        }
    })
}

/// A page with its status.
fn respond(status: StatusCode, body: Markup) -> Response {
    (status, body).into_response()
}

/// The headers every response carries, axum's own refusals (405, a malformed form) included:
/// nothing but our own inline styles and data: images may load, nothing may run, and a status
/// that can change is never cached.
async fn guard(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

const STYLE: &str = r#"
body{font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei","PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f3f4f6;color:#111827}
main{max-width:760px;margin:0 auto;padding:24px}
header.site{background:#9f1239;color:#fff;padding:14px 24px;font-size:18px}
header.site a{color:#fff;text-decoration:none}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:24px;margin-bottom:20px}
.verdict{display:flex;align-items:center;gap:16px;border-radius:8px;padding:18px 24px;margin-bottom:20px;color:#fff}
.verdict .mark{font-size:44px;line-height:1}
.verdict h1{margin:0;font-size:28px}
.verdict p{margin:4px 0 0}
.verdict .checked{font-size:13px;opacity:.9}
.notice{overflow:hidden;color:#92400e;background:#fffbeb;border-radius:6px;padding:6px 10px;font-size:14px}
.ok{background:#15803d}.bad{background:#b91c1c}.warn{background:#b45309}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:8px 6px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{width:34%;color:#4b5563;font-weight:normal}
.masked{color:#6b7280;font-style:italic}
.seal{display:flex;align-items:center;gap:16px}
.seal img{width:120px;height:120px;object-fit:contain}
.record{font-size:13px;color:#4b5563}
.qr{float:right;margin-left:16px;text-align:center;font-size:12px;color:#4b5563}
.qr svg{width:132px;height:132px}
textarea{width:100%;box-sizing:border-box;font-family:monospace;min-height:90px}
button{background:#9f1239;color:#fff;border:0;border-radius:6px;padding:8px 18px;font-size:15px;margin-top:8px}
code{word-break:break-all}
@media print{body{background:#fff}header.site,.noprint{display:none}.card{box-shadow:none;border:1px solid #d1d5db}main{padding:0}}
"#;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · 电子证照核验 Licence verification" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header.site { a href="/" { "电子证照核验 · Licence verification" } }
                main { (body) }
            }
        }
    }
}

fn forms() -> Markup {
    html! {
        div.card.noprint {
            h2 { "核验电子证照 Check a licence" }
            p { "粘贴证照二维码内容（以 CS1: 开头）或用证码（以 CSU: 开头），或上传二维码图片。"
                br; "Paste the licence's QR text (it starts with CS1:) or a holder's use code (CSU:), or upload a picture of its QR code." }
            form method="post" action="/check" enctype="multipart/form-data" {
                label for="qr" { "二维码内容 QR text" }
                textarea #qr name="qr" placeholder="CS1:…" {}
                button type="submit" { "核验 Check" }
            }
            form method="post" action="/check" enctype="multipart/form-data" {
                p {
                    label for="image" { "二维码图片 QR picture (PNG, JPEG) " }
                    input #image type="file" name="image" accept="image/png,image/jpeg";
                }
                button type="submit" { "上传并核验 Upload and check" }
            }
        }
    }
}

async fn index() -> Response {
    respond(StatusCode::OK, layout("核验", forms()))
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "页面不存在 No such page",
        "Use a licence's QR code, or the form below.",
    )
}

/// A page for a request that could not be checked; nothing was recorded.
fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let mut r = problem_page(status, title, detail);
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    }
    r
}

fn problem_page(status: StatusCode, title: &str, detail: &str) -> Response {
    respond(
        status,
        layout(
            title,
            html! {
                div.verdict.warn {
                    div.mark { "!" }
                    div { h1 { (title) } p { (detail) } }
                }
                (forms())
            },
        ),
    )
}

impl Page {
    /// Admission: the budgets, then a slot; `Err` is the page to send instead.
    fn admit(&self, client: IpAddr) -> Result<tokio::sync::OwnedSemaphorePermit, Box<Response>> {
        if let Err(why) = self.budget.allow(client) {
            return Err(Box::new(problem(
                StatusCode::TOO_MANY_REQUESTS,
                "请稍后再试 Too many checks",
                &format!("请一分钟后再试。{why} Try again in a minute."),
            )));
        }
        self.slots.clone().try_acquire_owned().map_err(|_| {
            Box::new(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "系统繁忙 Busy",
                "系统繁忙，请稍后再试。The verification service is busy; try again in a moment.",
            ))
        })
    }

    /// The client's address: the peer, or the last address a trusted proxy added.
    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip();
        if !self.config.trusted_proxies.contains(&peer) {
            return peer;
        }
        forwarded_client(headers).unwrap_or(peer)
    }

    async fn check(&self, subject: Subject, use_code: Option<&str>) -> Response {
        let Some(registry) = self.registry.upgrade() else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "服务正在停止 Shutting down",
                "The service is restarting; try again shortly.",
            );
        };
        match registry
            .public_check(&self.config.department, subject, use_code)
            .await
        {
            Ok(view) => {
                let status = if view.verification.sub == Some(SubIndication::UnknownLicence) {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                respond(status, result_page(&view, self.config.base_url.as_deref()))
            }
            Err(RegistryError::InvalidArgument(v)) => problem(
                StatusCode::BAD_REQUEST,
                "无法识别 Not a licence",
                &v.iter()
                    .map(|f| f.description.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Err(RegistryError::UseCodeRefused(reason)) => problem(
                StatusCode::FORBIDDEN,
                "用证码无效 Use code refused",
                &format!("此用证码不能用于公开核验页。{}.", reason.words()),
            ),
            Err(e) => {
                tracing::error!(error = %e, "public page check failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "暂时无法核验 Cannot check now",
                    "The registry could not complete the check; try again later.",
                )
            }
        }
    }
}

/// The last `X-Forwarded-For` entry: the one the trusted proxy added. Only that one: an entry
/// before it is whatever the client sent. `None` when it is absent or not an address (then the
/// proxy itself is counted, never an earlier entry).
fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|a| !a.is_empty())?;
    forwarded_address(last)
}

/// An `X-Forwarded-For` entry's address: `203.0.113.7`, `2001:db8::1`, or with a port as some
/// proxies add it, `203.0.113.7:4711` or `[2001:db8::1]:4711` (or `[2001:db8::1]`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}

/// Refuses what a person's browser would not send: a page of ours loaded as an image or a
/// script by another site (every visitor of that site would make a check), or a form posted
/// from elsewhere. Browsers that send no fetch metadata are let through.
fn cross_site(headers: &HeaderMap, post: bool) -> Option<Response> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let foreign = if post {
        value("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none")
    } else {
        value("sec-fetch-dest").is_some_and(|d| d != "document")
    };
    foreign.then(|| {
        problem(
            StatusCode::FORBIDDEN,
            "请直接打开本页 Open this page directly",
            "请在浏览器中直接打开核验页面。Checks are made only from this site's own pages.",
        )
    })
}

async fn by_id(
    State(page): State<Arc<Page>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = cross_site(&headers, false) {
        return r;
    }
    // A malformed ID is refused before it costs the client a check. It is not repeated back:
    // the page must not carry text of a stranger's choosing.
    if let Err(e) = id.parse::<certseal_core::LicenceId>() {
        return problem(
            StatusCode::BAD_REQUEST,
            "证照编号有误 Not a licence ID",
            &format!(
                "地址中的证照编号格式不正确。The address does not hold a licence ID ({}).",
                e.0
            ),
        );
    }
    let _slot = match page.admit(page.client(peer, &headers)) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    page.check(Subject::Id(id), None).await
}

async fn by_qr(
    State(page): State<Arc<Page>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    if let Some(r) = cross_site(&headers, true) {
        return r;
    }
    // Admitted before the upload is read or decoded: the costly part is what the budget bounds.
    let _slot = match page.admit(page.client(peer, &headers)) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    // A slow upload ends here; a picture's decode is bounded in work (`qr_image::read`), and
    // one still queued when this gives up is skipped.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        read_form(multipart, &page),
    );
    let text = match read.await {
        Ok(Ok(t)) => t,
        Ok(Err((status, title, detail))) => {
            return problem(status, title, &detail);
        }
        Err(_) => {
            return problem(
                StatusCode::REQUEST_TIMEOUT,
                "上传超时 Upload too slow",
                "上传时间过长，请重试。The upload took too long; try again.",
            );
        }
    };
    // A holder's use code (CSU:…) names its licence; a view with it uses one of its uses.
    if text
        .trim_start()
        .starts_with(certseal_core::use_code::USE_CODE_QR_PREFIX)
    {
        return match certseal_core::use_code::parse_presented(&text) {
            Ok((_, Some(licence))) => {
                page.check(Subject::Id(licence.to_string()), Some(&text))
                    .await
            }
            Ok(_) | Err(_) => problem(
                StatusCode::BAD_REQUEST,
                "无法识别 Not a use code",
                "用证码二维码应为 CSU:1:… A use code's QR text is CSU:1:<code>:<licence ID>.",
            ),
        };
    }
    page.check(Subject::Qr(text), None).await
}

/// Why a form gave no QR text: the status, the page's title and the detail.
type FormProblem = (StatusCode, &'static str, String);

const CANNOT_READ: &str = "无法读取 Cannot read";

/// The QR text from the form: pasted, or read from the uploaded picture; `Err` says why not.
async fn read_form(mut multipart: Multipart, page: &Page) -> Result<String, FormProblem> {
    let bad = |detail: &str| (StatusCode::BAD_REQUEST, CANNOT_READ, detail.to_owned());
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "文件过大。The picture is larger than {} MiB.",
                MAX_UPLOAD_BYTES >> 20
            )
        } else {
            format!("the form could not be read: {}", e.body_text())
        };
        (status, CANNOT_READ, detail)
    };
    let mut pasted = None;
    let mut picture = None;
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(unreadable)?;
        match name.as_str() {
            "qr" if !bytes.iter().all(u8::is_ascii_whitespace) => pasted = Some(bytes),
            "image" if !bytes.is_empty() => picture = Some(bytes),
            _ => {}
        }
    }
    if let Some(p) = pasted {
        let text = std::str::from_utf8(&p).map_err(|_| bad("the pasted text is not UTF-8"))?;
        let text = text.trim();
        if text.len() > MAX_PASTE_CHARS {
            return Err(bad(&format!(
                "粘贴的内容过长。The pasted text is longer than a licence's QR text ({MAX_PASTE_CHARS} characters)."
            )));
        }
        return Ok(text.to_owned());
    }
    let Some(picture) = picture else {
        return Err(bad(
            "请粘贴二维码内容或选择二维码图片。Paste the QR text or choose a picture of the QR code.",
        ));
    };
    // Decoding a photo is CPU work, on the decoders' own threads; when they and their queue
    // are full the picture is refused now rather than kept waiting.
    let decoded = page
        .decoders
        .submit(move || crate::qr_image::read(&picture))
        .map_err(|busy| {
            tracing::warn!(%busy, "public page: picture refused");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "系统繁忙 Busy",
                "正在识别的图片过多，请稍后再试。Too many pictures are being read now; try again in a moment."
                    .to_owned(),
            )
        })?;
    let mut stopping = page.stopping.clone();
    tokio::select! {
        r = decoded => match r {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(e)) => Err(bad(&format!("无法识别二维码图片。{e}"))),
            Err(_) => Err(bad("the picture could not be read")),
        },
        // Shutdown does not wait for a picture.
        _ = stopping.wait_for(|s| *s) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "服务正在停止 Shutting down",
            "服务正在重启，请稍后再试。The service is restarting; try again shortly.".to_owned(),
        )),
    }
}

/// Beijing time, as the licences' holders and issuers read it.
fn local_time(seconds: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).expect("a valid offset");
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => "—".to_owned(),
    }
}

fn date(seconds: i64) -> String {
    local_time(seconds).chars().take(10).collect()
}

/// The verdict's words: Chinese first, then English. For a citizen anything but a pass is
/// "not valid", except a check the registry cannot decide now.
fn verdict(view: &PublicView) -> (&'static str, &'static str, &'static str, &'static str) {
    let v = &view.verification;
    let (class, mark, title) = match (v.indication, v.sub) {
        (Indication::TotalPassed, _) => ("ok", "✓", "有效 Valid"),
        (_, Some(SubIndication::TryLater)) => ("warn", "?", "暂不能确认 Cannot be confirmed now"),
        _ => ("bad", "✗", "无效 Not valid"),
    };
    let why = match v.sub {
        None => {
            "证照真实有效，印章与签名核验通过。The licence is genuine and in force; its seal and signature check out."
        }
        Some(s) => match s {
            SubIndication::Revoked => "证照已被发证机关撤销。The issuer revoked this licence.",
            SubIndication::Suspended => {
                "证照已被发证机关暂停，暂不可使用。The issuer suspended this licence; it is not in force."
            }
            SubIndication::Superseded => {
                "证照已被变更或延续后的新证照取代。A newer licence replaced this one."
            }
            SubIndication::Expired => "证照已过有效期。The licence's validity has ended.",
            SubIndication::NotYetValid => "证照尚未生效。The licence's validity has not started.",
            SubIndication::SealRevoked => {
                "签章所用印章已被撤销。The seal that signed it was revoked."
            }
            SubIndication::SealNotActive => {
                "签章时印章不可用。The seal was not in use when it signed."
            }
            SubIndication::SigCryptoFailure => {
                "签名无效，内容可能被篡改。The signature does not match: the content may have been altered."
            }
            SubIndication::FormatFailure => "无法识别的证照数据。This is not a readable licence.",
            SubIndication::NoCertificateChainFound => {
                "非本系统签发：找不到可信的印章证书。Not issued by this registry: no trusted seal signed it."
            }
            SubIndication::UnknownLicence => {
                "登记系统中没有该证照。The registry holds no such licence."
            }
            SubIndication::DocumentMismatch => {
                "与登记的证照不一致。It is not the document the registry issued under this number."
            }
            SubIndication::TryLater => {
                "暂时无法判断，请稍后再试。It cannot be decided now; try again later."
            }
            SubIndication::HashFailure => {
                "文件内容已被改动。A part of the sealed file was changed after sealing."
            }
        },
    };
    (class, mark, title, why)
}

/// The status in the national platforms' terms (docs/formats.md, "The national status
/// vocabulary"): a revocation says which kind by its reason.
fn status_words(l: &certseal_core::Licence) -> String {
    match l.status() {
        LicenceStatus::Active => "有效 active".into(),
        LicenceStatus::Suspended => "暂扣 suspended".into(),
        LicenceStatus::Revoked => {
            let term = l
                .history
                .last()
                .and_then(|e| e.reason)
                .map_or("撤销", |r| r.national_term());
            format!("{term} revoked")
        }
        LicenceStatus::Superseded => "已取代 superseded".into(),
    }
}

fn result_page(view: &PublicView, base_url: Option<&str>) -> Markup {
    let v = &view.verification;
    let (class, mark, title, why) = verdict(view);
    let claims = v.claims.as_ref();
    let licence = v.licence.as_ref();
    let checked = local_time(v.receipt_payload.checked_at.0.div_euclid(1000));
    // The printed page's code leads back here, so only to the address the operator configured.
    let page_qr = match (claims, base_url) {
        (Some(c), Some(base)) => crate::qr_image::svg(&format!("{base}/v/{}", c.id), 132).ok(),
        _ => None,
    };
    let seal_image = view.seal.as_ref().map(|s| {
        let media = match s.format {
            ImageFormat::Png => "image/png",
            ImageFormat::Svg => "image/svg+xml",
        };
        format!(
            "data:{media};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&s.image)
        )
    });
    // When the present status began, for a licence no longer active.
    let status_since = licence.and_then(|l| {
        (l.status() != LicenceStatus::Active)
            .then(|| {
                l.history
                    .last()
                    .map(|e| local_time(e.at.0.div_euclid(1000)))
            })
            .flatten()
    });
    let body = html! {
        div class={ "verdict " (class) } {
            div.mark { (mark) }
            div {
                h1 #verdict { (title) }
                p #why { (why) }
                p.checked { "核验时间 Checked at " (checked) " (UTC+8)" }
            }
        }
        @if let Some(c) = claims {
            div.card #licence {
                @if let Some(svg) = &page_qr {
                    div.qr { (PreEscaped(svg)) br; "扫码查看最新状态" br; "Scan for the current status" }
                }
                h2 #type-name { (view.type_name.as_deref().unwrap_or("电子证照 Licence")) }
                p.notice { "请核对以下信息与所出示的证照一致。Check that what follows matches the licence shown to you." }
                table {
                    tr { th { "证照编号 Licence ID" } td { code #licence-id { (c.id) } } }
                    tr { th { "证照类型 Type" } td { (c.type_code) " v" (c.template_version) } }
                    tr { th { "发证机关 Issuer" } td #issuer {
                        @if let Some(n) = &view.issuer_name { (n) " " }
                        span.record { "(" (c.issuer) ")" }
                    } }
                    tr { th { "持证主体 Holder" } td #holder {
                        (c.holder.name) " "
                        span.record { "(" (c.holder.id) ")" }
                        @if c.holder.kind == HolderKind::Person {
                            br; span.masked { "个人信息已隐藏 personal data hidden" }
                        }
                    } }
                    tr { th { "有效期 Validity" } td #validity {
                        (date(c.nbf)) " 至 to "
                        // `exp` is the first instant out of force: show the last day in force.
                        @match c.exp { Some(e) => (date(e - 1)), None => "长期 no expiry" }
                    } }
                    tr { th { "签发时间 Issued" } td { (local_time(c.iat)) " (UTC+8)" } }
                    @if let Some(l) = licence {
                        tr { th { "当前状态 Status" } td #status {
                            (status_words(l))
                            @if let Some(since) = &status_since { "，自 since " (since) }
                        } }
                        @if let Some(next) = &l.next {
                            tr { th { "新证照 Replaced by" } td { a href={ "/v/" (next) } { code { (next) } } } }
                        }
                    }
                    @for f in &view.fields {
                        tr.field { th { (f.label) } td { (f.value) } }
                    }
                }
            }
            @if let Some(seal) = &view.seal {
                div.card.seal #seal {
                    @if let Some(src) = &seal_image { img src=(src) alt=(seal.name); }
                    div {
                        div { "电子印章 Electronic seal" }
                        strong #seal-name { (seal.name) }
                    }
                }
            }
        }
        @if claims.is_none() && !v.receipt_payload.licence.is_empty() {
            div.card {
                "核验的证照编号 Licence ID checked: " code #asked { (v.receipt_payload.licence) }
            }
        }
        div.card.record #receipt {
            @if v.recorded {
                "本次核验已记录，发证机关可查询。This check is recorded; the issuer can see it. Receipt "
                code { (v.receipt_payload.id) } "."
            } @else {
                "本次核验不涉及本系统登记的证照，未作记录。This check concerns no licence held here and is not recorded."
            }
        }
        (forms())
    };
    layout(title, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> Option<IpAddr> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        forwarded_client(&headers)
    }

    #[test]
    fn a_forwarded_address_with_a_port_is_parsed_not_skipped() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(forwarded(&["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(forwarded(&["203.0.113.7:4711"]), ip("203.0.113.7"));
        assert_eq!(forwarded(&["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(forwarded(&["[2001:db8::1]:4711"]), ip("2001:db8::1"));
        assert_eq!(forwarded(&["[2001:db8::1]"]), ip("2001:db8::1"));
        // The proxy's entry is the last one, over several headers too; the client's own
        // entries before it are never taken, even when the last one is not an address.
        assert_eq!(
            forwarded(&["198.51.100.9, 203.0.113.7:4711"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded(&["198.51.100.9", "[2001:db8::1]:4711"]),
            ip("2001:db8::1")
        );
        assert_eq!(forwarded(&["198.51.100.9, unknown"]), None);
        assert_eq!(forwarded(&["198.51.100.9, 203.0.113.7:port"]), None);
        assert_eq!(forwarded(&[]), None);
    }
}
