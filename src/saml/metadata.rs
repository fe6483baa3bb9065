//! An identity provider's SAML 2.0 metadata (`saml_metadata_url`) as the source of its signing
//! certificates, so an IdP's certificate rollover needs no change here: Entra ID, Okta, ADFS and
//! Keycloak publish the next certificate in their metadata before they sign with it.
//!
//! Trust in the document comes from TLS to the configured https URL, as for a JWKS; the
//! metadata's own signature is not checked (it would need yet another pinned certificate).
//! Only `<md:EntityDescriptor entityID="{issuer}">`'s `IDPSSODescriptor` signing keys count, so a
//! document describing another entity, or another role of this one, contributes nothing.
//!
//! Fetched on first use; once older than `federation.jwks_default_ttl_secs`, still served while
//! one background task fetches it again (no request waits on the IdP); and fetched again, at most once per `federation.jwks_min_refetch_secs` and one request at a time,
//! when an assertion does not verify with the keys held (the IdP may have just rolled over). A
//! failed fetch keeps serving the keys held, for a day past their lifetime at most (as a JWKS's);
//! then the IdP's assertions are refused until its metadata answers again. Every fetch is counted per identity provider
//! (`frontdesk_saml_metadata_*`), so an operator can alert before held certificates go stale.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use uppsala::{Document, NodeId};

use super::SamlKeys;

const METADATA_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const SAML2_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// Metadata larger than this is refused (Entra's is about 20 KiB; federation aggregates of
/// thousands of entities are not an IdP's metadata).
const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// Why metadata gave no keys; the text names the problem, never document content beyond the
/// configured URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetadataError(pub String);

fn error(message: impl Into<String>) -> MetadataError {
    MetadataError(message.into())
}

/// The signing certificates (DER) that the metadata `xml` publishes for the SAML 2.0 identity
/// provider `entity_id`.
pub fn signing_certificates(xml: &str, entity_id: &str) -> Result<Vec<Vec<u8>>, MetadataError> {
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err(error("the metadata has a document type declaration"));
    }
    let doc = uppsala::parse(xml).map_err(|_| error("the metadata is not well-formed XML"))?;
    let root = doc
        .document_element()
        .ok_or_else(|| error("the metadata has no root element"))?;
    let entity = std::iter::once(root)
        .chain(children(&doc, root, "EntityDescriptor"))
        .find(|node| {
            is(&doc, *node, "EntityDescriptor")
                && doc.get_attribute(*node, "entityID") == Some(entity_id)
        })
        .ok_or_else(|| error(format!("the metadata describes no entity `{entity_id}`")))?;
    let mut certificates = Vec::new();
    for role in children(&doc, entity, "IDPSSODescriptor") {
        if !doc
            .get_attribute(role, "protocolSupportEnumeration")
            .is_some_and(|protocols| protocols.split_whitespace().any(|p| p == SAML2_PROTOCOL))
        {
            continue;
        }
        for key in children(&doc, role, "KeyDescriptor") {
            if doc
                .get_attribute(key, "use")
                .is_some_and(|usage| usage != "signing")
            {
                continue;
            }
            for text in dsig_descendants(&doc, key, "X509Certificate") {
                let compact: String = doc
                    .text_content_deep(text)
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|_| error("an X509Certificate is not base64"))?;
                certificates.push(der);
            }
        }
    }
    if certificates.is_empty() {
        return Err(error(format!(
            "the metadata of `{entity_id}` has no SAML 2.0 IdP signing certificate"
        )));
    }
    Ok(certificates)
}

fn is(doc: &Document<'_>, node: NodeId, local: &str) -> bool {
    doc.element(node)
        .is_some_and(|element| element.name.matches(Some(METADATA_NS), local))
}

fn children<'d>(
    doc: &'d Document<'_>,
    parent: NodeId,
    local: &'d str,
) -> impl Iterator<Item = NodeId> + 'd {
    doc.children_iter(parent)
        .filter(move |node| is(doc, *node, local))
}

fn dsig_descendants(doc: &Document<'_>, parent: NodeId, local: &str) -> Vec<NodeId> {
    doc.descendants(parent)
        .into_iter()
        .filter(|node| {
            doc.element(*node)
                .is_some_and(|element| element.name.matches(Some(DSIG_NS), local))
        })
        .collect()
}

