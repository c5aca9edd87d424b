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

/// Largest upload: a phone photo of a QR code, or a pasted string.
const MAX_UPLOAD_BYTES: usize = 8 << 20;
/// Longest pasted text read.
const MAX_PASTE_CHARS: usize = certseal_core::qr::MAX_QR_CHARS;

struct Page {
    registry: Weak<Registry>,
    config: PublicPageConfig,
    budget: ClientBudget,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Checks per client address per minute. IPv6 clients are counted per /64, the block one
/// subscriber usually holds.
struct ClientBudget {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl ClientBudget {
    fn allow(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        };
        let minute = (Timestamp::now().0.max(0) / 60_000) as u64;
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= 100_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let e = w.entry(ip).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        if e.1 >= self.per_minute {
            return false;
        }
        e.1 += 1;
        true
    }
}

/// Binds `addr` now (so a taken port fails the start), and serves the page there while the
/// returned future runs. Call within the runtime.
pub fn bind(
    config: PublicPageConfig,
    registry: Weak<Registry>,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = config.listen;
    let page = Arc::new(Page {
        registry,
        budget: ClientBudget {
            per_minute: config.checks_per_minute,
            windows: Mutex::new(HashMap::new()),
        },
        slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency)),
        config,
    });
    let app = axum::Router::new()
        .route("/", axum::routing::get(index))
        .route("/v/{id}", axum::routing::get(by_id))
        .route("/check", axum::routing::post(by_qr))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .with_state(page);
    tracing::info!(%addr, "public verification page at /");
    Ok(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!(error = %e, "the public verification page stopped");
        }
    })
}

