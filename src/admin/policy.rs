//! The policy simulator: the token endpoint's decision for a subject described by its claims
//! (`exchange::explain`, the same code `frontdesk policy eval` and `POST /admin/api/v1/policy/
//! eval` run), so that a trust or CEL change can be tried against a user before the user meets
//! it. Any role may use it: it reads trust and changes nothing. The form carries claims, never a
//! token, and nothing of it is logged or stored.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;

use super::auth::Session;
use super::views::{AdminError, FormData, Layout, render, render_with_status};
use crate::http::AppState;
use crate::oauth::exchange::{Explanation, PolicyQuestion, explain};

/// Claims the form starts with: what an ID token from the first identity provider might say.
const EXAMPLE_CLAIMS: &str = r#"{
  "iss": "https://idp.example.com",
  "sub": "00u1",
  "email": "ada@example.com"
}"#;

/// The form's fields, echoed back with the result.
#[derive(Debug, Default)]
struct Fields {
    client_id: String,
    audience: String,
    resource: String,
    scope: String,
    subject_token_type: String,
    claims: String,
}

#[derive(Template)]
#[template(path = "admin/policy.html")]
struct PolicyPage {
    layout: Layout,
    fields: Fields,
    /// The claims are not a JSON object, or another input problem.
    form_error: Option<String>,
    result: Option<Explanation>,
    /// The mapped claims, pretty-printed.
    claims_json: String,
    /// The subject token types offered, with the one selected.
    token_types: Vec<(&'static str, bool)>,
}

/// The subject token types the form offers, `selected` marked.
fn token_types(selected: &str) -> Vec<(&'static str, bool)> {
    // saml2: the claims a SAML assertion becomes (docs/id-jag.md), typed in like the others.
    ["id_token", "access_token", "jwt", "saml2"]
        .into_iter()
        .map(|kind| (kind, kind == selected))
        .collect()
}

/// `GET /admin/policy`.
pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, AdminError> {
    let issuer = state
        .tokens
        .trust
        .current()
        .first_idp_issuer()
        .unwrap_or_else(|| "https://idp.example.com".into());
    let fields = Fields {
        subject_token_type: "id_token".into(),
        claims: EXAMPLE_CLAIMS.replace("https://idp.example.com", &issuer),
        ..Fields::default()
    };
    Ok(render(&PolicyPage {
        layout: Layout::new("Policy simulator", "policy", &session),
        fields,
        form_error: None,
        result: None,
        claims_json: String::new(),
        token_types: token_types("id_token"),
    }))
}

/// `POST /admin/policy`: decides and shows the result beside the filled form.
pub async fn evaluate(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, AdminError> {
    session.check_csrf(&form)?;
    let fields = Fields {
        client_id: form.get("client_id").trim().to_string(),
        audience: form.get("audience").trim().to_string(),
        resource: form.get("resource").trim().to_string(),
        scope: form.get("scope").trim().to_string(),
        subject_token_type: form.get("subject_token_type").trim().to_string(),
        claims: form.get("claims").to_string(),
    };
    let layout = Layout::new("Policy simulator", "policy", &session);
    let claims =
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&fields.claims) {
            Ok(claims) => claims,
            Err(error) => {
                return Ok(render_with_status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &PolicyPage {
                        layout,
                        form_error: Some(format!("The claims are not a JSON object: {error}")),
                        token_types: token_types(&fields.subject_token_type),
                        fields,
                        result: None,
                        claims_json: String::new(),
                    },
                ));
            }
        };
    let optional = |value: &str| (!value.is_empty()).then(|| value.to_string());
    let question = PolicyQuestion {
        client_id: fields.client_id.clone(),
        claims,
        subject_token_type: optional(&fields.subject_token_type),
        audience: optional(&fields.audience),
        resources: optional(&fields.resource).into_iter().collect(),
        scope: optional(&fields.scope),
        requested_token_type: None,
        authorization_details: None,
    };
    let result = explain(
        &state.config,
        &state.tokens.trust.current(),
        &question,
        crate::clock::unix_now(),
    );
    let claims_json = serde_json::to_string_pretty(&result.claims).unwrap_or_default();
    Ok(render(&PolicyPage {
        layout,
        token_types: token_types(&fields.subject_token_type),
        fields,
        form_error: None,
        result: Some(result),
        claims_json,
    }))
}