/// How the cache fetches.
#[derive(Debug, Clone)]
pub struct MetadataCacheConfig {
    /// Keys older than this are refreshed before use.
    pub ttl: Duration,
    /// At most one fetch per identity provider in this interval after a failed verification or
    /// fetch.
    pub min_refetch_interval: Duration,
}

struct Entry {
    /// The `source` label of the metrics: `idp:<id>`, as for JWKS.
    source: String,
    url: String,
    entity_id: String,
    keys: RwLock<Option<(Arc<SamlKeys>, Instant)>>,
    /// Single flight: the time of the last attempt, held while fetching.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    /// The background refresh of stale keys, while one runs.
    background: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How long past `ttl` held keys still verify while every fetch fails: a day, as the JWKS
/// cache's `max_stale`. Beyond it an IdP whose metadata stays unreachable is refused
/// (`subject_keys_unavailable`) rather than trusted on a certificate it may have withdrawn, e.g.
/// after a key compromise, while its metadata was unreachable from here.
const MAX_STALE: Duration = Duration::from_secs(24 * 3600);

/// Every identity provider's metadata keys, per instance.
pub struct MetadataCache {
    http: reqwest::Client,
    config: MetadataCacheConfig,
    max_stale: Duration,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MetadataCache {
    /// A cache fetching with `http` (the server's client for trusted issuers: its timeout and
    /// redirect policy).
    pub fn new(http: reqwest::Client, config: MetadataCacheConfig) -> MetadataCache {
        MetadataCache {
            http,
            config,
            max_stale: MAX_STALE,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Another bound on how long held keys outlive `ttl` when fetches fail (tests).
    #[cfg(test)]
    pub(crate) fn with_max_stale(mut self, max_stale: Duration) -> MetadataCache {
        self.max_stale = max_stale;
        self
    }

    fn entry(&self, idp_id: &str, url: &str, entity_id: &str) -> Arc<Entry> {
        let read = self.entries.read().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = read.get(idp_id)
            && entry.url == url
            && entry.entity_id == entity_id
        {
            return entry.clone();
        }
        drop(read);
        let mut write = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let entry = write
            .entry(idp_id.to_string())
            .or_insert_with(|| Arc::new(Entry::new(idp_id, url, entity_id)));
        if entry.url != url || entry.entity_id != entity_id {
            // The identity provider's configuration changed: start afresh.
            *entry = Arc::new(Entry::new(idp_id, url, entity_id));
        }
        entry.clone()
    }

    /// The keys the metadata of `idp_id` (at `url`, for `entity_id`) publishes: held ones while
    /// fresh; held ones past their lifetime too, while one background task fetches the document
    /// again (no request waits on the IdP once its keys are known, and a failing IdP keeps
    /// working on what it last published); fetched when none are held.
    pub async fn keys(
        &self,
        idp_id: &str,
        url: &str,
        entity_id: &str,
    ) -> Result<Arc<SamlKeys>, MetadataError> {
        let entry = self.entry(idp_id, url, entity_id);
        match entry.held() {
            Some((keys, at)) if at.elapsed() < self.config.ttl => Ok(keys),
            Some((keys, at)) if at.elapsed() < self.config.ttl.saturating_add(self.max_stale) => {
                self.refresh_in_background(&entry);
                Ok(keys)
            }
            // None held, or held so long past their lifetime that they are no longer trusted:
            // fetched now, and refused if that fails.
            _ => refresh(&self.http, &self.config, self.max_stale, &entry, false).await,
        }
    }

    /// Starts a refresh of `entry` unless one is already running.
    fn refresh_in_background(&self, entry: &Arc<Entry>) {
        let mut running = entry.background.lock().unwrap_or_else(|p| p.into_inner());
        if running.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let (http, config, entry) = (self.http.clone(), self.config.clone(), entry.clone());
        let max_stale = self.max_stale;
        *running = Some(tokio::spawn(async move {
            // A failure is logged and counted there; the held keys stay, up to `max_stale`.
            let _ = refresh(&http, &config, max_stale, &entry, false).await;
        }));
    }

    /// Waits for the background refresh of `idp_id`, if one was started (tests).
    #[cfg(test)]
    pub(crate) async fn background_refresh(&self, idp_id: &str) {
        let entry = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(idp_id)
            .cloned();
        let task = entry.and_then(|entry| {
            entry
                .background
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        });
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Fetches again after an assertion failed to verify with the keys held: at most once per
    /// `min_refetch_interval`. `None` when no fetch was allowed or it brought nothing new.
    pub async fn refetch(&self, idp_id: &str, url: &str, entity_id: &str) -> Option<Arc<SamlKeys>> {
        let entry = self.entry(idp_id, url, entity_id);
        let before = entry.held().map(|(_, at)| at);
        let keys = refresh(&self.http, &self.config, self.max_stale, &entry, true)
            .await
            .ok()?;
        let after = entry.held().map(|(_, at)| at);
        (after != before).then_some(keys)
    }
}

/// Fetches `entry`'s metadata, one request at a time, at most once per `min_refetch_interval`
/// after an attempt (`forced`: even if the held keys are fresh, after a failed verification).
/// When no fetch is made or it fails, the held keys answer while younger than `ttl` plus
/// `max_stale`.
async fn refresh(
    http: &reqwest::Client,
    config: &MetadataCacheConfig,
    max_stale: Duration,
    entry: &Entry,
    forced: bool,
) -> Result<Arc<SamlKeys>, MetadataError> {
    let usable = config.ttl.saturating_add(max_stale);
    let mut last_attempt = entry.fetch.lock().await;
    // Someone else fetched while we waited.
    if !forced && let Some(keys) = entry.fresh(config.ttl) {
        return Ok(keys);
    }
    let now = Instant::now();
    let limited = last_attempt
        .is_some_and(|at| now.saturating_duration_since(at) < config.min_refetch_interval);
    if limited {
        return entry
            .fresh(usable)
            .ok_or_else(|| error("the metadata could not be fetched recently; retrying later"));
    }
    let result = fetch_keys(http, &entry.url, &entry.entity_id).await;
    *last_attempt = Some(Instant::now());
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!("frontdesk_saml_metadata_fetches_total", "source" => entry.source.clone(), "outcome" => outcome)
        .increment(1);
    match result {
        Ok(keys) => {
            metrics::gauge!("frontdesk_saml_metadata_certificates", "source" => entry.source.clone())
                .set(keys.certificates() as f64);
            metrics::gauge!("frontdesk_saml_metadata_last_success_timestamp_seconds", "source" => entry.source.clone())
                .set(crate::clock::unix_now() as f64);
            let keys = Arc::new(keys);
            *entry.keys.write().unwrap_or_else(|p| p.into_inner()) =
                Some((keys.clone(), Instant::now()));
            Ok(keys)
        }
        Err(failure) => {
            tracing::warn!(url = %entry.url, error = %failure, "SAML metadata fetch failed");
            entry.fresh(usable).ok_or(failure)
        }
    }
}

/// Fetches the metadata at `url` and returns the signing keys it publishes for `entity_id`: what
/// the cache holds, and what the admin page's "test connection" shows.
pub async fn fetch_keys(
    http: &reqwest::Client,
    url: &str,
    entity_id: &str,
) -> Result<SamlKeys, MetadataError> {
    let mut response = http
        .get(url)
        .header(
            http::header::ACCEPT,
            "application/samlmetadata+xml, application/xml, text/xml",
        )
        .send()
        .await
        .map_err(|_| error(format!("{url} could not be reached")))?;
    if !crate::trust::is_https_or_loopback(response.url().as_str()) {
        return Err(error(format!(
            "{url} redirected to a URL that is not https"
        )));
    }
    if response.status() != http::StatusCode::OK {
        return Err(error(format!("{url} answered {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| error(format!("reading {url} failed")))?
    {
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(error(format!("{url} returned more than 1 MiB")));
        }
        body.extend_from_slice(&chunk);
    }
    let text = std::str::from_utf8(&body).map_err(|_| error(format!("{url} is not UTF-8")))?;
    let certificates = signing_certificates(text, entity_id)?;
    SamlKeys::from_der(&certificates).map_err(error)
}

impl Entry {
    fn new(idp_id: &str, url: &str, entity_id: &str) -> Entry {
        Entry {
            source: format!("idp:{idp_id}"),
            url: url.to_string(),
            entity_id: entity_id.to_string(),
            keys: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(None),
            background: std::sync::Mutex::new(None),
        }
    }

    fn held(&self) -> Option<(Arc<SamlKeys>, Instant)> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(keys, at)| (keys.clone(), *at))
    }

    fn fresh(&self, ttl: Duration) -> Option<Arc<SamlKeys>> {
        self.held()
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(keys, _)| keys)
    }
}
