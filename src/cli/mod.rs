//! The command line: `certseal serve` and the client subcommands.

mod audit;
mod backup;
mod bench;
mod catalogue;
mod client;
mod files;
mod holder;
mod licence;
mod output;
mod policy;
mod schema_file;
mod seal;
mod sync;
mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::run_client;

/// certseal: registry for electronic licences and electronic seals.
#[derive(Debug, Parser)]
#[command(name = "certseal", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry service.
    Serve(ServeArgs),
    /// Manage departments.
    #[command(subcommand)]
    Department(DepartmentCommand),
    /// Manage templates (licence types).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Audit log: checkpoints, proofs, export, offline verification.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The registry's seal CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Manage seals: register, certificates, lifecycle.
    #[command(subcommand)]
    Seal(SealCommand),
    /// Issue and manage licences.
    #[command(subcommand)]
    Licence(LicenceCommand),
    /// The signed trust list of seal certificates.
    #[command(subcommand)]
    Trustlist(TrustlistCommand),
    /// Check a licence document or QR string offline: no server needed.
    Verify(VerifyArgs),
    /// The signed status list of revoked, suspended and superseded licences.
    #[command(subcommand)]
    Statuslist(StatuslistCommand),
    /// Health, version, log size and latest checkpoint of a running server.
    Status(ClientArgs),
    /// Load generator: issue or verify against a running server, or one it starts.
    Bench(bench::BenchArgs),
    /// Take a backup of a running server into a folder on this machine.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new data folder (offline), or `restore confirm` a restored server.
    Restore(backup::RestoreArgs),
    /// Key custody (offline, with the server stopped).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The sharing policy: roles and grants per department.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Department certificates for mutual TLS.
    #[command(subcommand)]
    DeptCert(policy::DeptCertCommand),
    /// Use codes (授权用证) a holder agent makes for a holder: create, list, revoke.
    #[command(subcommand)]
    Usecode(holder::UseCodeCommand),
    /// Every check of a holder's licences (用证留痕), for a holder agent.
    Usage(holder::UsageArgs),
    /// The catalogue of licence types (GB/T 36902): export it as JSON or XML.
    #[command(subcommand)]
    Catalogue(catalogue::CatalogueCommand),
    /// A sharing platform's commands (role sync): follow the change feed, apply upstream
    /// changes.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
}

