//! `certseal usecode …` and `certseal usage`: a holder agent's commands, for one holder.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::ClientArgs;
use super::client::{Client, explain};
use super::output::{print_list, print_one};
use crate::pb;
use crate::pb::holder_service_client::HolderServiceClient;

/// The holder an agent acts for.
#[derive(Debug, Args)]
pub struct HolderArgs {
    /// The holder's kind: person or organisation.
    #[arg(long, default_value = "person")]
    pub holder_kind: String,
}

/// `certseal usecode …` (role holder_agent).
#[derive(Debug, Subcommand)]
pub enum UseCodeCommand {
    /// Create a use code: the holder lets a department (or anyone) check one licence. Prints
    /// the code and its QR string once; the registry keeps only the code's hash.
    Create {
        /// The holder's ID (resident ID, or credit code with --holder-kind organisation).
        holder: String,
        /// The licence.
        #[arg(long)]
        licence: String,
        /// A purpose code the check may state; repeat for more.
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// A personal field the check sees beyond the public ones; repeat for more.
        #[arg(long = "field")]
        fields: Vec<String>,
        /// The department the code is for (credit code), or `anyone`.
        #[arg(long)]
        audience: String,
        /// How long it is valid: 5m to 30d (s, m, h or d).
        #[arg(long, default_value = "1h")]
        valid_for: String,
        /// How many checks it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[command(flatten)]
        holder_args: HolderArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The holder's use codes, newest first.
    List {
        /// The holder's ID.
        holder: String,
        #[command(flatten)]
        holder_args: HolderArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke one of the holder's use codes by its ID.
    Revoke {
        /// The holder's ID.
        holder: String,
        /// The code's ID (from `usecode list`).
        code_id: String,
        #[command(flatten)]
        holder_args: HolderArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `certseal usage HOLDER`: every check of the holder's licences (role holder_agent).
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The holder's ID.
    pub holder: String,
    #[command(flatten)]
    pub holder_args: HolderArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn holder_ref(id: String, args: &HolderArgs) -> anyhow::Result<pb::HolderRef> {
    let kind = match args.holder_kind.as_str() {
        "person" => pb::HolderKind::Person,
        "organisation" | "organization" => pb::HolderKind::Organisation,
        other => bail!("--holder-kind: person or organisation, not '{other}'"),
    };
    Ok(pb::HolderRef {
        kind: kind as i32,
        id,
    })
}

/// Seconds in "90s", "15m", "2h", "7d".
fn duration_secs(text: &str) -> anyhow::Result<u32> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u32 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("--valid-for: a number and s, m, h or d, such as 2h"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--valid-for: a number and s, m, h or d, such as 2h"),
    };
    n.checked_mul(scale)
        .ok_or_else(|| anyhow::anyhow!("--valid-for is too long"))
}

fn info_json(c: &pb::UseCodeInfo) -> Value {
    let audience = match c.audience.as_ref().and_then(|a| a.audience.as_ref()) {
        Some(pb::use_code_audience::Audience::Department(d)) => d.clone(),
        Some(pb::use_code_audience::Audience::Anyone(_)) => "anyone".into(),
        None => String::new(),
    };
    json!({
        "code_id": c.code_id,
        "licence_id": c.licence_id,
        "purposes": c.purposes.join(","),
        "fields": c.fields.join(","),
        "audience": audience,
        "created_at": c.created_at.as_ref().map(ToString::to_string),
        "not_after": c.not_after.as_ref().map(ToString::to_string),
        "uses": c.uses,
        "used": c.used,
        "revoked_at": c.revoked_at.as_ref().map(ToString::to_string),
        "live": c.live,
        "agent": c.agent,
    })
}

/// Runs `certseal usecode …`.
pub async fn usecode(c: UseCodeCommand) -> anyhow::Result<()> {
    use UseCodeCommand as U;
    let (U::Create { client, .. } | U::List { client, .. } | U::Revoke { client, .. }) = &c;
    let cl = Client::connect(client).await?;
    let json = client.json;
    let mut holders = HolderServiceClient::new(cl.channel().clone());
    match c {
        U::Create {
            holder,
            licence,
            purposes,
            fields,
            audience,
            valid_for,
            uses,
            holder_args,
            ..
        } => {
            let audience = pb::UseCodeAudience {
                audience: Some(if audience == "anyone" {
                    pb::use_code_audience::Audience::Anyone(true)
                } else {
                    pb::use_code_audience::Audience::Department(audience)
                }),
            };
            let r = holders
                .create_use_code(cl.request(pb::CreateUseCodeRequest {
                    holder: Some(holder_ref(holder, &holder_args)?),
                    licence_id: licence,
                    purposes,
                    fields,
                    audience: Some(audience),
                    validity_seconds: duration_secs(&valid_for)?,
                    uses,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            let mut v = r.info.as_ref().map(info_json).unwrap_or(json!({}));
            v["code"] = json!(r.code);
            v["qr"] = json!(r.qr);
            v["log_index"] = json!(r.log_index);
            print_one(&v, json);
        }
        U::List {
            holder,
            holder_args,
            ..
        } => {
            let holder = holder_ref(holder, &holder_args)?;
            let mut items = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = holders
                    .list_use_codes(cl.request(pb::ListUseCodesRequest {
                        holder: Some(holder.clone()),
                        page_size: 0,
                        page_token,
                    })?)
                    .await
                    .map_err(explain)?
                    .into_inner();
                items.extend(r.codes.iter().map(info_json));
                page_token = r.next_page_token;
                if page_token.is_empty() {
                    break;
                }
            }
            print_list(
                &items,
                &["code_id", "licence_id", "audience", "used", "uses", "live"],
                "",
                json,
            );
        }
        U::Revoke {
            holder,
            code_id,
            holder_args,
            ..
        } => {
            let r = holders
                .revoke_use_code(cl.request(pb::RevokeUseCodeRequest {
                    holder: Some(holder_ref(holder, &holder_args)?),
                    code_id,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            print_one(&info_json(&r), json);
        }
    }
    Ok(())
}

/// Runs `certseal usage HOLDER`.
pub async fn usage(a: UsageArgs) -> anyhow::Result<()> {
    let cl = Client::connect(&a.client).await?;
    let mut holders = HolderServiceClient::new(cl.channel().clone());
    let holder = holder_ref(a.holder, &a.holder_args)?;
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = holders
            .list_usage(cl.request(pb::ListUsageRequest {
                holder: Some(holder.clone()),
                page_size: 0,
                page_token,
            })?)
            .await
            .map_err(explain)?
            .into_inner();
        items.extend(r.usage.iter().map(|u| {
            json!({
                "checked_at": u.checked_at.as_ref().map(ToString::to_string),
                "licence_id": u.licence_id,
                "department": u.department,
                "department_name": u.department_name,
                "purpose": u.purpose.as_ref().map(|p| format!("{} {}", p.code, p.text)),
                "basis": u.basis().as_str_name().trim_start_matches("CHECK_BASIS_"),
                "use_code_id": u.use_code_id,
                "result": u.indication().as_str_name(),
                "sub_indication": u.sub_indication().as_str_name(),
                "receipt_id": u.receipt_id,
                "log_index": u.log_index,
            })
        }));
        page_token = r.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    print_list(
        &items,
        &[
            "checked_at",
            "department_name",
            "purpose",
            "basis",
            "result",
            "log_index",
        ],
        "",
        a.client.json,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validities_read_with_their_unit() {
        assert_eq!(duration_secs("90").unwrap(), 90);
        assert_eq!(duration_secs("15m").unwrap(), 900);
        assert_eq!(duration_secs("2h").unwrap(), 7200);
        assert_eq!(duration_secs("30d").unwrap(), 2_592_000);
        assert!(duration_secs("2w").is_err());
        assert!(duration_secs("h").is_err());
    }
}
