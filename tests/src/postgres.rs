//! A throwaway PostgreSQL server for a test run: `initdb` into a fresh temporary directory,
//! `pg_ctl start` on a free loopback port (the socket in that directory too), stopped with
//! `pg_ctl stop -m fast` when dropped, also during a panic.
//!
//! PostgreSQL refuses to run as root, so when the suite runs as root the server's commands run
//! as `nobody` (through `su`), in a directory owned by `nobody`. Trust authentication is safe
//! here only because the server listens on 127.0.0.1 alone and lives for one test run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use crate::free_port;

/// The unprivileged account the server runs as when the suite runs as root.
const SERVER_USER: &str = "nobody";

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    running: bool,
}

impl Postgres {
    /// Initialises and starts a server; answers once it accepts connections.
    pub fn start() -> Result<Self> {
        let bin = server_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("um-pg-").tempdir()?;
        if as_root() {
            let status =
                Command::new("chown").arg(SERVER_USER).arg(dir.path()).status().context("running chown")?;
            anyhow::ensure!(status.success(), "chown {SERVER_USER} {} failed", dir.path().display());
        }
        let mut server = Self { dir, port: free_port()?, bin, running: false };
        let data = server.data_dir();
        server.run_as_server(&[
            &server.bin.join("initdb").display().to_string(),
            "-D",
            &data.display().to_string(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ])?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            server.port,
            server.dir.path().display()
        );
        // From here on, Drop stops whatever part of a start happened.
        server.running = true;
        server.run_as_server(&[
            &server.bin.join("pg_ctl").display().to_string(),
            "-D",
            &data.display().to_string(),
            "-o",
            &options,
            "-l",
            &server.dir.path().join("server.log").display().to_string(),
            "-w",
            "start",
        ])?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and answers its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let out = self.client("createdb", &[name])?;
        check(&out, "createdb")?;
        Ok(self.url(name))
    }

    /// The text of `pg_dump` of database `name` (data and schema).
    pub fn dump(&self, name: &str) -> Result<Vec<u8>> {
        let out = self.client("pg_dump", &[name])?;
        check(&out, "pg_dump")?;
        Ok(out.stdout)
    }

    /// Runs `sql` with psql on database `name`; answers its unaligned, tuples-only output.
    pub fn psql(&self, name: &str, sql: &str) -> Result<String> {
        let out = self.client("psql", &["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", name, "-c", sql])?;
        check(&out, "psql")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A client program of the server's version, over TCP to 127.0.0.1 (as any user).
    fn client(&self, program: &str, args: &[&str]) -> Result<Output> {
        Command::new(self.bin.join(program))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program}"))
    }

    /// Runs a server command, as `nobody` when the suite runs as root, in the server's directory.
    fn run_as_server(&self, argv: &[&str]) -> Result<()> {
        let mut command = if as_root() {
            let line = argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
            let mut c = Command::new("su");
            c.args([SERVER_USER, "-s", "/bin/sh", "-c", &line]);
            c
        } else {
            let mut c = Command::new(argv.first().copied().unwrap_or("false"));
            c.args(argv.iter().skip(1));
            c
        };
        let out = command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?}"))?;
        check(&out, argv.first().copied().unwrap_or("?"))
            .with_context(|| format!("server log:\n{}", self.log_tail()))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops the server (fast: open connections are ended); idempotent.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data_dir().display().to_string();
        if let Err(e) = self.run_as_server(&[&pg_ctl, "-D", &data, "-m", "fast", "-w", "stop"]) {
            eprintln!("stopping PostgreSQL: {e:#}");
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Whether this process runs as root (the effective uid of `/proc/self/status`).
fn as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The directory of `initdb` and `pg_ctl` (Debian keeps them off PATH, per major version):
/// `E2E_PG_BIN` if set, else the newest `/usr/lib/postgresql/<major>/bin`, else from PATH.
fn server_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("E2E_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    majors.sort();
    if let Some((_, bin)) = majors.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).find(|d| Path::new(d).join("initdb").exists()))
        .unwrap_or_default();
    on_path.context(
        "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or PATH): \
         `source scripts/bootstrap` installs it",
    )
}
