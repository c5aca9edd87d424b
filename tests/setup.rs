//! `scripts/ensure-deps` against a simulated machine: shims for `dpkg-query`, `apt-get` and
//! `sudo` first on PATH over a fake package database, and a fake project virtualenv whose pip
//! reports what the test says. The real system is never changed. Also a dry run on the real
//! machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// Answers only the query the script makes, `dpkg-query -W -f='${Status}' PKG`, from the status
/// file, as real dpkg-query does: no newline after the status; for a package with no record, exit
/// 1 and its message on stderr.
const DPKG_QUERY: &str = r#"#!/bin/bash
if [ "$1" != -W ] || [ "$2" != '-f=${Status}' ] || [ $# -lt 3 ]; then
  echo "dpkg-query shim: unexpected arguments: $*" >&2; exit 2
fi
shift 2
rc=0
for p in "$@"; do
  if ! awk -F'\t' -v p="$p" '$1 == p { printf "%s", $2; found = 1; exit } END { exit !found }' "$FAKE_DPKG_STATUS"; then
    echo "dpkg-query: no packages found matching $p" >&2; rc=1
  fi
done
exit $rc
"#;

/// Records each call, and what Debian's service policy answered while it ran (as a package's
/// postinst would ask it); `install` marks its packages installed, as a real install would,
/// unless FAKE_APT_NOOP is set (an apt-get that "succeeds" without installing) or FAKE_APT_FAIL
/// (one that fails, as on a network error).
const APT_GET: &str = r#"#!/bin/bash
echo "$*" >> "$FAKE_APT_LOG"
if [ -x "$CERTSEAL_POLICY_RC_D" ]; then
  "$CERTSEAL_POLICY_RC_D" mariadb start; echo "$1 $?"
else
  echo "$1 none"
fi >> "$FAKE_POLICY_LOG"
[ "$1" = install ] || exit 0
[ -z "${FAKE_APT_FAIL:-}" ] || exit 100
[ -z "${FAKE_APT_NOOP:-}" ] || exit 0
for p in "$@"; do
  case "$p" in install|-*) continue ;; esac
  awk -F'\t' -v p="$p" '$1 != p' "$FAKE_DPKG_STATUS" > "$FAKE_DPKG_STATUS.new"
  printf '%s\tinstall ok installed\n' "$p" >> "$FAKE_DPKG_STATUS.new"
  mv "$FAKE_DPKG_STATUS.new" "$FAKE_DPKG_STATUS"
done
"#;

/// Only used when the tests run as non-root; real sudo could drop the FAKE_* variables.
const SUDO: &str = "#!/bin/bash\nexec \"$@\"\n";

/// The virtualenv's python: pip answers from FAKE_PIP_REPORT and only records; `-c` (the script
/// parses pip's report with it) is real Python.
const PYTHON: &str = r#"#!/bin/bash
if [ "$1" = -c ]; then exec /usr/bin/python3 "$@"; fi
if [ "$1" = -m ] && [ "$2" = pip ] && [ "$3" = install ]; then
  echo "$*" >> "$FAKE_PIP_LOG"
  case " $* " in *" --dry-run "*) cat "$FAKE_PIP_REPORT" ;; esac
  exit 0
fi
echo "python shim: unexpected arguments: $*" >&2; exit 2
"#;

const TEST_PACKAGES: [&str; 4] = ["openssl", "python3", "python3-venv", "chromium"];
/// What building and serving need; the font draws licence files (OFD).
const BUILD_PACKAGES: [&str; 4] = ["libclang-dev", "g++", "make", "fonts-wqy-zenhei"];
const CLUSTER_PACKAGES: [&str; 4] = ["mariadb-server", "mariadb-client", "galera-4", "rsync"];

struct Machine {
    dir: TempDir,
    apt_noop: bool,
    apt_fail: bool,
}

