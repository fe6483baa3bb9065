//! Configuration loading: defaults, the TOML file, `FRONTDESK_*` variables and `*_FILE` secrets,
//! and the errors that stop startup. The environment is always passed explicitly, never read from
//! the process, so these tests run in parallel without interfering.

use std::path::{Path, PathBuf};

use super::*;

/// A valid key-encryption key (32 bytes of 0x01, base64).
const KEK: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_string(), (*value).to_string()))
        .collect()
}

/// Writes `text` as `frontdesk.toml` in a fresh directory.
fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("frontdesk.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// A minimal production file: https issuer and a KEK.
fn production(extra: &str) -> String {
    format!("issuer = \"https://sts.example.com\"\n[keys]\nencryption_key = \"{KEK}\"\n{extra}")
}

/// One identity provider, one audience and one client that may ask for it: a file's trust
/// lists, appended to [`production`]'s settings.
const TRUST_LISTS: &str = r#"
[[identity_providers]]
id = "okta"
issuer = "https://example.okta.com"

[[audiences]]
id = "wiki"
issuer = "https://wiki.example.com"
scopes = ["read", "write"]

[[clients]]
client_id = "agent"
auth_method = "private_key_jwt"
jwks_uri = "https://agent.example.com/jwks.json"
audiences = ["wiki"]
"#;

fn load_file(text: &str, variables: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let (_dir, path) = write_config(text);
    Config::load(Some(&path), env(variables))
}

fn load_env(variables: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(None, env(variables))
}

#[track_caller]
fn assert_error(error: &ConfigError, key: &str, origin_contains: &str) {
    assert_eq!(error.key, key, "wrong key in: {error}");
    assert!(
        error.origin.contains(origin_contains),
        "origin `{}` does not mention `{origin_contains}` (error: {error})",
        error.origin
    );
    let line = error.to_string();
    assert!(line.contains(key), "message does not name the key: {line}");
    assert!(!line.contains('\n'), "message is not one line: {line}");
}

#[test]
fn defaults_make_a_valid_development_instance() {
    let config = load_env(&[]).expect("defaults load");
    assert!(config.development);
    assert!(config.source.is_none());
    assert_eq!(config.issuer, DEVELOPMENT_ISSUER);
    assert_eq!(config.server.listen, "127.0.0.1:8080");
    assert_eq!(
        config.database.url.expose(),
        format!("sqlite://{DEVELOPMENT_DATABASE_FILE}")
    );
    assert_eq!(config.keys.algorithm, "ES256");
    assert!(config.keys.encryption_key.is_none());
    assert!(config.issuer_is_loopback_http());
    assert_eq!(config.validate(), Ok(()));
    // The same defaults without the development flag lack a key-encryption key.
    let error = Config::default().validate().expect_err("not development");
    assert_eq!(error.0, "keys.encryption_key");
}

#[test]
fn a_file_sets_every_section() {
    let config = load_file(
        &production(
            &[
                r#"algorithm = "EdDSA"
promote_after_secs = 7200
jwks_max_age_secs = 600

[server]
listen = "0.0.0.0:9000"
request_timeout_secs = 30
max_body_bytes = 2048

[database]
url = "postgres://frontdesk:pw@db.internal/frontdesk"
max_connections = 3

[tokens]
id_jag_lifetime_secs = 120
subject_token_error = "invalid_grant"

[log]
format = "pretty"
level = "debug"
"#,
                TRUST_LISTS,
                "idp_client_ids = { okta = \"0oa-agent\" }\n",
            ]
            .concat(),
        ),
        &[],
    )
    .expect("file loads");
    assert!(!config.development);
    assert_eq!(config.issuer, "https://sts.example.com");
    assert!(
        config
            .source
            .as_deref()
            .is_some_and(|p| p.ends_with("frontdesk.toml"))
    );
    assert_eq!(config.keys.algorithm, "EdDSA");
    assert_eq!(config.keys.promote_after_secs, 7200);
    assert_eq!(config.server.listen, "0.0.0.0:9000");
    assert_eq!(config.server.request_timeout_secs, 30);
    assert_eq!(config.server.max_body_bytes, 2048);
    // Keys not in the file keep their defaults.
    assert_eq!(config.server.shutdown_grace_secs, 20);
    assert_eq!(config.database.max_connections, 3);
    assert_eq!(config.tokens.id_jag_lifetime_secs, 120);
    assert_eq!(config.tokens.access_token_lifetime_secs, 600);
    assert_eq!(config.tokens.subject_token_error, "invalid_grant");
    assert_eq!(config.log.format, "pretty");
    assert_eq!(config.identity_providers.len(), 1);
    assert_eq!(config.identity_providers[0].algorithms, ["RS256", "ES256"]);
    assert_eq!(config.identity_providers[0].token_types, ["id_token"]);
    assert!(config.identity_providers[0].enabled);
    assert_eq!(config.audiences[0].token_type, "id-jag");
    assert_eq!(config.audiences[0].scopes, ["read", "write"]);
    assert_eq!(config.clients[0].idp_client_ids["okta"], "0oa-agent");
    assert_eq!(
        config.clients[0].grant_types,
        ["urn:ietf:params:oauth:grant-type:token-exchange"]
    );
}

#[test]
fn unknown_key_in_the_file_names_the_key_the_file_and_the_line() {
    let (dir, path) = write_config(&production(
        "\n[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n",
    ));
    let error = Config::load(Some(&path), env(&[])).expect_err("unknown key");
    assert!(error.key.contains("server"), "{error}");
    let line = error.to_string();
    assert!(line.contains("lisen"), "does not name the key: {line}");
    assert!(
        line.contains(&path.display().to_string()),
        "does not name the file: {line}"
    );
    assert!(line.contains("line 7"), "does not give the line: {line}");
    drop(dir);
}

#[test]
fn unknown_top_level_key_and_unknown_section_are_errors() {
    let error = load_file(&production("").replace("issuer", "isuer"), &[]).expect_err("typo");
    assert!(error.to_string().contains("isuer"), "{error}");
    let error = load_file(&production("[metrics]\nenabled = true\n"), &[]).expect_err("section");
    assert!(error.to_string().contains("metrics"), "{error}");
}

#[test]
fn a_syntax_error_names_the_file() {
    let (_dir, path) = write_config("issuer = \"https://sts.example.com\n");
    let error = Config::load(Some(&path), env(&[])).expect_err("syntax");
    assert_error(&error, "(syntax)", &path.display().to_string());
}

#[test]
fn a_missing_file_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.toml");
    let error = Config::load(Some(&path), env(&[])).expect_err("missing");
    assert_error(&error, "(file)", "absent.toml");
}

