//! Messages to users (one-time codes by email or SMS) go through a sender. The one here is the
//! local outbox: each message is appended as a JSON line to a file, flushed to disk, which is
//! what development and the tests read. A deployment plugs a provider in behind the same call.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use domain::time::UnixMillis;
use serde_json::json;

use crate::errors::ApiError;

pub struct Outbox {
    path: PathBuf,
    // Appends from concurrent requests must not interleave within a line.
    lock: Mutex<()>,
    /// Messages accepted and not yet on disk (waiting for the lock or being written).
    backlog: AtomicUsize,
}

impl Outbox {
    pub fn new(path: PathBuf) -> Self {
        Self { path, lock: Mutex::new(()), backlog: AtomicUsize::new(0) }
    }

    /// Sends `text` to `to` on `channel`; a one-time `code` in it is also recorded apart, so
    /// tools can read it.
    pub fn send(
        &self,
        channel: &str,
        to: &str,
        text: &str,
        code: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        let line =
            json!({ "channel": channel, "to": to, "text": text, "code": code, "at": now.0 }).to_string();
        self.backlog.fetch_add(1, Ordering::SeqCst);
        let written = self.append(&line);
        self.backlog.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::outbox_sent(channel, written.is_ok());
        written
    }

    /// How many messages are waiting to be written now.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
    }

    fn append(&self, line: &str) -> Result<(), ApiError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        // The outbox holds one-time codes: readable by the origin's user only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&self.path)
            .map_err(|e| ApiError::Internal(format!("outbox {}: {e}", self.path.display())))?;
        writeln!(file, "{line}")
            .and_then(|()| file.sync_data())
            .map_err(|e| ApiError::Internal(format!("outbox: {e}")))?;
        Ok(())
    }
}
