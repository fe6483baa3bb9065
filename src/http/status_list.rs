//! The published Token Status Lists (draft-ietf-oauth-status-list §8): `GET
//! /status-lists/{n}` answers the signed list a token's `status.status_list.uri` names (any list
//! ever begun), and `GET /status-lists` the URIs of the lists that still hold an unexpired token
//! (the draft's aggregation, §9), so a resource server can prefetch them. Both are public, like
//! `/jwks.json`: a list says only which indexes are revoked.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use super::AppState;
use crate::clock::unix_now;
use crate::oauth::status_list::{self, LIST_ENTRIES};
use crate::store::TokenStore;

/// The lists that exist: every one with at least one reserved index. A list whose tokens have
/// all expired still exists (a resource server holding one of them may fetch it).
async fn list_count(state: &AppState) -> Result<i64, Response> {
    let reserved = state
        .store
        .status_indexes_reserved()
        .await
        .map_err(|error| unavailable(&error))?;
    Ok((reserved + LIST_ENTRIES - 1) / LIST_ENTRIES)
}

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "serving a status list failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "temporarily_unavailable", "error_description": "The status list cannot be read right now; retry later" })),
    )
        .into_response()
}

fn no_such_list() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "error_description": "No such status list" })),
    )
        .into_response()
}

fn cached(mut response: Response, state: &AppState) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!(
        "public, max-age={}",
        state.config.tokens.status_list_ttl_secs
    )) {
        response.headers_mut().insert(CACHE_CONTROL, value);
    }
    response
}

/// `GET /status-lists/{n}`: the status list token of list `n` (`application/statuslist+jwt`).
pub async fn list(State(state): State<AppState>, Path(list): Path<String>) -> Response {
    if !state.config.tokens.status_list {
        return super::error::not_found().await;
    }
    // Plain decimal only: `+1` or `01` would be a second name for a list.
    let Some(list) = Some(list.as_str())
        .filter(|text| text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()))
        .filter(|text| *text == "0" || !text.starts_with('0'))
        .and_then(|text| text.parse::<i64>().ok())
    else {
        return no_such_list();
    };
    match list_count(&state).await {
        Ok(count) if list < count => {}
        Ok(_) => return no_such_list(),
        Err(response) => return response,
    }
    let start = list * LIST_ENTRIES;
    let now = unix_now();
    let query = || async {
        state
            .store
            .revoked_status_indexes(start, start + LIST_ENTRIES)
            .await
            .map_err(|error| error.to_string())
    };
    let build = |revoked: &[i64]| {
        let claims = status_list::list_token_claims(
            &state.config.issuer,
            list,
            revoked,
            now,
            state.config.tokens.status_list_ttl_secs,
        )
        .map_err(|error| error.to_string())?;
        state
            .keys
            .sign(status_list::TYP_STATUS_LIST, &claims)
            .map_err(|error| error.to_string())
    };
    let token = match state
        .tokens
        .status_list_tokens
        .fetch(list, now, query, build)
        .await
    {
        Ok(token) => token,
        Err(error) => return unavailable(&error),
    };
    let mut response = token.to_string().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(status_list::MEDIA_TYPE),
    );
    cached(response, &state)
}

/// `GET /status-lists`: `{"status_lists": [uri, …]}`, the lists holding at least one unexpired
/// token, in ascending order. Lists whose tokens have all expired are left out: a resource server
/// has nothing left to check against them, and listing every list ever begun would grow without
/// bound on a long-running deployment. The answer is reused for a few seconds
/// ([`status_list::ListTokens::live_lists`]).
pub async fn aggregation(State(state): State<AppState>) -> Response {
    if !state.config.tokens.status_list {
        return super::error::not_found().await;
    }
    let now = unix_now();
    let lists = match state
        .tokens
        .status_list_tokens
        .live_lists(now, || {
            state.store.status_lists_with_live_tokens(now, LIST_ENTRIES)
        })
        .await
    {
        Ok(lists) => lists,
        Err(error) => return unavailable(&error),
    };
    let uris: Vec<String> = lists
        .iter()
        .map(|list| status_list::list_uri(&state.config.issuer, *list))
        .collect();
    cached(
        Json(json!({ "status_lists": uris })).into_response(),
        &state,
    )
}
