//! Refusals at `/introspect` and `/revoke` over real HTTP, and what the audit log says about them.
//! Row IDs refer to REQUIREMENTS.md.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use env::*;
use serde_json::Value;

/// POSTs `form` to `path` as `client_id` with `client_secret_post`.
async fn post_as(
    env: &Env,
    path: &str,
    form: &[(&str, &str)],
    client_id: &str,
    secret: &str,
) -> anyhow::Result<(u16, Value)> {
    let mut form = form.to_vec();
    form.push(("client_id", client_id));
    form.push(("client_secret", secret));
    let response = env
        .http
        .post(format!("{}{path}", env.url))
        .form(&form)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// The newest audit event named `event`, as (decision, error code, reason, client, jti).
async fn last_event(
    env: &Env,
    event: &str,
) -> anyhow::Result<
    Option<(
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    )>,
> {
    Ok(env
        .audit_log()
        .await?
        .into_iter()
        .find(|record| record.event.event == event)
        .map(|record| {
            let event = record.event;
            (
                event.decision.as_str().to_string(),
                event.error_code,
                event.reason,
                event.client_id,
                event.issued_jti,
            )
        }))
}

/// REVOKE-03: a client cannot revoke a token issued to another one, and the refusal is in the
/// audit log with the caller and the token's `jti`, as introspection's refusal is. It used to
/// leave no trace: an operator could not see a client trying to revoke others' tokens.
#[tokio::test]
async fn revoking_another_clients_token_is_refused_and_audited_revoke_03() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let (token, _) = env.local_access_token().await?;
    let (_, claims) = idp::decode_unverified(&token)?;
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();

    let (status, body) =
        post_as(&env, "/revoke", &[("token", &token)], POST_CLIENT, SECRET).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(env.introspect_active(&token).await?, "still active");
    assert_eq!(
        last_event(&env, "token_revocation").await?,
        Some((
            "denied".to_string(),
            Some("invalid_grant".to_string()),
            Some("token_of_another_client".to_string()),
            Some(POST_CLIENT.to_string()),
            Some(jti),
        ))
    );
    Ok(())
}

/// CAUTH-08, INTRO-01, REVOKE-01: a client that fails to authenticate at `/introspect` or
/// `/revoke` gets 401 `invalid_client`, and the refusal is audited like one at the token
/// endpoint (with the client it claimed to be), so guessing at secrets there is visible too.
#[tokio::test]
async fn failed_client_authentication_at_introspection_and_revocation_is_audited_cauth_08()
-> anyhow::Result<()> {
    let env = Env::start().await?;
    for (path, event) in [
        ("/introspect", "token_introspection"),
        ("/revoke", "token_revocation"),
    ] {
        let (status, body) =
            post_as(&env, path, &[("token", "anything")], POST_CLIENT, "wrong").await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{path}: {body}"
        );
        assert_eq!(
            last_event(&env, event).await?,
            Some((
                "denied".to_string(),
                Some("invalid_client".to_string()),
                Some("bad_client_credentials".to_string()),
                Some(POST_CLIENT.to_string()),
                None,
            )),
            "{path}"
        );
    }
    Ok(())
}
