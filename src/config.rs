//! Configuration in two steps: [`RawConfig`] is what a TOML file says (every key optional),
//! [`RawConfig::validate`] applies command-line and environment overrides and checks it into a
//! [`Config`] the server can trust. `certseal.example.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certseal_registry::{ConfiguredCa, DEFAULT_LOG_ORIGIN, RegistryOptions};
use certseal_store::SequencerOptions;
use certseal_store_rocks::RocksOptions;
use serde::Deserialize;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default data folder, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./certseal-data";
/// Largest request accepted by default, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    pub server: RawServer,
    /// `[log]`
    pub log: RawLog,
    /// `[storage]`
    pub storage: RawStorage,
    /// `[keys]`
    pub keys: RawKeys,
    /// `[audit]`
    pub audit: RawAudit,
    /// `[seals]`
    pub seals: RawSeals,
    /// `[verification]`
    pub verification: RawVerification,
    /// `[limits]`
    pub limits: RawLimits,
    /// `[tls]`
    pub tls: RawTls,
    /// `[policy]`
    pub policy: RawPolicy,
    /// `[public_page]`
    pub public_page: RawPublicPage,
    /// `[cluster]`
    pub cluster: RawCluster,
    /// `[ofd]`
    pub ofd: RawOfd,
}

/// `[ofd]` section: licence files.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOfd {
    /// The CJK TrueType font (file or collection) whose subset licence files embed; default
    /// Debian's fonts-wqy-zenhei.
    pub font_file: Option<PathBuf>,
    /// The face in a collection; default 1 (WenQuanYi Zen Hei Mono).
    pub font_index: Option<usize>,
    /// Seal a licence's file as soon as it is issued with an SM2 seal (in the background),
    /// instead of on its first request; default false.
    pub seal_at_issue: Option<bool>,
}

/// `[cluster]` section: this node's part in a registry of several nodes on one database.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    /// This node's name, unique in the cluster.
    pub node: Option<String>,
    /// host:port where the other nodes reach this one's gRPC listener.
    pub advertise: Option<String>,
    /// How long the write lease lasts without renewal, in milliseconds.
    pub lease_ms: Option<u64>,
    /// With `[tls]`: this node's certificate (role `node`, from the registry's client CA), PEM,
    /// which it presents to the leader when it forwards a write.
    pub node_cert_file: Option<PathBuf>,
    /// The key of `node_cert_file`, PEM.
    pub node_key_file: Option<PathBuf>,
    /// The CA of the other nodes' server certificates, PEM (default: the registry's client
    /// CAs, which `certseal dept-cert bootstrap` issues them from).
    pub server_ca_file: Option<PathBuf>,
}

/// How a node forwards writes to the leader over mutual TLS.
#[derive(Clone)]
pub struct NodeTls {
    /// The node's certificate (role `node`), PEM.
    pub cert_pem: Vec<u8>,
    /// Its key, PEM.
    pub key_pem: Vec<u8>,
    /// The CA of the other nodes' server certificates, if not the registry's client CAs.
    pub server_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls(..)")
    }
}

/// `[public_page]` section: the citizens' verification page.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPublicPage {
    /// Address to serve the page on; none: off.
    pub listen: Option<String>,
    /// The department whose name the page's checks are recorded in (default: the bootstrap
    /// admin department).
    pub department: Option<String>,
    /// The page's public address, e.g. `https://verify.example.gov.cn`, for the QR code on a
    /// printed page (default: the address the browser used).
    pub base_url: Option<String>,
    /// Checks one client address may make per minute.
    pub checks_per_minute: Option<u32>,
    /// Checks in progress at once, over all clients.
    pub concurrency: Option<usize>,
    /// Checks per minute over all clients.
    pub total_checks_per_minute: Option<u32>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Threads reading uploaded pictures (default: one per core).
    pub decoders: Option<usize>,
    /// Pictures that may wait for a decoder; past them an upload gets 503 (default: two per
    /// decoder).
    pub decode_queue: Option<usize>,
}

/// `[policy]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPolicy {
    /// Check every call against the sharing policy (default: on with TLS, off in development
    /// mode).
    pub enforce: Option<bool>,
    /// Credit code of the department that always holds the admin role.
    pub admin_department: Option<String>,
}

/// `[tls]` section: the server's certificate and key, or nothing. Departments' certificates
/// from the registry's client CA are always accepted; `client_ca_file` adds an external CA.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    /// The server's certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// An external CA that also issues departments' client certificates (PEM).
    pub client_ca_file: Option<PathBuf>,
}

/// TLS material, read at start.
#[derive(Clone)]
pub struct TlsFiles {
    /// Server certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Server key, PEM.
    pub key_pem: Vec<u8>,
    /// External client CA, PEM, if any.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles(..)")
    }
}

