//! Revoking everything frontdesk issued to one user or one client, from the admin page: the kill
//! switch of `POST /admin/api/v1/revocations`, `frontdesk subject revoke` and `frontdesk client
//! revoke-tokens`, for whoever is at the console during an incident. Every role sees the page;
//! only admins can submit it.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;

use super::auth::Session;
use super::views::{AdminError, FormData, Layout, render, render_with_status};
use crate::http::AppState;
use crate::store::{RevocationScope, TokenRevocation, TokenStore};

#[derive(Template)]
#[template(path = "admin/revocation.html")]
struct RevocationPage {
    layout: Layout,
    subject: String,
    client_id: String,
    issuer: String,
    error: Option<String>,
    /// Whose tokens were revoked ("user …" or "client …") and how many.
    result: Option<(String, TokenRevocation)>,
    can_change: bool,
}

fn page_for(session: &Session) -> RevocationPage {
    RevocationPage {
        layout: Layout::new("Revoke tokens", "revocations", session),
        subject: String::new(),
        client_id: String::new(),
        issuer: String::new(),
        error: None,
        result: None,
        can_change: session.can_change(),
    }
}

/// `GET /admin/revocations`.
pub async fn page(session: Session) -> Result<Response, AdminError> {
    Ok(render(&page_for(&session)))
}

/// `POST /admin/revocations`: revokes a user's tokens (`subject`) or a client's (`client_id`)
/// and shows what was revoked (admin role).
pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    let mut page = page_for(&session);
    let subject = form.get("subject").trim().to_string();
    let client_id = form.get("client_id").trim().to_string();
    let issuer = form.get("issuer").trim().to_string();
    let scope = match (subject.as_str(), client_id.as_str(), issuer.as_str()) {
        (value, "", "") if !value.is_empty() => Some((RevocationScope::Subject(value), "user")),
        ("", value, "") if !value.is_empty() => Some((RevocationScope::Client(value), "client")),
        ("", "", value) if !value.is_empty() => {
            Some((RevocationScope::Issuer(value), "the users of"))
        }
        _ => None,
    }
    .filter(|(scope, _)| scope.value().len() <= 2048);
    page.subject = subject.clone();
    page.client_id = client_id.clone();
    page.issuer = issuer.clone();
    let Some((scope, kind)) = scope else {
        page.error = Some(
            "Enter one of: a subject (the sub of the user's tokens), a client id, or an identity provider's issuer."
                .into(),
        );
        return Ok(render_with_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    };
    let whose = format!("{kind} {}", scope.value());
    let now = crate::clock::unix_now();
    let event = crate::oauth::introspection::revocation_event(scope, &session.username, now);
    let revoked = state.store.revoke_tokens(scope, now, event).await?;
    page.result = Some((whose, revoked));
    Ok(render(&page))
}
