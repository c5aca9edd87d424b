//! `certseal backup` (online, to the operator's machine) and `certseal restore` (offline, into
//! a new data folder), with `restore confirm` for a restored server.
//!
//! A backup folder holds `manifest.json` and `db/`, the store's files. The manifest says what
//! the copy holds (the log's origin, size, root and signed checkpoint) and the SHA-256 of every
//! file; it is written last, so a folder without it is not a finished backup.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::ClientArgs;
use super::client::{Client, explain};
use super::output::progress;
use crate::pb;
use crate::pb::admin_service_client::AdminServiceClient;

/// Format tag of a backup folder's manifest.
pub const BACKUP_FORMAT: &str = "certseal-backup/1";
/// The manifest file of a backup folder.
pub const MANIFEST: &str = "manifest.json";
const KEK_NOTE: &str = "not included: a backup never holds the key-encryption key; keep the KEK file apart from the backups, and give it to `certseal restore --kek`";

/// `certseal backup`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Folder to write (on this machine); must not exist.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `certseal restore`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RestoreArgs {
    /// `confirm`, for a restored server.
    #[command(subcommand)]
    pub command: Option<RestoreCommand>,
    /// The backup folder (written by `certseal backup`).
    #[arg(long, required = true)]
    pub from: Option<PathBuf>,
    /// The data folder to create; it must not exist or be empty.
    #[arg(long, required = true)]
    pub data_dir: Option<PathBuf>,
    /// The key-encryption key file the backup's keys are sealed under.
    #[arg(long, required = true)]
    pub kek: Option<PathBuf>,
    /// The newest signed checkpoint of the old log you have (a file, e.g. from an auditor):
    /// the restored log commits to it.
    #[arg(long)]
    pub last_checkpoint: Option<PathBuf>,
    /// An audit export of the old log from the backup on (`certseal audit export`): its
    /// suspensions and revocations are re-applied. Without it, the restored server refuses
    /// writes until `certseal restore confirm`.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Credit code of the admin department in whose name the restore is logged
    /// [default: [policy] admin_department of --config].
    #[arg(long)]
    pub operator: Option<String>,
    /// Server config file, for the storage tuning and [policy] admin_department.
    #[arg(long, env = "CERTSEAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Do not copy the KEK to <data-dir>/keys/kek (the server then needs [keys] kek_file).
    #[arg(long)]
    pub no_kek_copy: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `certseal restore …` subcommands.
#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Let a restored server take writes again without a replay: you accept that suspensions
    /// and revocations after the backup may be undone, and have repeated them.
    Confirm {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `manifest.json` of a backup folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// The data folder format of the copy.
    pub data_format: String,
    /// The audit log the copy holds.
    pub origin: String,
    /// Its size.
    pub log_size: u64,
    /// Its root, base64.
    pub root: String,
    /// The signed checkpoint of that size.
    pub checkpoint: String,
    /// When the copy was taken (ms since the Unix epoch).
    pub taken_at_ms: i64,
    /// The server that took it.
    pub server_version: String,
    /// Where the key-encryption key is: never here.
    pub kek: String,
    /// Every file, with its size and SHA-256.
    pub files: Vec<ManifestFile>,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path inside the backup folder.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// `certseal backup --out DIR`.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if args.out.exists() {
        bail!("{} exists: give a new folder", args.out.display());
    }
    // Written beside, renamed when whole: a folder named --out is always a finished backup.
    let mut partial = args.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    let result = receive(&args, &partial).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    let manifest = result?;
    std::fs::rename(&partial, &args.out).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            args.out.display()
        )
    })?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
    if args.client.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "out": args.out,
                "origin": manifest.origin,
                "log_size": manifest.log_size,
                "root": manifest.root,
                "files": manifest.files.len(),
                "bytes": bytes,
                "kek": KEK_NOTE,
            }))?
        );
    } else {
        println!(
            "backup of log {} at size {} written to {} ({} files, {:.1} MiB), every file checked against its SHA-256",
            manifest.origin,
            manifest.log_size,
            args.out.display(),
            manifest.files.len(),
            bytes as f64 / (1 << 20) as f64
        );
        println!(
            "The key-encryption key is NOT in the backup. Keep the KEK file ([keys] kek_file, by default <data-dir>/keys/kek) apart from the backups, in a safe of its own: a restore needs it (certseal restore --kek FILE)."
        );
    }
    Ok(())
}

