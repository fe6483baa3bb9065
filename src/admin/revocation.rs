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
    page.subject = form.get("subject").trim().to_string();
    page.client_id = form.get("client_id").trim().to_string();
    let (scope, whose) = match (page.subject.as_str(), page.client_id.as_str()) {
        (subject, "") if !subject.is_empty() && subject.len() <= 255 => {
            (RevocationScope::Subject(subject), format!("user {subject}"))
        }
        ("", client_id) if !client_id.is_empty() && client_id.len() <= 255 => (
            RevocationScope::Client(client_id),
            format!("client {client_id}"),
        ),
        _ => {
            page.error = Some(
                "Enter either a subject (the sub of the user's tokens) or a client id, 1 to 255 bytes."
                    .into(),
            );
            return Ok(render_with_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    let now = crate::clock::unix_now();
    let event = crate::oauth::introspection::revocation_event(scope, &session.username, now);
    let revoked = state.store.revoke_tokens(scope, now, event).await?;
    page.result = Some((whose, revoked));
    Ok(render(&page))
}
