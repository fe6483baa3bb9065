//! Signing keys: generation, encryption at rest, rotation (next → active → retired) and the
//! in-memory key ring that signs on the hot path and renders `/jwks.json`.
//!
//! Rotation is data, not code: `keys rotate` inserts a `next` key that is published at once and
//! promoted after `keys.promote_after_secs`, so every relying party that caches our JWKS for at
//! most that long has seen the key before its first signature. The retired key stays published
//! until every token it signed has expired.

mod kek;
mod material;
mod signer;

use std::sync::{Arc, RwLock};

use jsonwebtoken::Header;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::Serialize;

pub use kek::{KEK_LEN, Kek};
pub use material::{PrivateKey, SigningAlgorithm};
use signer::Signer;

use crate::store::{
    AuditDetail, AuditEvent, Decision, KeyRecord, KeyState, KeyStore, Store, StoreError,
};

/// Errors of key management.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be generated, sealed, opened or used.
    #[error("{0}")]
    Crypto(String),
    /// There is no active signing key.
    #[error("no active signing key")]
    NoActiveKey,
}

/// Settings the key ring needs.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// Algorithm for new keys.
    pub algorithm: SigningAlgorithm,
    /// RSA modulus size.
    pub rsa_bits: u32,
    /// Delay between publishing a `next` key and promoting it.
    pub promote_after_secs: i64,
    /// How long a retired key stays published: the longest lifetime of anything we sign, plus skew.
    pub retired_publish_secs: i64,
    /// Age of the active key at which a `next` key is published on schedule
    /// (`keys.rotate_after_days`); 0 rotates only on demand.
    pub rotate_after_secs: i64,
}

/// The active key, ready to sign.
struct ActiveKey {
    kid: String,
    algorithm: SigningAlgorithm,
    /// Parsed once when the key ring is loaded ([`signer`]).
    signer: Signer,
}

/// An immutable view of the keys, swapped atomically on change.
struct Snapshot {
    active: Option<ActiveKey>,
    jwks: Arc<Vec<u8>>,
    records: Vec<KeyRecord>,
}