impl Machine {
    /// A machine whose package database holds `status` (package, status string) and whose
    /// virtualenv's pip would install `pip_missing` (name, version).
    fn new(status: &[(&str, &str)], pip_missing: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let m = Self {
            dir,
            apt_noop: false,
            apt_fail: false,
        };
        std::fs::create_dir_all(m.path("bin")).unwrap();
        std::fs::create_dir_all(m.path("venv/bin")).unwrap();
        write_exe(&m.path("bin/dpkg-query"), DPKG_QUERY);
        write_exe(&m.path("bin/apt-get"), APT_GET);
        write_exe(&m.path("bin/sudo"), SUDO);
        write_exe(&m.path("venv/bin/python"), PYTHON);
        let db: String = status.iter().map(|(p, s)| format!("{p}\t{s}\n")).collect();
        std::fs::write(m.path("status"), db).unwrap();
        let install: Vec<_> = pip_missing
            .iter()
            .map(|(n, v)| serde_json::json!({"metadata": {"name": n, "version": v}}))
            .collect();
        let report = serde_json::json!({"version": "1", "install": install});
        std::fs::write(m.path("pip-report.json"), report.to_string()).unwrap();
        m
    }

    /// Every package of `--test` and `--cluster` installed.
    fn complete() -> Self {
        let all: Vec<_> = BUILD_PACKAGES
            .iter()
            .chain(&TEST_PACKAGES)
            .chain(&CLUSTER_PACKAGES)
            .map(|p| (*p, "install ok installed"))
            .collect();
        Self::new(&all, &[])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        // The shims first; the real PATH after them for bash, cargo, id, awk.
        let mut path = vec![self.path("bin")];
        if let Some(cargo) = std::env::var_os("CARGO") {
            path.extend(Path::new(&cargo).parent().map(Path::to_owned));
        }
        path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
        let mut cmd = Command::new("bash");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ensure-deps"))
            .args(args)
            .env("PATH", std::env::join_paths(path).unwrap())
            .env("FAKE_DPKG_STATUS", self.path("status"))
            .env("FAKE_APT_LOG", self.path("apt.log"))
            .env("FAKE_POLICY_LOG", self.path("policy.log"))
            // Never the real /usr/sbin/policy-rc.d.
            .env("CERTSEAL_POLICY_RC_D", self.path("policy-rc.d"))
            .env("FAKE_PIP_LOG", self.path("pip.log"))
            .env("FAKE_PIP_REPORT", self.path("pip-report.json"))
            .env("CERTSEAL_PY_VENV", self.path("venv"));
        if self.apt_noop {
            cmd.env("FAKE_APT_NOOP", "1");
        }
        if self.apt_fail {
            cmd.env("FAKE_APT_FAIL", "1");
        }
        cmd.output().unwrap()
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn apt_calls(&self) -> Vec<String> {
        self.lines("apt.log")
    }

    /// The packages of the single `apt-get install`, after `apt-get update` ran before it.
    fn apt_installed(&self) -> Vec<String> {
        let calls = self.apt_calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0], "update -qq");
        let install = calls[1]
            .strip_prefix("install -y -qq --no-install-recommends ")
            .unwrap_or_else(|| panic!("{calls:?}"));
        install.split(' ').map(str::to_owned).collect()
    }

    /// Real installs, not pip's dry runs.
    fn pip_installs(&self) -> Vec<String> {
        self.lines("pip.log")
            .into_iter()
            .filter(|l| !l.contains("--dry-run"))
            .collect()
    }
}

