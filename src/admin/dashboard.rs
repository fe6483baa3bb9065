//! The dashboard: how much trust is configured, which key signs and what comes next, and the
//! latest denials — the first things to look at when something stops working.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::auth::Session;
use super::views::{AdminError, Layout, format_duration, format_time, render};
use crate::http::AppState;
use crate::keys::KeyRing;
use crate::store::{AuditFilter, AuditLog, Decision, TrustKind, TrustStore};

struct Denial {
    when: String,
    event: String,
    reason: String,
    client: String,
    subject: String,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    identity_providers: usize,
    audiences: usize,
    clients: usize,
    active_key: Option<(String, String, String)>,
    next_key: Option<(String, String)>,
    denials: Vec<Denial>,
}

/// `GET /admin`.
pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, AdminError> {
    let now = crate::clock::unix_now();
    let count = |kind| {
        let store = state.store.clone();
        async move { store.list_trust(kind).await.map(|list| list.len()) }
    };
    let keys = KeyRing::list(&state.store).await?;
    let active_key = keys.iter().find(|key| key.state == "active").map(|key| {
        let since = key.activated_at.unwrap_or(key.created_at);
        (
            key.kid.clone(),
            key.algorithm.clone(),
            format_duration(now - since),
        )
    });
    let next_key = keys.iter().find(|key| key.state == "next").map(|key| {
        (
            key.kid.clone(),
            key.activate_at.map_or_else(|| "—".to_string(), format_time),
        )
    });
    let denials = state
        .store
        .audit_events(&AuditFilter {
            decision: Some(Decision::Denied),
            limit: Some(10),
            ..AuditFilter::default()
        })
        .await?
        .into_iter()
        .map(|record| Denial {
            when: format_time(record.event.occurred_at),
            event: record.event.event,
            reason: record.event.reason.unwrap_or_default(),
            client: record.event.client_id.unwrap_or_default(),
            subject: record.event.subject.unwrap_or_default(),
        })
        .collect();
    Ok(render(&DashboardPage {
        layout: Layout::new("Dashboard", "dashboard", &session),
        identity_providers: count(TrustKind::IdentityProvider).await?,
        audiences: count(TrustKind::Audience).await?,
        clients: count(TrustKind::Client).await?,
        active_key,
        next_key,
        denials,
    }))
}
