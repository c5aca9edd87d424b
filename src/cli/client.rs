//! Client subcommands: each makes one or a few gRPC calls and prints the result.

use anyhow::{Context, bail};
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_types::StatusExt;

use super::output::{self, print_list, print_one};
use super::{ClientArgs, Command, DepartmentCommand, TemplateCommand, schema_file};
use crate::auth::{DEPARTMENT_HEADER, ROLE_HEADER};
use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::department_service_client::DepartmentServiceClient;
use crate::pb::licence_service_client::LicenceServiceClient;
use crate::pb::seal_service_client::SealServiceClient;
use crate::pb::template_service_client::TemplateServiceClient;
use crate::pb::verification_service_client::VerificationServiceClient;

/// A connection plus the identity to send.
pub(crate) struct Client {
    channel: Channel,
    args: ClientArgs,
}

impl Client {
    pub(super) async fn connect(args: &ClientArgs) -> anyhow::Result<Self> {
        let mut endpoint = Channel::from_shared(args.server.clone())
            .with_context(|| format!("'{}' is not a server URL", args.server))?;
        if let (Some(cert), Some(key), Some(ca)) = (&args.cert, &args.key, &args.ca) {
            let read = |p: &std::path::PathBuf| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            endpoint = endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?))
                        .identity(tonic::transport::Identity::from_pem(
                            read(cert)?,
                            read(key)?,
                        )),
                )
                .context("TLS configuration")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the certseal server at {}", args.server))?;
        Ok(Self {
            channel,
            args: args.clone(),
        })
    }

    /// Wraps a message with the development-mode identity metadata.
    pub(super) fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut r = Request::new(message);
        if let Some(d) = &self.args.as_department {
            r.metadata_mut()
                .insert(DEPARTMENT_HEADER, d.parse().context("--as-department")?);
        }
        if let Some(role) = &self.args.as_role {
            r.metadata_mut()
                .insert(ROLE_HEADER, role.parse().context("--as-role")?);
        }
        Ok(r)
    }

    pub(super) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn departments(&self) -> DepartmentServiceClient<Channel> {
        DepartmentServiceClient::new(self.channel.clone())
    }

    fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::new(self.channel.clone())
    }

    pub(super) fn seals(&self) -> SealServiceClient<Channel> {
        // A trust list of a province's seals exceeds the default 4 MiB.
        SealServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub(super) fn licences(&self) -> LicenceServiceClient<Channel> {
        LicenceServiceClient::new(self.channel.clone())
    }

    pub(super) fn verification(&self) -> VerificationServiceClient<Channel> {
        VerificationServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub(super) fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }
}

/// What a status code means for the person at the terminal: did anything change, and what to
/// do next.
fn meaning(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::InvalidArgument => "the request was refused as malformed; nothing changed",
        C::NotFound => "no such record; nothing changed",
        C::AlreadyExists => "it exists already; nothing changed",
        C::FailedPrecondition => "not possible in the record's present state; nothing changed",
        C::PermissionDenied => "the caller may not do this; nothing changed",
        C::Unauthenticated => "the server does not know who is calling; nothing changed",
        C::ResourceExhausted => "a limit was reached; wait and retry, or send less at once",
        C::DeadlineExceeded | C::Cancelled => {
            "the call did not finish in time; it may or may not have taken effect, so retry with the same idempotency key, or check first"
        }
        C::Unavailable => "the server could not be reached; nothing was sent, or retry safely",
        C::Aborted => "a concurrent change got there first; read again and retry",
        C::OutOfRange => "a value or the request is too large",
        C::DataLoss | C::Internal => {
            "the server failed; tell the registry's operators (the server log has the details)"
        }
        C::Unimplemented => "this server does not offer that call; is it an older version?",
        _ => "the call failed",
    }
}

