//! The origin service: the single source of truth. It serves the edge's signed internal API
//! (see `domain::signing`) and, unsigned, only its own health probe.

pub mod admin;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod email_change;
pub mod entitlements;
pub mod errors;
pub mod extract;
pub mod http_layers;
pub mod integrations;
pub mod jobs;
pub mod metrics;
pub mod orgs;
pub mod outbox;
pub mod passkeys;
pub mod passwords;
pub mod pending;
pub mod personalisation;
pub mod protection;
pub mod recovery;
pub mod rights;
#[cfg(test)]
mod router_tests;
pub mod routes;
pub mod signed;
pub mod sms;
pub mod store;
#[cfg(test)]
mod testing;
pub mod users;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::store::Store;
use crate::users::Accounts;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub accounts: Arc<Accounts>,
    pub clock: Clock,
}

/// Opens the database named by the configuration (applying migrations) and sets up the
/// services over it.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let store = store::open(&config.database_url).await?;
    let keyring = Keyring::with_retired(&config.master_key, &config.previous_master_keys);
    // Refuse to start rather than fail every login of the users a missing key wrapped. The
    // stored wrap ids also carry the wrap format; the message names the master keys only.
    let mut missing: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for (wrap_id, n) in store.master_key_counts().await? {
        if !keyring.knows(&wrap_id) {
            *missing.entry(crypto::master_key_id_of(&wrap_id).to_owned()).or_default() += n;
        }
    }
    let unknown: Vec<String> = missing.iter().map(|(id, n)| format!("{n} under {id:?}")).collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "users' data keys are wrapped by master keys this configuration lacks ({}): keep a retired key \
             in {} until `origin rewrap-keys` reports nothing remaining",
            unknown.join(", "),
            config::VAR_PREVIOUS_MASTER_KEYS
        );
    }
    let outbox = outbox::Outbox::from_config(&config)?;
    let hasher = passwords::Hasher::new(config.hash_threads, config.hash_queue)?;
    let webauthn = passkeys::relying_party(&config.webauthn_rp_id, &config.webauthn_origin)?;
    let mut accounts =
        Accounts::new(Arc::clone(&store), keyring, outbox, hasher, webauthn, config.public_url.clone())?;
    accounts.minor_under = config.minor_under;
    Ok(AppState { config: Arc::new(config), store, accounts: Arc::new(accounts), clock: Clock::System })
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The recorder is installed before the first request, so nothing counted is lost.
    metrics::handle();
    let limits = http_layers::RequestLimits::from_config(&state.config);
    let app = http_layers::apply(routes::router(state), limits);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
