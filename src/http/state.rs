//! Shared state of the HTTP handlers: cheap to clone, built once in `app`.

use std::sync::Arc;

use crate::config::Config;
use crate::keys::KeyRing;
use crate::store::Store;

/// What every handler may reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// Our signing keys.
    pub keys: Arc<KeyRing>,
    /// The token endpoint's service.
    pub tokens: Arc<crate::oauth::TokenService>,
    /// The admin page's in-memory state (rate limiter, bootstrap token, test clock).
    pub admin: Arc<crate::admin::AdminRuntime>,
}
