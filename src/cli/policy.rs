//! `certseal policy …` (the sharing policy) and `certseal dept-cert …` (department
//! certificates for mutual TLS).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ClientArgs;
use super::client::{Client, explain};
use super::files::{read, write};
use super::output::{self, print_list};
use crate::config::{Overrides, RawConfig};
use crate::pb;
use crate::pb::policy_service_client::PolicyServiceClient;

/// `certseal policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print a department's roles and grants.
    Get {
        /// Department (credit code).
        department: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List every department's policy.
    List {
        /// Items per page (0: the server's default).
        #[arg(long, default_value_t = 0)]
        page_size: u32,
        /// Token from the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace a department's whole policy with the one in a TOML file (format in the README).
    Set {
        /// Department (credit code).
        department: String,
        /// Policy file: `roles = [...]`, `[[issue]]` and `[[read]]` tables.
        #[arg(long)]
        file: PathBuf,
        /// Refuse unless the policy is at this revision (0: none yet).
        #[arg(long)]
        revision: Option<u64>,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add roles or grants to a department's policy (read, change, write back).
    Grant {
        /// Department (credit code).
        department: String,
        #[command(flatten)]
        change: Change,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove roles or grants from a department's policy.
    Revoke {
        /// Department (credit code).
        department: String,
        #[command(flatten)]
        change: Change,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What `policy grant` adds or `policy revoke` removes.
#[derive(Debug, clap::Args)]
pub struct Change {
    /// Roles (admin, issuer, verifier, auditor, holder_agent, sync); repeat or separate with
    /// commas.
    #[arg(long = "role", value_delimiter = ',')]
    roles: Vec<String>,
    /// Licence type the department may issue (revoke: may no longer issue).
    #[arg(long)]
    issue: Option<String>,
    /// With --issue: a seal that may sign it; repeat for several (none: any of its seals).
    #[arg(long = "seal", requires = "issue")]
    seals: Vec<String>,
    /// With --issue: a region code (6 digits) for which the department is the collecting
    /// authority of the type, so it may collect licences whose existing ID names that region;
    /// repeat or separate with commas.
    #[arg(long = "collect-region", requires = "issue", value_delimiter = ',')]
    collect_regions: Vec<String>,
    /// Licence type the department may verify and read (revoke: may no longer).
    #[arg(long)]
    read: Option<String>,
    /// With --read: a purpose code it may state; repeat for several (none: any).
    #[arg(long = "purpose", requires = "read")]
    purposes: Vec<String>,
    /// With --read or --sync: a non-public field it may see; repeat for several.
    #[arg(long = "field")]
    fields: Vec<String>,
    /// With --read or --sync: it sees every field.
    #[arg(long, conflicts_with = "fields")]
    all_fields: bool,
    /// Licence type the department may follow in the change feed (revoke: may no longer).
    #[arg(long, conflicts_with = "read")]
    sync: Option<String>,
    /// With --sync: an issuing department whose licences of the type it may change from
    /// upstream; repeat for several (none: it only follows).
    #[arg(long = "apply-issuer", requires = "sync")]
    apply_issuers: Vec<String>,
}

/// `certseal dept-cert …`
#[derive(Debug, Subcommand)]
pub enum DeptCertCommand {
    /// Create a key here and have the registry's client CA certify it for a department (admin).
    Issue {
        /// Department (credit code).
        #[arg(long)]
        department: String,
        /// Roles the certificate names; repeat or separate with commas.
        #[arg(long = "role", value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Validity in days (at most 825).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Folder for <department>.key (mode 0600), <department>.pem and client-ca.pem.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a department certificate by serial (admin): refused from the moment this
    /// returns, on open connections too.
    Revoke {
        /// Serial number in hex (`openssl x509 -serial -noout -in CERT`).
        serial: String,
        /// Why (written to the audit log).
        #[arg(long)]
        reason: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The signed revocation list (CRL, PEM) of the client CA (any role).
    Crl {
        /// Write it here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The CA being retired after a rotation, instead of the current one.
        #[arg(long)]
        previous: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Offline, with the server stopped: the server's TLS certificate and the first
    /// administrator's client certificate, from the data folder's client CA.
    Bootstrap {
        /// Data folder of the stopped server.
        #[arg(long, env = "CERTSEAL_DATA_DIR", default_value = "./certseal-data")]
        data_dir: PathBuf,
        /// Server config file: [policy] admin_department names the administrator.
        #[arg(long, env = "CERTSEAL_CONFIG")]
        config: Option<PathBuf>,
        /// Host names or IP addresses the server is reached at; repeat for several.
        #[arg(long = "host", default_values = ["localhost", "127.0.0.1"])]
        hosts: Vec<String>,
        /// The administrator department's name, if it is not registered yet.
        #[arg(long, default_value = "Registry administration")]
        admin_name: String,
        /// Its 6-digit region code, if it is not registered yet.
        #[arg(long, default_value = "110000")]
        admin_region: String,
        /// Validity in days (at most 825).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// A cluster node's name: also write NAME.pem and NAME.key, its node certificate
        /// (role node) for forwarding writes to the leader; repeat for several.
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Folder for server.pem, server.key, admin.pem, admin.key and client-ca.pem.
        #[arg(long)]
        out: PathBuf,
    },
}

/// A policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    issue: Vec<IssueEntry>,
    #[serde(default)]
    read: Vec<ReadEntry>,
    #[serde(default)]
    sync: Vec<SyncEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncEntry {
    #[serde(rename = "type")]
    type_code: String,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    all_fields: bool,
    #[serde(default)]
    apply_issuers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueEntry {
    #[serde(rename = "type")]
    type_code: String,
    #[serde(default)]
    seals: Vec<String>,
    /// Regions it is the collecting authority of, for this type.
    #[serde(default)]
    collect_regions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadEntry {
    #[serde(rename = "type")]
    type_code: String,
    #[serde(default)]
    purposes: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    all_fields: bool,
}

fn role_value(name: &str) -> anyhow::Result<i32> {
    Ok(match name.trim() {
        "admin" => pb::Role::Admin,
        "issuer" => pb::Role::Issuer,
        "verifier" => pb::Role::Verifier,
        "auditor" => pb::Role::Auditor,
        "holder_agent" => pb::Role::HolderAgent,
        "sync" => pb::Role::Sync,
        "node" => pb::Role::Node,
        other => bail!(
            "unknown role '{other}': expected admin, issuer, verifier, auditor, holder_agent, sync or (certificates only) node"
        ),
    } as i32)
}

fn role_name(r: i32) -> String {
    pb::Role::try_from(r)
        .map(|r| r.as_str_name())
        .unwrap_or("?")
        .trim_start_matches("ROLE_")
        .to_ascii_lowercase()
}

fn policy_json(p: &pb::DepartmentPolicy) -> Value {
    json!({
        "department": p.department,
        "revision": p.revision,
        "roles": p.roles.iter().map(|r| role_name(*r)).collect::<Vec<_>>(),
        "issue": p.issue.iter().map(|g| json!({"type": g.type_code, "seals": g.seal_ids, "collect_regions": g.collect_regions})).collect::<Vec<_>>(),
        "read": p.read.iter().map(|g| json!({
            "type": g.type_code,
            "purposes": g.purposes,
            "fields": g.fields,
            "all_fields": g.all_fields,
        })).collect::<Vec<_>>(),
        "sync": p.sync.iter().map(|g| json!({
            "type": g.type_code,
            "fields": g.fields,
            "all_fields": g.all_fields,
            "apply_issuers": g.apply_issuers,
        })).collect::<Vec<_>>(),
        "updated_at": p.updated_at.as_ref().map(ToString::to_string),
        "updated_by": p.updated_by.as_ref().map(|a| a.department.clone()),
    })
}

fn print_policy(p: &pb::DepartmentPolicy, as_json: bool) {
    if as_json {
        output::print_one(&policy_json(p), true);
        return;
    }
    let any = |v: &[String], none: &str| {
        if v.is_empty() {
            none.to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("department  {}", p.department);
    println!("revision    {}", p.revision);
    let roles: Vec<String> = p.roles.iter().map(|r| role_name(*r)).collect();
    println!("roles       {}", any(&roles, "-"));
    println!("issues      {} type(s)", p.issue.len());
    for g in &p.issue {
        println!(
            "  - {}  seals: {}",
            g.type_code,
            any(&g.seal_ids, "any of its own")
        );
        if !g.collect_regions.is_empty() {
            println!("    collects for regions: {}", g.collect_regions.join(", "));
        }
    }
    println!("reads       {} type(s)", p.read.len());
    for g in &p.read {
        let fields = if g.all_fields {
            "all".to_owned()
        } else {
            format!("public + {}", any(&g.fields, "nothing else"))
        };
        println!(
            "  - {}  purposes: {}  fields: {fields}",
            g.type_code,
            any(&g.purposes, "any")
        );
    }
    println!("follows     {} type(s)", p.sync.len());
    for g in &p.sync {
        let fields = if g.all_fields {
            "all".to_owned()
        } else {
            format!("public + {}", any(&g.fields, "nothing else"))
        };
        println!(
            "  - {}  fields: {fields}  applies upstream changes for: {}",
            g.type_code,
            any(&g.apply_issuers, "none")
        );
    }
}

fn policies(cl: &Client) -> PolicyServiceClient<tonic::transport::Channel> {
    PolicyServiceClient::new(cl.channel())
}

/// The set request that writes `p` back, expecting its revision.
fn set_request(p: pb::DepartmentPolicy) -> pb::SetDepartmentPolicyRequest {
    pb::SetDepartmentPolicyRequest {
        request_id: String::new(),
        expected_revision: Some(p.revision),
        department: p.department,
        roles: p.roles,
        issue: p.issue,
        read: p.read,
        sync: p.sync,
    }
}

fn apply(change: &Change, p: &mut pb::DepartmentPolicy, grant: bool) -> anyhow::Result<()> {
    if change.roles.is_empty()
        && change.issue.is_none()
        && change.read.is_none()
        && change.sync.is_none()
    {
        bail!("name what changes: --role, --issue, --read or --sync");
    }
    if (!change.fields.is_empty() || change.all_fields)
        && change.read.is_none()
        && change.sync.is_none()
    {
        bail!("--field and --all-fields go with --read or --sync");
    }
    for r in &change.roles {
        let v = role_value(r)?;
        p.roles.retain(|x| *x != v);
        if grant {
            p.roles.push(v);
        }
    }
    if let Some(t) = &change.issue {
        let had = p.issue.len();
        p.issue.retain(|g| &g.type_code != t);
        if grant {
            p.issue.push(pb::IssueGrant {
                type_code: t.clone(),
                seal_ids: change.seals.clone(),
                collect_regions: change.collect_regions.clone(),
            });
        } else if had == p.issue.len() {
            bail!("department {} has no grant to issue {t}", p.department);
        }
    }
    if let Some(t) = &change.read {
        let had = p.read.len();
        p.read.retain(|g| &g.type_code != t);
        if grant {
            p.read.push(pb::ReadGrant {
                type_code: t.clone(),
                purposes: change.purposes.clone(),
                fields: change.fields.clone(),
                all_fields: change.all_fields,
            });
        } else if had == p.read.len() {
            bail!("department {} has no grant to read {t}", p.department);
        }
    }
    if let Some(t) = &change.sync {
        let had = p.sync.len();
        p.sync.retain(|g| &g.type_code != t);
        if grant {
            p.sync.push(pb::SyncGrant {
                type_code: t.clone(),
                fields: change.fields.clone(),
                all_fields: change.all_fields,
                apply_issuers: change.apply_issuers.clone(),
            });
        } else if had == p.sync.len() {
            bail!("department {} has no grant to follow {t}", p.department);
        }
    }
    Ok(())
}

/// Runs `certseal policy …`.
pub async fn run(c: PolicyCommand) -> anyhow::Result<()> {
    match c {
        PolicyCommand::Get { department, client } => {
            let cl = Client::connect(&client).await?;
            let p = policies(&cl)
                .get_department_policy(cl.request(pb::GetDepartmentPolicyRequest { department })?)
                .await
                .map_err(explain)?
                .into_inner();
            print_policy(&p, client.json);
        }
        PolicyCommand::List {
            page_size,
            page_token,
            client,
        } => {
            let cl = Client::connect(&client).await?;
            let r = policies(&cl)
                .list_department_policies(cl.request(pb::ListDepartmentPoliciesRequest {
                    page_size,
                    page_token,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            let items: Vec<Value> = r.policies.iter().map(policy_json).collect();
            print_list(
                &items,
                &["department", "revision", "roles", "updated_at"],
                &r.next_page_token,
                client.json,
            );
        }
        PolicyCommand::Set {
            department,
            file,
            revision,
            request_id,
            client,
        } => {
            let text = String::from_utf8(read(&file)?)
                .with_context(|| format!("{} is not UTF-8", file.display()))?;
            let f: PolicyFile =
                toml::from_str(&text).with_context(|| format!("policy file {}", file.display()))?;
            let request = pb::SetDepartmentPolicyRequest {
                department,
                roles: f
                    .roles
                    .iter()
                    .map(|r| role_value(r))
                    .collect::<anyhow::Result<_>>()?,
                issue: f
                    .issue
                    .into_iter()
                    .map(|g| pb::IssueGrant {
                        type_code: g.type_code,
                        seal_ids: g.seals,
                        collect_regions: g.collect_regions,
                    })
                    .collect(),
                read: f
                    .read
                    .into_iter()
                    .map(|g| pb::ReadGrant {
                        type_code: g.type_code,
                        purposes: g.purposes,
                        fields: g.fields,
                        all_fields: g.all_fields,
                    })
                    .collect(),
                sync: f
                    .sync
                    .into_iter()
                    .map(|g| pb::SyncGrant {
                        type_code: g.type_code,
                        fields: g.fields,
                        all_fields: g.all_fields,
                        apply_issuers: g.apply_issuers,
                    })
                    .collect(),
                expected_revision: revision,
                request_id,
            };
            let cl = Client::connect(&client).await?;
            let p = policies(&cl)
                .set_department_policy(cl.request(request)?)
                .await
                .map_err(explain)?
                .into_inner();
            print_policy(&p, client.json);
        }
        PolicyCommand::Grant {
            department,
            change,
            client,
        } => grant_or_revoke(department, change, client, true).await?,
        PolicyCommand::Revoke {
            department,
            change,
            client,
        } => grant_or_revoke(department, change, client, false).await?,
    }
    Ok(())
}

/// Runs `certseal policy grant|revoke`: read the policy, change it, write it back at the
/// revision read, so a concurrent change by another administrator is never lost.
async fn grant_or_revoke(
    department: String,
    change: Change,
    client: ClientArgs,
    grant: bool,
) -> anyhow::Result<()> {
    let cl = Client::connect(&client).await?;
    let current = policies(&cl)
        .get_department_policy(cl.request(pb::GetDepartmentPolicyRequest {
            department: department.clone(),
        })?)
        .await;
    let mut p = match current {
        Ok(p) => p.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => pb::DepartmentPolicy {
            department,
            ..Default::default()
        },
        Err(s) => return Err(explain(s)),
    };
    apply(&change, &mut p, grant)?;
    let p = policies(&cl)
        .set_department_policy(cl.request(set_request(p))?)
        .await
        .map_err(explain)?
        .into_inner();
    print_policy(&p, client.json);
    Ok(())
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .and_then(|mut f| {
            // An existing file keeps its mode on open: set it.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            f.write_all(pem.as_bytes())
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `certseal dept-cert …`.
pub async fn dept_cert(c: DeptCertCommand) -> anyhow::Result<()> {
    match c {
        DeptCertCommand::Issue {
            department,
            roles,
            days,
            out,
            client,
        } => {
            let key =
                certseal_crypto::x509::generate_key(certseal_crypto::x509::KeyAlgorithm::EcdsaP256)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let csr = certseal_crypto::x509::client_csr(&key.pkcs8, &department)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let cl = Client::connect(&client).await?;
            let r = policies(&cl)
                .issue_department_certificate(
                    cl.request(pb::IssueDepartmentCertificateRequest {
                        department: department.clone(),
                        roles: roles
                            .iter()
                            .map(|r| role_value(r))
                            .collect::<anyhow::Result<_>>()?,
                        csr_pem: csr,
                        validity_days: days,
                    })?,
                )
                .await
                .map_err(explain)?
                .into_inner();
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let key_file = out.join(format!("{department}.key"));
            write_private(&key_file, &certseal_crypto::x509::pkcs8_pem(&key.pkcs8))?;
            let cert_file = out.join(format!("{department}.pem"));
            write(&cert_file, r.certificate_pem.as_bytes())?;
            write(&out.join("client-ca.pem"), r.ca_pem.as_bytes())?;
            println!(
                "wrote {} (serial {}) and {} (roles {}).\nThe department's system calls with --cert {} --key {} --ca <the server's CA>.",
                cert_file.display(),
                r.serial,
                key_file.display(),
                roles.join(","),
                cert_file.display(),
                key_file.display()
            );
        }
        DeptCertCommand::Revoke {
            serial,
            reason,
            request_id,
            client,
        } => {
            let cl = Client::connect(&client).await?;
            let r = policies(&cl)
                .revoke_department_certificate(cl.request(
                    pb::RevokeDepartmentCertificateRequest {
                        serial,
                        reason,
                        request_id,
                    },
                )?)
                .await
                .map_err(explain)?
                .into_inner();
            if client.json {
                println!(
                    "{}",
                    json!({
                        "serial": r.serial,
                        "department": r.department,
                        "fingerprint": r.fingerprint,
                        "revoked_at": r.revoked_at.map(|t| t.to_string()),
                        "reason": r.revocation_reason,
                    })
                );
            } else {
                println!(
                    "revoked certificate {} of department {}: refused from now on",
                    r.serial, r.department
                );
            }
        }
        DeptCertCommand::Crl {
            out,
            previous,
            client,
        } => {
            let cl = Client::connect(&client).await?;
            let ca = if previous {
                pb::ClientCaSlot::Previous
            } else {
                pb::ClientCaSlot::Current
            };
            let r = policies(&cl)
                .get_client_crl(cl.request(pb::GetClientCrlRequest { ca: ca as i32 })?)
                .await
                .map_err(explain)?
                .into_inner();
            match out {
                Some(path) => {
                    write(&path, r.crl_pem.as_bytes())?;
                    println!("wrote {}", path.display());
                }
                None => print!("{}", r.crl_pem),
            }
        }
        DeptCertCommand::Bootstrap {
            data_dir,
            config,
            hosts,
            admin_name,
            admin_region,
            days,
            nodes,
            out,
        } => {
            bootstrap(
                &data_dir,
                config.as_deref(),
                &hosts,
                (&admin_name, &admin_region),
                days,
                &nodes,
                &out,
            )
            .await?
        }
    }
    Ok(())
}

/// The stopped server's registry, opened on its data folder, and the configured administrator
/// department acting in it (for the offline commands).
fn open_as_admin(
    data_dir: &Path,
    config: Option<&Path>,
) -> anyhow::Result<(certseal_registry::Registry, certseal_core::Actor)> {
    let raw = match config {
        Some(p) => RawConfig::load(p)?,
        None => RawConfig::default(),
    };
    let config = raw.validate(Overrides {
        data_dir: Some(data_dir.to_owned()),
        ..Overrides::default()
    })?;
    let Some(admin) = config.registry.access.admin_department.clone() else {
        bail!("name the administrator department in the config: [policy] admin_department");
    };
    let registry = crate::storage::open_registry(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "cannot open the data folder {} (is the server stopped?)",
                data_dir.display()
            )
        })?;
    let actor = certseal_core::Actor {
        department: admin,
        role: certseal_core::Role::Admin,
    };
    Ok((registry, actor))
}

async fn bootstrap(
    data_dir: &Path,
    config: Option<&Path>,
    hosts: &[String],
    (admin_name, admin_region): (&str, &str),
    days: u32,
    nodes: &[String],
    out: &Path,
) -> anyhow::Result<()> {
    use certseal_crypto::x509::{self, KeyAlgorithm};
    for n in nodes {
        if n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            || n.starts_with('.')
            || ["server", "admin", "client-ca"].contains(&n.as_str())
        {
            bail!(
                "--node '{n}': a node name of 1 to 64 letters, digits, '-', '_' or '.', not server, admin or client-ca (it names the files NAME.pem and NAME.key)"
            );
        }
    }
    let (registry, actor) = open_as_admin(data_dir, config)?;
    let admin = actor.department.clone();
    let err = |e: certseal_registry::RegistryError| anyhow::anyhow!("{e}");
    match registry.get_department(&actor, admin.as_str()) {
        Ok(_) => {}
        Err(certseal_registry::RegistryError::NotFound(_)) => {
            registry
                .register_department(&actor, admin.as_str(), admin_name, admin_region)
                .await
                .map_err(err)?;
            println!("registered the administrator department {admin}");
        }
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let new_key =
        || x509::generate_key(KeyAlgorithm::EcdsaP256).map_err(|e| anyhow::anyhow!("{e}"));
    let server_key = new_key()?;
    let server = registry
        .issue_server_certificate(&server_key.pkcs8, hosts, days)
        .map_err(err)?;
    let admin_key = new_key()?;
    let csr =
        x509::client_csr(&admin_key.pkcs8, admin.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin_cert = registry
        .issue_client_certificate(&actor, admin.as_str(), &["admin".to_owned()], &csr, days)
        .await
        .map_err(err)?;
    write(&out.join("server.pem"), server.pem().as_bytes())?;
    write_private(&out.join("server.key"), &x509::pkcs8_pem(&server_key.pkcs8))?;
    write(&out.join("admin.pem"), admin_cert.pem().as_bytes())?;
    write_private(&out.join("admin.key"), &x509::pkcs8_pem(&admin_key.pkcs8))?;
    for n in nodes {
        let key = new_key()?;
        let csr =
            x509::client_csr(&key.pkcs8, admin.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cert = registry
            .issue_client_certificate(
                &actor,
                admin.as_str(),
                &[certseal_core::NODE_ROLE.to_owned()],
                &csr,
                days,
            )
            .await
            .map_err(err)?;
        write(&out.join(format!("{n}.pem")), cert.pem().as_bytes())?;
        write_private(&out.join(format!("{n}.key")), &x509::pkcs8_pem(&key.pkcs8))?;
        println!(
            "wrote {}/{n}.pem and {n}.key: node {n}'s certificate (role node)",
            out.display()
        );
    }
    // Every client CA the server trusts: during a rotation the server's certificate and the
    // departments' may come from either.
    let cas: String = registry
        .client_ca_certificates()
        .iter()
        .map(|c| c.pem())
        .collect();
    write(&out.join("client-ca.pem"), cas.as_bytes())?;
    drop(registry);
    let o = out.display();
    println!(
        "wrote {o}/server.pem, server.key (for {}), admin.pem, admin.key (department {admin}, role admin) and client-ca.pem.\n\
         In the server's config:\n  [tls]\n  cert_file = \"{o}/server.pem\"\n  key_file = \"{o}/server.key\"\n\
         Then, as the administrator:\n  certseal … --server https://{}:<port> --cert {o}/admin.pem --key {o}/admin.key --ca {o}/client-ca.pem",
        hosts.join(", "),
        hosts.first().map_or("localhost", String::as_str),
    );
    Ok(())
}

/// `certseal ca rotate-client|retire-client`: offline, on the data folder of the stopped
/// server, as the configured administrator department.
pub async fn client_ca(c: super::CaCommand) -> anyhow::Result<()> {
    let (data_dir, config, out) = match &c {
        super::CaCommand::RotateClient {
            data_dir,
            config,
            out,
        } => (data_dir, config, Some(out)),
        super::CaCommand::RetireClient { data_dir, config } => (data_dir, config, None),
        super::CaCommand::Cert { .. } => unreachable!("an online command"),
    };
    let (registry, actor) = open_as_admin(data_dir, config.as_deref())?;
    let err = |e: certseal_registry::RegistryError| anyhow::anyhow!("{e}");
    match out {
        Some(out) => {
            let new = registry.rotate_client_ca(&actor).await.map_err(err)?;
            let bundle = format!("{}{}", new.pem(), registry.client_ca_certificate().pem());
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            write(&out.join("client-ca.pem"), bundle.as_bytes())?;
            println!(
                "made a new client CA: from the next start it signs department certificates, and certificates of both CAs are accepted.\n\
                 wrote {}/client-ca.pem (the new CA, then the previous one): give it to every department system as its --ca.\n\
                 Next: start the server, issue new department certificates (certseal dept-cert issue), renew the server's (certseal dept-cert bootstrap, offline), then retire the previous CA (certseal ca retire-client).",
                out.display()
            );
        }
        None => {
            let old = registry.retire_client_ca(&actor).await.map_err(err)?;
            let (_, not_after) =
                certseal_crypto::x509::validity(&old.der).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "retired the previous client CA (valid until {not_after}, Unix seconds): its key is destroyed, and from the next start its certificates are refused."
            );
        }
    }
    Ok(())
}
