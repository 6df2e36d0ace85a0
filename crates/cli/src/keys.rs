//! `easel keys`, `easel projects` and `easel usage`: projects, their API
//! keys and what they spent, read and written
//! straight to the configured database (the same `--config`, environment
//! and `database.url` as `easel serve`), so the first admin key of a fresh
//! deployment needs no running server. The admin routes
//! (`/v1/admin/projects`, `/v1/admin/keys`) do the same over HTTP.
//!
//! `easel keys create` without `--project` keeps its first meaning: print a
//! new key and the `[[auth.api_keys]]` entry that accepts it, touching no
//! database.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use easel_config::keys::{Scope, create_key};
use easel_config::{Config, Overrides};
use easel_core::{Limits, ProjectId};
use easel_server::tenancy::keys::KeySpec;
use easel_store::{ApiKeyRecord, Db, NewAuditEvent, Project};

/// `easel keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key. With `--project`: stored in the database (its secret
    /// is printed once). Without: print a key and the config entry that
    /// accepts it.
    Create(CreateKeyArgs),
    /// List the database's keys (never their secrets).
    List {
        /// Only this project's keys.
        #[arg(long)]
        project: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a database key: it stops working at once.
    Revoke {
        /// The key's id (`key_…`), as `easel keys list` shows it.
        id: String,
    },
    /// Replace a database key by a new one with the same project, name,
    /// scopes and limits; the old one stops after the grace period.
    Rotate {
        /// The key's id.
        id: String,
        /// Seconds the old key keeps working (0 to 604800).
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
}

/// Flags of `easel keys create`.
#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// Name recorded for the key's holder.
    #[arg(long, default_value = "default")]
    name: String,
    /// Store the key in the database, acting in this project (which must
    /// exist: `easel projects create`).
    #[arg(long)]
    project: Option<String>,
    /// Scopes, comma-separated: generate, read, review, admin. Default:
    /// generate.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Days until the key stops working; default: never.
    #[arg(long)]
    expires_in_days: Option<u32>,
    /// Grant the admin scope too (same as adding `admin` to --scopes).
    #[arg(long)]
    admin: bool,
}

/// `easel projects …`.
#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Create a project.
    Create {
        /// Its name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// Give it its own `project` label on metrics.
        #[arg(long)]
        billable: bool,
        /// Its limits as JSON, e.g. '{"requests_per_minute": 60, "max_n": 4}'.
        #[arg(long)]
        limits: Option<String>,
    },
    /// List the projects.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) async fn open(config_file: Option<PathBuf>) -> anyhow::Result<Db> {
    let config = Config::load(&Overrides {
        config_file,
        ..Default::default()
    })?;
    let url = config.database.url_or_default(&config.data_dir);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
    Db::connect(&url).await.with_context(|| {
        format!(
            "opening the database {}",
            easel_config::storage::redact_password(&url)
        )
    })
}

fn audit(
    event: &str,
    project: &ProjectId,
    subject: &str,
    detail: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent::new(event)
        .actor("cli")
        .subject(subject)
        .project(project)
        .detail(detail)
}

