//! The MySQL-protocol store runs the store conformance suite against a real MariaDB server,
//! started here in a temporary folder on a free loopback port (Debian's mariadb-server, which
//! `scripts/ensure-deps --cluster` installs), and its own cases: the lease and the fence.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certseal_store::{Batch, KvStore, Read, StoreError, Table, testing};
use certseal_store_mysql::{MysqlOptions, MysqlStore};

/// A MariaDB server of this test's own, stopped when dropped.
struct MariaDb {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl MariaDb {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if root {
            // mariadbd refuses to run as root; the folder must be the mysql user's.
            let ok = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let user: &[&str] = if root { &["--user=mysql"] } else { &[] };
        let out = Command::new("mariadb-install-db")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect(
                "mariadb-install-db: run scripts/ensure-deps --cluster to install mariadb-server",
            );
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("err.log").display()
            ))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--innodb-buffer-pool-size=64M",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        let db = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mariadbd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        db
    }

    fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One database per case folder, so each case starts from nothing and a reopen finds it.
fn database_for(dir: &Path) -> String {
    let digest = dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
    format!("cs_{digest:016x}")
}

fn options(url: String, node: &str) -> MysqlOptions {
    MysqlOptions {
        urls: vec![url],
        node: node.into(),
        advertise: format!("{node}.example:50051"),
        lease: Duration::from_millis(1500),
        ..MysqlOptions::default()
    }
}

#[test]
fn mysql_store_conforms_and_fences_a_deposed_leader() {
    let db = MariaDb::start();
    let base = tempfile::tempdir().unwrap();
    let open = |dir: &Path| -> Arc<dyn KvStore> {
        let url = db.url(&database_for(dir));
        certseal_store_mysql::create_database(&url).unwrap();
        Arc::new(MysqlStore::open(&options(url, "node-a")).unwrap())
    };
    testing::run(&open, base.path());

    // Two nodes on one database: the first takes the lease, the second follows.
    let url = db.url("cs_lease_case");
    certseal_store_mysql::create_database(&url).unwrap();
    let a = MysqlStore::open(&options(url.clone(), "node-a")).unwrap();
    let b = MysqlStore::open(&options(url.clone(), "node-b")).unwrap();
    assert!(a.writable().is_ok());
    assert!(matches!(b.writable(), Err(StoreError::NotLeader(_))));
    let refused = b.recover().unwrap_err();
    assert!(
        matches!(&refused, StoreError::NotLeader(m) if m.contains("node-a") && m.contains("node-a.example:50051")),
        "{refused}"
    );
    let leader = b.leader().unwrap().unwrap();
    assert_eq!(
        (leader.node.as_str(), leader.epoch),
        ("node-a", a.lease_state().epoch)
    );
    let mut batch = Batch::new();
    batch.put(Table::Meta, b"k".to_vec(), b"from a".to_vec());
    a.write(&batch, true).unwrap();
    // A follower writes nothing, even when asked directly.
    let mut other = Batch::new();
    other.put(Table::Meta, b"k".to_vec(), b"from b".to_vec());
    assert!(matches!(
        b.write(&other, true),
        Err(StoreError::NotLeader(_))
    ));
    assert!(
        matches!(b.recover(), Err(StoreError::NotLeader(_))),
        "the lease is still a's"
    );

    // a pauses (no renewal): once its lease expires, b takes it, and a's next batch is
    // fenced off, although a still believes it may write until its own deadline.
    std::thread::sleep(Duration::from_millis(1700));
    b.recover().expect("b takes the expired lease");
    assert!(b.lease_state().epoch > a.lease_state().epoch);
    let mut late = Batch::new();
    late.put(Table::Meta, b"k".to_vec(), b"late from a".to_vec());
    assert!(matches!(
        a.write(&late, true),
        Err(StoreError::NotLeader(_))
    ));
    assert!(!a.renew(), "a learns it lost the lease");
    assert_eq!(b.get(Table::Meta, b"k").unwrap().unwrap(), b"from a");
    b.write(&other, true).unwrap();
    assert_eq!(a.get(Table::Meta, b"k").unwrap().unwrap(), b"from b");

    // A clean stop hands the lease over at once.
    b.release();
    a.recover().expect("a takes the released lease");

    writer_cache_follows_the_lease(&db);

    // The database's schema version is checked at open.
    let mut c = mysql::Conn::new(mysql::Opts::from_url(&url).unwrap()).unwrap();
    mysql::prelude::Queryable::query_drop(&mut c, "UPDATE cs_schema SET version = 99").unwrap();
    let err = MysqlStore::open(&options(url, "node-c")).unwrap_err();
    assert!(err.to_string().contains("schema is version 99"), "{err}");

    // An unreachable database is named.
    let gone = format!("mysql://root@127.0.0.1:{}/x", free_port());
    let err = MysqlStore::open(&options(gone, "node-c")).unwrap_err();
    assert!(
        err.to_string().contains("no database node answers"),
        "{err}"
    );
}

