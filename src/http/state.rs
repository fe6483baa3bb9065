//! Shared state of the HTTP handlers: cheap to clone, built once in `app`.

use std::ops::Deref;
use std::sync::Arc;

use crate::config::Config;
use crate::keys::KeyRing;
use crate::store::Store;

/// What every handler may reach: one shared [`Shared`] behind an `Arc`.
///
/// Why one `Arc` around the whole: axum clones the state for every request that extracts it
/// (every `/token` request does), and a struct of separately counted handles costs one atomic
/// increment and decrement per handle, on counters both cores touch. One shared pointer costs
/// one (docs/performance.md, twentieth run).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// The handles behind [`AppState`].
pub struct Shared {
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
    /// `/readyz`'s cached database answer (one ping a second at most: the endpoint is public).
    pub readiness: super::health::Readiness,
}

/// Names the instance only. Why not derived: the handles reach secrets whose own `Debug` is
/// not this module's to guarantee (the admin page's one-time bootstrap token printed whole), and
/// a stray `{:?}` of the state in a log line must not carry any of them.
impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Wraps the handlers' shared handles.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