/// Explains a failed call: the status, what it means, its message and each field the server
/// refused.
pub(super) fn explain(status: Status) -> anyhow::Error {
    let code = status.code();
    let name = format!("{code:?}");
    // SCREAMING_SNAKE as gRPC documents it: InvalidArgument -> INVALID_ARGUMENT.
    let mut upper = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            upper.push('_');
        }
        upper.push(c.to_ascii_uppercase());
    }
    let mut msg = format!("{upper}: {}", meaning(code));
    if let Some(info) = status.get_error_details().error_info() {
        msg.push_str(&format!("\n  reason: {}", info.reason));
    }
    match status.get_error_details().bad_request() {
        // The violations say it all, one per line.
        Some(br) if !br.field_violations.is_empty() => {
            for v in &br.field_violations {
                msg.push_str(&format!("\n  {}: {}", v.field, v.description));
            }
        }
        _ if !status.message().is_empty() => msg.push_str(&format!("\n  {}", status.message())),
        _ => {}
    }
    if let Some(id) = status
        .metadata()
        .get(crate::metrics::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        msg.push_str(&format!(
            "\n  request ID {id} (the server's log lines carry it)"
        ));
    }
    let hint = match code {
        tonic::Code::Unauthenticated => {
            "\nhint: give --as-department CODE --as-role ROLE (server started with --dev-auth), or --cert, --key and --ca with an https:// server"
        }
        tonic::Code::PermissionDenied => {
            "\nhint: this action needs another role, or a grant in the sharing policy (certseal policy get <department>)"
        }
        tonic::Code::Unavailable => "\nhint: is the server running and reachable (--server URL)?",
        _ => "",
    };
    anyhow::anyhow!("{msg}{hint}")
}

/// Runs a client subcommand.
pub async fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve is not a client command"),
        Command::Department(c) => department(c).await,
        Command::Template(c) => template(c).await,
        Command::Audit(c) => super::audit::run(c).await,
        Command::Seal(c) => super::seal::run(c).await,
        Command::Licence(c) => super::licence::run(c).await,
        Command::Verify(args) => super::verify::offline(args),
        Command::Bench(args) => super::bench::run(args).await,
        Command::Status(args) => status(args).await,
        Command::Statuslist(c) => super::verify::statuslist(c).await,
        Command::Trustlist(c) => super::seal::trustlist(c).await,
        Command::Keys(c) => super::seal::keys(c),
        Command::Backup(a) => super::backup::backup(a).await,
        Command::Restore(a) => super::backup::restore(a).await,
        Command::Policy(c) => super::policy::run(c).await,
        Command::DeptCert(c) => super::policy::dept_cert(c).await,
        Command::Usecode(c) => super::holder::usecode(c).await,
        Command::Usage(a) => super::holder::usage(a).await,
        Command::Catalogue(c) => super::catalogue::run(c).await,
        Command::Sync(c) => super::sync::run(c).await,
        Command::Ca(
            c @ (super::CaCommand::RotateClient { .. } | super::CaCommand::RetireClient { .. }),
        ) => super::policy::client_ca(c).await,
        Command::Ca(super::CaCommand::Cert { sm2, client }) => {
            let cl = Client::connect(&client).await?;
            let r = SealServiceClient::new(cl.channel.clone())
                .get_ca_certificate(cl.request(pb::GetCaCertificateRequest {})?)
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", if sm2 { r.sm2_pem } else { r.pem });
            Ok(())
        }
    }
}

async fn department(c: DepartmentCommand) -> anyhow::Result<()> {
    use DepartmentCommand as D;
    let (D::Register { client, .. }
    | D::Get { client, .. }
    | D::List { client, .. }
    | D::Rename { client, .. }
    | D::Deactivate { client, .. }
    | D::Reactivate { client, .. }) = &c;
    let cl = Client::connect(client).await?;
    let json = client.json;
    let d = match c {
        D::Register {
            credit_code,
            name,
            region,
            ..
        } => {
            cl.departments()
                .register_department(cl.request(pb::RegisterDepartmentRequest {
                    credit_code,
                    name,
                    region_code: region,
                })?)
                .await
        }
        D::Get { credit_code, .. } => {
            cl.departments()
                .get_department(cl.request(pb::GetDepartmentRequest { credit_code })?)
                .await
        }
        D::Rename {
            credit_code, name, ..
        } => {
            cl.departments()
                .update_department_name(
                    cl.request(pb::UpdateDepartmentNameRequest { credit_code, name })?,
                )
                .await
        }
        D::Deactivate { credit_code, .. } => {
            cl.departments()
                .deactivate_department(cl.request(pb::DeactivateDepartmentRequest { credit_code })?)
                .await
        }
        D::Reactivate { credit_code, .. } => {
            cl.departments()
                .reactivate_department(cl.request(pb::ReactivateDepartmentRequest { credit_code })?)
                .await
        }
        D::List {
            page_size,
            mut page_token,
            ..
        } => {
            let mut items = Vec::new();
            loop {
                let r = cl
                    .departments()
                    .list_departments(cl.request(pb::ListDepartmentsRequest {
                        page_size: page_size.unwrap_or(0),
                        page_token,
                    })?)
                    .await
                    .map_err(explain)?
                    .into_inner();
                items.extend(r.departments.iter().map(output::department));
                page_token = r.next_page_token;
                // Without --page-size the whole list is fetched.
                if page_token.is_empty() || page_size.is_some() {
                    break;
                }
            }
            print_list(
                &items,
                &["credit_code", "region_code", "status", "name"],
                &page_token,
                json,
            );
            return Ok(());
        }
    };
    print_one(&output::department(&d.map_err(explain)?.into_inner()), json);
    Ok(())
}

