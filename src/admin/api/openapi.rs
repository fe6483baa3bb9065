//! The hand-written OpenAPI 3.1 document of the admin API (`GET /admin/api/v1/openapi.json`).
//! A test checks that it lists exactly the routes of [`super::ROUTES`] and that each of those is
//! served.

use serde_json::{Map, Value, json};

fn error_response(description: &str) -> Value {
    json!({ "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn list_of(name: &str) -> Value {
    json!({ "type": "object", "required": ["items"],
            "properties": { "items": { "type": "array", "items": schema_ref(name) } } })
}

fn id_param(name: &str) -> Value {
    json!([{ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }])
}

/// Adds the errors every operation may answer, and more for writes.
fn operation(mut op: Value, write: bool) -> Value {
    let responses = op["responses"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut all = Map::new();
    all.extend(responses);
    all.insert(
        "401".into(),
        error_response(
            "Missing, unknown, revoked or expired token (with `WWW-Authenticate: Bearer`).",
        ),
    );
    if write {
        all.insert("403".into(), error_response("The token's role is auditor."));
    }
    op["responses"] = Value::Object(all);
    op
}

fn trust_paths(paths: &mut Map<String, Value>, segment: &str, schema: &str, singular: &str) {
    let tag = segment.to_string();
    let created = if schema == "Client" {
        json_response(
            "Created. For client_secret_* methods the generated secret is in `client_secret`, shown this once.",
            json!({ "allOf": [schema_ref(schema), { "type": "object", "properties": { "client_secret": { "type": "string" } } }] }),
        )
    } else {
        json_response("Created.", schema_ref(schema))
    };
    paths.insert(
        format!("/admin/api/v1/{segment}"),
        json!({
            "get": operation(json!({ "tags": [tag], "summary": format!("List {segment}"), "operationId": format!("list_{}", segment.replace('-', "_")),
                "responses": { "200": json_response("Every object, config-managed ones included.", list_of(schema)) } }), false),
            "post": operation(json!({ "tags": [tag], "summary": format!("Create a {singular}"), "operationId": format!("create_{}", singular.replace(' ', "_")),
                "requestBody": body(schema_ref(schema)),
                "responses": { "201": created,
                    "400": error_response("The body is not a JSON object."),
                    "409": error_response("The id is taken."),
                    "422": error_response("Invalid: `field` names the offending key.") } }), true),
        }),
    );
    paths.insert(
        format!("/admin/api/v1/{segment}/{{id}}"),
        json!({
            "parameters": id_param("id"),
            "get": operation(json!({ "tags": [tag], "summary": format!("Get a {singular}"), "operationId": format!("get_{}", singular.replace(' ', "_")),
                "responses": { "200": json_response("The object.", schema_ref(schema)), "404": error_response("No such object.") } }), false),
            "put": operation(json!({ "tags": [tag], "summary": format!("Replace a {singular}"), "operationId": format!("replace_{}", singular.replace(' ', "_")),
                "description": "The whole document; the id comes from the URL. Clients keep their secret (use rotate-secret to change it); enable or disable a client with `enabled`.",
                "requestBody": body(schema_ref(schema)),
                "responses": { "200": json_response("The stored object.", schema_ref(schema)),
                    "400": error_response("The body is not a JSON object."),
                    "404": error_response("No such object."),
                    "409": error_response("Config-managed: change it in the configuration file."),
                    "422": error_response("Invalid: `field` names the offending key.") } }), true),
            "delete": operation(json!({ "tags": [tag], "summary": format!("Delete a {singular}"), "operationId": format!("delete_{}", singular.replace(' ', "_")),
                "responses": { "204": { "description": "Deleted." }, "404": error_response("No such object."),
                    "409": error_response("Config-managed: change it in the configuration file.") } }), true),
        }),
    );
}

fn string_list() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn string_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

fn read_only() -> Value {
    json!({
        "managed_by_config": { "type": "boolean", "readOnly": true, "description": "Defined in the configuration file (read-only here)." },
        "updated_at": { "type": "integer", "readOnly": true, "description": "Unix seconds." },
    })
}

fn object(required: &[&str], mut properties: Value) -> Value {
    if let (Some(map), Value::Object(extra)) = (properties.as_object_mut(), read_only()) {
        map.extend(extra);
    }
    json!({ "type": "object", "required": required, "properties": properties })
}

/// The OpenAPI document of a server whose path is `base` (`Config::issuer_path`): the paths
/// below are relative to it.
pub fn document(base: &str) -> Value {
    let mut paths = Map::new();
    trust_paths(
        &mut paths,
        "identity-providers",
        "IdentityProvider",
        "identity provider",
    );
    trust_paths(&mut paths, "audiences", "Audience", "audience");
    trust_paths(&mut paths, "clients", "Client", "client");
    paths.insert(
        "/admin/api/v1/identity-providers/{id}/test-connection".into(),
        json!({ "parameters": id_param("id"),
            "post": operation(json!({ "tags": ["identity-providers"], "summary": "Test connection", "operationId": "test_identity_provider",
                "description": "Fetches the discovery document and JWKS (or parses the inline JWKS). Changes nothing; auditors may call it.",
                "responses": { "200": json_response("What was found, or why it failed.", schema_ref("ConnectionTest")), "404": error_response("No such identity provider.") } }), false) }),
    );
    paths.insert(
        "/admin/api/v1/clients/{id}/rotate-secret".into(),
        json!({ "parameters": id_param("id"),
            "post": operation(json!({ "tags": ["clients"], "summary": "Rotate a client's secret", "operationId": "rotate_client_secret",
                "responses": { "200": json_response("The new secret, shown this once; the old one stops working at once.",
                        json!({ "type": "object", "required": ["client_id", "client_secret"], "properties": { "client_id": { "type": "string" }, "client_secret": { "type": "string" } } })),
                    "400": error_response("The client uses private_key_jwt."),
                    "404": error_response("No such client."),
                    "409": error_response("Config-managed.") } }), true) }),
    );
    paths.insert(
        "/admin/api/v1/keys".into(),
        json!({ "get": operation(json!({ "tags": ["keys"], "summary": "List signing keys", "operationId": "list_keys",
            "responses": { "200": json_response("Every key with its state.", json!({ "type": "object", "properties": {
                "promote_after_secs": { "type": "integer" }, "items": { "type": "array", "items": schema_ref("Key") } } })) } }), false) }),
    );
    paths.insert(
        "/admin/api/v1/keys/rotate".into(),
        json!({ "post": operation(json!({ "tags": ["keys"], "summary": "Rotate the signing key", "operationId": "rotate_key",
            "description": "Publishes a `next` key, promoted after promote_after_secs; with `now: true` it signs at once (emergency rotation).",
            "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "now": { "type": "boolean", "default": false } } } } } },
            "responses": { "201": json_response("The new key.", json!({ "type": "object", "properties": { "kid": { "type": "string" }, "state": { "enum": ["next", "active"] } } })),
                "422": error_response("The body is not `{\"now\": bool}`.") } }), true) }),
    );
    paths.insert(
        "/admin/api/v1/keys/{kid}/retire".into(),
        json!({ "parameters": id_param("kid"),
            "post": operation(json!({ "tags": ["keys"], "summary": "Retire a key", "operationId": "retire_key",
                "responses": { "200": json_response("Retired; it stays published until its tokens have expired.", json!({ "type": "object", "properties": { "kid": { "type": "string" }, "state": { "const": "retired" } } })),
                    "400": error_response("The key cannot be retired (e.g. the only active key)."),
                    "404": error_response("No such key.") } }), true) }),
    );
    let query = |name: &str, description: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "string" }, "description": description });
    paths.insert(
        "/admin/api/v1/audit-events".into(),
        json!({ "get": operation(json!({ "tags": ["audit"], "summary": "List audit events, newest first", "operationId": "list_audit_events",
            "parameters": [
                query("since", "From this time: unix seconds or YYYY-MM-DD HH:MM (UTC)."),
                query("until", "Up to this time."),
                query("client_id", "Exact client id."),
                query("subject", "Exact subject."),
                query("audience", "Exact audience."),
                query("decision", "issued, denied or changed."),
                query("reason", "Exact reason code."),
                { "name": "before_id", "in": "query", "required": false, "schema": { "type": "integer" }, "description": "Only events with a smaller id (the previous page's next_before_id)." },
                { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 50 } },
            ],
            "responses": { "200": json_response("One page of events.", json!({ "type": "object", "properties": {
                    "items": { "type": "array", "items": schema_ref("AuditEvent") },
                    "next_before_id": { "type": ["integer", "null"], "description": "Pass as before_id for the next page; null on the last page." } } })),
                "400": error_response("A filter is malformed."),
                "422": error_response("limit is out of range.") } }), false) }),
    );
    paths.insert(
        "/admin/api/v1/policy/eval".into(),
        json!({ "post": operation(json!({ "tags": ["policy"], "summary": "Decide a token exchange for a subject given as claims", "operationId": "eval_policy",
            "description": "Runs the token endpoint's target resolution, scope narrowing, step-up checks, identity-provider and audience conditions and claim mappings (the same code) for the claims given, with the trust this instance runs now. The subject token's own checks (signature, lifetimes, aud) are not repeated. Nothing is signed or recorded; any role may call it. A denial is a 200 with decision `denied`.",
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["client_id", "claims"], "additionalProperties": false, "properties": {
                "client_id": { "type": "string", "description": "The requesting client." },
                "claims": { "type": "object", "description": "The subject token's claims; `iss` names the identity provider." },
                "subject_token_type": { "type": "string", "description": "id_token (default), access_token, jwt, saml2, or a token-type URI." },
                "audience": { "type": "string" },
                "resources": { "type": "array", "items": { "type": "string" } },
                "scope": { "type": "string", "description": "Space-separated." },
                "requested_token_type": { "type": "string" } } } } } },
            "responses": { "200": json_response("The decision.", json!({ "type": "object", "required": ["decision", "scopes_granted", "claims"], "properties": {
                    "decision": { "enum": ["issued", "denied"] },
                    "reason": { "type": "string", "description": "The audit reason code of a denial." },
                    "error": { "type": "string", "description": "The OAuth error the client would receive." },
                    "error_description": { "type": "string" },
                    "identity_provider": { "type": "string" },
                    "audience": { "type": "string" },
                    "issued_token_type": { "type": "string" },
                    "scopes_granted": { "type": "array", "items": { "type": "string" } },
                    "claims": { "type": "object", "description": "Claims the token would carry from the subject: sub, released and mapped claims." } } })),
                "422": error_response("The body is not a policy question.") } }), false) }),
    );
    paths.insert(
        "/admin/api/v1/revocations".into(),
        json!({ "post": operation(json!({ "tags": ["tokens"], "summary": "Revoke everything issued to a user, to a client, or for an issuer's users", "operationId": "revoke_tokens",
            "description": "Revokes every live access token and refresh token whose `sub` is the subject (or that was issued to the client), and spends the unredeemed authorization codes, in one transaction with an audit event (`subject_tokens_revoked` or `client_tokens_revoked`). Introspection then answers `active: false`, refresh fails and the tokens' bits in the status lists flip; resource servers that verify locally and ignore the status list accept the access tokens until they expire (minutes), and ID-JAGs already issued are not tracked. A client keeps its registration: disable it to stop new tokens. Admin role.",
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "minProperties": 1, "maxProperties": 1, "properties": {
                "subject": { "type": "string", "description": "The `sub` of the tokens, exactly as frontdesk issued it." },
                "client_id": { "type": "string", "description": "The client the tokens were issued to." },
                "issuer": { "type": "string", "description": "The issuer (`iss`) of an identity provider: every token issued for its users." } } } } } },
            "responses": { "200": json_response("What was revoked, with the subject, client_id or issuer it was asked for.", json!({ "type": "object", "required": ["access_tokens", "refresh_tokens", "authorization_codes"], "properties": {
                    "subject": { "type": "string" },
                    "client_id": { "type": "string" },
                    "issuer": { "type": "string" },
                    "access_tokens": { "type": "integer" },
                    "refresh_tokens": { "type": "integer" },
                    "authorization_codes": { "type": "integer" } } })),
                "422": error_response("The body is not `{\"subject\": \"…\"}` or `{\"client_id\": \"…\"}`.") } }), true) }),
    );
    paths.insert(
        "/admin/api/v1/openapi.json".into(),
        json!({ "get": { "tags": ["meta"], "summary": "This document", "operationId": "openapi", "security": [],
            "responses": { "200": { "description": "The OpenAPI 3.1 document.", "content": { "application/json": {} } } } } }),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "frontdesk admin API",
            "version": "1",
            "description": "Manage identity providers, audiences, clients and signing keys, and read the audit log. The same operations, validation and audit as the web admin page. See docs/admin-api.md.",
        },
        "servers": [{ "url": if base.is_empty() { "/" } else { base } }],
        "security": [{ "bearerToken": [] }],
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {
                "bearerToken": { "type": "http", "scheme": "bearer", "bearerFormat": "fd_ API token",
                    "description": "An API token from `frontdesk admin create-token` or the admin page's API tokens page." }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "message"], "properties": {
                    "error": { "type": "string", "enum": ["unauthorized", "forbidden", "not_found", "conflict", "config_managed", "invalid", "bad_request", "internal"] },
                    "field": { "type": "string", "description": "The offending key (422, and 409 on a taken id); empty if it concerns the whole document." },
                    "message": { "type": "string" } } },
                "IdentityProvider": object(&["id", "issuer"], json!({
                    "id": { "type": "string" }, "issuer": { "type": "string" },
                    "jwks_uri": { "type": "string" }, "jwks": { "type": "string", "description": "An inline JWK set as JSON text." },
                    "saml_certificates": { "type": "string", "description": "PEM certificates that sign this issuer's SAML 2.0 assertions (token_types saml2)." },
                    "saml_metadata_url": { "type": "string", "description": "The issuer's SAML 2.0 metadata (https): its IdP signing certificates are trusted too and follow its rollovers." },
                    "saml_max_lifetime_secs": { "type": "integer", "minimum": 1, "maximum": crate::trust::MAX_SAML_LIFETIME_SECS, "description": "The longest SAML assertion lifetime accepted, IssueInstant to the NotOnOrAfter honoured. Absent: 600." },
                    "saml_name_id_formats": { "type": "array", "items": { "type": "string" }, "description": "SAML NameID format URIs accepted. Absent or empty: persistent, emailAddress, unspecified, X509SubjectName, WindowsDomainQualifiedName, kerberos; never transient." },
                    "algorithms": string_list(), "token_types": string_list(), "audiences": string_list(),
                    "clock_skew_secs": { "type": "integer" }, "max_token_age_secs": { "type": "integer" },
                    "condition": { "type": "string", "description": "CEL." },
                    "subject_mode": { "type": "string", "enum": crate::trust::SUBJECT_MODES },
                    "subject_mapping": { "type": "string", "description": "CEL." },
                    "subject_namespace": { "type": "string", "description": "Leg 1: providers sharing one user directory name the same namespace; unset, the provider is its own. While several namespaces are trusted for subject tokens, an audience must map sub." },
                    "allowed_clients": string_list(),
                    "transcribe_claims": { "type": "array", "items": { "type": "string" }, "maxItems": crate::trust::MAX_TRANSCRIBED_CLAIMS, "description": "Leg 2: claims of this issuer's assertions copied into access tokens when present (e.g. groups, roles); never one frontdesk sets itself." },
                    "requests_per_minute": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Verified tokens from this issuer accepted per minute on each instance; beyond it 429 slow_down. Absent: no limit." },
                    "subject_requests_per_minute": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "The same per user (sub) of this issuer. Absent: no limit." },
                    "enabled": { "type": "boolean" } })),
                "Audience": object(&["id", "issuer"], json!({
                    "id": { "type": "string" }, "issuer": { "type": "string" },
                    "aliases": string_list(), "resources": string_list(), "scopes": string_list(),
                    "authorization_details_types": { "type": "array", "items": { "type": "string" }, "maxItems": 64, "description": "RFC 9396 types a request's authorization_details may have for this audience; others are invalid_authorization_details. Absent: none." },
                    "token_type": { "type": "string", "enum": crate::trust::AUDIENCE_TOKEN_TYPES },
                    "lifetime_secs": { "type": "integer" },
                    "claims": { "type": "object", "additionalProperties": { "type": "string" }, "description": "claim → CEL expression." },
                    "release": string_list(), "condition": { "type": "string", "description": "CEL." },
                    "require_acr": string_list(), "max_auth_age_secs": { "type": "integer" },
                    "requests_per_minute": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Grants for this audience issued per minute on each instance; beyond it 429 slow_down. Absent: no limit." } })),
                "Client": object(&["client_id", "auth_method"], json!({
                    "client_id": { "type": "string" },
                    "auth_method": { "type": "string", "enum": crate::trust::CLIENT_AUTH_METHODS },
                    "jwks": { "type": "string" }, "jwks_uri": { "type": "string" },
                    "grant_types": string_list(), "audiences": string_list(), "scopes": string_list(),
                    "idp_client_ids": string_map(), "audience_client_ids": string_map(),
                    "audience_tenant_client_ids": { "type": "object", "additionalProperties": { "type": "string" }, "description": "\"audience-id/tenant\" → the client_id claim of grants for that audience's users of that tenant (IDJAG §6.2, tenant-scoped client ids); an audience named here gets no grant for another tenant's user." },
                    "client_name": { "type": "string" }, "redirect_uris": string_list(),
                    "authorization_grant_profiles_supported": string_list(),
                    "source": { "type": "string", "enum": ["dcr"], "description": "Set on clients that registered themselves (POST /register)." },
                    "dpop_bound_access_tokens": { "type": "boolean", "description": "Every token request must carry a DPoP proof (RFC 9449 §5.2)." },
                    "require_dpop_nonce": { "type": "boolean", "description": "The client's DPoP proofs must echo a server nonce (RFC 9449 §8), as tokens.require_dpop_nonce asks of all clients." },
                    "requests_per_minute": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Token requests allowed per minute on each instance; beyond it 429 slow_down. Absent: no limit." },
                    "introspect_audiences": { "type": "array", "items": { "type": "string" }, "maxItems": 100, "description": "aud values (a resource server's identifier) of other clients' access tokens this client may introspect, or [\"*\"] for all; its own tokens always. Others are {\"active\": false} to it (RFC 7662 §4)." },
                    "enabled": { "type": "boolean" } })),
                "ConnectionTest": { "type": "object", "properties": {
                    "ok": { "type": "boolean" }, "lines": string_list(),
                    "keys": { "type": "array", "items": { "type": "object", "properties": {
                        "kid": { "type": "string" }, "alg": { "type": "string" }, "kty": { "type": "string" } } } } } },
                "Key": { "type": "object", "properties": {
                    "kid": { "type": "string" }, "algorithm": { "type": "string" },
                    "state": { "enum": ["next", "active", "retired"] },
                    "created_at": { "type": "integer" }, "activate_at": { "type": ["integer", "null"] },
                    "activated_at": { "type": ["integer", "null"] }, "retired_at": { "type": ["integer", "null"] },
                    "publish_until": { "type": ["integer", "null"] } } },
                "AuditEvent": { "type": "object", "description": "One audit record: id, occurred_at, event, decision and the optional request fields; `detail.actor` names who made a change (`api:<token name>` for the API).",
                    "properties": { "id": { "type": "integer" }, "occurred_at": { "type": "integer" }, "event": { "type": "string" },
                        "decision": { "enum": ["issued", "denied", "changed"] }, "detail": {} } },
            }
        }
    })
}