#[test]
fn a_wrong_type_names_the_key() {
    let error = load_file(
        &production("[server]\nrequest_timeout_secs = \"soon\"\n"),
        &[],
    )
    .expect_err("type");
    assert_error(&error, "server.request_timeout_secs", "frontdesk.toml");
}

/// Each invalid value stops loading with an error naming the key and the file.
#[test]
fn invalid_values_name_the_key_and_the_file() {
    let cases: &[(&str, &str)] = &[
        ("[server]\nlisten = \"localhost\"\n", "server.listen"),
        ("[server]\nlisten = \"127.0.0.1:99999\"\n", "server.listen"),
        (
            "[server]\nrequest_timeout_secs = 0\n",
            "server.request_timeout_secs",
        ),
        ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes"),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (
            "[authorization]\nrequests_per_minute_per_address = 1000001\n",
            "authorization.requests_per_minute_per_address",
        ),
        (
            "[server]\nmax_connections = 1000001\n",
            "server.max_connections",
        ),
        (
            "[server]\ntrusted_proxies = [\"proxy.internal\"]\n",
            "server.trusted_proxies",
        ),
        ("[database]\nurl = \"mysql://db/x\"\n", "database.url"),
        (
            "[database]\nmax_connections = 0\n",
            "database.max_connections",
        ),
        ("[keys]\nalgorithm = \"HS256\"\n", "keys.algorithm"),
        ("[keys]\nalgorithm = \"none\"\n", "keys.algorithm"),
        ("[keys]\nrsa_bits = 1024\n", "keys.rsa_bits"),
        (
            "[keys]\njwks_max_age_secs = 7200\n",
            "keys.promote_after_secs",
        ),
        // Equal is not enough: another instance publishes the key up to 5 s later.
        (
            "[keys]\njwks_max_age_secs = 3600\n",
            "keys.promote_after_secs",
        ),
        (
            "[tokens]\nid_jag_lifetime_secs = 0\n",
            "tokens.id_jag_lifetime_secs",
        ),
        (
            "[tokens]\naccess_token_lifetime_secs = 0\n",
            "tokens.access_token_lifetime_secs",
        ),
        (
            "[tokens]\nchaining_grant_lifetime_secs = 0\n",
            "tokens.chaining_grant_lifetime_secs",
        ),
        (
            "[tokens]\nid_jag_lifetime_secs = 3601\n",
            "tokens.id_jag_lifetime_secs",
        ),
        (
            "[tokens]\nclock_skew_secs = 301\n",
            "tokens.clock_skew_secs",
        ),
        (
            "[tokens]\ndpop_proof_max_age_secs = 0\n",
            "tokens.dpop_proof_max_age_secs",
        ),
        (
            "[tokens]\ndpop_proof_max_age_secs = 301\n",
            "tokens.dpop_proof_max_age_secs",
        ),
        (
            "[tokens]\ndpop_nonce_lifetime_secs = 0\n",
            "tokens.dpop_nonce_lifetime_secs",
        ),
        (
            "[tokens]\ndpop_nonce_lifetime_secs = 86401\n",
            "tokens.dpop_nonce_lifetime_secs",
        ),
        (
            "[tokens]\nstatus_list_ttl_secs = 0\n",
            "tokens.status_list_ttl_secs",
        ),
        (
            "[tokens]\nsubject_token_error = \"access_denied\"\n",
            "tokens.subject_token_error",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[audit]\nretention_days = 36501\n", "audit.retention_days"),
        (
            "[keys]\nrotate_after_days = 3651\n",
            "keys.rotate_after_days",
        ),
        ("version = 2\n", "version"),
    ];
    for (body, key) in cases {
        // The production header has a [keys] table; put a [keys] case's lines there.
        let text = match body.strip_prefix("[keys]\n") {
            Some(lines) => production(lines),
            None if body.starts_with('[') => production(body),
            None => format!("{body}{}", production("")),
        };
        let error = load_file(&text, &[]).expect_err(key);
        assert_error(&error, key, "frontdesk.toml");
    }
}

#[test]
fn zero_clock_skew_is_allowed() {
    let config = load_file(&production("[tokens]\nclock_skew_secs = 0\n"), &[]).expect("zero skew");
    assert_eq!(config.tokens.clock_skew_secs, 0);
}

/// TOK-12, META-03: plain http only on loopback, https with no query or fragment.
#[test]
fn issuer_must_be_https_unless_loopback() {
    for bad in [
        "http://sts.example.com",
        "http://10.0.0.1:8080",
        "https://sts.example.com/?tenant=1",
        "https://sts.example.com/#x",
        "sts.example.com",
    ] {
        let error = load_env(&[("FRONTDESK_ISSUER", bad)]).expect_err(bad);
        assert_error(&error, "issuer", "FRONTDESK_ISSUER");
    }
    for good in [
        "http://127.0.0.1:8080",
        "http://localhost:3000",
        "http://[::1]:8080",
        "https://sts.example.com",
        "https://sts.example.com/tenant1",
    ] {
        load_env(&[
            ("FRONTDESK_ISSUER", good),
            ("FRONTDESK_KEY_ENCRYPTION_KEY", KEK),
        ])
        .expect(good);
    }
}

