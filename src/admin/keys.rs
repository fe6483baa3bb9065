//! Signing keys: list with state and dates, rotate (publish a `next` key, or promote at once in
//! an emergency), retire. Each change is audited.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::Session;
use super::views::{AdminError, FormData, Layout, format_optional_time, format_time, render};
use crate::http::AppState;
use crate::keys::{KeyError, KeyRing};

struct KeyRow {
    kid: String,
    algorithm: String,
    state: &'static str,
    created: String,
    activate_at: String,
    activated: String,
    retired: String,
    publish_until: String,
}

#[derive(Template)]
#[template(path = "admin/keys.html")]
struct KeysPage {
    layout: Layout,
    notice: Option<String>,
    promote_after: u64,
    keys: Vec<KeyRow>,
    /// The rotation schedule in words (`keys.rotate_after_days`), with the active key's due date.
    schedule: String,
}

/// Query of the keys page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct KeysQuery {
    #[serde(default)]
    notice: String,
}

/// `GET /admin/keys`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Query(query): axum::extract::Query<KeysQuery>,
) -> Result<Response, AdminError> {
    let listed = KeyRing::list(&state.store).await?;
    let days = state.config.keys.rotate_after_days;
    let due = listed
        .iter()
        .find(|key| key.state == "active")
        .and_then(|key| key.activated_at)
        .and_then(|at| crate::keys::scheduled_rotation_at(at, days))
        .map(format_time);
    let schedule = match (days, due) {
        (0, _) => "Keys rotate only when rotated here or with `frontdesk keys rotate` (keys.rotate_after_days = 0).".to_string(),
        (days, Some(due)) => format!(
            "Keys also rotate on their own {days} days after they start signing (keys.rotate_after_days): the active key is due for rotation on {due}."
        ),
        (days, None) => format!(
            "Keys also rotate on their own {days} days after they start signing (keys.rotate_after_days)."
        ),
    };
    let keys = listed
        .into_iter()
        .map(|key| KeyRow {
            kid: key.kid,
            algorithm: key.algorithm,
            state: key.state,
            created: format_time(key.created_at),
            activate_at: format_optional_time(key.activate_at),
            activated: format_optional_time(key.activated_at),
            retired: format_optional_time(key.retired_at),
            publish_until: format_optional_time(key.publish_until),
        })
        .collect();
    let notice = match query.notice.as_str() {
        "rotated" => Some("A new key was published.".to_string()),
        "retired" => Some(
            "The key was retired; it stays published until its tokens have expired.".to_string(),
        ),
        _ => None,
    };
    Ok(render(&KeysPage {
        layout: Layout::new("Signing keys", "keys", &session),
        notice,
        promote_after: state.config.keys.promote_after_secs,
        keys,
        schedule,
    }))
}

/// Publishes a new key (promoted at once if `immediately`), audited in the same transaction;
/// returns its kid. Shared by the page and the JSON API.
pub(super) async fn rotate_key(
    state: &AppState,
    actor: &str,
    immediately: bool,
) -> Result<String, AdminError> {
    Ok(state
        .keys
        .rotate(crate::clock::unix_now(), immediately, Some(actor))
        .await?)
}

/// Retires key `kid`, audited in the same transaction. Shared by the page and the JSON API.
pub(super) async fn retire_key(state: &AppState, actor: &str, kid: &str) -> Result<(), AdminError> {
    match state
        .keys
        .retire(kid, crate::clock::unix_now(), Some(actor))
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(AdminError::NotFound),
        Err(KeyError::Crypto(message)) => Err(AdminError::BadRequest(message)),
        Err(error) => Err(error.into()),
    }
}

/// `POST /admin/keys/rotate` (`immediately` checkbox for emergency rotation).
pub async fn rotate(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    rotate_key(&state, &session.username, form.checked("immediately")).await?;
    Ok(Redirect::to(&format!("{}/admin/keys?notice=rotated", session.base_path)).into_response())
}

/// `POST /admin/keys/{kid}/retire`.
pub async fn retire(
    State(state): State<AppState>,
    session: Session,
    Path(kid): Path<String>,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    retire_key(&state, &session.username, &kid).await?;
    Ok(Redirect::to(&format!("{}/admin/keys?notice=retired", session.base_path)).into_response())
}