/// A page with the headers every response of ours carries: nothing but our own inline styles
/// and data: images may load, nothing may run, and a status that can change is never cached.
fn respond(status: StatusCode, body: Markup) -> Response {
    let mut r = (status, body).into_response();
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
            p { "粘贴证照二维码内容（以 CS1: 开头），或上传二维码图片。"
                br; "Paste the licence's QR text (it starts with CS1:), or upload a picture of its QR code." }
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
    /// Admission: the client's budget, then a slot; `Err` is the page to send instead.
    fn admit(
        &self,
        client: SocketAddr,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Box<Response>> {
        if !self.budget.allow(client.ip()) {
            return Err(Box::new(problem(
                StatusCode::TOO_MANY_REQUESTS,
                "请稍后再试 Too many checks",
                "This address made too many checks in the last minute; try again in a minute.",
            )));
        }
        self.slots.clone().try_acquire_owned().map_err(|_| {
            Box::new(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "系统繁忙 Busy",
                "The verification service is busy; try again in a moment.",
            ))
        })
    }

    async fn check(&self, subject: Subject, headers: &HeaderMap) -> Response {
        let Some(registry) = self.registry.upgrade() else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "服务正在停止 Shutting down",
                "The service is restarting; try again shortly.",
            );
        };
        match registry
            .public_check(&self.config.department, subject)
            .await
        {
            Ok(view) => {
                let base = self.base_url(headers);
                let status = if view.verification.sub == Some(SubIndication::UnknownLicence) {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                respond(status, result_page(&view, base.as_deref()))
            }
            Err(RegistryError::InvalidArgument(v)) => problem(
                StatusCode::BAD_REQUEST,
                "无法识别 Not a licence",
                &v.iter()
                    .map(|f| f.description.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
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

    /// Where the printed page's QR code points: the configured address, else the one the
    /// browser used if it is a plain host name.
    fn base_url(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(b) = &self.config.base_url {
            return Some(b.clone());
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        let plain = !host.is_empty()
            && host.len() <= 255
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        plain.then(|| format!("http://{host}"))
    }
}

async fn by_id(
    State(page): State<Arc<Page>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // A malformed ID is refused before it costs the client a check or the log an entry.
    if let Err(e) = id.parse::<certseal_core::LicenceId>() {
        return problem(
            StatusCode::BAD_REQUEST,
            "证照编号有误 Not a licence ID",
            &format!("'{}' is not a licence ID: {}", truncate(&id, 120), e.0),
        );
    }
    let _slot = match page.admit(client) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    page.check(Subject::Id(id), &headers).await
}

async fn by_qr(
    State(page): State<Arc<Page>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let text = match read_form(multipart).await {
        Ok(t) => t,
        Err(detail) => {
            return problem(StatusCode::BAD_REQUEST, "无法读取 Cannot read", &detail);
        }
    };
    let _slot = match page.admit(client) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    page.check(Subject::Qr(text), &headers).await
}

/// The QR text from the form: pasted, or read from the uploaded picture; `Err` says why not.
async fn read_form(mut multipart: Multipart) -> Result<String, String> {
    let bad = |detail: &str| detail.to_owned();
    let mut pasted = None;
    let mut picture = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(bad(&format!(
                    "the form could not be read: {}",
                    e.body_text()
                )));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(bad(&format!(
                    "the form could not be read: {}",
                    e.body_text()
                )));
            }
        };
        match name.as_str() {
            "qr" if !bytes.iter().all(u8::is_ascii_whitespace) => pasted = Some(bytes),
            "image" if !bytes.is_empty() => picture = Some(bytes),
            _ => {}
        }
    }
    if let Some(p) = pasted {
        let text = std::str::from_utf8(&p).map_err(|_| bad("the pasted text is not UTF-8"))?;
        let text = text.trim();
        if text.chars().count() > MAX_PASTE_CHARS {
            return Err(bad(&format!(
                "the pasted text is longer than a licence's QR text ({MAX_PASTE_CHARS} characters)"
            )));
        }
        return Ok(text.to_owned());
    }
    let Some(picture) = picture else {
        return Err(bad("paste the QR text or choose a picture of the QR code"));
    };
    // Decoding a photo takes tens of milliseconds of CPU: off the runtime's threads.
    match tokio::task::spawn_blocking(move || crate::qr_image::read(&picture)).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(bad(&e.to_string())),
        Err(_) => Err(bad("the picture could not be read")),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
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

/// The verdict's words: Chinese first, then English.
fn verdict(view: &PublicView) -> (&'static str, &'static str, &'static str, String) {
    let v = &view.verification;
    let (class, mark, title) = match v.indication {
        Indication::TotalPassed => ("ok", "✓", "有效 Valid"),
        Indication::TotalFailed => ("bad", "✗", "无效 Not valid"),
        Indication::Indeterminate => ("warn", "?", "暂不能确认 Cannot be confirmed"),
    };
    let why = match v.sub {
        None => "证照真实有效，印章与签名核验通过。The licence is genuine and in force; its seal and signature check out.".to_owned(),
        Some(s) => {
            let words = match s {
                SubIndication::Revoked => "证照已被发证机关撤销。The issuer revoked this licence.",
                SubIndication::Suspended => "证照已被暂停。The issuer suspended this licence.",
                SubIndication::Superseded => "证照已被变更或延续后的新证照取代。A newer licence replaced this one.",
                SubIndication::Expired => "证照已过有效期。The licence's validity has ended.",
                SubIndication::NotYetValid => "证照尚未生效。The licence's validity has not started.",
                SubIndication::SealRevoked => "签章所用印章已被撤销。The seal that signed it was revoked.",
                SubIndication::SealNotActive => "签章时印章不可用。The seal was not in use when it signed.",
                SubIndication::SigCryptoFailure => "签名无效，内容可能被篡改。The signature does not match: the content may have been altered.",
                SubIndication::FormatFailure => "无法识别的证照数据。This is not a readable licence.",
                SubIndication::NoCertificateChainFound => "找不到可信的印章证书。No trusted seal certificate signed it.",
                SubIndication::UnknownLicence => "登记系统中没有该证照。The registry holds no such licence.",
                SubIndication::DocumentMismatch => "与登记的证照不一致。It is not the document the registry issued under this number.",
                SubIndication::TryLater => "暂时无法判断，请稍后再试。It cannot be decided now; try again later.",
            };
            words.to_owned()
        }
    };
    (class, mark, title, why)
}

fn status_words(s: LicenceStatus) -> &'static str {
    match s {
        LicenceStatus::Active => "有效 active",
        LicenceStatus::Suspended => "暂停 suspended",
        LicenceStatus::Revoked => "撤销 revoked",
        LicenceStatus::Superseded => "已取代 superseded",
    }
}

fn result_page(view: &PublicView, base_url: Option<&str>) -> Markup {
    let v = &view.verification;
    let (class, mark, title, why) = verdict(view);
    let claims = v.claims.as_ref();
    let licence = v.licence.as_ref();
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
    let body = html! {
        div class={ "verdict " (class) } {
            div.mark { (mark) }
            div { h1 #verdict { (title) } p #why { (why) } }
        }
        @if let Some(c) = claims {
            div.card #licence {
                @if let Some(svg) = &page_qr {
                    div.qr { (PreEscaped(svg)) br; "扫码查看最新状态" br; "Scan for the current status" }
                }
                h2 #type-name { (view.type_name.as_deref().unwrap_or("电子证照 Licence")) }
                table {
                    tr { th { "证照编号 Licence ID" } td { code #licence-id { (c.id) } } }
                    tr { th { "证照类型 Type" } td { (c.type_code) " v" (c.template_version) } }
                    tr { th { "发证机关 Issuer" } td #issuer {
                        @if let Some(n) = &view.issuer_name { (n) " " }
                        span.record { "(" (c.issuer) ")" }
                    } }
                    @if let Some((name, id)) = &view.holder {
                        tr { th { "持证主体 Holder" } td #holder {
                            (name) " "
                            span.record { "(" (id) ")" }
                            @if c.holder.kind == HolderKind::Person {
                                br; span.masked { "个人信息已部分隐藏 partly hidden: personal data" }
                            }
                        } }
                    }
                    tr { th { "有效期 Validity" } td #validity {
                        (date(c.nbf)) " 至 to "
                        @match c.exp { Some(e) => (date(e)), None => "长期 no expiry" }
                    } }
                    tr { th { "签发时间 Issued" } td { (local_time(c.iat)) " (UTC+8)" } }
                    @if let Some(l) = licence {
                        tr { th { "当前状态 Status" } td #status { (status_words(l.status())) } }
                        @if let Some(next) = &l.next {
                            tr { th { "新证照 Replaced by" } td { a href={ "/v/" (next) } { code { (next) } } } }
                        }
                    }
                    @for f in &view.fields {
                        tr.field {
                            th { (f.label) }
                            @match &f.value {
                                Some(val) => td { (val) },
                                None => td.masked { "不予公开 not shown (personal)" },
                            }
                        }
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
                "证照编号 Licence ID checked: " code #asked { (v.receipt_payload.licence) }
            }
        }
        div.card.record #receipt {
            "本次核验已记录。This check is recorded: receipt "
            code { (v.receipt_payload.id) }
            ", audit log entry " (v.log_index)
            ", " (local_time(v.receipt_payload.checked_at.0.div_euclid(1000))) " (UTC+8)."
        }
        (forms())
    };
    layout(title, body)
}
