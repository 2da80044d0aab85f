//! The command line: `aina serve | import | verify | reindex | migrate-index |
//! user | token | audit | send`.
//!
//! Every command takes the same settings as `serve` (flags, `AINA_*`, config
//! file), so `import`, `verify` and `reindex` work on the archive the server uses.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{AppState, Databases, Server, open_database};
use crate::auth::Role;
use crate::config::{Config, Settings};
use crate::index::{ConflictPolicy, InsertOutcome};
use crate::ingest::{self, Disposition};
use crate::store::container::{self, ContainerIndex, ContainerOptions};
use crate::store::{ObjectInfo, Store};

/// Aina: a DICOM archive with DICOMweb and a browser viewer.
#[derive(Debug, Parser)]
#[command(name = "aina", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the archive: DICOMweb on --http (root /dicomweb).
    Serve {
        #[command(flatten)]
        settings: Settings,
        /// On an empty archive, first load generated sample studies (fluorography,
        /// chest X-ray, 4-view mammography; Latin, Cyrillic and Kazakh names).
        #[arg(long)]
        demo: bool,
        /// Size of the demo images, 1.0 = real size.
        #[arg(long, default_value_t = 1.0, requires = "demo")]
        demo_scale: f32,
    },
    /// Import DICOM files and folders (recursive) through the ingest path.
    Import {
        #[command(flatten)]
        settings: Settings,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Files ingested at once [default: number of CPUs].
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Check that every indexed object exists, decompresses and matches its SHA-256;
    /// list objects no row points at.
    Verify {
        #[command(flatten)]
        settings: Settings,
        /// Remove rows whose object is missing and index orphan objects.
        #[arg(long)]
        repair: bool,
    },
    /// Rebuild the index from the objects alone (into the configured, e.g. new,
    /// database).
    Reindex {
        #[command(flatten)]
        settings: Settings,
    },
    /// Copy the index into another database without re-reading the objects, e.g.
    /// from the embedded SQLite to PostgreSQL; the target must be empty. Then
    /// start the server with `--database` set to the target.
    MigrateIndex {
        /// The index to copy (sqlite://PATH or postgres://…); only read.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The new index (sqlite://PATH or postgres://…); created and migrated.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Local users of the viewer and the API (docs/security.md).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// API tokens for devices and EHRs (docs/security.md).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Send DICOM files and folders (recursive) to a DICOM node with C-STORE,
    /// calling as our AE title (--ae-title).
    Send {
        #[command(flatten)]
        settings: Settings,
        /// The node's host name or address.
        host: String,
        /// The node's DICOM port.
        port: u16,
        /// The node's AE title (called AE title).
        aet: String,
        /// PS3.10 files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user; the password is read from stdin (one line) or --password-file.
    Add {
        #[command(flatten)]
        settings: Settings,
        username: String,
        #[arg(long, value_enum)]
        role: Role,
        /// A file whose first line is the password (never give it on the command line).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List users.
    List {
        #[command(flatten)]
        settings: Settings,
    },
    /// Disable a user and end the user's sessions.
    Disable {
        #[command(flatten)]
        settings: Settings,
        username: String,
    },
    /// Enable a disabled user.
    Enable {
        #[command(flatten)]
        settings: Settings,
        username: String,
    },
    /// Set a new password (stdin or --password-file); ends the user's sessions.
    Passwd {
        #[command(flatten)]
        settings: Settings,
        username: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token; it is printed once, on stdout, and never shown again.
    Create {
        #[command(flatten)]
        settings: Settings,
        /// Who or what uses it (a device, an EHR interface).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Days until it expires, 1 to 1830.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        settings: Settings,
    },
    /// Revoke the token with this id, or every token with this name.
    Revoke {
        #[command(flatten)]
        settings: Settings,
        id_or_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Write stored audit events as DICOM audit messages (PS3.15 A.5), one
    /// XML message per line.
    Export {
        #[command(flatten)]
        settings: Settings,
        /// From this time, Unix milliseconds.
        #[arg(long)]
        since_ms: Option<i64>,
        /// Before this time, Unix milliseconds.
        #[arg(long)]
        until_ms: Option<i64>,
        /// The file to write (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs a command; the exit code is non-zero when anything failed.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve {
            settings,
            demo,
            demo_scale,
        } => {
            let state = open(settings).await?;
            if demo {
                load_demo(&state, demo_scale).await?;
            }
            let server = Server::start(state).await?;
            server.wait().await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Import {
            settings,
            paths,
            jobs,
        } => import(open(settings).await?, paths, jobs).await,
        Command::Verify { settings, repair } => verify(open(settings).await?, repair).await,
        Command::Reindex { settings } => reindex(open(settings).await?).await,
        Command::MigrateIndex { from, to } => migrate_index(&from, &to).await,
        Command::Send {
            settings,
            host,
            port,
            aet,
            paths,
        } => send(settings, &host, port, &aet, &paths).await,
        Command::User { action } => user(action).await,
        Command::Token { action } => token(action).await,
        Command::Audit { action } => audit(action).await,
    }
}

/// The accounts and audit log of the configured database, without starting
/// anything else.
async fn databases(settings: Settings) -> anyhow::Result<(Config, Databases)> {
    let config = settings.merge_file()?.resolve()?;
    let databases = open_database(&config.database).await?;
    Ok((config, databases))
}

/// A password from the first line of a file or of stdin.
fn read_password(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the password file {}", path.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line
        }
    };
    let password = text.lines().next().unwrap_or_default().to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password given (stdin or --password-file)"
    );
    Ok(password)
}

fn iso_time(ms: i64) -> String {
    crate::auth::audit::rfc3339(ms)
}

async fn user(action: UserAction) -> anyhow::Result<std::process::ExitCode> {
    match action {
        UserAction::Add {
            settings,
            username,
            role,
            password_file,
        } => {
            let password = read_password(password_file.as_ref())?;
            let (_, db) = databases(settings).await?;
            db.accounts.create_user(&username, role, &password).await?;
            eprintln!("user {username} added ({role})");
        }
        UserAction::List { settings } => {
            let (_, db) = databases(settings).await?;
            for u in db.accounts.users().await? {
                println!(
                    "{}\t{}\t{}\tcreated {}",
                    u.username,
                    u.role,
                    if u.disabled { "disabled" } else { "enabled" },
                    iso_time(u.created_at_ms)
                );
            }
        }
        UserAction::Disable { settings, username } => {
            let (_, db) = databases(settings).await?;
            db.accounts.set_disabled(&username, true).await?;
            eprintln!("user {username} disabled; their sessions are ended");
        }
        UserAction::Enable { settings, username } => {
            let (_, db) = databases(settings).await?;
            db.accounts.set_disabled(&username, false).await?;
            eprintln!("user {username} enabled");
        }
        UserAction::Passwd {
            settings,
            username,
            password_file,
        } => {
            let password = read_password(password_file.as_ref())?;
            let (_, db) = databases(settings).await?;
            db.accounts.set_password(&username, &password).await?;
            eprintln!("password of {username} changed; their sessions are ended");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn token(action: TokenAction) -> anyhow::Result<std::process::ExitCode> {
    match action {
        TokenAction::Create {
            settings,
            name,
            role,
            days,
        } => {
            let (_, db) = databases(settings).await?;
            let lifetime = Duration::from_secs(days.saturating_mul(86_400));
            let created = db.accounts.create_token(&name, role, lifetime).await?;
            println!("{}", created.token);
            eprintln!(
                "token {} ({name}, {role}) expires {}; it is shown only this once",
                created.info.id,
                iso_time(created.info.expires_at_ms)
            );
        }
        TokenAction::List { settings } => {
            let (_, db) = databases(settings).await?;
            let now = crate::index::sql::now_ms();
            for t in db.accounts.tokens().await? {
                let state = match t.revoked_at_ms {
                    Some(at) => format!("revoked {}", iso_time(at)),
                    None if t.expires_at_ms <= now => "expired".to_owned(),
                    None => format!("expires {}", iso_time(t.expires_at_ms)),
                };
                let used = t.last_used_at_ms.map_or_else(
                    || "never used".to_owned(),
                    |at| format!("last used {}", iso_time(at)),
                );
                println!("{}\t{}\t{}\t{state}\t{used}", t.id, t.name, t.role);
            }
        }
        TokenAction::Revoke {
            settings,
            id_or_name,
        } => {
            let (_, db) = databases(settings).await?;
            let n = db.accounts.revoke_token(&id_or_name).await?;
            if n == 0 {
                eprintln!("no live token with id or name {id_or_name:?}");
                return Ok(std::process::ExitCode::FAILURE);
            }
            eprintln!("{n} token(s) revoked");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn audit(action: AuditAction) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let AuditAction::Export {
        settings,
        since_ms,
        until_ms,
        out,
    } = action;
    let (config, db) = databases(settings).await?;
    let mut sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let source_id = crate::auth::audit::source_id(&config);
    let mut filter = crate::auth::audit::AuditFilter {
        since_ms,
        until_ms,
        limit: Some(1000),
        ..Default::default()
    };
    let mut written = 0u64;
    loop {
        let page = db.audit_log.search(&filter).await?;
        let Some(last) = page.last() else { break };
        filter.after = Some(last.seq);
        for record in &page {
            writeln!(
                sink,
                "{}",
                crate::auth::audit::audit_message(&record.event, &source_id)
            )?;
        }
        written += page.len() as u64;
    }
    sink.flush()?;
    // Reading the audit log is itself audited (PS3.15 A.5.3.2 Audit Log Used).
    let operator = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "operator".to_owned());
    db.audit_log
        .append(&[crate::auth::audit::AuditEvent {
            time_ms: crate::index::sql::now_ms(),
            actor: operator,
            role: None,
            method: crate::auth::Method::Cli,
            source: "local".to_owned(),
            action: crate::auth::audit::Action::AuditRead,
            outcome: crate::auth::audit::Outcome::Success,
            status: None,
            patient_id: None,
            study_uid: None,
            series_uid: None,
            sop_uid: None,
            detail: Some(format!(
                "aina audit export{}{}: {written} events",
                since_ms.map_or(String::new(), |ms| format!(" --since-ms {ms}")),
                until_ms.map_or(String::new(), |ms| format!(" --until-ms {ms}")),
            )),
        }])
        .await?;
    eprintln!("{written} audit messages written");
    Ok(std::process::ExitCode::SUCCESS)
}

/// `aina migrate-index`: one transaction on the target, a progress line per table.
async fn migrate_index(from: &str, to: &str) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}")?);
    let report = crate::index::migrate::migrate(from, to, |table, rows| {
        bar.set_message(format!("{table}: {rows} rows"));
        bar.tick();
    })
    .await
    .with_context(|| {
        format!(
            "migrating the index from {} to {}",
            crate::app::redact_url(from),
            crate::app::redact_url(to)
        )
    })?;
    bar.finish_and_clear();
    println!(
        "copied {} studies, {} series, {} instances, {} users, {} tokens, {} audit events, \
         {} changes, {} share links from {} to {} in {:.1} s",
        report.studies,
        report.series,
        report.instances,
        report.users,
        report.tokens,
        report.audit_events,
        report.changes,
        report.shares,
        crate::app::redact_url(from),
        crate::app::redact_url(to),
        started.elapsed().as_secs_f64()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `aina send`: C-STORE SCU; a summary on stdout, each failure on stderr.
async fn send(
    settings: Settings,
    host: &str,
    port: u16,
    aet: &str,
    paths: &[PathBuf],
) -> anyhow::Result<std::process::ExitCode> {
    let config = settings.merge_file()?.resolve()?;
    let files = files_in(paths)?;
    let started = Instant::now();
    let report = crate::dimse::scu::send_files(&config.ae_title, aet, host, port, &files).await;
    for (path, reason) in &report.failed {
        eprintln!("failed: {}: {reason}", path.display());
    }
    println!(
        "sent {} of {} files to {aet}@{host}:{port} ({} with warnings), {} failed, in {:.1} s",
        report.completed + report.warning,
        files.len(),
        report.warning,
        report.failed.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if report.failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn open(settings: Settings) -> anyhow::Result<AppState> {
    let config = settings.merge_file()?.resolve()?;
    AppState::open(config).await
}

/// Loads the generated demo set when the archive holds no study yet.
async fn load_demo(state: &AppState, scale: f32) -> anyhow::Result<()> {
    let any =
        aina_dicomweb::qido::parse_query(aina_dicomweb::qido::QueryLevel::Study, "limit=1", 1)?;
    if !state
        .index
        .search(&any, &Default::default())
        .await?
        .rows
        .is_empty()
    {
        tracing::info!("archive is not empty; demo data not loaded");
        return Ok(());
    }
    let started = Instant::now();
    let opts = aina_sample::Options { seed: 2026, scale };
    let set = tokio::task::spawn_blocking(move || aina_sample::demo_set(&opts)).await?;
    let count = set.len();
    for g in set {
        let slot = state.ingest.slot().await;
        state
            .ingest
            .ingest(slot, Bytes::from(g.bytes), None)
            .await
            .map_err(|r| anyhow::anyhow!("demo instance {}: {}", g.file_name, r.error))?;
    }
    tracing::info!(
        instances = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo data loaded"
    );
    Ok(())
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The files named, and those in the folders named (recursively), sorted.
fn files_in(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            for entry in walkdir::WalkDir::new(p).follow_links(true) {
                let entry = entry.with_context(|| format!("walking {}", p.display()))?;
                if entry.file_type().is_file() {
                    files.push(entry.into_path());
                }
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            anyhow::bail!("{} is neither a file nor a folder", p.display());
        }
    }
    files.sort();
    Ok(files)
}

async fn import(
    state: AppState,
    paths: Vec<PathBuf>,
    jobs: Option<usize>,
) -> anyhow::Result<std::process::ExitCode> {
    let files = files_in(&paths)?;
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let bar = progress(files.len() as u64, "files");
    let started = Instant::now();
    let bytes_done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut stored = 0u64;
    let mut already = 0u64;
    let mut errors = Vec::new();
    let mut results = futures::stream::iter(files.into_iter().map(|path| {
        let ingest = state.ingest.clone();
        let bytes_done = bytes_done.clone();
        async move {
            let slot = ingest.slot().await;
            let data = match tokio::fs::read(&path).await {
                Ok(d) => d,
                Err(e) => return (path, Err(format!("cannot read: {e}"))),
            };
            bytes_done.fetch_add(data.len() as u64, Ordering::Relaxed);
            let r = ingest
                .ingest(slot, Bytes::from(data), None)
                .await
                .map_err(|r| format!("{}", ErrorChain(&r.error)));
            (path, r)
        }
    }))
    .buffer_unordered(jobs);
    while let Some((path, result)) = results.next().await {
        match result {
            Ok(a) if a.disposition == Disposition::AlreadyStored => already += 1,
            Ok(_) => stored += 1,
            Err(e) => {
                failures.fetch_add(1, Ordering::Relaxed);
                bar.suspend(|| eprintln!("failed: {}: {e}", path.display()));
                errors.push(path);
            }
        }
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{:.1} MB/s, {} failed",
            bytes_done.load(Ordering::Relaxed) as f64 / 1e6 / secs,
            failures.load(Ordering::Relaxed)
        ));
        bar.inc(1);
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {stored} new, {already} already stored, {} failed; {:.1} MB in {:.1} s ({:.1} MB/s)",
        errors.len(),
        bytes_done.load(Ordering::Relaxed) as f64 / 1e6,
        secs,
        bytes_done.load(Ordering::Relaxed) as f64 / 1e6 / secs.max(1e-3)
    );
    Ok(if errors.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// An error with its causes on one line.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut s = self.0.source();
        while let Some(e) = s {
            write!(f, ": {e}")?;
            s = e.source();
        }
        Ok(())
    }
}

/// What `verify` found wrong with one indexed object.
#[derive(Debug)]
enum Problem {
    Missing,
    Damaged(String),
}

async fn check_object(store: &Store, key: &str, sha256: &str) -> Option<Problem> {
    let object = match store.get(key).await {
        Ok(o) => o,
        Err(crate::store::StoreError::NotFound { .. }) => return Some(Problem::Missing),
        Err(e) => return Some(Problem::Damaged(ErrorChain(&e).to_string())),
    };
    let sha256 = sha256.to_owned();
    tokio::task::spawn_blocking(move || match container::decode_all(&object) {
        Ok(original) => {
            use sha2::Digest;
            let actual = hex::encode(sha2::Sha256::digest(&original));
            (actual != sha256)
                .then(|| Problem::Damaged(format!("SHA-256 is {actual}, the index says {sha256}")))
        }
        Err(e) => Some(Problem::Damaged(ErrorChain(&e).to_string())),
    })
    .await
    .unwrap_or_else(|e| Some(Problem::Damaged(e.to_string())))
}

async fn verify(state: AppState, repair: bool) -> anyhow::Result<std::process::ExitCode> {
    let mut indexed = std::collections::HashSet::new();
    let mut checked = 0u64;
    let mut missing = Vec::new();
    let mut damaged = Vec::new();
    let mut after: Option<String> = None;
    let bar = progress(0, "objects checked");
    loop {
        let page = state.index.objects(after.as_deref(), 500).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        bar.inc_length(page.len() as u64);
        let problems: Vec<_> = futures::stream::iter(page.into_iter().map(|(key, sha)| {
            let store = state.store.clone();
            async move {
                let p = check_object(&store, &key, &sha).await;
                (key, p)
            }
        }))
        .buffered(4)
        .collect()
        .await;
        for (key, p) in problems {
            checked += 1;
            bar.inc(1);
            match p {
                None => {}
                Some(Problem::Missing) => {
                    bar.suspend(|| println!("missing object: {key}"));
                    missing.push(key.clone());
                }
                Some(Problem::Damaged(why)) => {
                    bar.suspend(|| println!("damaged object: {key}: {why}"));
                    damaged.push(key.clone());
                }
            }
            indexed.insert(key);
        }
    }
    bar.finish_and_clear();
    let mut orphans = Vec::new();
    // Objects of deleted or replaced versions that were not removed: not
    // orphans to index again, leftovers to remove.
    let mut leftovers = Vec::new();
    for o in state.store.list_instances().await? {
        if indexed.contains(&o.key) {
            continue;
        }
        if state.index.was_deleted(&o.key).await? {
            println!(
                "deleted instance's object left behind: {} ({} bytes)",
                o.key, o.size
            );
            leftovers.push(o);
        } else {
            orphans.push(o);
        }
    }
    // An orphan is the harmless leftover of an ingest interrupted between the
    // object write and the index row (the sender got no acknowledgement); it is
    // listed, and `--repair` indexes it, but it is not an inconsistency.
    for o in &orphans {
        println!("orphan object (no index row): {} ({} bytes)", o.key, o.size);
    }
    println!(
        "verified {checked} indexed objects: {} missing, {} damaged; {} orphan objects; \
         {} objects of deleted instances",
        missing.len(),
        damaged.len(),
        orphans.len(),
        leftovers.len()
    );
    if !repair {
        let clean = missing.is_empty() && damaged.is_empty();
        return Ok(if clean {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        });
    }
    for key in &missing {
        state.index.remove_object(key).await?;
        println!("repaired: removed the row of missing object {key}");
    }
    let mut failed = 0;
    for o in &leftovers {
        match ingest::remove_deleted_object(&*state.index, &state.store, &o.key).await {
            Ok(true) => println!("repaired: removed the deleted instance's object {}", o.key),
            Ok(false) => println!("kept {}: its instance was stored again", o.key),
            Err(e) => {
                failed += 1;
                println!("cannot remove {}: {e:#}", o.key);
            }
        }
    }
    for o in &orphans {
        match index_object(&state, &o.key).await {
            Ok(outcome) => println!("repaired: indexed orphan {} ({outcome:?})", o.key),
            Err(e) => {
                failed += 1;
                println!("cannot index orphan {}: {e:#}", o.key);
            }
        }
    }
    if !damaged.is_empty() {
        println!(
            "{} damaged objects cannot be repaired here; restore them from a backup",
            damaged.len()
        );
    }
    Ok(if damaged.is_empty() && failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Indexes an object already in the store (orphan or reindex): the original is
/// reassembled and described anew, the stored object itself is kept as it is.
async fn index_object(state: &AppState, key: &str) -> anyhow::Result<InsertOutcome> {
    let object = state.store.get(key).await?;
    let stored_bytes = object.len() as u64;
    let prepared = tokio::task::spawn_blocking(move || {
        let table = container::index_from_object(&object)?;
        let original = container::decode_all(&object)?;
        let prepared = ingest::prepare(&original, None, &ContainerOptions::default())
            .map_err(|r| anyhow::anyhow!("{}", ErrorChain(&r.error)))?;
        Ok::<_, anyhow::Error>((prepared, table))
    })
    .await??;
    let (prepared, table): (ingest::Prepared, ContainerIndex) = prepared;
    let mut record = prepared.record;
    // The row must describe the object as stored, whatever the container options
    // are today.
    record.object_key = key.to_owned();
    record.container_index = table.to_bytes();
    record.stored_bytes = stored_bytes;
    Ok(state
        .index
        .insert_instance(&record, ConflictPolicy::KeepBoth)
        .await?)
}

async fn reindex(state: AppState) -> anyhow::Result<std::process::ExitCode> {
    let objects = state.store.list_instances().await?;
    let count = objects.len();
    let bar = progress(count as u64, "objects reindexed");
    let started = Instant::now();
    let mut failed = 0u64;
    // The versions of one instance (keep-both; a move to another series) go
    // in one after another, oldest write first, so that the one stored last is
    // the one served again, as before. (A version sent again onto local files
    // keeps its first write's time: the key existed.)
    let mut versions: std::collections::HashMap<String, Vec<ObjectInfo>> = Default::default();
    for o in objects {
        versions
            .entry(Store::sop_of_key(&o.key).to_owned())
            .or_default()
            .push(o);
    }
    let mut results = futures::stream::iter(versions.into_values().map(|mut group| {
        group.sort_by_key(|o| o.modified);
        let state = state.clone();
        async move {
            let mut results = Vec::with_capacity(group.len());
            for o in group {
                let r = index_object(&state, &o.key).await;
                results.push((o.key, r));
            }
            results
        }
    }))
    .buffer_unordered(4);
    while let Some(group) = results.next().await {
        for (key, r) in group {
            if let Err(e) = r {
                failed += 1;
                bar.suspend(|| eprintln!("cannot index {key}: {e:#}"));
            }
            bar.inc(1);
        }
    }
    bar.finish();
    println!(
        "reindexed {count} objects ({failed} failed) in {:.1?}",
        Duration::from_secs_f64(started.elapsed().as_secs_f64())
    );
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