fn write_exe(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_bare_machine_gets_every_package() {
    let m = Machine::new(&[], &[]);
    m.run_ok(&[]);
    let got = m.apt_installed();
    for p in BUILD_PACKAGES {
        assert!(got.contains(&p.to_owned()), "{p} in {got:?}");
    }
    for p in TEST_PACKAGES {
        assert!(!got.contains(&p.to_owned()), "{p} without --test: {got:?}");
    }
    // The script's own re-check ran against the status the install left.
    assert!(
        m.lines("status")
            .contains(&"make\tinstall ok installed".into())
    );

    let m = Machine::new(&[], &[]);
    m.run_ok(&["--test"]);
    let got = m.apt_installed();
    for p in BUILD_PACKAGES.iter().chain(&TEST_PACKAGES) {
        assert!(got.contains(&p.to_string()), "{p} in {got:?}");
    }
}

#[test]
fn a_cluster_machine_gets_the_database_without_starting_debians_service() {
    let m = Machine::new(&[("rsync", "install ok installed")], &[]);
    m.run_ok(&["--cluster"]);
    let got = m.apt_installed();
    for p in BUILD_PACKAGES.iter().chain(&CLUSTER_PACKAGES[..3]) {
        assert!(got.contains(&p.to_string()), "{p} in {got:?}");
    }
    assert!(!got.contains(&"rsync".into()), "{got:?}");
    for p in TEST_PACKAGES {
        assert!(!got.contains(&p.to_owned()), "{p} without --test: {got:?}");
    }
    // While apt-get ran, a service start was forbidden (101); the policy is gone after it.
    assert_eq!(m.lines("policy.log"), ["update 101", "install 101"]);
    assert!(!m.path("policy-rc.d").exists());

    // Without --cluster no policy is put in place.
    let m = Machine::new(&[], &[]);
    m.run_ok(&["--test"]);
    assert_eq!(m.lines("policy.log"), ["update none", "install none"]);
    assert!(!m.apt_installed().contains(&"mariadb-server".into()));

    // Nothing missing: no apt-get, no policy.
    let m = Machine::complete();
    m.run_ok(&["--cluster", "--test"]);
    assert_eq!(m.apt_calls(), Vec::<String>::new());
    assert!(!m.path("policy-rc.d").exists());
}

#[test]
fn a_machines_own_service_policy_is_left_alone() {
    let m = Machine::new(&[], &[]);
    let own = "#!/bin/sh\nexit 0\n";
    write_exe(&m.path("policy-rc.d"), own);
    m.run_ok(&["--cluster"]);
    assert!(m.apt_installed().contains(&"mariadb-server".into()));
    assert_eq!(m.lines("policy.log"), ["update 0", "install 0"]);
    assert_eq!(std::fs::read_to_string(m.path("policy-rc.d")).unwrap(), own);
}

#[test]
fn a_failed_install_removes_the_policy_it_put_in_place() {
    let mut m = Machine::new(&[], &[]);
    m.apt_fail = true;
    let out = m.run(&["--cluster"]);
    assert_eq!(out.status.code(), Some(100), "{out:?}");
    assert_eq!(m.lines("policy.log"), ["update 101", "install 101"]);
    assert!(!m.path("policy-rc.d").exists());
}

#[test]
fn libclang_cpp_is_not_libclang_dev() {
    // What fooled the old script: a libclang*.so of another package.
    let m = Machine::new(
        &[
            ("libclang-cpp14", "install ok installed"),
            ("g++", "install ok installed"),
            ("make", "install ok installed"),
            ("fonts-wqy-zenhei", "install ok installed"),
        ],
        &[],
    );
    m.run_ok(&[]);
    assert_eq!(m.apt_installed(), ["libclang-dev"]);

    let m = Machine::new(&[("libclang-cpp14", "install ok installed")], &[]);
    m.run_ok(&["--test"]);
    assert!(m.apt_installed().contains(&"libclang-dev".into()));
}

#[test]
fn removed_and_unknown_packages_are_missing() {
    // Removed but not purged: only its configuration files are left.
    let m = Machine::new(
        &[
            ("libclang-dev", "deinstall ok config-files"),
            ("g++", "install ok installed"),
            ("make", "unknown ok not-installed"),
            ("fonts-wqy-zenhei", "install ok installed"),
        ],
        &[],
    );
    m.run_ok(&[]);
    assert_eq!(m.apt_installed(), ["make", "libclang-dev"]);
    assert!(
        m.lines("status")
            .contains(&"libclang-dev\tinstall ok installed".into())
    );
}

#[test]
fn a_complete_machine_is_left_alone() {
    let m = Machine::complete();
    m.run_ok(&["--test"]);
    m.run_ok(&[]);
    assert_eq!(m.apt_calls(), Vec::<String>::new());
    assert_eq!(m.pip_installs(), Vec::<String>::new());
    // pip was asked, in the virtualenv, against the project's requirements.
    let asked = m.lines("pip.log");
    assert_eq!(asked.len(), 1, "only with --test: {asked:?}");
    assert!(
        asked[0].starts_with("-m pip install --dry-run --quiet --report - -r ")
            && asked[0].ends_with("/tests/python/requirements.txt"),
        "{asked:?}"
    );
}

#[test]
fn a_dry_run_changes_nothing() {
    let m = Machine::new(&[], &[("cbor2", "5.6.5")]);
    let before = std::fs::read(m.path("status")).unwrap();
    let out = m.run_ok(&["--dry-run", "--test"]);
    let debian = out
        .lines()
        .find_map(|l| l.strip_prefix("debian: "))
        .unwrap_or_else(|| panic!("{out}"));
    for p in BUILD_PACKAGES.iter().chain(&TEST_PACKAGES) {
        assert!(debian.split(' ').any(|w| w == *p), "{p} in {out}");
    }
    assert!(out.contains("python: cbor2==5.6.5"), "{out}");
    assert_eq!(m.apt_calls(), Vec::<String>::new());
    assert_eq!(m.pip_installs(), Vec::<String>::new());
    assert_eq!(std::fs::read(m.path("status")).unwrap(), before);

    // Without a virtualenv, a dry run says it would make one and makes none.
    std::fs::remove_dir_all(m.path("venv")).unwrap();
    let out = m.run_ok(&["--test", "--dry-run"]);
    assert!(out.contains("python: create "), "{out}");
    assert!(!m.path("venv").exists());

    let m = Machine::complete();
    let out = m.run_ok(&["--dry-run", "--test"]);
    assert_eq!(out, "debian: (nothing)\npython: (nothing)\n");
}

#[test]
fn missing_python_packages_are_installed_from_the_requirements() {
    let m = Machine::complete();
    std::fs::write(
        m.path("pip-report.json"),
        r#"{"version": "1", "install": [{"metadata": {"name": "cbor2", "version": "5.6.5"}}]}"#,
    )
    .unwrap();
    let out = m.run(&["--test"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cbor2==5.6.5"), "{stderr}");
    assert_eq!(m.apt_calls(), Vec::<String>::new());
    let installs = m.pip_installs();
    assert_eq!(installs.len(), 1, "{installs:?}");
    assert_eq!(
        installs[0],
        format!(
            "-m pip install --quiet -r {}/tests/python/requirements.txt",
            env!("CARGO_MANIFEST_DIR")
        )
    );
    // Without --test the virtualenv is not looked at.
    let m = Machine::new(
        &BUILD_PACKAGES.map(|p| (p, "install ok installed")),
        &[("cbor2", "5.6.5")],
    );
    m.run_ok(&[]);
    assert_eq!(m.lines("pip.log"), Vec::<String>::new());
}

#[test]
fn an_install_that_installs_nothing_fails() {
    let mut m = Machine::new(
        &[
            ("g++", "install ok installed"),
            ("make", "install ok installed"),
        ],
        &[],
    );
    m.apt_noop = true;
    let out = m.run(&["--test"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("apt-get finished but libclang-dev is still not installed"),
        "{stderr}"
    );
    // It stopped there: pip was not reached.
    assert_eq!(m.lines("pip.log"), Vec::<String>::new());
}

#[test]
fn the_real_machine_dry_run() {
    // Read-only on the real system: dpkg-query and the real project virtualenv's pip.
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ensure-deps"))
        .args(["--dry-run", "--test", "--cluster"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("debian: ")),
        "{stdout}"
    );
}