/// `certseal seal …`
#[derive(Debug, Subcommand)]
pub enum SealCommand {
    /// Register a seal; the registry generates its key. Prints the seal (and writes a CSR with
    /// --external-ca).
    Register {
        /// Owning department (credit code).
        #[arg(long)]
        department: String,
        /// Seal name, e.g. "厦门市市场监督管理局行政审批专用章".
        #[arg(long)]
        name: String,
        /// official, special-purpose, contract, finance or personal-name.
        #[arg(long = "type")]
        seal_type: String,
        /// Seal image file: PNG or SVG, at most 256 KiB.
        #[arg(long)]
        image: PathBuf,
        /// ed25519 (default), p256, or sm2 (SM2/SM3: a GB/T 38540 seal and sealed OFD files).
        #[arg(long, default_value = "ed25519")]
        algorithm: String,
        /// Start of validity, RFC 3339 (default: now).
        #[arg(long)]
        not_before: Option<String>,
        /// End of validity, RFC 3339 (default: ten years after the start).
        #[arg(long)]
        not_after: Option<String>,
        /// National seal code.
        #[arg(long, default_value = "")]
        national_code: String,
        /// Have an external CA certify the key: write the CSR to --csr-out.
        #[arg(long, requires = "csr_out")]
        external_ca: bool,
        /// Where to write the CSR (PEM).
        #[arg(long)]
        csr_out: Option<PathBuf>,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print again the CSR of a seal that waits for its external certificate.
    Csr {
        /// Seal ID.
        seal_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import the certificate an external CA signed from the seal's CSR.
    ImportCert {
        /// Seal ID.
        seal_id: String,
        /// Certificate file, PEM or DER (then any intermediate CA certificates, PEM).
        #[arg(long)]
        certificate: PathBuf,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// File a pending seal: PENDING → ACTIVE.
    Activate {
        /// Seal ID.
        seal_id: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// ACTIVE → SUSPENDED.
    Suspend {
        /// Seal ID.
        seal_id: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// SUSPENDED → ACTIVE.
    Reinstate {
        /// Seal ID.
        seal_id: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke for good (the key is destroyed).
    Revoke {
        /// Seal ID.
        seal_id: String,
        /// key-compromise, superseded or retired.
        #[arg(long)]
        reason: String,
        /// For key-compromise: from when the key is not trusted, RFC 3339.
        #[arg(long)]
        compromised_at: Option<String>,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a seal; optionally write its certificate and image to files.
    Get {
        /// Seal ID.
        seal_id: String,
        /// Write the certificate here (PEM).
        #[arg(long)]
        cert_out: Option<PathBuf>,
        /// Write the certificate here (DER).
        #[arg(long)]
        cert_der_out: Option<PathBuf>,
        /// Write the image here.
        #[arg(long)]
        image_out: Option<PathBuf>,
        /// Write the GB/T 38540 seal (SESeal v4, DER) here: SM2 seals with a certificate only.
        #[arg(long)]
        esl_out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List seals (every page unless --page-size is given).
    List {
        /// Only this department's seals.
        #[arg(long)]
        department: Option<String>,
        /// pending, active, suspended or revoked.
        #[arg(long)]
        status: Option<String>,
        /// Fetch one page of this size.
        #[arg(long)]
        page_size: Option<u32>,
        /// Continue from this token.
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Was the seal usable at an instant (default: now)?
    Usable {
        /// Seal ID.
        seal_id: String,
        /// The instant, RFC 3339.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What a licence says: holder, fields, validity (for issue and amend).
#[derive(Debug, Args, Clone)]
pub struct LicenceContent {
    /// A field value, NAME=VALUE (repeat); values are text, the template types them.
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// Field values from a JSON object file ({"name": "text" | number | true/false}).
    #[arg(long)]
    pub fields_file: Option<PathBuf>,
    /// Start of validity, RFC 3339.
    #[arg(long)]
    pub not_before: Option<String>,
    /// End of validity, RFC 3339.
    #[arg(long)]
    pub not_after: Option<String>,
    /// Template version (default: the latest published).
    #[arg(long, default_value_t = 0)]
    pub template_version: u32,
}

/// `certseal licence …`
#[derive(Debug, Subcommand)]
pub enum LicenceCommand {
    /// Issue a licence as the calling department (issuer role).
    Issue {
        /// Licence type code (21 characters).
        #[arg(long = "type")]
        type_code: String,
        /// person or organisation.
        #[arg(long)]
        holder_kind: String,
        /// Resident ID or credit code.
        #[arg(long)]
        holder_id: String,
        /// Holder name.
        #[arg(long)]
        holder_name: String,
        /// The seal to sign with (an active seal of the calling department).
        #[arg(long)]
        seal: String,
        /// Idempotency key; default: a new random key (printed), so a retry must pass it.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        content: LicenceContent,
        /// Write the signed document (COSE) here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a licence: status, history, fields, QR string.
    Get {
        /// Licence ID.
        licence_id: String,
        /// Write the signed document (COSE) here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List licences newest first, by holder, issuer or type.
    List {
        /// person or organisation (with --holder-id).
        #[arg(long)]
        holder_kind: Option<String>,
        /// Holder's resident ID or credit code.
        #[arg(long)]
        holder_id: Option<String>,
        /// Issuing department.
        #[arg(long)]
        issuer: Option<String>,
        /// Licence type code.
        #[arg(long = "type")]
        type_code: Option<String>,
        /// Fetch one page of this size.
        #[arg(long)]
        page_size: Option<u32>,
        /// Continue from this token.
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Amend: a new licence with new field values replaces this one.
    Amend {
        /// Licence ID.
        licence_id: String,
        #[command(flatten)]
        content: LicenceContent,
        /// New holder name.
        #[arg(long)]
        holder_name: Option<String>,
        /// Seal (default: the old licence's).
        #[arg(long)]
        seal: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Renew: a new licence with a new validity window replaces this one.
    Renew {
        /// Licence ID.
        licence_id: String,
        /// Start of validity, RFC 3339 (default: now).
        #[arg(long)]
        not_before: Option<String>,
        /// End of validity, RFC 3339 (default: the template's validity).
        #[arg(long)]
        not_after: Option<String>,
        /// Seal (default: the old licence's).
        #[arg(long)]
        seal: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// ACTIVE → SUSPENDED.
    Suspend {
        /// Licence ID.
        licence_id: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// SUSPENDED → ACTIVE.
    Reinstate {
        /// Licence ID.
        licence_id: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke for good.
    Revoke {
        /// Licence ID.
        licence_id: String,
        /// issued-in-error, withdrawn (撤销), cancelled (注销), penalty (吊销), lapsed (失效)
        /// or other (say which in --note).
        #[arg(long)]
        reason: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        /// Request ID (AIP-155; a UUID is recommended): a retry with the same ID and request
        /// returns the first answer and changes nothing.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue every licence of a JSON-lines file (or a JSON array) through one stream; bad rows
    /// are reported with their line numbers, good rows are issued. Rows with "existing_id" are
    /// collected (归集) under the ID another platform gave them.
    Import {
        /// One licence per line: {"type_code", "holder": {"kind", "id", "name"}, "fields",
        /// "seal_id", optional "template_version", "not_before", "not_after", "idempotency_key",
        /// and to collect: "existing_id", "collected": {"source", "first_issued_at" (RFC 3339)}}.
        file: PathBuf,
        /// Write the failed rows here (JSON lines with the line number and the reasons).
        #[arg(long)]
        failures: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check a licence by ID for a stated purpose; prints the result and keeps the receipt.
    Verify {
        /// Licence ID (may be left out with a use code's CSU: string, which names it).
        #[arg(required_unless_present = "use_code")]
        licence_id: Option<String>,
        /// Purpose code (see the registry's list).
        #[arg(long)]
        purpose: String,
        /// Why, in words.
        #[arg(long)]
        why: String,
        /// Check validity at this instant (RFC 3339; default now).
        #[arg(long)]
        at: Option<String>,
        /// Write the signed receipt here.
        #[arg(long)]
        receipt_out: Option<PathBuf>,
        /// The holder's use code (or its CSU: QR string): checks a licence the policy does
        /// not let this department read, within what the code allows.
        #[arg(long)]
        use_code: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Who checked a licence, when and why.
    Receipts {
        /// Licence ID.
        licence_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a licence's QR string (CS1:…), or draw its QR code as a PNG.
    Qr {
        /// Licence ID.
        licence_id: String,
        /// Write the QR code here as a PNG image (4 pixels per module, with its quiet zone)
        /// instead of printing the string. It holds the whole document, personal fields
        /// included: hand it to the holder, not to the public. A QR string over 3,391
        /// characters does not fit one: such a licence prints with its public page's QR code.
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write the licence as an OFD file: sealed (GB/T 38540) for a licence of an SM2 seal,
    /// else an unsigned view of the same layout. Needs the right to read the whole licence.
    Ofd {
        /// Licence ID.
        licence_id: String,
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `certseal verify …`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A document file (COSE bytes, a CS1: string, or a sealed OFD licence file), or a CS1:
    /// string itself.
    pub document: String,
    /// The trust list (from `certseal trustlist export`).
    #[arg(long, required_unless_present = "anchor")]
    pub trust_list: Option<PathBuf>,
    /// The seal CA certificate you trust (from `certseal ca cert`).
    #[arg(long, required_unless_present = "anchor")]
    pub ca: Option<PathBuf>,
    /// For any sealed OFD file, certseal's or not: check only its seal signature (every
    /// covered file's SM3 digest, the SES_Signature, the seal's maker signature), with a
    /// signer certificate that is this certificate or chains to it. No licence is checked.
    #[arg(long, conflicts_with_all = ["trust_list", "ca", "status", "at"])]
    pub anchor: Option<PathBuf>,
    /// The status list (from `certseal statuslist export`); without it the licence's status is
    /// not checked, and the result says so.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Check validity at this instant (RFC 3339; default now).
    #[arg(long)]
    pub at: Option<String>,
    /// Refuse a status list older than this many hours.
    #[arg(long, default_value_t = 24)]
    pub status_max_age_hours: i64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `certseal statuslist …`
#[derive(Debug, Subcommand)]
pub enum StatuslistCommand {
    /// Fetch the signed status list and write it to FILE.
    Export {
        /// Output file.
        file: PathBuf,
        /// Format version: 2 (each licence's status history) or 1 (current statuses, for
        /// verifiers that read only version 1).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=2))]
        format_version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `certseal trustlist …`
#[derive(Debug, Subcommand)]
pub enum TrustlistCommand {
    /// Fetch the signed trust list and write it to FILE (COSE_Sign1 bytes).
    Export {
        /// Output file.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check a trust list file offline against the seal CA certificate, and summarise it.
    Verify {
        /// Trust list file.
        file: PathBuf,
        /// The seal CA certificate you trust (PEM or DER), from `certseal ca cert`.
        #[arg(long)]
        ca: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `certseal keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every private key in the data folder under a new key-encryption key.
    Rewrap {
        /// Data folder of the stopped server.
        #[arg(long, env = "CERTSEAL_DATA_DIR", default_value = "./certseal-data")]
        data_dir: PathBuf,
        /// Server config file, for [keys] kek_file (the current KEK).
        #[arg(long, env = "CERTSEAL_CONFIG")]
        config: Option<PathBuf>,
        /// The new key-encryption key file; created (mode 0600) when absent.
        #[arg(long)]
        new_kek: PathBuf,
    },
}

/// `certseal ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the seal CA certificate (PEM).
    Cert {
        /// Print the SM2 seal CA instead (SM2 seal certificates and GB/T 38540 seals chain to it).
        #[arg(long)]
        sm2: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Offline, with the server stopped: a new client CA signs department certificates from
    /// the next start; the current one stays trusted until `retire-client`.
    RotateClient {
        /// Data folder of the stopped server.
        #[arg(long, env = "CERTSEAL_DATA_DIR", default_value = "./certseal-data")]
        data_dir: PathBuf,
        /// Server config file: [policy] admin_department names the administrator.
        #[arg(long, env = "CERTSEAL_CONFIG")]
        config: Option<PathBuf>,
        /// Folder for client-ca.pem (both CAs, for department systems to trust).
        #[arg(long)]
        out: PathBuf,
    },
    /// Offline, with the server stopped: retire the previous client CA after a rotation; its
    /// certificates are refused from the next start.
    RetireClient {
        /// Data folder of the stopped server.
        #[arg(long, env = "CERTSEAL_DATA_DIR", default_value = "./certseal-data")]
        data_dir: PathBuf,
        /// Server config file: [policy] admin_department names the administrator.
        #[arg(long, env = "CERTSEAL_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// `certseal audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the log's verifier key (name+keyid+base64).
    Vkey {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print one entry's inclusion proof as C2SP tlog-proof text.
    Proof {
        /// Entry index.
        index: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Export entries, records and the checkpoint into a bundle folder.
    Export {
        /// Bundle folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Start after this earlier signed checkpoint (a file), linking the bundle to it.
        #[arg(long)]
        since: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify a bundle offline: no server needed.
    Verify {
        /// Bundle folder.
        dir: PathBuf,
        /// The log's verifier key (name+keyid+base64), obtained and trusted beforehand.
        #[arg(long)]
        vkey: String,
        /// An earlier signed checkpoint you trust (a file): the bundle must extend it.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `certseal serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see certseal.example.toml).
    #[arg(long, env = "CERTSEAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder [default: ./certseal-data].
    #[arg(long, env = "CERTSEAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address HOST:PORT [default: 127.0.0.1:50051].
    #[arg(long, env = "CERTSEAL_LISTEN")]
    pub listen: Option<String>,
    /// Development mode: trust identity from request metadata. Never in production.
    #[arg(long, env = "CERTSEAL_DEV_AUTH")]
    pub dev_auth: bool,
    /// Log format: text or json.
    #[arg(long, env = "CERTSEAL_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off].
    #[arg(long, env = "CERTSEAL_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Serve the public verification page at http://HOST:PORT/ [default: off; see
    /// [public_page] in the config].
    #[arg(long, env = "CERTSEAL_PUBLIC_LISTEN")]
    pub public_listen: Option<String>,
}

/// Options every client subcommand takes.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(
        long,
        env = "CERTSEAL_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Act as this department (credit code); development mode only.
    #[arg(long, env = "CERTSEAL_AS_DEPARTMENT")]
    pub as_department: Option<String>,
    /// Act in this role (admin, issuer, verifier, auditor, holder_agent). With TLS, one of the roles the
    /// client certificate grants.
    #[arg(long, env = "CERTSEAL_AS_ROLE")]
    pub as_role: Option<String>,
    /// Client certificate (PEM) for mutual TLS; use with --key and --ca and an https:// server.
    #[arg(long, env = "CERTSEAL_CERT", requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "CERTSEAL_KEY")]
    pub key: Option<PathBuf>,
    /// The CA that issued the server's certificate (PEM).
    #[arg(long, env = "CERTSEAL_CA")]
    pub ca: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `certseal department …`
#[derive(Debug, Subcommand)]
pub enum DepartmentCommand {
    /// Register a department.
    Register {
        /// Unified social credit code (18 characters).
        #[arg(long)]
        credit_code: String,
        /// Official name.
        #[arg(long)]
        name: String,
        /// 6-digit region code.
        #[arg(long)]
        region: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one department.
    Get {
        /// Credit code.
        credit_code: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List departments (every page unless --page-size is given).
    List {
        /// Fetch one page of this size.
        #[arg(long)]
        page_size: Option<u32>,
        /// Continue from this token.
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a department's name.
    Rename {
        /// Credit code.
        credit_code: String,
        /// New name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deactivate a department.
    Deactivate {
        /// Credit code.
        credit_code: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reactivate a deactivated department.
    Reactivate {
        /// Credit code.
        credit_code: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `certseal template …`
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Create a draft from a schema file (JSON or TOML).
    Create {
        /// 21-character type code.
        #[arg(long)]
        type_code: String,
        /// Latest existing version, to create the next one; 0 for a new type.
        #[arg(long, default_value_t = 0)]
        base_version: u32,
        /// Schema file: .json or .toml.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace a draft's content from a schema file.
    Update {
        /// Type code.
        type_code: String,
        /// Draft version.
        version: u32,
        /// Schema file: .json or .toml.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Publish a draft.
    Publish {
        /// Type code.
        type_code: String,
        /// Version.
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deprecate a published version.
    Deprecate {
        /// Type code.
        type_code: String,
        /// Version.
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a version (default: the latest published).
    Get {
        /// Type code.
        type_code: String,
        /// Version; omit for the latest published.
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List template versions.
    List {
        /// licence or approval.
        #[arg(long)]
        category: Option<String>,
        /// draft, published or deprecated.
        #[arg(long)]
        status: Option<String>,
        /// Only types of this department (credit code).
        #[arg(long)]
        department: Option<String>,
        /// Fetch one page of this size.
        #[arg(long)]
        page_size: Option<u32>,
        /// Continue from this token.
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}