/// `[limits]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    /// Longest a unary call may take, in seconds.
    pub request_timeout_secs: Option<u64>,
    /// Longest a bulk stream may wait for its client's next item, in seconds.
    pub stream_idle_secs: Option<u64>,
    /// Most items in one bulk stream.
    pub stream_max_items: Option<u64>,
    /// Most calls in flight on one connection.
    pub per_connection_concurrency: Option<usize>,
    /// Most calls in progress for one department, over all its connections.
    pub per_department_concurrency: Option<usize>,
    /// Most items in one page of a list (at most 1000).
    pub max_page_size: Option<u32>,
    /// Most fields in one licence (at most 256).
    pub max_licence_fields: Option<usize>,
    /// Largest seal image, in KiB (at most 256).
    pub max_seal_image_kib: Option<usize>,
    /// How long a change's request ID is remembered, in hours (1 to 8760; default 168).
    pub request_id_retention_hours: Option<u64>,
    /// How long a change-feed consumer may read nothing while changes wait before it is told
    /// to resume, in seconds.
    pub feed_stall_secs: Option<u64>,
}

/// Bounds on what one caller can hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a unary call may take.
    pub request_timeout: std::time::Duration,
    /// Longest a bulk stream waits for the next item.
    pub stream_idle: std::time::Duration,
    /// Most items in one bulk stream.
    pub stream_max_items: u64,
    /// Most calls in flight on one connection.
    pub per_connection_concurrency: usize,
    /// Most calls in progress for one department.
    pub per_department_concurrency: usize,
    /// Most items in one page.
    pub max_page_size: u32,
    /// How long a change-feed consumer may read nothing while changes wait.
    pub feed_stall: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: std::time::Duration::from_secs(30),
            stream_idle: std::time::Duration::from_secs(60),
            stream_max_items: 10_000_000,
            per_connection_concurrency: 1024,
            per_department_concurrency: 512,
            max_page_size: 1000,
            feed_stall: std::time::Duration::from_secs(30),
        }
    }
}

/// `[verification]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawVerification {
    /// Purpose codes a check may state.
    pub purposes: Option<Vec<String>>,
}

/// `[seals]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSeals {
    /// A seal CA certificate (PEM or DER) to take in at first start instead of generating one.
    pub ca_cert_file: Option<PathBuf>,
    /// Its PKCS#8 private key (PEM or DER).
    pub ca_key_file: Option<PathBuf>,
    /// External CA certificates (PEM or DER files) trusted for imported seal certificates.
    pub trust_anchors: Vec<PathBuf>,
}

/// `[keys]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawKeys {
    /// Key-encryption key file; default `<data_dir>/keys/kek`.
    pub kek_file: Option<PathBuf>,
}

/// `[audit]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAudit {
    /// The audit log's origin (checkpoint first line and key name), fixed at first start.
    pub origin: Option<String>,
}

/// `[server]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Data folder.
    pub data_dir: Option<PathBuf>,
    /// Trust identity metadata (development only).
    pub dev_auth: Option<bool>,
    /// Largest request message in bytes.
    pub max_message_bytes: Option<usize>,
    /// Address of the Prometheus endpoint (`/metrics`); none: off.
    pub metrics_listen: Option<String>,
}

/// `[log]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    /// A tracing filter such as `info` or `certseal=debug,info`; `RUST_LOG` overrides it.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<String>,
}

/// `[storage]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStorage {
    /// RocksDB block cache in MiB.
    pub block_cache_mb: Option<usize>,
    /// RocksDB memtables of all tables together, in MiB.
    pub memtable_mb: Option<usize>,
    /// Write-ahead log kept on disk, in MiB.
    pub max_wal_mb: Option<u64>,
    /// Most operations per group commit.
    pub max_group: Option<usize>,
    /// "rocksdb" (the default, embedded) or "mysql" (a MySQL-protocol database, several nodes).
    pub backend: Option<String>,
    /// The database nodes: the write node first, then the fail-over order.
    pub urls: Vec<String>,
    /// Connections per database node for reads, and as many again for snapshots.
    pub pool_size: Option<usize>,
}