async fn receive(args: &BackupArgs, dir: &Path) -> anyhow::Result<Manifest> {
    let cl = Client::connect(&args.client).await?;
    let mut stream = AdminServiceClient::new(cl.channel())
        .backup(cl.request(pb::BackupRequest {})?)
        .await
        .map_err(explain)?
        .into_inner();
    let header = match stream.message().await.map_err(explain)? {
        Some(pb::BackupChunk {
            item: Some(pb::backup_chunk::Item::Header(h)),
        }) => h,
        _ => bail!("the server's backup stream did not start with its header"),
    };
    let db = dir.join("db");
    std::fs::create_dir_all(&db).with_context(|| format!("cannot create {}", db.display()))?;
    for f in &header.files {
        if f.name.is_empty() || f.name.contains(['/', '\\']) || f.name.starts_with('.') {
            bail!("the server named a backup file '{}'", f.name);
        }
    }
    let total: u64 = header.files.iter().map(|f| f.size).sum();
    let bar = progress(total, "bytes");
    let mut files = Vec::with_capacity(header.files.len());
    let mut current: Option<(usize, std::fs::File, certseal_crypto::Sha256, u64)> = None;
    while let Some(chunk) = stream.message().await.map_err(explain)? {
        match chunk.item {
            Some(pb::backup_chunk::Item::Chunk(c)) => {
                let i = c.file as usize;
                if current.as_ref().is_none_or(|(at, ..)| *at != i) {
                    if current.is_some() || i != files.len() || i >= header.files.len() {
                        bail!("the server sent file {i} out of order");
                    }
                    let path = db.join(&header.files[i].name);
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    current = Some((i, file, certseal_crypto::Sha256::new(), 0));
                }
                let (_, file, hash, written) = current.as_mut().expect("set above");
                file.write_all(&c.data).context("cannot write the backup")?;
                hash.update(&c.data);
                *written += c.data.len() as u64;
                bar.inc(c.data.len() as u64);
            }
            Some(pb::backup_chunk::Item::End(e)) => {
                let i = e.file as usize;
                if i != files.len() || i >= header.files.len() {
                    bail!("the server ended file {i} out of order");
                }
                let expected = &header.files[i];
                let (file, hash, written) = match current.take() {
                    Some((at, file, hash, written)) if at == i => (file, hash, written),
                    // An empty file has no chunk.
                    None => {
                        let path = db.join(&expected.name);
                        let file = std::fs::File::create(&path)
                            .with_context(|| format!("cannot create {}", path.display()))?;
                        (file, certseal_crypto::Sha256::new(), 0)
                    }
                    Some((at, ..)) => bail!("the server ended file {i} while sending {at}"),
                };
                file.sync_all().context("cannot sync the backup")?;
                let digest = hash.finish();
                if written != expected.size || digest.as_slice() != e.sha256.as_slice() {
                    bail!(
                        "backup file {}: received {written} bytes with SHA-256 {}, the server sent {} bytes with SHA-256 {}: take the backup again",
                        expected.name,
                        hex(&digest),
                        expected.size,
                        hex(&e.sha256)
                    );
                }
                files.push(ManifestFile {
                    path: format!("db/{}", expected.name),
                    size: written,
                    sha256: hex(&digest),
                });
            }
            _ => bail!("unexpected item in the server's backup stream"),
        }
    }
    bar.finish_and_clear();
    if files.len() != header.files.len() {
        bail!(
            "the backup stream ended after {} of {} files: take the backup again",
            files.len(),
            header.files.len()
        );
    }
    sync_dir(&db)?;
    let manifest = Manifest {
        format: BACKUP_FORMAT.to_owned(),
        data_format: header.data_format,
        origin: header.origin,
        log_size: header.log_size,
        root: STANDARD.encode(&header.root),
        checkpoint: header.checkpoint,
        taken_at_ms: header.taken_at_ms,
        server_version: header.server_version,
        kek: KEK_NOTE.to_owned(),
        files,
    };
    let path = dir.join(MANIFEST);
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(manifest)
}

/// Reads a backup folder's manifest and checks every file against it: present, of its size and
/// SHA-256, and nothing else in `db/`.
pub fn check_backup_folder(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(&path)
            .with_context(|| format!("{} (not a finished backup?)", path.display()))?,
    )
    .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    if manifest.format != BACKUP_FORMAT {
        bail!(
            "{}: format '{}', this build reads '{BACKUP_FORMAT}'",
            path.display(),
            manifest.format
        );
    }
    let mut listed = std::collections::HashSet::new();
    for f in &manifest.files {
        let Some(name) = f
            .path
            .strip_prefix("db/")
            .filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && !n.starts_with('.'))
        else {
            bail!("{}: file path '{}' is not in db/", path.display(), f.path);
        };
        listed.insert(name.to_owned());
        // Streamed: a write-ahead log or a table can be a gigabyte.
        let unreadable = || format!("backup file {} is missing or unreadable", f.path);
        let mut file = std::fs::File::open(dir.join(&f.path)).with_context(unreadable)?;
        let mut hash = certseal_crypto::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).with_context(unreadable)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            len += n as u64;
        }
        let digest = hex(&hash.finish());
        if len != f.size || digest != f.sha256 {
            bail!(
                "backup file {} does not match the manifest (SHA-256 {digest}, {len} bytes; the manifest says {}, {} bytes): the backup was changed or damaged",
                f.path,
                f.sha256,
                f.size
            );
        }
    }
    for item in std::fs::read_dir(dir.join("db")).context("the backup has no db/ folder")? {
        let name = item?.file_name().to_string_lossy().into_owned();
        if !listed.contains(&name) {
            bail!("backup file db/{name} is not in the manifest");
        }
    }
    Ok(manifest)
}

