//! Revoking everything frontdesk issued to one user, from the admin page: the kill switch of
//! `POST /admin/api/v1/revocations` and `frontdesk subject revoke`, for whoever is at the console
//! during an incident. Every role sees the page; only admins can submit it.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;

use super::auth::Session;
use super::views::{AdminError, FormData, Layout, render, render_with_status};
use crate::http::AppState;
use crate::store::{SubjectRevocation, TokenStore};

#[derive(Template)]
#[template(path = "admin/revocation.html")]
struct RevocationPage {
    layout: Layout,
    subject: String,
    error: Option<String>,
    result: Option<SubjectRevocation>,
    can_change: bool,
}

fn page_for(session: &Session, subject: String) -> RevocationPage {
    RevocationPage {
        layout: Layout::new("Revoke a user's tokens", "revocations", session),
        subject,
        error: None,
        result: None,
        can_change: session.can_change(),
    }
}

/// `GET /admin/revocations`.
pub async fn page(session: Session) -> Result<Response, AdminError> {
    Ok(render(&page_for(&session, String::new())))
}

/// `POST /admin/revocations`: revokes and shows what was revoked (admin role).
pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    let subject = form.get("subject").trim().to_string();
    let mut page = page_for(&session, subject.clone());
    if subject.is_empty() || subject.len() > 255 {
        page.error =
            Some("Enter the subject: the sub of the user's tokens, 1 to 255 bytes.".into());
        return Ok(render_with_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let now = crate::clock::unix_now();
    let event =
        crate::oauth::introspection::subject_revocation_event(&subject, &session.username, now);
    page.result = Some(state.store.revoke_subject(&subject, now, event).await?);
    Ok(render(&page))
}