/// The leader's writer reads what it read and committed from memory, but never across a
/// change of lease: what another node wrote meanwhile is read from the database.
fn writer_cache_follows_the_lease(db: &MariaDb) {
    use certseal_store::{Sequencer, SequencerOptions};
    let url = db.url("cs_cache_case");
    certseal_store_mysql::create_database(&url).unwrap();
    let a = Arc::new(MysqlStore::open(&options(url.clone(), "node-a")).unwrap());
    let b = MysqlStore::open(&options(url, "node-b")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seq = Sequencer::start(a.clone(), SequencerOptions::default());
    let read = |seq: &Sequencer| {
        rt.block_on(seq.submit(|txn| txn.get(Table::Meta, b"k")))
            .unwrap()
    };
    let hits = |s: &MysqlStore| {
        s.properties()
            .into_iter()
            .find(|(n, _)| *n == "mysql.writer_cache_hits")
            .unwrap()
            .1
    };
    rt.block_on(seq.submit(|txn| {
        txn.put(Table::Meta, b"k".to_vec(), b"a1".to_vec());
        Ok::<_, StoreError>(())
    }))
    .unwrap();
    let before = hits(&a);
    assert_eq!(read(&seq).as_deref(), Some(&b"a1"[..]));
    assert_eq!(
        hits(&a),
        before + 1,
        "the writer reads its own commit from memory"
    );
    // Reads by anyone else go to the database.
    assert_eq!(
        a.get(Table::Meta, b"k").unwrap().as_deref(),
        Some(&b"a1"[..])
    );
    assert_eq!(hits(&a), before + 1);

    // Declared reads are loaded in one round trip, present and absent keys alike, and then
    // read from memory.
    let figure = |s: &MysqlStore, name: &str| {
        s.properties()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
    };
    let mut batch = Batch::new();
    batch.put(Table::Licences, b"L1".to_vec(), b"one".to_vec());
    a.write(&batch, true).unwrap();
    // Written outside the writer thread's view of the cache: forget it.
    a.release();
    a.recover().expect("a takes the lease again");
    let (trips, keys, misses) = (
        figure(&a, "mysql.writer_prefetch_round_trips"),
        figure(&a, "mysql.writer_prefetched_keys"),
        figure(&a, "mysql.writer_cache_misses"),
    );
    let reads = vec![
        (Table::Licences, b"L1".to_vec()),
        (Table::Licences, b"L2".to_vec()),
        (Table::LicenceIdempotency, b"I1".to_vec()),
    ];
    let got = rt
        .block_on(seq.submit_reading(reads, |txn| {
            Ok::<_, StoreError>((
                txn.get(Table::Licences, b"L1")?,
                txn.get(Table::Licences, b"L2")?,
                txn.get(Table::LicenceIdempotency, b"I1")?,
            ))
        }))
        .unwrap();
    assert_eq!(got, (Some(b"one".to_vec()), None, None));
    assert_eq!(figure(&a, "mysql.writer_prefetch_round_trips"), trips + 1);
    assert_eq!(figure(&a, "mysql.writer_prefetched_keys"), keys + 3);
    assert_eq!(
        figure(&a, "mysql.writer_cache_misses"),
        misses,
        "every declared read is answered from memory"
    );

    // b leads for a while and changes k; a leads again, at a new epoch.
    a.release();
    b.recover().expect("b takes the released lease");
    let mut batch = Batch::new();
    batch.put(Table::Meta, b"k".to_vec(), b"b1".to_vec());
    b.write(&batch, true).unwrap();
    b.release();
    a.recover().expect("a takes the lease again");
    assert_eq!(
        read(&seq).as_deref(),
        Some(&b"b1"[..]),
        "a's writer sees what b wrote under its lease"
    );
    drop(seq);
}
