//! Helpers for the end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certseal::config::{Overrides, RawConfig};
use certseal::pb;
use certseal::pb::department_service_client::DepartmentServiceClient;
use certseal::pb::template_service_client::TemplateServiceClient;
use certseal::server::{self, RunningServer};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// The department the tests act as when they administer the registry.
pub const ADMIN_DEPT: &str = "11100000000013338W";

/// A server in this process with its own data folder. With `CERTSEAL_TEST_CLUSTER` set (see
/// [`test_cluster`]) it is a follower of a two-node registry of the test's own on the cluster's
/// database: every write the test makes is forwarded to the leader, and every read is answered
/// by the follower.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub dir: TempDir,
    cluster: Option<Pair>,
}

/// The leader a follower [`TestServer`] forwards to, and what the follower is started with.
struct Pair {
    leader: Option<RunningServer>,
    leader_dir: TempDir,
    urls: Vec<String>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// [`TestServer::start`] with more configuration (TOML sections), on every node.
    pub async fn start_with(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let Some(c) = test_cluster() else {
            let server = Some(match config {
                "" => start_in(dir.path(), true).await,
                toml => start_with_config(dir.path(), toml).await,
            });
            return Self {
                server,
                dir,
                cluster: None,
            };
        };
        let urls = c.new_database();
        let leader_dir = tempfile::tempdir().unwrap();
        let kek = leader_dir.path().join("kek");
        let leader = server::start(&node_config(
            leader_dir.path(),
            &urls,
            &kek,
            "leader",
            config,
        ))
        .await
        .unwrap();
        let server = server::start(&node_config(dir.path(), &urls, &kek, "follower", config))
            .await
            .unwrap();
        // The test talks to a follower, not to a second writer.
        let writer =
            certseal::pb::admin_service_client::AdminServiceClient::new(connect(server.addr).await)
                .get_writer_state(admin(pb::GetWriterStateRequest {}))
                .await
                .unwrap()
                .into_inner();
        assert_eq!(writer.cause, "not_leader", "{writer:?}");
        Self {
            server: Some(server),
            dir,
            cluster: Some(Pair {
                leader: Some(leader),
                leader_dir,
                urls,
            }),
        }
    }

    /// With a cluster: the leader the follower forwards to, which takes calls too.
    pub fn leader_addr(&self) -> Option<SocketAddr> {
        self.cluster
            .as_ref()
            .and_then(|p| p.leader.as_ref())
            .map(|l| l.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    pub async fn channel(&self) -> Channel {
        connect(self.addr()).await
    }

    pub async fn departments(&self) -> DepartmentServiceClient<Channel> {
        DepartmentServiceClient::new(self.channel().await)
    }

    pub async fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::new(self.channel().await)
    }

    /// Stops the server and starts a new one on the same data folder (in a cluster: the
    /// follower, on the same database).
    pub async fn restart(&mut self) {
        self.server.take().unwrap().stop().await.unwrap();
        self.server = Some(match &self.cluster {
            None => start_in(self.dir.path(), true).await,
            Some(p) => {
                let kek = p.leader_dir.path().join("kek");
                server::start(&node_config(self.dir.path(), &p.urls, &kek, "follower", ""))
                    .await
                    .unwrap()
            }
        });
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
        if let Some(l) = self.cluster.as_mut().and_then(|p| p.leader.take()) {
            l.stop().await.unwrap();
        }
    }
}

/// A cluster that `scripts/cluster up --dir DIR` started, named by `CERTSEAL_TEST_CLUSTER=DIR`:
/// `scripts/test` starts one and runs a named subset of these tests against its followers.
pub struct TestCluster {
    pub dir: PathBuf,
    /// Started with `--tls`: its certseal nodes forward over mutual TLS with node certificates.
    pub tls: bool,
    password: String,
    databases: Vec<String>,
}

/// The cluster of `CERTSEAL_TEST_CLUSTER`, if set.
pub fn test_cluster() -> Option<&'static TestCluster> {
    static CLUSTER: std::sync::OnceLock<Option<TestCluster>> = std::sync::OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let dir =
                PathBuf::from(std::env::var_os("CERTSEAL_TEST_CLUSTER").filter(|d| !d.is_empty())?);
            let env = std::fs::read_to_string(dir.join("cluster.env"))
                .expect("CERTSEAL_TEST_CLUSTER names a folder of scripts/cluster up");
            let var = |name: &str| {
                env.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_default()
                    .to_owned()
            };
            let status = cluster_status(&dir);
            let databases = status["database"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["address"].as_str().unwrap().to_owned())
                .collect();
            Some(TestCluster {
                tls: var("TLS") == "1",
                password: var("DB_PASSWORD"),
                databases,
                dir,
            })
        })
        .as_ref()
}