/// The server answers under the issuer's path, so the path must be one the router takes as
/// written: plain segments, no dot segments or escapes a URL parser would rewrite, no route
/// syntax (`{id}`, `*`), no credentials.
#[test]
fn an_issuer_path_is_plain_segments_and_names_where_the_server_answers() {
    for bad in [
        "https://sts.example.com/a/../b",
        "https://sts.example.com/./a",
        "https://sts.example.com/.well-known",
        "https://sts.example.com//a",
        "https://sts.example.com/ten%20ant",
        "https://sts.example.com/{tenant}",
        "https://sts.example.com/*rest",
        "https://sts.example.com/a:b",
        "https://user:pw@sts.example.com",
    ] {
        let error = load_env(&[("FRONTDESK_ISSUER", bad)]).expect_err(bad);
        assert_error(&error, "issuer", "FRONTDESK_ISSUER");
    }
    for (issuer, path) in [
        ("https://sts.example.com", ""),
        ("https://sts.example.com/", ""),
        ("http://127.0.0.1:8080", ""),
        ("https://sts.example.com/tenant1", "/tenant1"),
        ("https://sts.example.com/tenant1/", "/tenant1"),
        ("https://sts.example.com:8443/a/b-c.d_e~f", "/a/b-c.d_e~f"),
        ("http://[::1]:8080/sts", "/sts"),
    ] {
        let config = load_env(&[
            ("FRONTDESK_ISSUER", issuer),
            ("FRONTDESK_KEY_ENCRYPTION_KEY", KEK),
        ])
        .expect(issuer);
        assert_eq!(config.issuer_path(), path, "{issuer}");
    }
}

/// Incomplete or contradictory trust entries stop the load, naming the entry and its field
/// (FED-01 for identity providers, FED-03 for audiences).
#[test]
fn trust_objects_are_validated_with_their_index() {
    let error = load_file(
        &production(
            "[[identity_providers]]\nid = \"okta\"\nissuer = \"https://okta\"\nalgorithms = [\"HS256\"]\n",
        ),
        &[],
    )
    .expect_err("hmac idp");
    assert_error(&error, "identity_providers[0].algorithms", "frontdesk.toml");

    // FED-01: an issuer, a key source, algorithms, token types, expected audiences and a
    // subject mapping that fit together.
    for (extra, field) in [
        ("algorithms = []\n", "algorithms"),
        ("token_types = []\n", "token_types"),
        ("token_types = [\"id-token\"]\n", "token_types"),
        ("token_types = [\"access_token\"]\n", "audiences"),
        (
            "jwks_uri = \"https://okta/keys\"\njwks = '{\"keys\": []}'\n",
            "jwks",
        ),
        ("jwks_uri = \"not a url\"\n", "jwks_uri"),
        ("subject_mode = \"mapped\"\n", "subject_mapping"),
        ("subject_mapping = \"subject.sub\"\n", "subject_mapping"),
        // Request limits are 1 to 1,000,000 a minute.
        ("requests_per_minute = 0\n", "requests_per_minute"),
        (
            "subject_requests_per_minute = 1000001\n",
            "subject_requests_per_minute",
        ),
        // CHAIN-B-09: a claim frontdesk sets itself is never transcribed from an assertion,
        // and the list names each claim once, by a plain name.
        ("transcribe_claims = [\"sub\"]\n", "transcribe_claims"),
        ("transcribe_claims = [\"cnf\"]\n", "transcribe_claims"),
        (
            "transcribe_claims = [\"groups\", \"groups\"]\n",
            "transcribe_claims",
        ),
        ("transcribe_claims = [\"a b\"]\n", "transcribe_claims"),
        // Private key material is never stored where public keys belong (a symmetric key, or
        // an RSA key with its private exponent).
        (
            "jwks = '{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}'\n",
            "jwks",
        ),
        (
            "jwks = '{\"keys\": [{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"d\": \"AQAB\"}]}'\n",
            "jwks",
        ),
    ] {
        let error = load_file(
            &production(&format!(
                "[[identity_providers]]\nid = \"okta\"\nissuer = \"https://okta\"\n{extra}"
            )),
            &[],
        )
        .expect_err(field);
        assert_error(
            &error,
            &format!("identity_providers[0].{field}"),
            "frontdesk.toml",
        );
    }
    let error = load_file(&production("[[identity_providers]]\nid = \"okta\"\n"), &[])
        .expect_err("no issuer");
    assert!(error.key.starts_with("identity_providers[0]"), "{error}");

    // FED-03: an audience's resources, lifetime, mapped and released claims are checked.
    for (extra, field) in [
        (
            "resources = [\"https://mcp.example.com/#f\"]\n",
            "resources",
        ),
        ("lifetime_secs = 0\n", "lifetime_secs"),
        ("claims = { name = 'subject.name' }\n", "claims.name"),
        // IDJAG-JWT-19: only the authentication context, sub_id and OIDC's standard claims can
        // be released; a registered claim or an IdP's own claim cannot.
        ("release = [\"cnf\"]\n", "release"),
        ("release = [\"tid\"]\n", "release"),
        ("token_type = \"saml2\"\n", "token_type"),
        (
            "authorization_details_types = [\"mcp tools\"]\n",
            "authorization_details_types",
        ),
        (
            "authorization_details_types = [\"mcp_tools\", \"mcp_tools\"]\n",
            "authorization_details_types",
        ),
    ] {
        let error = load_file(
            &production(&format!(
                "[[audiences]]\nid = \"wiki\"\nissuer = \"https://wiki.example.com\"\n{extra}"
            )),
            &[],
        )
        .expect_err(field);
        assert_error(&error, &format!("audiences[0].{field}"), "frontdesk.toml");
    }

    let error = load_file(
        &production("[[clients]]\nclient_id = \"c\"\nauth_method = \"client_secret_basic\"\nsecret_hash = \"plain\"\n"),
        &[],
    )
    .expect_err("plaintext secret");
    assert_error(&error, "clients[0].secret_hash", "frontdesk.toml");

    let error = load_file(
        &production(
            "[[clients]]\nclient_id = \"c\"\nauth_method = \"private_key_jwt\"\njwks_uri = \"https://c/jwks\"\naudiences = [\"nowhere\"]\n",
        ),
        &[],
    )
    .expect_err("unknown audience");
    assert_error(&error, "clients[0].audiences", "frontdesk.toml");

    for (extra, field) in [
        (
            "requests_per_minute = 0\n",
            "clients[0].requests_per_minute",
        ),
        (
            "registration_access_token_hash = \"00\"\n",
            "clients[0].registration_access_token_hash",
        ),
        (
            "introspect_audiences = [\"*\", \"https://mcp.example.com\"]\n",
            "clients[0].introspect_audiences",
        ),
        (
            "audience_tenant_client_ids = { saas = \"x\" }\n",
            "clients[0].audience_tenant_client_ids",
        ),
        (
            "audience_tenant_client_ids = { \"wiki/acme\" = \"x\" }\n",
            "clients[0].audience_tenant_client_ids",
        ),
        (
            "introspect_audiences = [\"mcp server\"]\n",
            "clients[0].introspect_audiences",
        ),
        (
            "introspect_audiences = [\"https://mcp.example.com\", \"https://mcp.example.com\"]\n",
            "clients[0].introspect_audiences",
        ),
        // RFC 7591 §2: jwks and jwks_uri must not both be present (which keys would count?).
        ("jwks = '{\"keys\": []}'\n", "clients[0].jwks"),
    ] {
        let error = load_file(
            &production(&format!(
                "[[clients]]\nclient_id = \"c\"\nauth_method = \"private_key_jwt\"\njwks_uri = \"https://c/jwks\"\n{extra}"
            )),
            &[],
        )
        .expect_err(field);
        assert_error(&error, field, "frontdesk.toml");
    }
}