async fn template(c: TemplateCommand) -> anyhow::Result<()> {
    use TemplateCommand as T;
    let (T::Create { client, .. }
    | T::Update { client, .. }
    | T::Publish { client, .. }
    | T::Deprecate { client, .. }
    | T::Get { client, .. }
    | T::List { client, .. }) = &c;
    let cl = Client::connect(client).await?;
    let json = client.json;
    let t = match c {
        T::Create {
            type_code,
            base_version,
            file,
            ..
        } => {
            let content = schema_file::read(&file)?;
            cl.templates()
                .create_template_draft(cl.request(pb::CreateTemplateDraftRequest {
                    type_code,
                    base_version,
                    content: Some(content),
                })?)
                .await
        }
        T::Update {
            type_code,
            version,
            file,
            ..
        } => {
            let content = schema_file::read(&file)?;
            cl.templates()
                .update_template_draft(cl.request(pb::UpdateTemplateDraftRequest {
                    type_code,
                    version,
                    content: Some(content),
                })?)
                .await
        }
        T::Publish {
            type_code, version, ..
        } => {
            cl.templates()
                .publish_template(cl.request(pb::PublishTemplateRequest { type_code, version })?)
                .await
        }
        T::Deprecate {
            type_code, version, ..
        } => {
            cl.templates()
                .deprecate_template(
                    cl.request(pb::DeprecateTemplateRequest { type_code, version })?,
                )
                .await
        }
        T::Get {
            type_code, version, ..
        } => {
            cl.templates()
                .get_template(cl.request(pb::GetTemplateRequest {
                    type_code,
                    version: version.unwrap_or(0),
                })?)
                .await
        }
        T::List {
            category,
            status,
            department,
            page_size,
            mut page_token,
            ..
        } => {
            let category = match category.as_deref() {
                None => pb::TemplateCategory::Unspecified,
                Some("licence") => pb::TemplateCategory::Licence,
                Some("approval") => pb::TemplateCategory::Approval,
                Some(other) => bail!("--category '{other}': licence or approval"),
            };
            let status = match status.as_deref() {
                None => pb::TemplateStatus::Unspecified,
                Some("draft") => pb::TemplateStatus::Draft,
                Some("published") => pb::TemplateStatus::Published,
                Some("deprecated") => pb::TemplateStatus::Deprecated,
                Some(other) => bail!("--status '{other}': draft, published or deprecated"),
            };
            let mut items = Vec::new();
            loop {
                let r = cl
                    .templates()
                    .list_templates(cl.request(pb::ListTemplatesRequest {
                        page_size: page_size.unwrap_or(0),
                        page_token,
                        category: category as i32,
                        status: status as i32,
                        defining_department: department.clone().unwrap_or_default(),
                    })?)
                    .await
                    .map_err(explain)?
                    .into_inner();
                items.extend(r.templates.iter().map(output::template));
                page_token = r.next_page_token;
                if page_token.is_empty() || page_size.is_some() {
                    break;
                }
            }
            print_list(
                &items,
                &["type_code", "version", "status", "category", "name"],
                &page_token,
                json,
            );
            return Ok(());
        }
    };
    print_one(&output::template(&t.map_err(explain)?.into_inner()), json);
    Ok(())
}