/// `scripts/cluster status --dir DIR --json`.
fn cluster_status(dir: &Path) -> serde_json::Value {
    let out = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster"))
        .args(["status", "--json", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/cluster status: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

impl TestCluster {
    /// A database of its own on the cluster's database nodes: their URLs, the write node first.
    pub fn new_database(&self) -> Vec<String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "certseal_t{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let urls: Vec<String> = self
            .databases
            .iter()
            .map(|a| format!("mysql://certseal:{}@{a}/{name}", self.password))
            .collect();
        certseal_store_mysql::create_database(&urls[0]).unwrap();
        urls
    }

    /// The gRPC address of one of the cluster's own certseal nodes that follows.
    pub fn follower(&self) -> SocketAddr {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let status = cluster_status(&self.dir);
            let found = status["certseal"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["role"] == "follower" && n["pid"].is_u64());
            if let Some(n) = found {
                return n["grpc"].as_str().unwrap().parse().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no follower: {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Every certseal node's log, one after the other.
    pub fn logs(&self) -> String {
        (1..=3)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("certseal-{n}/log")))
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// The config of a node named `node` of a test's own two-node registry on `urls`.
fn node_config(
    data_dir: &Path,
    urls: &[String],
    kek: &Path,
    node: &str,
    config: &str,
) -> certseal::config::Config {
    let listen = free_addr();
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let toml = format!(
        "[storage]\nbackend = \"mysql\"\nurls = [{}]\npool_size = 2\n\
         [cluster]\nnode = \"{node}\"\nadvertise = \"{listen}\"\nlease_ms = 2000\n\
         [keys]\nkek_file = {:?}\n{config}",
        urls.join(", "),
        kek.display().to_string(),
    );
    RawConfig::parse(&toml)
        .unwrap()
        .validate(Overrides {
            listen: Some(listen),
            data_dir: Some(data_dir.to_owned()),
            dev_auth: true,
            ..Overrides::default()
        })
        .unwrap()
}

/// Starts a server on a free loopback port over `data_dir`.
pub async fn start_in(data_dir: &Path, dev_auth: bool) -> RunningServer {
    let config = RawConfig::default()
        .validate(Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_owned()),
            dev_auth,
            log_format: None,
            metrics_listen: None,
            public_listen: None,
        })
        .unwrap();
    server::start(&config).await.unwrap()
}

pub async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A request made by `department` in `role` (development-mode metadata).
pub fn as_actor<T>(department: &str, role: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("x-certseal-department", department.parse().unwrap());
    r.metadata_mut()
        .insert("x-certseal-role", role.parse().unwrap());
    r
}

/// A request made by the registry operator.
pub fn admin<T>(message: T) -> Request<T> {
    as_actor(ADMIN_DEPT, "admin", message)
}

/// A valid credit code: `body` (17 characters) with its check character.
pub fn credit_code(body: &str) -> String {
    assert_eq!(body.len(), 17);
    "0123456789ABCDEFGHJKLMNPQRTUWXY"
        .chars()
        .map(|c| format!("{body}{c}"))
        .find(|s| s.parse::<certseal_core::CreditCode>().is_ok())
        .unwrap()
}

/// The n-th test department's credit code.
pub fn dept_code(n: u32) -> String {
    credit_code(&format!("1235020000{n:07}"))
}

/// Asserts the status code and returns the fields named in its BadRequest details.
pub fn expect_code(status: Status, code: Code) -> Vec<(String, String)> {
    assert_eq!(status.code(), code, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Registers a department as the admin.
pub async fn register(
    client: &mut DepartmentServiceClient<Channel>,
    code: &str,
    name: &str,
) -> pb::Department {
    client
        .register_department(admin(pb::RegisterDepartmentRequest {
            credit_code: code.into(),
            name: name.into(),
            region_code: "350200".into(),
        }))
        .await
        .unwrap()
        .into_inner()
}

/// A small valid template content.
pub fn content(name: &str) -> pb::TemplateContent {
    pb::TemplateContent {
        name: name.into(),
        category: pb::TemplateCategory::Licence as i32,
        default_validity_days: 1825,
        fields: vec![
            pb::FieldSpec {
                name: "operator_name".into(),
                label: "经营者名称".into(),
                r#type: pb::FieldType::String as i32,
                required: true,
                max_length: 100,
                visibility: pb::Visibility::Public as i32,
                ..Default::default()
            },
            pb::FieldSpec {
                name: "legal_rep_id".into(),
                label: "法定代表人身份证号".into(),
                r#type: pb::FieldType::ResidentId as i32,
                required: true,
                visibility: pb::Visibility::Personal as i32,
                ..Default::default()
            },
        ],
    }
}

/// Lists every department, following page tokens.
pub async fn all_departments(
    client: &mut DepartmentServiceClient<Channel>,
    page_size: u32,
) -> Vec<pb::Department> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = client
            .list_departments(admin(pb::ListDepartmentsRequest {
                page_size,
                page_token,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.departments.len() <= page_size.max(1) as usize || page_size == 0);
        out.extend(r.departments);
        if r.next_page_token.is_empty() {
            return out;
        }
        page_token = r.next_page_token;
    }
}

/// A loopback address with a port free at the time of asking.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// The `certseal` binary running as a child process, killed when dropped.
pub struct ChildServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts `certseal serve --dev-auth` on a free port over `data_dir`; returns once it
    /// accepts connections.
    pub fn spawn(data_dir: &Path) -> Self {
        Self::spawn_with(data_dir, &[])
    }

    /// The same with more `serve` arguments (e.g. `--config FILE`).
    pub fn spawn_with(data_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--dev-auth"];
        args.extend_from_slice(extra);
        Self::spawn_args(data_dir, &args)
    }

    /// `certseal serve` with exactly these arguments besides the address and data folder.
    pub fn spawn_args(data_dir: &Path, extra: &[&str]) -> Self {
        let addr: SocketAddr = free_addr().parse().unwrap();
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Self { child, addr };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "server did not start");
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "server exited with {status}: {}",
                    std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server over `data_dir` with a TOML config (the listen address and dev mode are
/// set here).
pub async fn start_with_config(data_dir: &Path, toml: &str) -> RunningServer {
    let config = RawConfig::parse(toml)
        .unwrap()
        .validate(Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_owned()),
            dev_auth: true,
            log_format: None,
            metrics_listen: None,
            public_listen: None,
        })
        .unwrap();
    server::start(&config).await.unwrap()
}

/// Runs `openssl` in `dir`; returns stdout and stderr together, and whether it succeeded.
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/ensure-deps)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The project virtualenv's Python, with tests/python/requirements.txt (cbor2, cryptography,
/// grpcio): the same folder scripts/ensure-deps and examples/python/run.sh use.
pub fn python() -> PathBuf {
    // Empty counts as unset, as with the script's ${VAR:-default}.
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let venv = match (var("CERTSEAL_PY_VENV"), var("CARGO_TARGET_DIR")) {
        (Some(venv), _) => PathBuf::from(venv),
        (None, Some(target)) => Path::new(&target).join("python-venv"),
        (None, None) => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python-venv"),
    };
    venv.join("bin/python")
}

/// A small PNG seal image: a red ring around a dot; `seed` shifts the colour, so each seed is
/// another image.
pub fn png(seed: u8) -> Vec<u8> {
    // Small enough for the tests that set [limits] max_seal_image_kib = 1.
    let side = 40u32;
    let c = side as f64 / 2.0;
    let img = image::RgbaImage::from_fn(side, side, |x, y| {
        let r = ((x as f64 - c).powi(2) + (y as f64 - c).powi(2)).sqrt();
        let ink = (16.0..19.0).contains(&r) || r < 4.0;
        if ink {
            image::Rgba([200, seed.wrapping_mul(7), 30, 255])
        } else {
            image::Rgba([0, 0, 0, 0])
        }
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}