#[test]
fn a_saml_identity_provider_needs_its_certificates_and_may_have_an_http_entity_id() {
    let certificate = include_str!("../../tests/fixtures/saml/idp.crt");
    let saml = |issuer: &str, extra: &str| {
        production(&format!(
            "[[identity_providers]]\nid = \"okta-saml\"\nissuer = \"{issuer}\"\ntoken_types = [\"saml2\"]\n{extra}"
        ))
    };
    let with_certificate = format!("saml_certificates = '''\n{certificate}'''\n");
    // Okta's SAML entity IDs are http URLs: accepted for a SAML-only IdP, nothing is fetched.
    let config = load_file(&saml("http://www.okta.com/exk123", &with_certificate), &[])
        .expect("SAML identity provider");
    assert_eq!(
        config.identity_providers[0].saml_certificates.as_deref(),
        Some(certificate)
    );
    let broken =
        "saml_certificates = \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\"\n";
    for (text, field) in [
        (saml("http://www.okta.com/exk123", ""), "saml_certificates"),
        (
            saml("http://www.okta.com/exk123", broken),
            "saml_certificates",
        ),
        (saml("not a uri", &with_certificate), "issuer"),
        (
            production(&format!(
                "[[identity_providers]]\nid = \"mixed\"\nissuer = \"http://idp.example.com\"\ntoken_types = [\"saml2\", \"id_token\"]\n{with_certificate}"
            )),
            "issuer",
        ),
        (
            production(&format!(
                "[[identity_providers]]\nid = \"oidc\"\nissuer = \"https://idp.example.com\"\n{with_certificate}"
            )),
            "saml_certificates",
        ),
    ] {
        let error = load_file(&text, &[]).expect_err(field);
        assert_error(
            &error,
            &format!("identity_providers[0].{field}"),
            "frontdesk.toml",
        );
    }
}

#[test]
fn environment_overrides_the_file() {
    let config = load_file(
        &production("[server]\nlisten = \"127.0.0.1:9000\"\n"),
        &[
            ("FRONTDESK_LISTEN", "127.0.0.1:9100"),
            ("FRONTDESK_ISSUER", "https://other.example.com"),
            ("FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS", "42"),
            ("FRONTDESK_DATABASE_URL", "postgres://u:p@db/x"),
            ("FRONTDESK_TOKENS__SUBJECT_TOKEN_ERROR", "invalid_grant"),
            ("FRONTDESK_LOG__LEVEL", "warn"),
        ],
    )
    .expect("env applies");
    assert_eq!(config.server.listen, "127.0.0.1:9100");
    assert_eq!(config.issuer, "https://other.example.com");
    assert_eq!(config.server.request_timeout_secs, 42);
    assert_eq!(config.database.url.expose(), "postgres://u:p@db/x");
    assert_eq!(config.tokens.subject_token_error, "invalid_grant");
    assert_eq!(config.log.level, "warn");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let error = load_env(&[("FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS", "abc")]).expect_err("abc");
    assert_error(
        &error,
        "server.request_timeout_secs",
        "FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS",
    );
    // A value that parses but fails validation also names the variable, not the file.
    let error = load_file(
        &production(""),
        &[("FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS", "0")],
    )
    .expect_err("zero");
    assert_error(
        &error,
        "server.request_timeout_secs",
        "FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS",
    );
    let error = load_env(&[("FRONTDESK_KEYS__ALGORITHM", "HS256")]).expect_err("hs256");
    assert_error(&error, "keys.algorithm", "FRONTDESK_KEYS__ALGORITHM");
}

#[test]
fn unknown_frontdesk_variables_are_errors() {
    for name in [
        "FRONTDESK_FOO",
        "FRONTDESK_SERVER__LISEN",
        "FRONTDESK_NOPE__LISTEN",
        "FRONTDESK_SERVER_LISTEN",
        "FRONTDESK_IDENTITY_PROVIDERS",
    ] {
        let error = load_env(&[(name, "1")]).expect_err(name);
        assert_eq!(error.key, name);
        assert!(error.to_string().contains(name), "{error}");
        assert!(error.to_string().contains("unknown"), "{error}");
    }
}