/// `certseal restore …`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    if let Some(RestoreCommand::Confirm { client }) = args.command {
        return confirm(client).await;
    }
    let (Some(from), Some(data_dir), Some(kek)) = (args.from, args.data_dir, args.kek) else {
        bail!("give --from, --data-dir and --kek");
    };
    let raw = match &args.config {
        Some(p) => crate::config::RawConfig::load(p)?,
        None => crate::config::RawConfig::default(),
    };
    let config = raw.validate(crate::config::Overrides {
        data_dir: Some(data_dir.clone()),
        ..Default::default()
    })?;
    let operator = match (&args.operator, &config.registry.access.admin_department) {
        (Some(code), _) => code
            .parse()
            .map_err(|e: certseal_core::IdError| anyhow::anyhow!("--operator: {}", e.0))?,
        (None, Some(code)) => code.clone(),
        (None, None) => bail!(
            "give --operator CODE (the admin department the restore is logged for), or a --config with [policy] admin_department"
        ),
    };
    let manifest = check_backup_folder(&from)?;
    let last_checkpoint = args
        .last_checkpoint
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let report = certseal_registry::restore(certseal_registry::RestorePlan {
        backup_db: from.join("db"),
        checkpoint_note: manifest.checkpoint.clone(),
        kek_file: kek.clone(),
        data_dir: data_dir.clone(),
        last_checkpoint,
        replay: args.replay.clone(),
        operator: certseal_core::Actor {
            department: operator,
            role: certseal_core::Role::Admin,
        },
        options: config.registry.clone(),
        store: crate::storage::opener(&config),
    })
    .await
    .map_err(|e| anyhow::anyhow!("restore refused: {e}"))?;
    if !args.no_kek_copy {
        let keys = data_dir.join("keys");
        std::fs::create_dir_all(&keys)?;
        let target = keys.join("kek");
        std::fs::copy(&kek, &target)
            .with_context(|| format!("cannot copy the KEK to {}", target.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::File::open(&target)?.sync_all()?;
    }
    let s = &report.state;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "data_dir": data_dir,
                "old_origin": s.old_origin,
                "new_origin": s.new_origin,
                "backup_size": s.backup_size,
                "last_size": s.last_size,
                "replayed_to": s.replayed_to,
                "replayed": s.replayed,
                "unknown_subjects": report.unknown_subjects,
                "not_replayed": report.not_replayed,
                "keys_checked": report.keys_checked,
                "verifier_key": report.verifier_key,
                "writes_refused": s.pending,
            }))?
        );
        return Ok(());
    }
    println!(
        "restored log {} at size {} into {} ({} keys opened with the KEK)",
        s.old_origin,
        s.backup_size,
        data_dir.display(),
        report.keys_checked
    );
    println!(
        "the log continues as {} from entry {} (log.restored); its verifier key: {}",
        s.new_origin, s.backup_size, report.verifier_key
    );
    if let Some(last) = s.last_size.filter(|l| *l > s.backup_size) {
        println!(
            "the old log had reached size {last}: its entries {}..{last} are not in the restored log",
            s.backup_size
        );
    }
    if let Some(end) = s.replayed_to {
        println!(
            "replayed the old log to size {end}: {} suspensions, revocations and policy changes re-applied, {} about things the backup does not hold",
            s.replayed, report.unknown_subjects
        );
        for (kind, n) in &report.not_replayed {
            println!("  not replayed: {n} × {kind}");
        }
    }
    if s.pending {
        println!(
            "WRITES ARE REFUSED until `certseal restore confirm`: suspensions and revocations after the backup may be undone. Repeat them, or restore again with --replay."
        );
    }
    if args.no_kek_copy {
        println!(
            "the KEK was not copied: start the server with [keys] kek_file = \"{}\"",
            kek.display()
        );
    } else {
        println!(
            "the KEK was copied to {} (mode 0600); start the server with --data-dir {}",
            data_dir.join("keys").join("kek").display(),
            data_dir.display()
        );
    }
    Ok(())
}

async fn confirm(client: ClientArgs) -> anyhow::Result<()> {
    let cl = Client::connect(&client).await?;
    let s = AdminServiceClient::new(cl.channel())
        .confirm_restore(cl.request(pb::ConfirmRestoreRequest {})?)
        .await
        .map_err(explain)?
        .into_inner();
    if client.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "new_origin": s.new_origin,
                "backup_size": s.backup_size,
                "writes_refused": s.writes_refused,
            }))?
        );
    } else {
        println!(
            "restore of log {} at size {} confirmed (log.restore_confirmed): writes are allowed",
            s.old_origin, s.backup_size
        );
    }
    Ok(())
}
