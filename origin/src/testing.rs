//! Test support: a whole origin state (store, keys, outbox) over a fresh SQLite database in a
//! temporary directory, for tests of services and jobs that need the real store.

use std::collections::HashMap;

use crate::config::{self, Config};
use crate::jobs::JobOptions;
use crate::AppState;

/// A 32-byte shared secret in hex and a 32-byte master key in base64, for tests only.
const SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// An origin state and the directory that holds its files (removed when dropped).
pub(crate) struct TestOrigin {
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

impl TestOrigin {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let vars: HashMap<&str, String> = HashMap::from([
            (config::VAR_SHARED_SECRET, SECRET.to_owned()),
            (config::VAR_MASTER_KEY, MASTER_KEY.to_owned()),
            (config::VAR_DATABASE_URL, format!("sqlite://{}", path("origin.db"))),
            (config::VAR_OUTBOX, path("outbox.jsonl")),
            (config::VAR_REPORTS_DIR, path("reports")),
            (config::VAR_INBOX_DIR, path("inbox")),
        ]);
        let config = Config::from_lookup(|name| vars.get(name).cloned()).unwrap();
        let state = crate::build_state(config).await.unwrap();
        Self { state, dir }
    }

    pub fn options(&self) -> JobOptions {
        JobOptions {
            reports: self.state.config.reports_dir.clone(),
            inbox: self.state.config.inbox_dir.clone(),
            retention_days: self.state.config.event_retention_days,
            interactive: false,
        }
    }

    /// A second connection to the database, for reading what the store trait does not expose.
    pub async fn sqlite(&self) -> crate::store::SqliteStore {
        crate::store::SqliteStore::open(&self.state.config.database_url).await.unwrap()
    }
}