#[test]
fn test_and_non_config_variables_are_ignored() {
    let config = load_env(&[
        ("FRONTDESK_TEST_POSTGRES_URL", "postgres://x"),
        ("FRONTDESK_TEST_ANYTHING", "whatever"),
        ("FRONTDESK_CONFIG", "/nonexistent.toml"),
        ("FRONTDESK_LOG", "debug"),
        ("FRONTDESK_REQUIRE_POSTGRES", "1"),
        ("PATH", "/usr/bin"),
        ("FRONTDESKX", "not ours"),
    ])
    .expect("ignored");
    assert!(config.development);
}

#[test]
fn file_variants_read_the_value_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, format!("{KEK}\n")).expect("write");
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, "postgres://u:secret@db/x\n").expect("write");
    let timeout_file = dir.path().join("timeout");
    std::fs::write(&timeout_file, " 7 \n").expect("write");
    let config = load_file(
        "issuer = \"https://sts.example.com\"\n",
        &[
            ("FRONTDESK_KEY_ENCRYPTION_KEY_FILE", path_str(&kek_file)),
            ("FRONTDESK_DATABASE_URL_FILE", path_str(&url_file)),
            (
                "FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS_FILE",
                path_str(&timeout_file),
            ),
        ],
    )
    .expect("file variants");
    assert_eq!(
        config
            .keys
            .encryption_key
            .as_ref()
            .map(SecretString::expose),
        Some(KEK)
    );
    assert_eq!(config.database.url.expose(), "postgres://u:secret@db/x");
    assert_eq!(config.server.request_timeout_secs, 7);
}

/// The files `*_FILE` variables name are remembered (for start-up's warning about one other
/// users can read); a file larger than 64 KiB, such as `/dev/zero` named by mistake, is refused
/// at once rather than read until memory runs out, and a file that is not text is refused
/// without its content being quoted.
#[test]
fn file_variants_are_remembered_and_oversized_or_binary_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, "postgres://u:secret@db/x\n").expect("write");
    let config = load_file(
        "issuer = \"https://sts.example.com\"\n",
        &[
            ("FRONTDESK_KEY_ENCRYPTION_KEY", KEK),
            ("FRONTDESK_DATABASE_URL_FILE", path_str(&url_file)),
        ],
    )
    .expect("file variant");
    assert_eq!(
        config.secret_files,
        vec![("FRONTDESK_DATABASE_URL_FILE".to_string(), url_file.clone())]
    );
    let error = load_file(
        "issuer = \"https://sts.example.com\"\n",
        &[
            ("FRONTDESK_KEY_ENCRYPTION_KEY", KEK),
            ("FRONTDESK_DATABASE_URL_FILE", "/dev/zero"),
        ],
    )
    .expect_err("an endless file");
    assert_error(&error, "database.url", "FRONTDESK_DATABASE_URL_FILE");
    assert!(error.message.contains("larger than 65536 bytes"), "{error}");
    let binary = dir.path().join("binary");
    std::fs::write(&binary, [0x70, 0xff, 0xfe, 0x00]).expect("write");
    let error = load_file(
        "issuer = \"https://sts.example.com\"\n",
        &[
            ("FRONTDESK_KEY_ENCRYPTION_KEY", KEK),
            ("FRONTDESK_DATABASE_URL_FILE", path_str(&binary)),
        ],
    )
    .expect_err("not text");
    assert!(error.message.contains("not UTF-8 text"), "{error}");
}

#[test]
fn an_unreadable_file_variant_names_the_variable_and_the_file() {
    let error = load_env(&[("FRONTDESK_KEY_ENCRYPTION_KEY_FILE", "/nonexistent/kek")])
        .expect_err("missing file");
    assert_error(
        &error,
        "keys.encryption_key",
        "FRONTDESK_KEY_ENCRYPTION_KEY_FILE",
    );
    assert!(error.message.contains("/nonexistent/kek"), "{error}");
}

#[test]
fn the_encryption_key_file_setting_is_a_path_not_a_value() {
    let config = load_file(
        "issuer = \"https://sts.example.com\"\n",
        &[("FRONTDESK_KEYS__ENCRYPTION_KEY_FILE", "/run/secrets/kek")],
    )
    .expect("path");
    assert_eq!(
        config.keys.encryption_key_file.as_deref(),
        Some(Path::new("/run/secrets/kek"))
    );
}

#[test]
fn a_kek_is_required_outside_development() {
    let error = load_file("issuer = \"https://sts.example.com\"\n", &[]).expect_err("no kek");
    assert_error(&error, "keys.encryption_key", "frontdesk.toml");
    assert!(
        error.message.contains("FRONTDESK_KEY_ENCRYPTION_KEY"),
        "{error}"
    );
    // Development needs none: a key file is generated at startup.
    assert!(load_env(&[]).expect("dev").keys.encryption_key.is_none());
}

#[test]
fn a_malformed_kek_is_refused_at_load() {
    let error = load_env(&[("FRONTDESK_KEY_ENCRYPTION_KEY", "c2hvcnQ=")]).expect_err("short");
    assert_error(
        &error,
        "keys.encryption_key",
        "FRONTDESK_KEY_ENCRYPTION_KEY",
    );
    assert!(error.message.contains("32 bytes"), "{error}");
    let error =
        load_file(&production("encryption_key_file = \"/run/kek\"\n"), &[]).expect_err("both");
    assert_error(&error, "keys.encryption_key", "frontdesk.toml");
}

