//! The "API tokens" admin page: list, create (the token is shown once), revoke. Audited through
//! the same [`super::create_token`] / [`super::revoke_token`] as `frontdesk admin create-token`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;

use super::{CreateTokenError, create_token, revoke_token};
use crate::admin::auth::Session;
use crate::admin::now_of;
use crate::admin::views::{
    AdminError, FormData, Layout, format_optional_time, format_time, render_with_status,
};
use crate::http::AppState;
use crate::store::{AdminRole, AdminStore};

struct TokenRow {
    name: String,
    role: &'static str,
    created: String,
    last_used: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "admin/api_tokens.html")]
struct TokensPage {
    layout: Layout,
    notice: Option<String>,
    created: Option<(String, String)>,
    error: Option<String>,
    name: String,
    tokens: Vec<TokenRow>,
}

/// Query of the page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TokensQuery {
    #[serde(default)]
    notice: String,
}

async fn render_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    mut page: TokensPage,
) -> Result<Response, AdminError> {
    page.tokens = state
        .store
        .list_api_tokens()
        .await?
        .into_iter()
        .map(|token| TokenRow {
            name: token.name,
            role: token.role.as_str(),
            created: format_time(token.created_at),
            last_used: format_optional_time(token.last_used_at),
            expires: token
                .expires_at
                .map(format_time)
                .unwrap_or_else(|| "never".into()),
        })
        .collect();
    page.layout = Layout::new("API tokens", "api-tokens", session);
    Ok(render_with_status(status, &page))
}

fn empty_page() -> TokensPage {
    TokensPage {
        layout: Layout::default(),
        notice: None,
        created: None,
        error: None,
        name: String::new(),
        tokens: Vec::new(),
    }
}

/// `GET /admin/api-tokens`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Query(query): axum::extract::Query<TokensQuery>,
) -> Result<Response, AdminError> {
    let mut page = empty_page();
    if query.notice == "revoked" {
        page.notice = Some("The token was revoked; it stops working at once.".into());
    }
    render_page(&state, &session, StatusCode::OK, page).await
}

/// `POST /admin/api-tokens`: creates a token and shows it once.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    let name = form.get("name").trim().to_string();
    let mut page = empty_page();
    page.name = name.clone();
    let role = AdminRole::parse(form.get("role").trim());
    let days = form.get("expires_in_days").trim();
    let days = if days.is_empty() {
        Ok(None)
    } else {
        days.parse::<u32>()
            .map(Some)
            .map_err(|_| "The expiry must be a whole number of days.".to_string())
    };
    let (role, days) = match (role, days) {
        (Some(role), Ok(days)) => (role, days),
        (None, _) => {
            page.error = Some("The role must be admin or auditor.".into());
            return render_page(&state, &session, StatusCode::UNPROCESSABLE_ENTITY, page).await;
        }
        (_, Err(message)) => {
            page.error = Some(message);
            return render_page(&state, &session, StatusCode::UNPROCESSABLE_ENTITY, page).await;
        }
    };
    let now = now_of(&state);
    let expires_at = days.map(|days| now + i64::from(days) * 86_400);
    match create_token(
        &state.store,
        &name,
        role,
        expires_at,
        &session.username,
        now,
    )
    .await
    {
        Ok(token) => {
            page.name = String::new();
            page.created = Some((name, token));
            render_page(&state, &session, StatusCode::OK, page).await
        }
        Err(CreateTokenError::Invalid(message)) => {
            page.error = Some(message);
            render_page(&state, &session, StatusCode::UNPROCESSABLE_ENTITY, page).await
        }
        Err(CreateTokenError::Store(error)) => Err(error.into()),
    }
}

/// `POST /admin/api-tokens/{name}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    if !revoke_token(&state.store, &name, &session.username, now_of(&state)).await? {
        return Err(AdminError::NotFound);
    }
    Ok(Redirect::to(&format!(
        "{}/admin/api-tokens?notice=revoked",
        session.base_path
    ))
    .into_response())
}