/// Runs `easel keys`.
pub fn keys(config_file: Option<PathBuf>, command: KeysCommand) -> anyhow::Result<()> {
    if let KeysCommand::Create(args) = &command
        && args.project.is_none()
    {
        return print_config_entry(args);
    }
    runtime()?.block_on(async {
        let db = open(config_file).await?;
        match command {
            KeysCommand::Create(args) => {
                let mut scopes = args.scopes.clone();
                if scopes.is_empty() {
                    scopes.push("generate".into());
                }
                if args.admin {
                    scopes.push("admin".into());
                }
                let now = db.now();
                let expires = args
                    .expires_in_days
                    .map(|d| now + chrono::Duration::days(i64::from(d)));
                let project = args.project.as_deref().unwrap_or_default();
                let spec = KeySpec::validate(project, &args.name, &scopes, Limits::default(), expires, now)
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                let (secret, new) = spec.mint();
                let key = db.insert_api_key(&new).await.map_err(|e| match e {
                    easel_store::StoreError::ProjectNotFound(p) => anyhow::anyhow!(
                        "project `{p}` does not exist; create it with `easel projects create {p}`"
                    ),
                    other => other.into(),
                })?;
                db.append_audit(audit(
                    "key.created",
                    &key.project,
                    &key.id,
                    serde_json::json!({ "name": key.name, "scopes": key.scopes, "prefix": key.prefix }),
                ))
                .await?;
                println!("API key {} for project `{}` (shown once; give it to the client):\n\n  {secret}\n", key.id, key.project);
                Ok(())
            }
            KeysCommand::List { project, json } => {
                let project = project
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse::<ProjectId>().map_err(|e| anyhow::anyhow!("{}", e.message)))
                    .transpose()?;
                let keys = db.api_keys(project.as_ref()).await?;
                if json {
                    let rows: Vec<_> = keys.iter().map(key_json).collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    print!("{}", key_table(&keys, db.now()));
                }
                Ok(())
            }
            KeysCommand::Revoke { id } => {
                let key = db.revoke_api_key(&id).await?;
                db.append_audit(audit(
                    "key.revoked",
                    &key.project,
                    &key.id,
                    serde_json::json!({ "name": key.name, "prefix": key.prefix }),
                ))
                .await?;
                println!("revoked {} ({} in project `{}`)", key.id, key.name, key.project);
                Ok(())
            }
            KeysCommand::Rotate { id, grace_seconds } => {
                if grace_seconds > easel_server::routes::keys::MAX_GRACE_SECONDS {
                    bail!("--grace-seconds must be from 0 to {}", easel_server::routes::keys::MAX_GRACE_SECONDS);
                }
                let old = db.api_key(&id).await?;
                if !old.is_active(db.now()) {
                    bail!("key {id} is revoked or expired; create a new one instead");
                }
                let spec = KeySpec::successor(&old);
                let (secret, new) = spec.mint();
                let until = db.now() + chrono::Duration::seconds(grace_seconds as i64);
                let key = db.rotate_api_key(&old.id, &new, until).await?;
                db.append_audit(audit(
                    "key.rotated",
                    &key.project,
                    &key.id,
                    serde_json::json!({ "replaces": old.id, "old_until": until.timestamp(), "prefix": key.prefix }),
                ))
                .await?;
                println!("API key {} replaces {} (shown once):\n\n  {secret}\n", key.id, old.id);
                Ok(())
            }
        }
    })
}

fn print_config_entry(args: &CreateKeyArgs) -> anyhow::Result<()> {
    let mut scopes: Vec<Scope> = Vec::new();
    for s in &args.scopes {
        scopes.push(s.parse().map_err(|e: String| anyhow::anyhow!(e))?);
    }
    if scopes.is_empty() {
        scopes.push(Scope::Generate);
    }
    if args.admin && !scopes.contains(&Scope::Admin) {
        scopes.push(Scope::Admin);
    }
    if args.expires_in_days.is_some() {
        bail!("--expires-in-days needs --project: config-file keys do not expire");
    }
    let (key, entry) = create_key(&args.name, &scopes);
    println!("API key (shown once; give it to the client):\n\n  {key}\n");
    println!("Add to easel.toml:\n\n{entry}");
    Ok(())
}

fn key_json(k: &ApiKeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": k.id, "project": k.project, "name": k.name, "prefix": k.prefix,
        "scopes": k.scopes, "limits": k.limits,
        "created_at": k.created_at.timestamp(),
        "expires_at": k.expires_at.map(|t| t.timestamp()),
        "revoked_at": k.revoked_at.map(|t| t.timestamp()),
        "last_used_at": k.last_used_at.map(|t| t.timestamp()),
    })
}

fn key_table(keys: &[ApiKeyRecord], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = format!(
        "{:<36} {:<16} {:<16} {:<18} {:<9} {}\n",
        "ID", "PROJECT", "NAME", "PREFIX", "STATUS", "SCOPES"
    );
    for k in keys {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.is_active(now) {
            "active"
        } else {
            "expired"
        };
        out.push_str(&format!(
            "{:<36} {:<16} {:<16} {:<18} {:<9} {}\n",
            k.id,
            k.project,
            k.name,
            k.prefix,
            status,
            k.scopes.join(",")
        ));
    }
    out
}

