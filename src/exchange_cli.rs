//! `frontdesk exchange`: performs an RFC 8693 token exchange as a client would, and prints the
//! response with the issued token's header and claims decoded (not verified: this is a tool for
//! looking, the relying party verifies).

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::app::StartupError;
use crate::secret::SecretString;

/// Arguments of `exchange`.
#[derive(Debug, clap::Args)]
pub struct ExchangeArgs {
    /// The authorization server's issuer; its token endpoint is discovered from RFC 8414 metadata.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub issuer: String,
    /// The client_id.
    #[arg(long)]
    pub client_id: String,
    /// The client secret (client_secret_basic). Prefer FRONTDESK_CLIENT_SECRET.
    #[arg(long, env = "FRONTDESK_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: SecretString,
    /// The subject token, or `-` to read it from standard input (preferable: a command line is
    /// visible to other users in the process list). Redacted in `Debug`.
    #[arg(long)]
    pub subject_token: SecretString,
    /// Subject token type: id_token, jwt, access_token, saml2 (the assertion's XML is encoded
    /// for you), refresh_token, or a full URN.
    #[arg(long, default_value = "id_token")]
    pub subject_token_type: String,
    /// Requested token type: id-jag, jwt, access_token, refresh_token (for a SAML assertion), or
    /// a full URN.
    #[arg(long, default_value = "id-jag")]
    pub requested_token_type: String,
    /// Audience (repeatable).
    #[arg(long)]
    pub audience: Vec<String>,
    /// Resource (repeatable).
    #[arg(long)]
    pub resource: Vec<String>,
    /// Space-separated scopes.
    #[arg(long)]
    pub scope: Option<String>,
}

fn token_type_uri(short: &str) -> String {
    if short.starts_with("urn:") {
        short.to_string()
    } else {
        format!("urn:ietf:params:oauth:token-type:{short}")
    }
}

fn decode_part(part: &str) -> Value {
    URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

/// Runs the exchange and prints the result as JSON.
pub async fn run(args: ExchangeArgs) -> Result<(), StartupError> {
    let fail = |message: String| StartupError(message);
    let subject_token = if args.subject_token.expose() == "-" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|error| fail(format!("cannot read the subject token: {error}")))?;
        input.trim().to_string()
    } else {
        args.subject_token.expose().to_owned()
    };
    let subject_token_type = token_type_uri(&args.subject_token_type);
    // A SAML assertion given as its XML is encoded as RFC 8693 §3 asks (base64url).
    let subject_token =
        if subject_token_type == crate::oauth::TOKEN_TYPE_SAML2 && subject_token.starts_with('<') {
            URL_SAFE_NO_PAD.encode(subject_token.as_bytes())
        } else {
            subject_token
        };
    // The client's secret goes to the token endpoint the metadata names: follow redirects only
    // to https (or loopback http), as every trust fetch does (JWKS-07).
    let http = crate::jose::jwks_cache::trust_http_client(std::time::Duration::from_secs(30))
        .map_err(|error| fail(format!("cannot build the HTTP client: {error}")))?;
    let metadata_url = url::Url::parse(&args.issuer)
        .and_then(|issuer| crate::jose::jwks_cache::oauth_metadata_url(&issuer))
        .map_err(|error| {
            fail(format!(
                "the issuer `{}` is not a URL: {error}",
                args.issuer
            ))
        })?;
    let metadata: Value = http
        .get(metadata_url.as_str())
        .send()
        .await
        .map_err(|error| fail(format!("cannot fetch {metadata_url}: {error}")))?
        .json()
        .await
        .map_err(|error| fail(format!("{metadata_url} is not JSON metadata: {error}")))?;
    // RFC 8414 §3.3: metadata naming another issuer must not be used (a misrouted path or an
    // impersonating server would otherwise get the client secret).
    if metadata["issuer"].as_str() != Some(args.issuer.as_str()) {
        return Err(fail(format!(
            "{metadata_url} describes the issuer {}, not {}",
            metadata["issuer"], args.issuer
        )));
    }
    let token_endpoint = metadata["token_endpoint"]
        .as_str()
        .ok_or_else(|| fail(format!("{metadata_url} has no token_endpoint")))?;
    if !crate::trust::is_https_or_loopback(token_endpoint) {
        return Err(fail(format!(
            "the token endpoint {token_endpoint} is not https (nor http on a loopback address); the client secret is not sent there"
        )));
    }
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", crate::oauth::GRANT_TOKEN_EXCHANGE.to_string()),
        ("subject_token", subject_token),
        ("subject_token_type", subject_token_type),
        (
            "requested_token_type",
            token_type_uri(&args.requested_token_type),
        ),
    ];
    form.extend(
        args.audience
            .iter()
            .map(|value| ("audience", value.clone())),
    );
    form.extend(
        args.resource
            .iter()
            .map(|value| ("resource", value.clone())),
    );
    if let Some(scope) = &args.scope {
        form.push(("scope", scope.clone()));
    }
    let body = serde_urlencoded::to_string(&form).map_err(|error| fail(error.to_string()))?;
    let response = http
        .post(token_endpoint)
        .basic_auth(&args.client_id, Some(args.client_secret.expose()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|error| fail(format!("POST {token_endpoint} failed: {error}")))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|error| fail(format!("the token endpoint did not answer JSON: {error}")))?;
    if !status.is_success() {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "status": status.as_u16(), "error": body }))
                .unwrap_or_default()
        );
        return Err(fail(format!("the exchange was refused ({status})")));
    }
    let token = body["access_token"].as_str().unwrap_or_default();
    let mut parts = token.split('.');
    let header = parts.next().map(decode_part).unwrap_or(Value::Null);
    let claims = parts.next().map(decode_part).unwrap_or(Value::Null);
    let output = json!({
        "response": body,
        "decoded": { "header": header, "claims": claims },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&output).unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    /// A stray `{:?}` of the parsed command line prints neither the subject token nor the
    /// client secret.
    #[test]
    fn the_arguments_debug_form_hides_the_subject_token_and_secret() {
        let cli = crate::cli::Cli::try_parse_from([
            "frontdesk",
            "exchange",
            "--client-id",
            "agent",
            "--client-secret",
            "secret-value-1234",
            "--subject-token",
            "eyJhbGciOiJSUzI1NiJ9.subject.token",
            "--audience",
            "https://ras.example",
        ])
        .expect("parses");
        let printed = format!("{cli:?}");
        assert!(printed.contains("agent"), "{printed}");
        assert!(!printed.contains("secret-value-1234"), "{printed}");
        assert!(!printed.contains("subject.token"), "{printed}");
    }
}