/// The key ring: signs with the active key and serves the published set. Cheap to share.
pub struct KeyRing {
    store: Store,
    kek: Kek,
    policy: KeyPolicy,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A key as shown by `keys list` and the admin page.
#[derive(Debug, Clone, Serialize)]
pub struct KeySummary {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub algorithm: String,
    /// `next`, `active` or `retired`.
    pub state: &'static str,
    /// Creation time.
    pub created_at: i64,
    /// Promotion due time of a `next` key.
    pub activate_at: Option<i64>,
    /// When it became active.
    pub activated_at: Option<i64>,
    /// When it was retired.
    pub retired_at: Option<i64>,
    /// When it leaves the JWKS.
    pub publish_until: Option<i64>,
}

/// When a key activated at `activated_at` is due for its scheduled rotation
/// (`keys.rotate_after_days`), for the keys page and `keys list`; `None` when keys rotate only
/// on demand. The key ring's tick applies the same rule ([`KeyPolicy::rotate_after_secs`]).
pub fn scheduled_rotation_at(activated_at: i64, rotate_after_days: u32) -> Option<i64> {
    (rotate_after_days > 0)
        .then(|| activated_at.saturating_add(i64::from(rotate_after_days) * 86_400))
}

/// The audit event of a key change, written in the same transaction as the change.
fn key_event(
    now: i64,
    name: &str,
    actor: &str,
    kid: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> AuditEvent {
    let mut event = AuditEvent::new(now, name, Decision::Changed);
    event.subject = Some(kid.to_string());
    event.detail = Some(AuditDetail::of(
        &serde_json::json!({ "actor": actor, "before": before, "after": after }),
    ));
    event
}

impl KeyRing {
    /// An HMAC key for `purpose`, derived from the key-encryption key: the same on every
    /// instance of a deployment, since they all hold its KEK ([`Kek::derive_hmac_key`]).
    pub fn derive_hmac_key(&self, purpose: &str) -> aws_lc_rs::hmac::Key {
        self.kek.derive_hmac_key(purpose)
    }

    /// Opens the key ring, creating and activating a first key if the database has none.
    /// Promotes a due `next` key. Fails if stored keys cannot be decrypted with this KEK.
    ///
    /// Several instances may open the same empty database at once (a deployment's replicas
    /// started together): each generates a first key, the first to commit stores it, and the
    /// others discard theirs and load it ([`KeyStore::insert_first_key`]), so they all sign with
    /// and publish the same key.
    pub async fn open(
        store: Store,
        kek: Kek,
        policy: KeyPolicy,
        now: i64,
    ) -> Result<KeyRing, KeyError> {
        let ring = KeyRing {
            store,
            kek,
            policy,
            snapshot: RwLock::new(Arc::new(Snapshot {
                active: None,
                jwks: Arc::new(b"{\"keys\":[]}".to_vec()),
                records: Vec::new(),
            })),
        };
        let keys = ring.store.published_keys(now).await?;
        if !keys.iter().any(|key| key.state == KeyState::Active) {
            if let Some(next) = keys.iter().find(|key| key.state == KeyState::Next) {
                ring.store.promote_key(&next.kid, now, now, None).await?;
            } else {
                let (record, _) = ring.new_key(KeyState::Active, now).await?;
                // `false`: another instance's first key was stored first; the tick loads it.
                ring.store.insert_first_key(&record).await?;
            }
        }
        ring.tick(now).await?;
        Ok(ring)
    }

    /// Periodic work: promotes a due `next` key, publishes a `next` key when the active one
    /// has reached `rotate_after_secs`, and reloads the snapshot from the database (so changes
    /// made by other instances or the CLI are picked up). Returns true if something changed.
    pub async fn tick(&self, now: i64) -> Result<bool, KeyError> {
        let keys = self.store.published_keys(now).await?;
        if self.rotation_due(&keys, now) && self.rotate_on_schedule(&keys, now).await? {
            let keys = self.store.published_keys(now).await?;
            self.install(keys)?;
            return Ok(true);
        }
        if let Some(due) = keys
            .iter()
            .find(|key| key.state == KeyState::Next && key.activate_at.is_some_and(|at| at <= now))
        {
            // Scheduled promotion: audited as done by the schedule; of several instances only
            // the one that claims the key records it.
            let event = key_event(
                now,
                "key_promoted",
                "schedule",
                &due.kid,
                serde_json::json!({ "kid": due.kid, "state": "next" }),
                serde_json::json!({ "kid": due.kid, "state": "active" }),
            );
            self.store
                .promote_key(
                    &due.kid,
                    now,
                    now + self.policy.retired_publish_secs,
                    Some(&event),
                )
                .await?;
            let keys = self.store.published_keys(now).await?;
            self.install(keys)?;
            return Ok(true);
        }
        let changed = {
            let current = self.read();
            current
                .records
                .iter()
                .map(|key| (&key.kid, key.state))
                .collect::<Vec<_>>()
                != keys
                    .iter()
                    .map(|key| (&key.kid, key.state))
                    .collect::<Vec<_>>()
        };
        if changed {
            self.install(keys)?;
        }
        Ok(changed)
    }

    /// Publishes a new `next` key, promoted after the configured delay (or at once when
    /// `immediately`, for emergencies: relying parties with a cached JWKS will refetch on the
    /// unknown `kid`). An emergency rotation also withdraws any key still waiting as `next`
    /// ([`KeyStore::insert_key`]), named in the audit event. Returns its kid.
    pub async fn rotate(
        &self,
        now: i64,
        immediately: bool,
        actor: Option<&str>,
    ) -> Result<String, KeyError> {
        let before = self.active_kid().map(|(kid, _)| kid);
        let (record, kid) = self.new_key(KeyState::Next, now).await?;
        // The keys an emergency rotation withdraws are added to the event by the store, as
        // found under its key-change lock.
        let event = actor.map(|actor| {
            let after = serde_json::json!({ "kid": kid, "immediately": immediately });
            key_event(
                now,
                "key_rotated",
                actor,
                &kid,
                serde_json::json!({ "active": before }),
                after,
            )
        });
        let activate = immediately.then_some((now, now + self.policy.retired_publish_secs));
        self.store
            .insert_key(&record, activate, event.as_ref())
            .await?;
        let keys = self.store.published_keys(now).await?;
        self.install(keys)?;
        Ok(kid)
    }

    /// Whether the schedule asks for a new key: rotation is on, the active key was activated
    /// `rotate_after_secs` ago or earlier, and no `next` key is already waiting.
    fn rotation_due(&self, keys: &[KeyRecord], now: i64) -> bool {
        let after = self.policy.rotate_after_secs;
        after > 0
            && !keys.iter().any(|key| key.state == KeyState::Next)
            && keys.iter().any(|key| {
                key.state == KeyState::Active
                    && key
                        .activated_at
                        .is_some_and(|at| at <= now.saturating_sub(after))
            })
    }

    /// Publishes a `next` key on schedule, audited as `key_rotated` by `schedule` in the same
    /// transaction. Of several instances whose ticks find the rotation due at once, the store
    /// lets one publish (`insert_scheduled_key`); the others discard the key they generated.
    /// Returns whether this instance published one.
    async fn rotate_on_schedule(&self, keys: &[KeyRecord], now: i64) -> Result<bool, KeyError> {
        let before = keys
            .iter()
            .find(|key| key.state == KeyState::Active)
            .map(|key| key.kid.clone());
        let (record, kid) = self.new_key(KeyState::Next, now).await?;
        let event = key_event(
            now,
            "key_rotated",
            "schedule",
            &kid,
            serde_json::json!({ "active": before }),
            serde_json::json!({ "kid": kid, "immediately": false }),
        );
        let activated_by = now.saturating_sub(self.policy.rotate_after_secs);
        Ok(self
            .store
            .insert_scheduled_key(&record, activated_by, &event)
            .await?)
    }

    /// Retires a key at once; it stays published until its tokens have expired. Refuses to
    /// retire the active key unless a `next` key due for promotion exists to take over (it is
    /// promoted): one published less than `promote_after_secs` ago may not be in relying
    /// parties' cached JWKS yet. With an `actor`, the change is audited (`key_retired`) in the
    /// same transaction.
    pub async fn retire(&self, kid: &str, now: i64, actor: Option<&str>) -> Result<bool, KeyError> {
        let keys = self.store.published_keys(now).await?;
        let Some(target) = keys.iter().find(|key| key.kid == kid) else {
            return Ok(false);
        };
        let event = actor.map(|actor| {
            key_event(
                now,
                "key_retired",
                actor,
                kid,
                serde_json::json!({ "kid": kid, "state": target.state.as_str() }),
                serde_json::json!({ "kid": kid, "state": "retired" }),
            )
        });
        let until = now + self.policy.retired_publish_secs;
        if target.state == KeyState::Active {
            let waiting = || keys.iter().filter(|key| key.state == KeyState::Next);
            let Some(next) = waiting()
                .find(|key| key.activate_at.is_some_and(|at| at <= now))
                .or_else(|| waiting().next())
            else {
                return Err(KeyError::Crypto(
                    "cannot retire the active key: rotate first so another key can sign".into(),
                ));
            };
            // The successor signs from now on: only once it has been published for
            // `keys.promote_after_secs`, so that relying parties caching our JWKS have it.
            if let Some(due) = next.activate_at.filter(|at| *at > now) {
                return Err(KeyError::Crypto(format!(
                    "cannot retire the active key yet: its successor {} has been published for less than keys.promote_after_secs, so relying parties may not have it cached; it takes over on its own at {due} (unix time), or use an emergency rotation (keys rotate --now) to switch at once",
                    next.kid
                )));
            }
            if !self
                .store
                .promote_key(&next.kid, now, until, event.as_ref())
                .await?
            {
                return Ok(false);
            }
        } else if !self
            .store
            .retire_key(kid, now, until, event.as_ref())
            .await?
        {
            // Already retired: nothing changed, and the caller should hear so.
            return Ok(false);
        }
        let keys = self.store.published_keys(now).await?;
        self.install(keys)?;
        Ok(true)
    }

    /// Withdraws a compromised key from the JWKS at once. The active key cannot be withdrawn:
    /// rotate with `now` first, which retires it, then withdraw it. With an `actor`, the change
    /// is audited (`key_withdrawn`) in the same transaction.
    pub async fn withdraw(
        &self,
        kid: &str,
        now: i64,
        actor: Option<&str>,
    ) -> Result<bool, KeyError> {
        let event = actor.map(|actor| {
            key_event(
                now,
                "key_withdrawn",
                actor,
                kid,
                serde_json::json!({ "kid": kid, "published": true }),
                serde_json::json!({ "kid": kid, "published": false }),
            )
        });
        let withdrawn = self.store.withdraw_key(kid, now, event.as_ref()).await?;
        let keys = self.store.published_keys(now).await?;
        self.install(keys)?;
        Ok(withdrawn)
    }

    /// Signs `claims` as a compact JWS with the active key and the given `typ` header.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let snapshot = self.read();
        let active = snapshot.active.as_ref().ok_or(KeyError::NoActiveKey)?;
        let mut header = Header::new(active.algorithm.jwt_algorithm());
        header.typ = Some(typ.to_string());
        header.kid = Some(active.kid.clone());
        active.signer.sign(&header, claims)
    }

    /// The kid and algorithm of the active key, if any (readiness).
    pub fn active_kid(&self) -> Option<(String, SigningAlgorithm)> {
        self.read()
            .active
            .as_ref()
            .map(|active| (active.kid.clone(), active.algorithm))
    }

    /// The published JWKS document, pre-rendered.
    pub fn jwks_json(&self) -> Arc<Vec<u8>> {
        self.read().jwks.clone()
    }

    /// Algorithms of all published keys (for metadata).
    pub fn published_algorithms(&self) -> Vec<String> {
        let mut algorithms: Vec<String> = self
            .read()
            .records
            .iter()
            .map(|key| key.algorithm.clone())
            .collect();
        algorithms.sort();
        algorithms.dedup();
        algorithms
    }

    /// Every key, for `keys list` and the admin page.
    pub async fn list(store: &Store) -> Result<Vec<KeySummary>, KeyError> {
        Ok(store
            .all_keys()
            .await?
            .into_iter()
            .map(|key| KeySummary {
                kid: key.kid,
                algorithm: key.algorithm,
                state: key.state.as_str(),
                created_at: key.created_at,
                activate_at: key.activate_at,
                activated_at: key.activated_at,
                retired_at: key.retired_at,
                publish_until: key.publish_until,
            })
            .collect())
    }

    fn read(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Generates and seals a key; not stored yet.
    async fn new_key(&self, state: KeyState, now: i64) -> Result<(KeyRecord, String), KeyError> {
        let (algorithm, rsa_bits) = (self.policy.algorithm, self.policy.rsa_bits);
        // RSA generation takes tens of milliseconds or more: keep it off the async workers.
        let private =
            tokio::task::spawn_blocking(move || PrivateKey::generate(algorithm, rsa_bits))
                .await
                .map_err(|error| KeyError::Crypto(format!("key generation task failed: {error}")))?
                .map_err(KeyError::Crypto)?;
        let jwk = private.public_jwk().map_err(KeyError::Crypto)?;
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| KeyError::Crypto("generated key has no kid".into()))?;
        let sealed = self
            .kek
            .seal(&kid, private.pkcs8())
            .map_err(KeyError::Crypto)?;
        let record = KeyRecord {
            kid: kid.clone(),
            algorithm: algorithm.as_str().to_string(),
            state,
            sealed_private_key: sealed,
            public_jwk: serde_json::to_string(&jwk)
                .map_err(|error| KeyError::Crypto(error.to_string()))?,
            created_at: now,
            activate_at: (state == KeyState::Next).then_some(now + self.policy.promote_after_secs),
            activated_at: (state == KeyState::Active).then_some(now),
            retired_at: None,
            publish_until: None,
        };
        Ok((record, kid))
    }

    fn install(&self, records: Vec<KeyRecord>) -> Result<(), KeyError> {
        let mut active = None;
        let mut keys: Vec<Jwk> = Vec::with_capacity(records.len());
        for record in &records {
            let jwk: Jwk = serde_json::from_str(&record.public_jwk)
                .map_err(|error| KeyError::Crypto(format!("stored JWK is corrupt: {error}")))?;
            keys.push(jwk);
            if record.state == KeyState::Active {
                let algorithm = SigningAlgorithm::parse(&record.algorithm).ok_or_else(|| {
                    KeyError::Crypto(format!(
                        "stored key has unknown algorithm {}",
                        record.algorithm
                    ))
                })?;
                let pkcs8 = self
                    .kek
                    .open(&record.kid, &record.sealed_private_key)
                    .map_err(KeyError::Crypto)?;
                let private = PrivateKey::from_pkcs8(algorithm, pkcs8);
                active = Some(ActiveKey {
                    kid: record.kid.clone(),
                    algorithm,
                    signer: Signer::new(&private)?,
                });
            }
        }
        let jwks = serde_json::to_vec(&JwkSet { keys })
            .map_err(|error| KeyError::Crypto(error.to_string()))?;
        let snapshot = Arc::new(Snapshot {
            active,
            jwks: Arc::new(jwks),
            records,
        });
        match self.snapshot.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