/// Runs `easel projects`.
pub fn projects(config_file: Option<PathBuf>, command: ProjectsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let db = open(config_file).await?;
        match command {
            ProjectsCommand::Create {
                name,
                billable,
                limits,
            } => {
                let id: ProjectId = name
                    .parse()
                    .map_err(|e: easel_core::ParamError| anyhow::anyhow!("{}", e.message))?;
                let limits: Limits = match limits {
                    Some(text) => {
                        serde_json::from_str(&text).context("--limits is not valid limits JSON")?
                    }
                    None => Limits::default(),
                };
                limits
                    .validate()
                    .map_err(|e| anyhow::anyhow!("--{}", e.message))?;
                let project = db
                    .create_project(&easel_store::NewProject {
                        id,
                        limits,
                        billable,
                        retention_seconds: None,
                    })
                    .await?;
                db.append_audit(audit(
                    "project.created",
                    &project.id,
                    project.id.as_str(),
                    serde_json::json!({ "limits": project.limits, "billable": project.billable }),
                ))
                .await?;
                println!("created project `{}`", project.id);
                Ok(())
            }
            ProjectsCommand::List { json } => {
                let projects = db.projects().await?;
                if json {
                    let rows: Vec<_> = projects.iter().map(project_json).collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    println!("{:<24} {:<9} LIMITS", "PROJECT", "BILLABLE");
                    for p in &projects {
                        println!(
                            "{:<24} {:<9} {}",
                            p.id,
                            p.billable,
                            serde_json::to_string(&p.limits)?
                        );
                    }
                }
                Ok(())
            }
        }
    })
}

fn project_json(p: &Project) -> serde_json::Value {
    serde_json::json!({
        "id": p.id, "limits": p.limits, "billable": p.billable,
        "created_at": p.created_at.timestamp(),
    })
}

/// Flags of `easel usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Start: RFC 3339 or Unix seconds; default 30 days before --until.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive): RFC 3339 or Unix seconds; default now.
    #[arg(long)]
    until: Option<String>,
    /// project, key, model or day.
    #[arg(long, default_value = "project")]
    group_by: String,
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_when(text: &str, flag: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(seconds) = text.parse::<i64>() {
        return chrono::DateTime::from_timestamp(seconds, 0)
            .with_context(|| format!("--{flag} {seconds} is out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| format!("--{flag} must be RFC 3339 or Unix seconds, got {text:?}"))
}

/// Runs `easel usage`: images, device seconds and cost from the
/// configured database (the same report as `GET /v1/usage`).
pub fn usage(config_file: Option<PathBuf>, args: UsageArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let db = open(config_file).await?;
        let until = match &args.until {
            Some(t) => parse_when(t, "until")?,
            None => db.now(),
        };
        let from = match &args.from {
            Some(t) => parse_when(t, "from")?,
            None => until - chrono::Duration::days(30),
        };
        if from >= until {
            bail!("--from must be before --until");
        }
        let group: easel_store::UsageGroup =
            args.group_by.parse().map_err(|e: String| anyhow::anyhow!("--group-by: {e}"))?;
        let project = args
            .project
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<ProjectId>().map_err(|e| anyhow::anyhow!("{}", e.message)))
            .transpose()?;
        let rows = db
            .usage(&easel_store::UsageQuery {
                from,
                until,
                project,
                group,
            })
            .await?;
        if args.json {
            let data: Vec<_> = rows
                .iter()
                .map(|r| serde_json::json!({"group": r.group, "images": r.images, "device_seconds": r.device_seconds, "cost": r.cost}))
                .collect();
            let report = serde_json::json!({
                "from": from.timestamp(), "until": until.timestamp(),
                "group_by": group.as_str(), "data": data,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{:<32} {:>10} {:>16} {:>14}", group.as_str().to_uppercase(), "IMAGES", "DEVICE_SECONDS", "COST");
            let (mut images, mut seconds, mut cost) = (0, 0.0, 0.0);
            for r in &rows {
                println!("{:<32} {:>10} {:>16.3} {:>14.6}", r.group, r.images, r.device_seconds, r.cost);
                images += r.images;
                seconds += r.device_seconds;
                cost += r.cost;
            }
            println!("{:<32} {:>10} {:>16.3} {:>14.6}", "TOTAL", images, seconds, cost);
        }
        Ok(())
    })
}