/// Values from the command line or environment; each wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen` / `CERTSEAL_LISTEN`
    pub listen: Option<String>,
    /// `--data-dir` / `CERTSEAL_DATA_DIR`
    pub data_dir: Option<PathBuf>,
    /// `--dev-auth` / `CERTSEAL_DEV_AUTH`
    pub dev_auth: bool,
    /// `--log-format` / `CERTSEAL_LOG_FORMAT`
    pub log_format: Option<String>,
    /// `--metrics-listen` / `CERTSEAL_METRICS_LISTEN`
    pub metrics_listen: Option<String>,
    /// `--public-listen` / `CERTSEAL_PUBLIC_LISTEN`
    pub public_listen: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address of the Prometheus endpoint, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// The public verification page, if it is served.
    pub public_page: Option<PublicPageConfig>,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Whether identity is read from request metadata.
    pub dev_auth: bool,
    /// Largest request message in bytes.
    pub max_message_bytes: usize,
    /// Default tracing filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// The store and its tuning.
    pub storage: StorageConfig,
    /// Group commit, keys and audit log.
    pub registry: RegistryOptions,
    /// Timeouts and bounds.
    pub limits: Limits,
    /// Mutual TLS, when configured.
    pub tls: Option<TlsFiles>,
    /// On a database with `[tls]`: the node's certificate for forwarding writes.
    pub node_tls: Option<NodeTls>,
}

/// Which store the registry runs on, with that backend's settings.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// RocksDB, embedded, in `<data_dir>/db`.
    Rocks(RocksOptions),
    /// A MySQL-protocol database shared by the nodes of a cluster.
    Mysql(certseal_store_mysql::MysqlOptions),
}

/// The public verification page's settings.
#[derive(Debug, Clone)]
pub struct PublicPageConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The department its checks are recorded in.
    pub department: certseal_core::CreditCode,
    /// Its public address, without a trailing slash.
    pub base_url: Option<String>,
    /// Checks per client address per minute.
    pub checks_per_minute: u32,
    /// Checks in progress at once.
    pub concurrency: usize,
    /// Checks per minute over all clients.
    pub total_checks_per_minute: u32,
    /// Reverse proxies trusted to name the client in `X-Forwarded-For`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Threads reading uploaded pictures.
    pub decoders: usize,
    /// Pictures that may wait for a decoder.
    pub decode_queue: usize,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the line and key.
        message: String,
    },
    /// A value is out of range.
    #[error("config {key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `server.listen`.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// The public page's own address: `https://host[:port][/path]`, or plain `http://` to a
/// loopback host (a printed code must not send citizens over plain HTTP).
fn check_base_url(u: &str) -> Result<String, String> {
    let bad = || {
        "an https:// address such as https://verify.example.gov.cn (http:// only for localhost), without query or fragment".to_owned()
    };
    let (scheme, rest) = u.split_once("://").ok_or_else(bad)?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    let plain = u.len() <= 200
        && !host.is_empty()
        && u.bytes().all(|b| b.is_ascii_graphic())
        && !u.contains(['?', '#', '"', '<', '>', '\\']);
    match scheme {
        "https" if plain => Ok(u.trim_end_matches('/').to_owned()),
        "http" if plain && loopback => Ok(u.trim_end_matches('/').to_owned()),
        _ => Err(bad()),
    }
}

