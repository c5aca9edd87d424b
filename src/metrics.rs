//! Prometheus metrics on their own port (`[server] metrics_listen`, off unless set): calls and
//! their latency per RPC and status code, licences issued and checks by result, and, read at
//! each scrape, the log's size, the latest checkpoint's age, group commits and RocksDB's figures.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as MetricRegistry;

use certseal_registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: String,
}

type LatencyFamily = Family<MethodLabel, Histogram, fn() -> Histogram>;

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: MetricRegistry,
    calls: Family<RpcLabels, Counter>,
    latency: LatencyFamily,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Metrics {
    /// Metrics of a server over `registry` (held weakly: metrics never keep the store open).
    pub fn new(registry: Weak<Registry>) -> Self {
        let mut r = MetricRegistry::with_prefix("certseal");
        let calls = Family::<RpcLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        r.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            calls.clone(),
        );
        r.register(
            "rpc_duration_seconds",
            "gRPC call latency until the response headers, by method",
            latency.clone(),
        );
        r.register_collector(Box::new(StateCollector(registry)));
        Self {
            registry: r,
            calls,
            latency,
        }
    }

    fn rpc(&self, method: &str, code: tonic::Code, seconds: f64) {
        // Unknown methods are one label: paths come from outside.
        let method = if code == tonic::Code::Unimplemented {
            "unknown".to_owned()
        } else {
            method.to_owned()
        };
        let code = match code {
            tonic::Code::Ok => "OK".to_owned(),
            other => format!("{other:?}"),
        };
        self.calls
            .get_or_create(&RpcLabels {
                method: method.clone(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabel { method })
            .observe(seconds);
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Figures read from the registry at each scrape.
#[derive(Debug)]
struct StateCollector(Weak<Registry>);

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(registry) = self.0.upgrade() else {
            return Ok(());
        };
        let s = registry.operational_stats();
        let e = &mut encoder;
        gauge(
            e,
            "log_size",
            "Entries covered by the latest signed checkpoint",
            s.log_size as i64,
        )?;
        gauge(
            e,
            "checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed",
            s.checkpoint_age_ms as f64 / 1000.0,
        )?;
        counter(
            e,
            "group_commits",
            "Group commits (one WAL sync each)",
            s.groups.groups,
        )?;
        counter(
            e,
            "group_commit_operations",
            "Operations acknowledged by group commits (divided by group_commits: the mean group size)",
            s.groups.operations,
        )?;
        gauge(
            e,
            "group_commit_last_size",
            "Operations in the latest group commit",
            s.groups.last_group as i64,
        )?;
        counter(
            e,
            "licences_issued",
            "Licences issued, one by one or in bulk",
            s.licences_issued,
        )?;
        let checks = ConstCounter::new(0u64);
        let mut family = e.encode_descriptor(
            "verifications",
            "Checks by result, each with a logged receipt",
            None,
            checks.metric_type(),
        )?;
        for (result, n) in s.checks {
            let labels = ResultLabel {
                result: result.to_owned(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        // 1 with its cause while writes are stopped (a full disk), 0 without a label otherwise.
        let stopped = ConstGauge::new(0i64);
        let mut family = e.encode_descriptor(
            "writer_stopped",
            "Whether writes are stopped after a write the store could not make, by cause",
            None,
            stopped.metric_type(),
        )?;
        match &s.writer_stopped {
            Some(stop) => {
                let labels = CauseLabel {
                    cause: stop.cause.as_str().to_owned(),
                };
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
            None => stopped.encode(family)?,
        }
        counter(
            e,
            "writer_stops",
            "Times the writer stopped after a failed write",
            s.groups.stops,
        )?;
        for (name, value) in s.store {
            let (metric, help) = store_metric(name);
            gauge(e, &metric, help, value as i64)?;
        }
        Ok(())
    }
}

/// The metric name and help of a store's figure. A database store's figures are named
/// `mysql.…`; metric names have no dots.
fn store_metric(name: &str) -> (String, &'static str) {
    match name.strip_prefix("mysql.") {
        Some(rest) => (
            format!("mysql_{rest}"),
            "The database store: the node in use, the lease epoch, the writer's memory",
        ),
        None => (
            format!("rocksdb_{name}"),
            "RocksDB, summed over the registry's tables",
        ),
    }
}

/// The server's version, on every response's headers (`certseal status` shows it).
pub const VERSION_HEADER: &str = "x-certseal-version";

/// The header that names a call in the server's log: the caller's if it sends a usable one,
/// otherwise one the server makes; the response carries it back.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Around every call: a `call` span with its request ID and method (so each log line of the
/// call carries them), its status code and latency in the metrics, and the request ID and
/// server version on the response.
#[derive(Debug, Clone)]
pub struct CallLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for CallLayer {
    type Service = Call<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Call {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`CallLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Call<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

fn request_id(given: Option<&http::HeaderValue>) -> String {
    // A caller's ID goes into logs: only short, plain ones are taken.
    given
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let mut b = [0u8; 8];
            let _ = certseal_crypto::random(&mut b);
            b.iter().map(|x| format!("{x:02x}")).collect()
        })
}

impl<S, B, R> tower::Service<http::Request<B>> for Call<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use tracing::Instrument;
        let id = request_id(req.headers().get(REQUEST_ID_HEADER));
        let method = req.uri().path().to_owned();
        let span = tracing::info_span!("call", request_id = %id, method = %method);
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let res = fut.await;
                // An error is in the headers (trailers-only); a call that answers carries its
                // status in the trailers, and counts as OK here.
                let code = match &res {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from),
                    Err(_) => tonic::Code::Internal,
                };
                metrics.rpc(&method, code, started.elapsed().as_secs_f64());
                res.map(|mut r| {
                    let headers = r.headers_mut();
                    headers.insert(
                        VERSION_HEADER,
                        http::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
                    );
                    if let Ok(v) = http::HeaderValue::from_str(&id) {
                        headers.insert(REQUEST_ID_HEADER, v);
                    }
                    r
                })
            }
            .instrument(span),
        )
    }
}

/// Binds `addr` now (so a taken port fails the start), and serves `/metrics` there while the
/// returned future runs. Call within the runtime.
pub fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    tracing::info!(%addr, "metrics at /metrics");
    Ok(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    })
}

#[cfg(test)]
mod store_metric_tests {
    use super::store_metric;

    #[test]
    fn store_figures_get_valid_metric_names() {
        let valid = |n: &str| {
            n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        for (figure, want) in [
            ("mysql.writer_cache_hits", "mysql_writer_cache_hits"),
            ("mysql.lease_epoch", "mysql_lease_epoch"),
            ("estimated_keys", "rocksdb_estimated_keys"),
        ] {
            let (name, _) = store_metric(figure);
            assert_eq!(name, want);
            assert!(valid(&name), "{name}");
        }
    }
}