#[test]
fn debug_of_config_redacts_secrets() {
    let config = load_file(
        &production(""),
        &[(
            "FRONTDESK_DATABASE_URL",
            "postgres://frontdesk:hunter2@db/x",
        )],
    )
    .expect("load");
    let debug = format!("{config:?}");
    assert!(!debug.contains(KEK), "KEK in Debug: {debug}");
    assert!(
        !debug.contains("hunter2"),
        "database password in Debug: {debug}"
    );
    assert!(debug.contains("[redacted]"), "{debug}");
    // The error for a bad KEK does not echo it either.
    let error = load_env(&[("FRONTDESK_KEY_ENCRYPTION_KEY", "c2VjcmV0LXZhbHVl")]).expect_err("bad");
    assert!(!error.to_string().contains("c2VjcmV0LXZhbHVl"), "{error}");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn a_public_client_gets_only_the_code_and_refresh_grants_and_no_secret() {
    let public = "[[clients]]\nclient_id = \"cli\"\nauth_method = \"none\"\nredirect_uris = [\"http://127.0.0.1:7777/cb\"]\n";
    let config = load_file(
        &production(&format!(
            "{public}grant_types = [\"authorization_code\", \"refresh_token\"]\n"
        )),
        &[],
    )
    .expect("a public code-flow client is valid");
    assert_eq!(config.clients[0].auth_method, "none");

    // CMETA-04 / IDJAG §9.1, IDJAG-ISSUE-22: token exchange needs a confidential client.
    let error = load_file(
        &production(&format!("{public}grant_types = [\"token-exchange\"]\n")),
        &[],
    )
    .expect_err("public token exchange");
    assert_error(&error, "clients[0].grant_types", "frontdesk.toml");
    assert!(error.to_string().contains("confidential"), "{error}");

    let error = load_file(
        &production(&format!(
            "{public}grant_types = [\"authorization_code\"]\nsecret_hash = \"x\"\n"
        )),
        &[],
    )
    .expect_err("public client with a secret");
    assert_error(&error, "clients[0].secret_hash", "frontdesk.toml");
}

#[test]
fn cmeta_02_the_id_jag_profile_needs_both_grant_types() {
    let error = load_file(
        &production(
            "[[clients]]\nclient_id = \"c\"\nauth_method = \"private_key_jwt\"\njwks_uri = \"https://c.example/jwks\"\ngrant_types = [\"token-exchange\"]\nauthorization_grant_profiles_supported = [\"urn:ietf:params:oauth:grant-profile:id-jag\"]\n",
        ),
        &[],
    )
    .expect_err("profile without jwt-bearer");
    assert_error(
        &error,
        "clients[0].authorization_grant_profiles_supported",
        "frontdesk.toml",
    );
}

#[test]
fn client_metadata_documents_and_registration_are_off_by_default_and_checked_when_on() {
    let config = load_file(&production(""), &[]).expect("defaults");
    assert!(!config.client_id_metadata.enabled);
    assert!(!config.registration.enabled);

    let error = load_file(&production("[client_id_metadata]\nenabled = true\n"), &[])
        .expect_err("no allowed hosts");
    assert_error(&error, "client_id_metadata.allowed_hosts", "frontdesk.toml");
    let config = load_file(
        &production(
            "[client_id_metadata]\nenabled = true\nallowed_hosts = [\"*.apps.example\", \"tool.example.org\"]\n",
        ),
        &[],
    )
    .expect("allowed hosts given");
    assert_eq!(config.client_id_metadata.allowed_hosts.len(), 2);
    let error = load_file(
        &production("[client_id_metadata]\nallowed_hosts = [\"https://x.example/\"]\n"),
        &[],
    )
    .expect_err("a URL is not a host pattern");
    assert_error(
        &error,
        "client_id_metadata.allowed_hosts[0]",
        "frontdesk.toml",
    );

    let error = load_file(
        &production("[registration]\nenabled = true\n"),
        &[("FRONTDESK_REGISTRATION__INITIAL_ACCESS_TOKEN", "short")],
    )
    .expect_err("short initial access token");
    assert_error(
        &error,
        "registration.initial_access_token",
        "FRONTDESK_REGISTRATION",
    );
    let config = load_file(
        &production("[registration]\nenabled = true\n"),
        &[(
            "FRONTDESK_REGISTRATION__INITIAL_ACCESS_TOKEN",
            "0123456789abcdef0123",
        )],
    )
    .expect("token from the environment");
    assert!(config.registration.initial_access_token.is_some());
}

#[test]
fn a_metrics_token_is_long_and_may_come_from_the_environment() {
    let error = load_file(
        &production(""),
        &[("FRONTDESK_SERVER__METRICS_TOKEN", "short")],
    )
    .expect_err("short metrics token");
    assert_error(&error, "server.metrics_token", "FRONTDESK_SERVER");
    let config = load_file(
        &production(""),
        &[("FRONTDESK_SERVER__METRICS_TOKEN", "0123456789abcdef0123")],
    )
    .expect("token from the environment");
    assert_eq!(
        config.server.metrics_token.as_ref().map(|t| t.expose()),
        Some("0123456789abcdef0123")
    );
}

#[test]
fn admin_sso_is_validated_and_its_secret_comes_from_the_environment() {
    const IDP: &str =
        "[[identity_providers]]\nid = \"corp\"\nissuer = \"https://idp.example.com\"\n";
    let sso = |extra: &str| {
        production(&format!(
            "{IDP}[admin_sso]\nidp = \"corp\"\nclient_id = \"fd-admin\"\n{extra}"
        ))
    };

    let config = load_file(
        &sso("admin_condition = '\"admins\" in subject.groups'\n"),
        &[("FRONTDESK_ADMIN_SSO__CLIENT_SECRET", "from-env")],
    )
    .expect("valid admin sso");
    assert_eq!(config.admin_sso.idp.as_deref(), Some("corp"));
    assert_eq!(
        config
            .admin_sso
            .client_secret
            .as_ref()
            .map(|s| s.expose().to_string()),
        Some("from-env".to_string())
    );

    let error = load_file(&sso("admin_condition = 'true'\n"), &[]).expect_err("no secret");
    assert_error(&error, "admin_sso.client_secret", "frontdesk.toml");

    let error = load_file(&sso(""), &[("FRONTDESK_ADMIN_SSO__CLIENT_SECRET", "s")])
        .expect_err("no admin condition");
    assert_error(&error, "admin_sso.admin_condition", "frontdesk.toml");

    let error = load_file(
        &sso("admin_condition = 'true'\nauditor_condition = 'subject.email.endsWith('\n"),
        &[("FRONTDESK_ADMIN_SSO__CLIENT_SECRET", "s")],
    )
    .expect_err("auditor condition does not parse");
    assert_error(&error, "admin_sso.auditor_condition", "frontdesk.toml");

    let error = load_file(
        &production("[admin_sso]\nidp = \"nowhere\"\nclient_id = \"x\"\nclient_secret = \"s\"\nadmin_condition = 'true'\n"),
        &[],
    )
    .expect_err("unknown idp");
    assert_error(&error, "admin_sso.idp", "frontdesk.toml");
}

/// The audit log keeps every event unless a retention is set, in the file or the environment
/// (docs/decisions.md §36).
#[test]
fn the_audit_retention_defaults_to_keeping_every_event_and_can_be_set() {
    assert_eq!(load_env(&[]).expect("defaults").audit.retention_days, 0);
    let from_file = load_file(&production("[audit]\nretention_days = 400\n"), &[]).expect("file");
    assert_eq!(from_file.audit.retention_days, 400);
    let from_env = load_file(
        &production("[audit]\nretention_days = 400\n"),
        &[("FRONTDESK_AUDIT__RETENTION_DAYS", "90")],
    )
    .expect("environment");
    assert_eq!(from_env.audit.retention_days, 90);
    let longest = MAX_AUDIT_RETENTION_DAYS.to_string();
    let at_the_limit = load_env(&[("FRONTDESK_AUDIT__RETENTION_DAYS", longest.as_str())])
        .expect("the longest retention");
    assert_eq!(at_the_limit.audit.retention_days, MAX_AUDIT_RETENTION_DAYS);
    let negative = load_env(&[("FRONTDESK_AUDIT__RETENTION_DAYS", "-1")]).expect_err("negative");
    assert_eq!(negative.key, "audit.retention_days");
}

/// Signing keys are replaced every 90 days unless configured otherwise; 0 turns the schedule
/// off (docs/decisions.md §37).
#[test]
fn keys_rotate_on_a_90_day_schedule_unless_configured() {
    assert_eq!(load_env(&[]).expect("defaults").keys.rotate_after_days, 90);
    let off = load_env(&[("FRONTDESK_KEYS__ROTATE_AFTER_DAYS", "0")]).expect("off");
    assert_eq!(off.keys.rotate_after_days, 0);
    let policy = crate::app::key_policy(&off);
    assert_eq!(policy.rotate_after_secs, 0);
    let monthly = load_file(&production("rotate_after_days = 30\n"), &[]).expect("file");
    assert_eq!(
        crate::app::key_policy(&monthly).rotate_after_secs,
        30 * 86_400
    );
}

/// The trust lists are held apart while the environment applies (`TrustLists`): an override of
/// a scalar setting must neither drop nor alter them, and the server's lifetime copy forgets
/// them and nothing else once they are in the database.
#[test]
fn environment_overrides_keep_the_trust_lists_and_forgetting_them_keeps_the_rest() {
    let mut config = load_file(
        &production(TRUST_LISTS),
        &[("FRONTDESK_LISTEN", "127.0.0.1:9100")],
    )
    .expect("file and environment load");
    assert_eq!(config.server.listen, "127.0.0.1:9100");
    assert_eq!(
        config.identity_providers[0].issuer,
        "https://example.okta.com"
    );
    assert_eq!(config.audiences[0].issuer, "https://wiki.example.com");
    assert_eq!(config.clients[0].client_id, "agent");
    assert_eq!(config.clients[0].audiences, ["wiki"]);

    config.forget_trust_lists();
    assert!(config.identity_providers.is_empty());
    assert!(config.audiences.is_empty());
    assert!(config.clients.is_empty());
    assert_eq!(config.server.listen, "127.0.0.1:9100");
    assert_eq!(config.issuer, "https://sts.example.com");
}

/// A provider trusted for grants addressed to this server (`jwt_grant`, `id_jag`) cannot also
/// have its `jwt` / `access_token` subject tokens addressed to this server: its grants would pass
/// as leg-1 subject tokens, exchangeable again and again by any client. Either alone is fine.
#[test]
fn grants_for_this_server_cannot_double_as_subject_tokens() {
    let idp = |token_types: &str, audience: &str| {
        production(&format!(
            "[[identity_providers]]\nid = \"partner\"\nissuer = \"https://partner.example\"\n\
             token_types = [{token_types}]\naudiences = [\"{audience}\"]\n"
        ))
    };
    for audience in ["https://sts.example.com", "https://sts.example.com/token"] {
        let error = load_file(&idp("\"jwt\", \"jwt_grant\"", audience), &[])
            .expect_err("grants as subject tokens");
        assert_error(&error, "identity_providers[0].audiences", "frontdesk.toml");
    }
    load_file(&idp("\"access_token\", \"id_jag\"", "api://frontdesk"), &[])
        .expect("subject tokens for another audience value");
    load_file(&idp("\"jwt\"", "https://sts.example.com"), &[])
        .expect("subject tokens alone may name this server");
}

/// An instance started without a file but given a public issuer through the environment (a
/// container configured by `FRONTDESK_*` variables alone) is a deployment, not a development
/// instance: it must be given a key-encryption key instead of generating one in its working
/// directory, and it prints no admin bootstrap link into its logs. Only a loopback issuer
/// (TOK-12) makes a file-less instance a development one.
#[test]
fn an_environment_only_instance_with_a_public_issuer_is_not_development() {
    let error = load_env(&[
        ("FRONTDESK_ISSUER", "https://sts.example.com"),
        ("FRONTDESK_DATABASE_URL", "postgres://db/frontdesk"),
    ])
    .expect_err("a public issuer needs a key-encryption key");
    assert_error(&error, "keys.encryption_key", "built-in defaults");
    let config = load_env(&[
        ("FRONTDESK_ISSUER", "https://sts.example.com"),
        ("FRONTDESK_KEY_ENCRYPTION_KEY", KEK),
    ])
    .expect("with a key-encryption key");
    assert!(!config.development);
    for loopback in ["http://127.0.0.1:9000", "http://localhost:3000"] {
        let config = load_env(&[("FRONTDESK_ISSUER", loopback)]).expect(loopback);
        assert!(config.development, "{loopback}");
    }
}

/// A configuration file's syntax and type errors name the key and the line, never the text of
/// the line: the line may hold a secret (`keys.encryption_key`, a password in `database.url`,
/// `admin_sso.client_secret`), and the error goes to the terminal and the logs.
#[test]
fn file_errors_never_echo_the_offending_line() {
    let secret = "hunter2-ZmFrZS1zZWNyZXQ";
    for text in [
        // An unterminated string.
        format!("issuer = \"https://sts.example.com\"\n[keys]\nencryption_key = \"{secret}\n"),
        // A duplicate key.
        format!(
            "[database]\nurl = \"postgres://u:{secret}@db/x\"\nurl = \"postgres://u:{secret}@db/x\"\n"
        ),
        // Trailing garbage after the value.
        format!("[admin_sso]\nclient_secret = \"{secret}\" x\n"),
        // A value of the wrong type next to the secret, on one line.
        format!("[registration]\ninitial_access_token = {{ value = \"{secret}\" }}\n"),
    ] {
        let error = load_file(&text, &[]).expect_err(&text);
        let line = error.to_string();
        assert!(!line.contains(secret), "{line}");
        assert!(line.contains("line "), "{line}");
    }
}

/// `client_id_metadata.allow_loopback_http` lets anyone who presents a URL `client_id` make
/// frontdesk fetch from its own loopback addresses (services listening only there): a switch
/// for tests and development, refused whenever the issuer is public, from the file as from the
/// environment.
#[test]
fn loopback_client_metadata_is_refused_with_a_public_issuer() {
    let error = load_file(
        &production("[client_id_metadata]\nallow_loopback_http = true\n"),
        &[],
    )
    .expect_err("public issuer");
    assert_error(
        &error,
        "client_id_metadata.allow_loopback_http",
        "frontdesk.toml",
    );
    let error = load_file(
        &production(""),
        &[("FRONTDESK_CLIENT_ID_METADATA__ALLOW_LOOPBACK_HTTP", "true")],
    )
    .expect_err("public issuer");
    assert_error(
        &error,
        "client_id_metadata.allow_loopback_http",
        "FRONTDESK_CLIENT_ID_METADATA__ALLOW_LOOPBACK_HTTP",
    );
    let config = load_env(&[("FRONTDESK_CLIENT_ID_METADATA__ALLOW_LOOPBACK_HTTP", "true")])
        .expect("a development instance may");
    assert!(config.client_id_metadata.allow_loopback_http);
}

/// FED-02 compares issuers byte for byte, so two providers whose issuers differ only by the
/// case of the scheme or host, a default port or a final `/` would be two trusts for what is
/// one issuer to every URL parser (and to IdPs that echo the request's host into `iss`): the
/// stricter one could be sidestepped through the other. The file refuses the second one.
#[test]
fn issuers_differing_only_by_case_port_or_final_slash_are_one_issuer_fed_02() {
    for (first, second) in [
        ("https://idp.example.com", "https://idp.example.com/"),
        (
            "https://idp.example.com/realms/a",
            "https://IDP.Example.com/realms/a",
        ),
        ("https://idp.example.com", "HTTPS://idp.example.com:443"),
    ] {
        let text = production(&format!(
            "[[identity_providers]]\nid = \"strict\"\nissuer = \"{first}\"\ncondition = \"false\"\n\
             [[identity_providers]]\nid = \"lax\"\nissuer = \"{second}\"\n"
        ));
        let error = load_file(&text, &[]).expect_err(second);
        assert_error(&error, "identity_providers[1].issuer", "frontdesk.toml");
    }
    // A path is case-sensitive: two realms of one server are two issuers.
    let text = production(
        "[[identity_providers]]\nid = \"a\"\nissuer = \"https://idp.example.com/realms/Acme\"\n\
         [[identity_providers]]\nid = \"b\"\nissuer = \"https://idp.example.com/realms/acme\"\n",
    );
    load_file(&text, &[]).expect("two realms");
}

/// `server.trusted_proxies` names the proxies whose `X-Forwarded-For` is believed. A network
/// of every address (`0.0.0.0/0`, `::/0`) believes every client about its own address, so
/// each per-address limit (failed client authentications, TOK-14; admin sign-in; registration)
/// counts whatever address the client writes: refused, from the file and the environment.
#[test]
fn trusting_every_address_as_a_proxy_is_refused() {
    for network in ["0.0.0.0/0", "::/0", " 0.0.0.0/0"] {
        let error = load_file(
            &production(&format!("[server]\ntrusted_proxies = [\"{network}\"]\n")),
            &[],
        )
        .expect_err(network);
        assert_error(&error, "server.trusted_proxies", "frontdesk.toml");
    }
    let error = load_file(
        &production(""),
        &[("FRONTDESK_SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 0.0.0.0/0")],
    )
    .expect_err("from the environment");
    assert_error(
        &error,
        "server.trusted_proxies",
        "FRONTDESK_SERVER__TRUSTED_PROXIES",
    );
    load_file(
        &production("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"fc00::/7\", \"127.0.0.1\"]\n"),
        &[],
    )
    .expect("proxy networks");
}

/// `tokens.max_token_bytes` bounds what is decoded and parsed (JSON, or XML for SAML) before
/// any signature is checked: 0 would refuse every token, and anything over 1 MiB is a limit
/// in name only.
#[test]
fn max_token_bytes_is_bounded() {
    for bad in ["0", "1023", "1048577"] {
        let error = load_file(
            &production(""),
            &[("FRONTDESK_TOKENS__MAX_TOKEN_BYTES", bad)],
        )
        .expect_err(bad);
        assert_error(
            &error,
            "tokens.max_token_bytes",
            "FRONTDESK_TOKENS__MAX_TOKEN_BYTES",
        );
    }
    for good in ["1024", "65536", "1048576"] {
        load_file(
            &production(""),
            &[("FRONTDESK_TOKENS__MAX_TOKEN_BYTES", good)],
        )
        .expect(good);
    }
}