/// `certseal status`: the health service (no identity needed), the server's version from the
/// response headers, and the latest checkpoint if the caller may read it.
async fn status(args: ClientArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let cl = Client::connect(&args).await?;
    let health = tonic_health::pb::health_client::HealthClient::new(cl.channel())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(explain)?;
    let round_trip_ms = started.elapsed().as_secs_f64() * 1000.0;
    let version = health
        .metadata()
        .get(crate::metrics::VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let serving = health.into_inner().status()
        == tonic_health::pb::health_check_response::ServingStatus::Serving;
    let checkpoint = cl
        .audit()
        .get_latest_checkpoint(cl.request(pb::GetLatestCheckpointRequest {})?)
        .await;
    let restore = crate::pb::admin_service_client::AdminServiceClient::new(cl.channel())
        .get_restore_state(cl.request(pb::GetRestoreStateRequest {})?)
        .await
        .ok()
        .map(|r| r.into_inner())
        .filter(|r| r.restored);
    // A server without the call (older) says nothing about its writer.
    let writer = crate::pb::admin_service_client::AdminServiceClient::new(cl.channel())
        .get_writer_state(cl.request(pb::GetWriterStateRequest {})?)
        .await
        .ok()
        .map(|r| r.into_inner());
    // A cluster's follower has no writer of its own: it forwards writes to the leader.
    let follower = writer
        .as_ref()
        .is_some_and(|w| w.stopped && w.cause == "not_leader");
    let stopped = writer.as_ref().is_some_and(|w| w.stopped) && !follower;
    if args.json {
        let mut v = serde_json::json!({
            "serving": serving,
            "version": version,
            "round_trip_ms": round_trip_ms,
        });
        match &checkpoint {
            Ok(c) => {
                let c = c.get_ref();
                v["log_size"] = c.size.into();
                v["checkpoint"] = c.note.clone().into();
            }
            Err(e) => v["checkpoint_error"] = format!("{:?}: {}", e.code(), e.message()).into(),
        }
        if let Some(r) = &restore {
            v["restore"] = serde_json::json!({
                "old_origin": r.old_origin,
                "new_origin": r.new_origin,
                "backup_size": r.backup_size,
                "last_size": r.last_size,
                "replayed_to": r.replayed_to,
                "replayed": r.replayed,
                "writes_refused": r.writes_refused,
                "refusal": r.refusal,
            });
        }
        if let Some(w) = &writer {
            v["writer"] = serde_json::json!({
                "stopped": w.stopped,
                "cause": w.cause,
                "message": w.message,
                "since_ms": w.since_ms,
                "stops": w.stops,
                "error": w.error,
            });
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "health:     {}",
            if serving { "SERVING" } else { "NOT SERVING" }
        );
        println!("version:    {version}");
        println!("round trip: {round_trip_ms:.1} ms");
        match &checkpoint {
            Ok(c) => {
                let c = c.get_ref();
                println!("log size:   {}", c.size);
                print!("checkpoint:\n{}", c.note);
            }
            Err(e) => println!("checkpoint: not readable ({:?}: {})", e.code(), e.message()),
        }
        if let Some(r) = &restore {
            println!(
                "restored:   from log {} at size {}; continues as {}{}",
                r.old_origin,
                r.backup_size,
                r.new_origin,
                if r.replayed_to > 0 {
                    format!(", old log replayed to size {}", r.replayed_to)
                } else {
                    String::new()
                }
            );
            if r.writes_refused {
                println!("WRITES REFUSED: {}", r.refusal);
            }
        }
        if follower {
            println!("cluster:    a follower: writes are forwarded to the node holding the lease");
        } else if let Some(w) = writer.as_ref().filter(|w| w.stopped) {
            println!(
                "WRITES STOPPED since {} ({}): {}",
                prost_types::Timestamp {
                    seconds: w.since_ms.div_euclid(1000),
                    nanos: (w.since_ms.rem_euclid(1000) * 1_000_000) as i32,
                },
                w.cause,
                w.message
            );
            if !w.error.is_empty() {
                println!("store error: {}", w.error);
            }
        }
    }
    if !serving {
        bail!("the server is not serving");
    }
    if stopped {
        bail!("the server serves reads, but its writes are stopped");
    }
    Ok(())
}