impl RawConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies overrides and checks every value.
    pub fn validate(self, o: Overrides) -> Result<Config, ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid { key, message };
        let listen_text = o
            .listen
            .or(self.server.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("'{listen_text}' is not HOST:PORT with an IP address"),
            )
        })?;
        let metrics_listen = match o.metrics_listen.or(self.server.metrics_listen.clone()) {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "server.metrics_listen",
                    format!("'{text}' is not HOST:PORT with an IP address"),
                )
            })?),
        };
        let max_message_bytes = self
            .server
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if !(4096..=64 << 20).contains(&max_message_bytes) {
            return Err(invalid(
                "server.max_message_bytes",
                "between 4096 and 67108864".into(),
            ));
        }
        let log_format = match o
            .log_format
            .or(self.log.format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("log.format", format!("'{other}': text or json"))),
        };
        let block_cache_mb = self.storage.block_cache_mb.unwrap_or(256);
        if !(8..=65536).contains(&block_cache_mb) {
            return Err(invalid(
                "storage.block_cache_mb",
                "between 8 and 65536".into(),
            ));
        }
        let memtable_mb = self.storage.memtable_mb.unwrap_or(256);
        if !(16..=65536).contains(&memtable_mb) {
            return Err(invalid(
                "storage.memtable_mb",
                "between 16 and 65536".into(),
            ));
        }
        let max_wal_mb = self.storage.max_wal_mb.unwrap_or(1024);
        if !(64..=1 << 20).contains(&max_wal_mb) {
            return Err(invalid(
                "storage.max_wal_mb",
                "between 64 and 1048576".into(),
            ));
        }
        let log_origin = self
            .audit
            .origin
            .unwrap_or_else(|| DEFAULT_LOG_ORIGIN.to_owned());
        if log_origin.is_empty()
            || log_origin.len() > 255
            || log_origin.contains('+')
            || log_origin
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "audit.origin",
                "1 to 255 characters without spaces or '+'".into(),
            ));
        }
        let max_group = self.storage.max_group.unwrap_or(1024);
        if !(1..=65536).contains(&max_group) {
            return Err(invalid("storage.max_group", "between 1 and 65536".into()));
        }
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
        };
        let cert = |key: &'static str, path: &Path| {
            certseal_crypto::x509::certificate_from_pem_or_der(&read(key, path)?)
                .map_err(|e| invalid(key, format!("{}: {e}", path.display())))
        };
        let seal_ca = match (&self.seals.ca_cert_file, &self.seals.ca_key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => Some(ConfiguredCa {
                cert: cert("seals.ca_cert_file", c)?,
                pkcs8: certseal_crypto::x509::pkcs8_from_pem_or_der(&read("seals.ca_key_file", k)?)
                    .map_err(|e| invalid("seals.ca_key_file", e.to_string()))?,
            }),
            _ => {
                return Err(invalid(
                    "seals.ca_cert_file",
                    "give both ca_cert_file and ca_key_file, or neither".into(),
                ));
            }
        };
        let trust_anchors = self
            .seals
            .trust_anchors
            .iter()
            .map(|p| {
                let c = cert("seals.trust_anchors", p)?;
                certseal_crypto::x509::check_is_ca(&c)
                    .map_err(|e| invalid("seals.trust_anchors", format!("{}: {e}", p.display())))?;
                Ok(c)
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let purposes = match self.verification.purposes {
            None => certseal_registry::DEFAULT_PURPOSES
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            Some(p) => {
                let valid = |c: &String| {
                    (1..=32).contains(&c.len())
                        && c.bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                };
                if p.is_empty() || !p.iter().all(valid) {
                    return Err(invalid(
                        "verification.purposes",
                        "one or more codes of 1 to 32 characters A-Z, 0-9, _".into(),
                    ));
                }
                p
            }
        };
        let tls = match (&self.tls.cert_file, &self.tls.key_file) {
            (None, None) if self.tls.client_ca_file.is_none() => None,
            (Some(c), Some(k)) => Some(TlsFiles {
                cert_pem: read("tls.cert_file", c)?,
                key_pem: read("tls.key_file", k)?,
                client_ca_pem: self
                    .tls
                    .client_ca_file
                    .as_ref()
                    .map(|ca| read("tls.client_ca_file", ca))
                    .transpose()?,
            }),
            _ => {
                return Err(invalid(
                    "tls",
                    "give cert_file and key_file together (client_ca_file is optional)".into(),
                ));
            }
        };
        let dev_auth = o.dev_auth || self.server.dev_auth.unwrap_or(false);
        if dev_auth && tls.is_some() {
            return Err(invalid(
                "server.dev_auth",
                "development mode is refused when TLS is configured".into(),
            ));
        }
        let enforce_policy = self.policy.enforce.unwrap_or(tls.is_some());
        if tls.is_some() && !enforce_policy {
            return Err(invalid(
                "policy.enforce",
                "the sharing policy is always enforced with TLS".into(),
            ));
        }
        let admin_department = self
            .policy
            .admin_department
            .as_deref()
            .map(|c| {
                c.parse::<certseal_core::CreditCode>()
                    .map_err(|e| invalid("policy.admin_department", e.0))
            })
            .transpose()?;
        let public_page = match o.public_listen.or(self.public_page.listen.clone()) {
            None => None,
            Some(text) => {
                let p = &self.public_page;
                let listen = text.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        "public_page.listen",
                        format!("'{text}' is not HOST:PORT with an IP address"),
                    )
                })?;
                let department = match (&p.department, &admin_department) {
                    (Some(c), _) => c
                        .parse::<certseal_core::CreditCode>()
                        .map_err(|e| invalid("public_page.department", e.0))?,
                    (None, Some(a)) => a.clone(),
                    (None, None) => {
                        return Err(invalid(
                            "public_page.department",
                            "the page records its checks in a department's name: set it, or [policy] admin_department".into(),
                        ));
                    }
                };
                if !purposes
                    .iter()
                    .any(|c| c == certseal_registry::PUBLIC_PAGE_PURPOSE)
                {
                    return Err(invalid(
                        "verification.purposes",
                        format!(
                            "the public page records its checks with purpose {}: list it",
                            certseal_registry::PUBLIC_PAGE_PURPOSE
                        ),
                    ));
                }
                let base_url = match &p.base_url {
                    None => None,
                    Some(u) => {
                        Some(check_base_url(u).map_err(|m| invalid("public_page.base_url", m))?)
                    }
                };
                let checks_per_minute = match p.checks_per_minute {
                    None => 60,
                    Some(n) if (1..=100_000).contains(&n) => n,
                    Some(_) => {
                        return Err(invalid(
                            "public_page.checks_per_minute",
                            "between 1 and 100000".into(),
                        ));
                    }
                };
                let concurrency = match p.concurrency {
                    None => 64,
                    Some(n) if (1..=4096).contains(&n) => n,
                    Some(_) => {
                        return Err(invalid(
                            "public_page.concurrency",
                            "between 1 and 4096".into(),
                        ));
                    }
                };
                let total_checks_per_minute = match p.total_checks_per_minute {
                    None => 6000,
                    Some(n) if (1..=1_000_000).contains(&n) => n,
                    Some(_) => {
                        return Err(invalid(
                            "public_page.total_checks_per_minute",
                            "between 1 and 1000000".into(),
                        ));
                    }
                };
                let trusted_proxies = p
                    .trusted_proxies
                    .iter()
                    .flatten()
                    .map(|a| {
                        a.parse::<std::net::IpAddr>().map_err(|_| {
                            invalid(
                                "public_page.trusted_proxies",
                                format!("'{a}' is not an IP address"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let decoders = match p.decoders {
                    None => std::thread::available_parallelism().map_or(2, |n| n.get()),
                    Some(n) if (1..=256).contains(&n) => n,
                    Some(_) => {
                        return Err(invalid("public_page.decoders", "between 1 and 256".into()));
                    }
                };
                let decode_queue = match p.decode_queue {
                    None => 2 * decoders,
                    Some(n) if (1..=4096).contains(&n) => n,
                    Some(_) => {
                        return Err(invalid(
                            "public_page.decode_queue",
                            "between 1 and 4096".into(),
                        ));
                    }
                };
                Some(PublicPageConfig {
                    listen,
                    department,
                    base_url,
                    checks_per_minute,
                    concurrency,
                    total_checks_per_minute,
                    trusted_proxies,
                    decoders,
                    decode_queue,
                })
            }
        };
        if dev_auth {
            // Anyone who reaches a development-mode server may claim any identity, admin too.
            let listeners = [
                ("server.listen", Some(listen)),
                ("server.metrics_listen", metrics_listen),
                ("public_page.listen", public_page.as_ref().map(|p| p.listen)),
            ];
            for (key, addr) in listeners {
                if let Some(addr) = addr
                    && !addr.ip().to_canonical().is_loopback()
                {
                    return Err(invalid(
                        "server.dev_auth",
                        format!(
                            "--dev-auth (development mode) is for one machine only: it trusts whatever identity a caller claims, so it is refused with {key} = {addr}, which is not a loopback address; listen on 127.0.0.1 or [::1], or configure [tls] instead"
                        ),
                    ));
                }
            }
        }
        let d = Limits::default();
        let max_licence_fields = match self.limits.max_licence_fields {
            None => certseal_registry::MAX_FIELDS,
            Some(n) if (1..=certseal_registry::MAX_FIELDS).contains(&n) => n,
            Some(_) => {
                return Err(invalid(
                    "limits.max_licence_fields",
                    format!("between 1 and {}", certseal_registry::MAX_FIELDS),
                ));
            }
        };
        let max_seal_image_bytes = match self.limits.max_seal_image_kib {
            None => certseal_core::seal::MAX_SEAL_IMAGE,
            Some(n) if (1..=certseal_core::seal::MAX_SEAL_IMAGE >> 10).contains(&n) => n << 10,
            Some(_) => {
                return Err(invalid(
                    "limits.max_seal_image_kib",
                    format!(
                        "between 1 and {}",
                        certseal_core::seal::MAX_SEAL_IMAGE >> 10
                    ),
                ));
            }
        };
        let request_id_retention = match self.limits.request_id_retention_hours {
            None => certseal_registry::DEFAULT_REQUEST_ID_RETENTION,
            Some(h) if (1..=8760).contains(&h) => std::time::Duration::from_secs(h * 3600),
            Some(_) => {
                return Err(invalid(
                    "limits.request_id_retention_hours",
                    "between 1 and 8760 hours".into(),
                ));
            }
        };
        let secs = |key: &'static str, v: Option<u64>, default: std::time::Duration| match v {
            None => Ok(default),
            Some(s) if (1..=86_400).contains(&s) => Ok(std::time::Duration::from_secs(s)),
            Some(_) => Err(invalid(key, "between 1 and 86400 seconds".into())),
        };
        let limits = Limits {
            request_timeout: secs(
                "limits.request_timeout_secs",
                self.limits.request_timeout_secs,
                d.request_timeout,
            )?,
            stream_idle: secs(
                "limits.stream_idle_secs",
                self.limits.stream_idle_secs,
                d.stream_idle,
            )?,
            feed_stall: secs(
                "limits.feed_stall_secs",
                self.limits.feed_stall_secs,
                d.feed_stall,
            )?,
            stream_max_items: match self.limits.stream_max_items {
                None => d.stream_max_items,
                Some(n) if n >= 1 => n,
                Some(_) => return Err(invalid("limits.stream_max_items", "at least 1".into())),
            },
            max_page_size: match self.limits.max_page_size {
                None => d.max_page_size,
                Some(n) if (1..=1000).contains(&n) => n,
                Some(_) => {
                    return Err(invalid("limits.max_page_size", "between 1 and 1000".into()));
                }
            },
            per_department_concurrency: match self.limits.per_department_concurrency {
                None => d.per_department_concurrency,
                Some(n) if (1..=65_536).contains(&n) => n,
                Some(_) => {
                    return Err(invalid(
                        "limits.per_department_concurrency",
                        "between 1 and 65536".into(),
                    ));
                }
            },
            per_connection_concurrency: match self.limits.per_connection_concurrency {
                None => d.per_connection_concurrency,
                Some(n) if (1..=65_536).contains(&n) => n,
                Some(_) => {
                    return Err(invalid(
                        "limits.per_connection_concurrency",
                        "between 1 and 65536".into(),
                    ));
                }
            },
        };
        let rocks = RocksOptions {
            block_cache_bytes: block_cache_mb << 20,
            memtable_bytes: memtable_mb << 20,
            max_wal_bytes: max_wal_mb << 20,
            ..RocksOptions::default()
        };
        let mut sequencer = SequencerOptions {
            max_group,
            ..SequencerOptions::default()
        };
        let storage = match self.storage.backend.as_deref().unwrap_or("rocksdb") {
            "rocksdb" => {
                if !self.storage.urls.is_empty() {
                    return Err(invalid(
                        "storage.urls",
                        "database URLs are for backend = \"mysql\"".into(),
                    ));
                }
                StorageConfig::Rocks(rocks)
            }
            "mysql" => {
                let opts = mysql_options(&self.storage, &self.cluster, listen)?;
                // A follower asks for the lease this often; a fail-over waits for the
                // lease to expire, then for this.
                sequencer.recover_interval = opts.lease / 4;
                sequencer.max_recover_interval = opts.lease / 4;
                StorageConfig::Mysql(opts)
            }
            other => {
                return Err(invalid(
                    "storage.backend",
                    format!("'{other}': expected \"rocksdb\" or \"mysql\""),
                ));
            }
        };
        let c = &self.cluster;
        let node_tls = match (&storage, &tls, &c.node_cert_file, &c.node_key_file) {
            (StorageConfig::Mysql(_), Some(_), Some(cert), Some(key)) => Some(NodeTls {
                cert_pem: read("cluster.node_cert_file", cert)?,
                key_pem: read("cluster.node_key_file", key)?,
                server_ca_pem: c
                    .server_ca_file
                    .as_ref()
                    .map(|ca| read("cluster.server_ca_file", ca))
                    .transpose()?,
            }),
            (StorageConfig::Mysql(_), Some(_), _, _) => {
                return Err(invalid(
                    "cluster.node_cert_file",
                    "a cluster with [tls] forwards writes to the leader over mutual TLS: set node_cert_file and node_key_file to this node's certificate with the role node (certseal dept-cert bootstrap --node NAME, or certseal dept-cert issue --role node)".into(),
                ));
            }
            (_, _, None, None) if c.server_ca_file.is_none() => None,
            (StorageConfig::Mysql(_), None, _, _) => {
                return Err(invalid(
                    "cluster.node_cert_file",
                    "node certificates are for a cluster with [tls]; without it (development mode) the nodes forward callers' metadata as they are".into(),
                ));
            }
            (StorageConfig::Rocks(_), _, _, _) => {
                return Err(invalid(
                    "cluster.node_cert_file",
                    "node certificates are for backend = \"mysql\" (a cluster)".into(),
                ));
            }
        };
        Ok(Config {
            listen,
            metrics_listen,
            public_page,
            data_dir: o
                .data_dir
                .or(self.server.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            dev_auth,
            max_message_bytes,
            log_level: self.log.level.unwrap_or_else(|| "info".to_owned()),
            log_format,
            storage,
            registry: RegistryOptions {
                sequencer,
                kek_file: self.keys.kek_file,
                log_origin,
                seal_ca,
                trust_anchors,
                purposes,
                access: certseal_registry::AccessOptions {
                    enforce_policy,
                    admin_department,
                },
                input: certseal_registry::InputLimits {
                    max_licence_fields,
                    max_seal_image_bytes,
                },
                request_id_retention,
                ofd: ofd_options(&self.ofd)?,
                clock: certseal_registry::Clock::default(),
            },
            limits,
            tls,
            node_tls,
        })
    }
}

/// Licence files: a font given in the file must be readable now; the default one is looked
/// for when the first file is made (a registry without it still serves everything else).
fn ofd_options(raw: &RawOfd) -> Result<certseal_registry::OfdOptions, ConfigError> {
    let mut o = certseal_registry::OfdOptions {
        qr_png: |text| crate::qr_image::png(text).map_err(|e| e.to_string()),
        ..Default::default()
    };
    if let Some(i) = raw.font_index {
        o.font_index = i;
    }
    o.seal_at_issue = raw.seal_at_issue.unwrap_or(false);
    if let Some(path) = &raw.font_file {
        certseal_ofd::Font::load(path, o.font_index)
            .map_err(|e| invalid("ofd.font_file", e.to_string()))?;
        o.font_file = path.clone();
    }
    Ok(o)
}

/// The MySQL backend's settings, checked.
fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

fn mysql_options(
    storage: &RawStorage,
    cluster: &RawCluster,
    listen: SocketAddr,
) -> Result<certseal_store_mysql::MysqlOptions, ConfigError> {
    if storage.urls.is_empty() {
        return Err(invalid(
            "storage.urls",
            "backend = \"mysql\" needs the database nodes' URLs (mysql://user:password@host:port/database), the write node first".into(),
        ));
    }
    for u in &storage.urls {
        if !u.starts_with("mysql://") {
            return Err(invalid(
                "storage.urls",
                "each URL is mysql://user:password@host:port/database".into(),
            ));
        }
    }
    let node = cluster
        .node
        .clone()
        .unwrap_or_else(|| format!("certseal-{listen}"));
    if node.is_empty() || node.len() > 128 || node.chars().any(|c| c.is_control()) {
        return Err(invalid(
            "cluster.node",
            "1 to 128 printable characters".into(),
        ));
    }
    let advertise = cluster
        .advertise
        .clone()
        .unwrap_or_else(|| listen.to_string());
    if advertise.parse::<SocketAddr>().is_err() && !advertise.contains(':') {
        return Err(invalid("cluster.advertise", "host:port".into()));
    }
    let lease_ms = cluster.lease_ms.unwrap_or(3000);
    if !(500..=60_000).contains(&lease_ms) {
        return Err(invalid("cluster.lease_ms", "between 500 and 60000".into()));
    }
    let pool_size = storage.pool_size.unwrap_or(16);
    if !(2..=1024).contains(&pool_size) {
        return Err(invalid("storage.pool_size", "between 2 and 1024".into()));
    }
    Ok(certseal_store_mysql::MysqlOptions {
        urls: storage.urls.clone(),
        node,
        advertise,
        lease: std::time::Duration::from_millis(lease_ms),
        pool_size,
        ..certseal_store_mysql::MysqlOptions::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_parses_and_validates() {
        let raw = RawConfig::parse(include_str!("../certseal.example.toml")).unwrap();
        let c = raw.validate(Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            c.registry.request_id_retention,
            certseal_registry::DEFAULT_REQUEST_ID_RETENTION
        );
        assert!(!c.dev_auth);
        assert_eq!(c.log_format, LogFormat::Text);
        let StorageConfig::Rocks(rocks) = &c.storage else {
            panic!("rocksdb is the default")
        };
        assert_eq!(rocks.memtable_bytes, 256 << 20);
        assert_eq!(rocks.max_wal_bytes, 1024 << 20);
        let small = RawConfig::parse("[storage]\nmemtable_mb = 8\n").unwrap();
        let e = small
            .validate(Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.memtable_mb"), "{e}");
    }

    #[test]
    fn the_public_page_needs_a_department_and_a_safe_address() {
        let page = |extra: &str| {
            RawConfig::parse(&format!(
                "[public_page]\nlisten = \"127.0.0.1:8080\"\n{extra}"
            ))
            .unwrap()
            .validate(Overrides::default())
        };
        let e = page("").unwrap_err().to_string();
        assert!(e.contains("public_page.department"), "{e}");
        let ok = page("department = \"11100000000013338W\"\nbase_url = \"https://verify.example.gov.cn/\"\ntrusted_proxies = [\"10.0.0.1\"]").unwrap();
        let p = ok.public_page.unwrap();
        assert_eq!(p.base_url.as_deref(), Some("https://verify.example.gov.cn"));
        assert_eq!(p.checks_per_minute, 60);
        assert_eq!(
            p.trusted_proxies,
            vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        for bad in [
            "http://verify.example.gov.cn",
            "https://",
            "https://a.example/?x=1",
            "ftp://a.example",
            "https://a.example/\\\"x",
        ] {
            let e = page(&format!(
                "department = \"11100000000013338W\"\nbase_url = '{bad}'"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("public_page.base_url"), "{bad}: {e}");
        }
        assert!(
            page("department = \"11100000000013338W\"\nbase_url = \"http://127.0.0.1:8080\"")
                .is_ok()
        );
        let e = RawConfig::parse("[public_page]\nlisten = \"127.0.0.1:8080\"\ndepartment = \"11100000000013338W\"\n[verification]\npurposes = [\"ADMIN_APPROVAL\"]\n")
            .unwrap()
            .validate(Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("PUBLIC_PAGE"), "{e}");
    }

    #[test]
    fn seal_trust_anchors_and_a_configured_ca_are_checked() {
        use certseal_crypto::x509;
        let dir = tempfile::tempdir().unwrap();
        let key = x509::generate_key(x509::KeyAlgorithm::EcdsaP256).unwrap();
        let ca = x509::create_ca("anchor", &key.pkcs8, 0, 4_000_000_000).unwrap();
        let leaf_key = x509::generate_key(x509::KeyAlgorithm::Ed25519).unwrap();
        let leaf = x509::issue_service_certificate(
            &ca,
            &key.pkcs8,
            &leaf_key.pkcs8,
            "leaf",
            0,
            4_000_000_000,
        )
        .unwrap();
        let ca_file = dir.path().join("ca.pem");
        let leaf_file = dir.path().join("leaf.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&leaf_file, leaf.pem()).unwrap();
        let check = |toml: String| {
            RawConfig::parse(&toml)
                .unwrap()
                .validate(Overrides::default())
        };
        let good = check(format!(
            "[seals]\ntrust_anchors = [\"{}\"]\n",
            ca_file.display()
        ))
        .unwrap();
        assert_eq!(good.registry.trust_anchors, vec![ca.clone()]);
        for (toml, key, says) in [
            (
                format!("[seals]\ntrust_anchors = [\"{}\"]\n", leaf_file.display()),
                "seals.trust_anchors",
                "not a CA",
            ),
            (
                "[seals]\ntrust_anchors = [\"/no/such/anchor.pem\"]\n".to_owned(),
                "seals.trust_anchors",
                "/no/such/anchor.pem",
            ),
            (
                format!("[seals]\nca_cert_file = \"{}\"\n", ca_file.display()),
                "seals.ca_cert_file",
                "both",
            ),
        ] {
            match check(toml) {
                Err(ConfigError::Invalid { key: k, message }) => {
                    assert_eq!(k, key);
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("expected {key} refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn overrides_win_over_the_file() {
        let raw =
            RawConfig::parse("[server]\nlisten = \"127.0.0.1:1\"\ndata_dir = \"/a\"\n").unwrap();
        let c = raw
            .validate(Overrides {
                listen: Some("127.0.0.1:2".into()),
                data_dir: Some("/b".into()),
                dev_auth: true,
                log_format: Some("json".into()),
                metrics_listen: None,
                public_listen: None,
            })
            .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert!(c.dev_auth);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn development_mode_listens_on_loopback_only() {
        let dev = |toml: &str, listen: &str| {
            RawConfig::parse(toml).unwrap().validate(Overrides {
                listen: Some(listen.into()),
                dev_auth: true,
                ..Overrides::default()
            })
        };
        for ok in [
            "127.0.0.1:50051",
            "127.0.0.2:1",
            "[::1]:50051",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(dev("", ok).unwrap().dev_auth, "{ok}");
        }
        for bad in ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051"] {
            match dev("", bad) {
                Err(ConfigError::Invalid { key, message }) => {
                    assert_eq!(key, "server.dev_auth");
                    assert!(
                        message.contains("--dev-auth")
                            && message.contains("not a loopback address")
                            && message.contains(bad),
                        "{message}"
                    );
                }
                other => panic!("{bad}: expected a refusal, got {other:?}"),
            }
        }
        // The config key alone is refused the same way; without dev mode any address serves.
        let e = RawConfig::parse("[server]\ndev_auth = true\nlisten = \"0.0.0.0:1\"\n")
            .unwrap()
            .validate(Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.dev_auth") && e.contains("0.0.0.0:1"),
            "{e}"
        );
        assert!(
            RawConfig::parse("[server]\nlisten = \"0.0.0.0:1\"\n")
                .unwrap()
                .validate(Overrides::default())
                .is_ok()
        );
        // Every other listener of a development-mode server is held to loopback too.
        let e = dev(
            "[server]\nmetrics_listen = \"0.0.0.0:9464\"\n",
            "127.0.0.1:1",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.metrics_listen = 0.0.0.0:9464"), "{e}");
        let e = dev(
            "[public_page]\nlisten = \"0.0.0.0:8080\"\ndepartment = \"11100000000013338W\"\n",
            "127.0.0.1:1",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("public_page.listen = 0.0.0.0:8080"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = RawConfig::parse("[server]\nlisten = \"nowhere\"\n")
            .unwrap()
            .validate(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
        let e = RawConfig::parse("[server]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(e.contains("listen_on"), "{e}");
    }
}
