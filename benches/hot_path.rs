//! Criterion benchmarks of the token-exchange hot path (docs/performance.md).
//!
//! Groups:
//! * `baseline`: bare jsonwebtoken (aws-lc-rs) RS256 verify, ES256 sign, ES256 verify with
//!   pre-built keys: the irreducible crypto every other figure is compared with.
//! * `subject_token`: frontdesk's `jose::inspect` + warm inline key selection + `jose::verify`
//!   of an RS256 and an ES256 ID token, with the rules the exchange uses.
//! * `id_jag`: signing an ID-JAG with the `KeyRing` (ES256, opened on a temp SQLite file), and
//!   with EdDSA and RS256 key rings beside `jsonwebtoken::encode` with a key of each.
//! * `client_auth`: `SecretCache::verify` after one miss (warm), the argon2 miss itself, and
//!   `private_key_jwt` assertion verification (inspect + key selection + verify; the replay
//!   insert is measured in `storage`), and a DPoP proof's verification (its key parsed from
//!   the proof, the thumbprint computed).
//! * `policy`: CEL condition evaluation (compiled once) with and without input preparation.
//! * `storage`: one audit insert and one replay-record insert (SQLite; PostgreSQL too when
//!   `FRONTDESK_BENCH_POSTGRES_URL` names an empty database).
//! * `exchange_core`: `TokenService::token` end to end without HTTP (client auth, subject token
//!   verification, policy, signing and the audit write), for client_secret_basic and
//!   private_key_jwt (a fresh assertion per iteration, minted outside the timing).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-release cargo bench --bench hot_path`
//! (add `-- --quick` or a filter such as `-- exchange_core` for a shorter run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use frontdesk::config::{AudienceConfig, ClientConfig, Config, IdentityProviderConfig};
use frontdesk::jose::dpop::{ProofRules, verify_proof};
use frontdesk::jose::{
    AudienceRule, KeySet, TypRule, VerifyRules, VerifyingKey, inspect, select_key, verify,
};
use frontdesk::keys::{KEK_LEN, Kek, KeyPolicy, KeyRing, PrivateKey, SigningAlgorithm};
use frontdesk::oauth::client_auth::SecretCache;
use frontdesk::oauth::request::FormParams;
use frontdesk::oauth::{RequestContext, TokenService};
use frontdesk::policy::{PolicyInput, compile};
use frontdesk::secret::{SecretString, hash_secret};
use frontdesk::store::{AuditEvent, AuditLog, Decision, ReplayStore, Store};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{Map, Value, json};
use tokio::runtime::Runtime;

const IDP_ISSUER: &str = "https://idp.bench.example";
const ISSUER: &str = "https://frontdesk.bench.example";
const RAS: &str = "https://as.saas.example";
const AGENT: &str = "agent";
const JWT_CLIENT: &str = "jwt-client";
const SECRET: &str = "s3cret-for-benchmarks-only";
const FORM_HEAD: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid-jag\
&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&scope=read\
&audience=https%3A%2F%2Fas.saas.example";

fn now() -> i64 {
    frontdesk::clock::unix_now()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Keys {
    rsa: PrivateKey,
    ec: PrivateKey,
    client: PrivateKey,
    idp_set: JwkSet,
    client_set: JwkSet,
    /// The same sets as frontdesk holds them: each key kept parsed after its first use.
    idp_keys: KeySet,
    client_keys: KeySet,
}

impl Keys {
    fn new() -> Keys {
        let rsa = PrivateKey::generate(SigningAlgorithm::Rs256, 2048).unwrap();
        let ec = PrivateKey::generate(SigningAlgorithm::Es256, 2048).unwrap();
        let client = PrivateKey::generate(SigningAlgorithm::Es256, 2048).unwrap();
        let idp_set = JwkSet {
            keys: vec![rsa.public_jwk().unwrap(), ec.public_jwk().unwrap()],
        };
        let client_set = JwkSet {
            keys: vec![client.public_jwk().unwrap()],
        };
        Keys {
            rsa,
            ec,
            client,
            idp_keys: KeySet::from(idp_set.clone()),
            client_keys: KeySet::from(client_set.clone()),
            idp_set,
            client_set,
        }
    }
}

fn sign(key: &PrivateKey, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm().jwt_algorithm());
    header.kid = key.public_jwk().unwrap().common.key_id;
    jsonwebtoken::encode(&header, claims, &key.encoding_key().unwrap()).unwrap()
}

fn id_token(key: &PrivateKey, aud: &str, n: u64) -> String {
    let now = now();
    sign(
        key,
        &json!({ "iss": IDP_ISSUER, "sub": format!("user-{n}"), "aud": aud, "iat": now,
                 "exp": now + 3600, "auth_time": now - 60, "email": "ada@example.com",
                 "acr": "phr", "amr": ["pwd", "otp"] }),
    )
}

fn client_assertion(key: &PrivateKey) -> String {
    let now = now();
    sign(
        key,
        &json!({ "iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": ISSUER,
                 "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 120 }),
    )
}

/// A DPoP proof for the token endpoint, signed by `key` with its public key in the header.
fn dpop_proof(key: &PrivateKey) -> String {
    let mut jwk = key.public_jwk().unwrap();
    jwk.common.key_id = None;
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(jwk);
    jsonwebtoken::encode(
        &header,
        &json!({ "jti": uuid::Uuid::new_v4().to_string(), "htm": "POST",
                 "htu": format!("{ISSUER}/token"), "iat": now() }),
        &key.encoding_key().unwrap(),
    )
    .unwrap()
}

/// The rules `oauth::exchange::verify_subject` applies to an ID token.
fn subject_rules() -> VerifyRules {
    let mut rules = VerifyRules::new(
        vec![Algorithm::RS256, Algorithm::ES256],
        TypRule::id_token(),
        IDP_ISSUER,
        AudienceRule::id_token_for(AGENT),
    );
    rules.leeway_secs = 30;
    rules.max_age_secs = Some(3600);
    rules
}

/// The rules `oauth::client_auth` applies to a client assertion.
fn assertion_rules() -> VerifyRules {
    let mut rules = VerifyRules::new(
        frontdesk::oauth::client_auth::CLIENT_ASSERTION_ALGORITHMS.to_vec(),
        TypRule::OneOf {
            values: vec!["client-authentication+jwt".into(), "JWT".into()],
            allow_absent: true,
        },
        JWT_CLIENT,
        AudienceRule::AnyOf {
            values: vec![ISSUER.into(), format!("{ISSUER}/token")],
            azp: None,
        },
    );
    rules.require_jti = true;
    rules.max_lifetime_secs = Some(300);
    rules
}

/// inspect + warm key selection (what `JwksCache::key_for` does for an inline set: select and
/// clone the shared key) + verify with the key's parsed form.
fn inspect_select_verify(token: &str, set: &KeySet, rules: &VerifyRules) -> usize {
    let unverified = inspect(token, 16 * 1024).unwrap();
    let key = set.select(&unverified).cloned().unwrap();
    let claims = verify(&unverified, token, &key, rules, now()).unwrap();
    claims.claims().len()
}

fn baseline(c: &mut Criterion, keys: &Keys) {
    let mut group = c.benchmark_group("baseline");
    let rs_token = id_token(&keys.rsa, AGENT, 1);
    let es_token = id_token(&keys.ec, AGENT, 1);
    let rs_key = DecodingKey::from_jwk(&keys.idp_set.keys[0]).unwrap();
    let es_key = DecodingKey::from_jwk(&keys.idp_set.keys[1]).unwrap();
    let validation = |alg| {
        let mut v = Validation::new(alg);
        v.set_issuer(&[IDP_ISSUER]);
        v.set_audience(&[AGENT]);
        v
    };
    let (rs_validation, es_validation) =
        (validation(Algorithm::RS256), validation(Algorithm::ES256));
    group.bench_function("rs256_verify_jsonwebtoken", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Value>(black_box(&rs_token), &rs_key, &rs_validation).unwrap()
        })
    });
    group.bench_function("es256_verify_jsonwebtoken", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Value>(black_box(&es_token), &es_key, &es_validation).unwrap()
        })
    });
    let encoding = keys.ec.encoding_key().unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("oauth-id-jag+jwt".into());
    header.kid = Some("k1".into());
    let claims = id_jag_claims();
    group.bench_function("es256_sign_jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap())
    });
    group.bench_function("rs256_verify_plus_es256_sign", |b| {
        b.iter(|| {
            let subject =
                jsonwebtoken::decode::<Value>(black_box(&rs_token), &rs_key, &rs_validation)
                    .unwrap();
            black_box(subject);
            jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap()
        })
    });
    group.finish();
}

fn subject_token(c: &mut Criterion, keys: &Keys) {
    let mut group = c.benchmark_group("subject_token");
    let rules = subject_rules();
    let rs_token = id_token(&keys.rsa, AGENT, 1);
    let es_token = id_token(&keys.ec, AGENT, 1);
    group.bench_function("rs256_inspect_verify_warm", |b| {
        b.iter(|| inspect_select_verify(black_box(&rs_token), &keys.idp_keys, &rules))
    });
    group.bench_function("es256_inspect_verify_warm", |b| {
        b.iter(|| inspect_select_verify(black_box(&es_token), &keys.idp_keys, &rules))
    });
    let unverified = inspect(&rs_token, 16 * 1024).unwrap();
    group.bench_function("rs256_inspect_only", |b| {
        b.iter(|| inspect(black_box(&rs_token), 16 * 1024).unwrap())
    });
    // The same verification with a key parsed anew each time (what every verification cost
    // before keys were kept parsed: docs/performance.md, fifteenth run).
    let jwk = select_key(&keys.idp_set, &unverified).cloned().unwrap();
    group.bench_function("rs256_verify_key_parsed_each_time", |b| {
        b.iter(|| {
            let key = VerifyingKey::new(jwk.clone());
            verify(&unverified, &rs_token, &key, &rules, now()).unwrap()
        })
    });
    group.finish();
}

fn id_jag_claims() -> Map<String, Value> {
    let now = now();
    let Value::Object(map) = json!({ "iss": ISSUER, "sub": "user-1",
        "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 300, "aud": RAS,
        "client_id": AGENT, "scope": "read", "auth_time": now - 60, "acr": "phr",
        "amr": ["pwd", "otp"], "email": "ada@example.com" })
    else {
        unreachable!()
    };
    map
}

/// A config like tests/support/env.rs: one IdP with an inline JWKS, one ID-JAG audience, a
/// client_secret_basic client and a private_key_jwt client.
fn config(keys: &Keys, database_url: String) -> Config {
    let mut config = Config {
        issuer: ISSUER.into(),
        ..Config::default()
    };
    config.database.url = SecretString::new(database_url);
    config.keys.encryption_key = Some(SecretString::new(
        base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
    ));
    config.identity_providers.push(IdentityProviderConfig {
        id: "corp".into(),
        issuer: IDP_ISSUER.into(),
        jwks_uri: None,
        jwks: Some(serde_json::to_string(&keys.idp_set).unwrap()),
        saml_certificates: None,
        saml_metadata_url: None,
        saml_max_lifetime_secs: None,
        saml_name_id_formats: vec![],
        algorithms: vec!["RS256".into(), "ES256".into()],
        token_types: vec!["id_token".into()],
        audiences: vec![],
        clock_skew_secs: Some(30),
        max_token_age_secs: Some(3600),
        condition: None,
        subject_mode: "federated".into(),
        subject_mapping: None,
        subject_namespace: None,
        allowed_clients: vec![],
        transcribe_claims: vec![],
        requests_per_minute: None,
        subject_requests_per_minute: None,
        enabled: true,
    });
    config.audiences.push(AudienceConfig {
        id: "saas".into(),
        issuer: RAS.into(),
        aliases: vec![],
        resources: vec![],
        scopes: vec!["read".into(), "write".into()],
        authorization_details_types: vec![],
        token_type: "id-jag".into(),
        lifetime_secs: None,
        claims: BTreeMap::new(),
        release: vec![
            "auth_time".into(),
            "acr".into(),
            "amr".into(),
            "email".into(),
        ],
        condition: None,
        require_acr: vec![],
        max_auth_age_secs: None,
        requests_per_minute: None,
    });
    let client = |id: &str, method: &str| ClientConfig {
        client_id: id.into(),
        auth_method: method.into(),
        client_name: None,
        source: None,
        authorization_grant_profiles_supported: Vec::new(),
        secret_hash: None,
        jwks: None,
        jwks_uri: None,
        grant_types: vec!["urn:ietf:params:oauth:grant-type:token-exchange".into()],
        audiences: vec!["saas".into()],
        scopes: vec![],
        idp_client_ids: BTreeMap::new(),
        audience_client_ids: BTreeMap::new(),
        redirect_uris: vec![],
        enabled: true,
        dpop_bound_access_tokens: false,
        registration_access_token_hash: None,
        require_dpop_nonce: false,
        requests_per_minute: None,
        introspect_audiences: Vec::new(),
        audience_tenant_client_ids: BTreeMap::new(),
    };
    let mut agent = client(AGENT, "client_secret_basic");
    agent.secret_hash = Some(hash_secret(SECRET).unwrap());
    let mut jwt = client(JWT_CLIENT, "private_key_jwt");
    jwt.jwks = Some(serde_json::to_string(&keys.client_set).unwrap());
    config.clients = vec![agent, jwt];
    config
}

/// The token service exactly as `app::spawn_on` builds it, on `database_url`.
async fn token_service(keys: &Keys, database_url: String) -> TokenService {
    let config = Arc::new(config(keys, database_url));
    let store = frontdesk::app::open_store(&config).await.unwrap();
    frontdesk::trust::sync_config(&store, &config, now())
        .await
        .unwrap();
    let ring = Arc::new(
        frontdesk::app::open_key_ring(&config, store.clone())
            .await
            .unwrap(),
    );
    frontdesk::app::build_token_service(config, store, ring)
        .await
        .unwrap()
}

fn id_jag(c: &mut Criterion, rt: &Runtime, dir: &std::path::Path, service: &TokenService) {
    let mut group = c.benchmark_group("id_jag");
    let claims = id_jag_claims();
    group.bench_function("keyring_sign_es256", |b| {
        b.iter(|| {
            service
                .keys
                .sign("oauth-id-jag+jwt", black_box(&claims))
                .unwrap()
        })
    });
    // The other algorithms a key ring can sign with, each beside `jsonwebtoken::encode` with the
    // same key (what the key ring did before it kept every algorithm's key parsed).
    for algorithm in [SigningAlgorithm::EdDsa, SigningAlgorithm::Rs256] {
        let url = format!("sqlite://{}", dir.join(format!("{algorithm}.db")).display());
        let ring = rt.block_on(async {
            let store = Store::connect(&url, 2).await.unwrap();
            store.migrate().await.unwrap();
            let policy = KeyPolicy {
                algorithm,
                rsa_bits: 2048,
                promote_after_secs: 3600,
                retired_publish_secs: 900,
                rotate_after_secs: 0,
            };
            let kek = Kek::from_bytes(&[7u8; KEK_LEN]).unwrap();
            KeyRing::open(store, kek, policy, now()).await.unwrap()
        });
        let name = algorithm.as_str().to_ascii_lowercase();
        group.bench_function(format!("keyring_sign_{name}"), |b| {
            b.iter(|| ring.sign("oauth-id-jag+jwt", black_box(&claims)).unwrap())
        });
        let key = PrivateKey::generate(algorithm, 2048).unwrap();
        let encoding = key.encoding_key().unwrap();
        let header = Header::new(algorithm.jwt_algorithm());
        group.bench_function(format!("jsonwebtoken_encode_{name}"), |b| {
            b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap())
        });
    }
    group.finish();
}

fn client_auth(c: &mut Criterion, rt: &Runtime, keys: &Keys) {
    let mut group = c.benchmark_group("client_auth");
    let phc = hash_secret(SECRET).unwrap();
    let cache = SecretCache::new();
    // No throttle here: `admit` is asked only before an argon2 run, and a warm hit runs none.
    let admit = || Ok(());
    assert_eq!(
        rt.block_on(cache.verify(AGENT, &phc, SECRET, admit)),
        Ok(true)
    );
    group.bench_function("secret_cache_verify_warm", |b| {
        b.to_async(rt).iter(|| async {
            assert_eq!(
                cache.verify(AGENT, &phc, black_box(SECRET), admit).await,
                Ok(true)
            )
        })
    });
    group.sample_size(10);
    group.bench_function("argon2_verify_miss", |b| {
        b.iter(|| assert!(frontdesk::secret::verify_secret(black_box(SECRET), &phc)))
    });
    group.sample_size(100);
    let rules = assertion_rules();
    let assertion = client_assertion(&keys.client);
    group.bench_function("private_key_jwt_inspect_verify", |b| {
        b.iter(|| inspect_select_verify(black_box(&assertion), &keys.client_keys, &rules))
    });
    // What a DPoP proof adds to a token request besides its replay record (`storage`): the
    // key is in the proof, so it is parsed on every request.
    let proof = dpop_proof(&keys.client);
    let token_endpoint = format!("{ISSUER}/token");
    let proof_rules = ProofRules {
        method: "POST",
        url: &token_endpoint,
        max_age_secs: 60,
        leeway_secs: 60,
    };
    group.bench_function("dpop_proof_verify", |b| {
        b.iter(|| verify_proof(black_box(&proof), &proof_rules, now()).unwrap())
    });
    group.finish();
}

fn policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy");
    let expr = compile(
        r#"subject.email.endsWith("@example.com") && "read" in request.scopes && client.id in ["agent", "jwt-client"]"#,
    )
    .unwrap();
    let now = now();
    let input = PolicyInput {
        subject: json!({ "iss": IDP_ISSUER, "sub": "user-1", "aud": AGENT, "iat": now,
                         "exp": now + 3600, "auth_time": now - 60, "email": "ada@example.com",
                         "acr": "phr", "amr": ["pwd", "otp"] }),
        actor: None,
        client: json!({ "id": AGENT, "audiences": ["saas"], "auth_method": "client_secret_basic" }),
        request: json!({ "audience": RAS, "audience_id": "saas", "resources": [],
                         "scopes": ["read"],
                         "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag" }),
    };
    assert!(input.prepare().allows(Some(&expr)).is_allowed());
    group.bench_function("cel_prepare_and_allows", |b| {
        b.iter(|| black_box(&input).prepare().allows(Some(&expr)))
    });
    let prepared = input.prepare();
    group.bench_function("cel_allows_prepared", |b| {
        b.iter(|| black_box(&prepared).allows(Some(&expr)))
    });
    group.finish();
}

fn audit_event() -> AuditEvent {
    let mut event = AuditEvent::new(now(), "token_exchange", Decision::Issued);
    event.request_id = Some(uuid::Uuid::new_v4().to_string());
    event.client_id = Some(AGENT.into());
    event.grant_type = Some("urn:ietf:params:oauth:grant-type:token-exchange".into());
    event.subject_issuer = Some(IDP_ISSUER.into());
    event.subject = Some("user-1".into());
    event.audience = Some(RAS.into());
    event.scopes_requested = vec!["read".into()];
    event.scopes_granted = vec!["read".into()];
    event.issued_jti = Some(uuid::Uuid::new_v4().to_string());
    event.issued_expires_at = Some(now() + 300);
    event
}

fn storage(c: &mut Criterion, rt: &Runtime, name: &str, store: &Store) {
    let mut group = c.benchmark_group("storage");
    let event = audit_event();
    group.bench_function(format!("audit_record_{name}"), |b| {
        b.to_async(rt)
            .iter(|| async { store.record(black_box(&event)).await.unwrap() })
    });
    group.bench_function(format!("replay_record_once_{name}"), |b| {
        b.to_async(rt).iter(|| async {
            let jti = uuid::Uuid::new_v4().to_string();
            assert!(store.record_once("bench", &jti, now() + 300).await.unwrap())
        })
    });
    group.finish();
}

fn exchange_core(c: &mut Criterion, rt: &Runtime, name: &str, keys: &Keys, service: &TokenService) {
    let mut group = c.benchmark_group("exchange_core");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{AGENT}:{SECRET}"))
    );
    let body = format!(
        "{FORM_HEAD}&subject_token={}",
        id_token(&keys.rsa, AGENT, 1)
    );
    let context = || RequestContext {
        authorization: Some(SecretString::new(basic.clone())),
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        now: now(),
        peer: None,
        dpop: None,
    };
    // The first request pays argon2 once; every timed one hits the warm secret cache.
    let first = rt.block_on(service.token(FormParams::parse(body.as_bytes()).unwrap(), context()));
    assert!(first.is_ok(), "exchange failed: {first:?}");
    group.bench_function(format!("token_client_secret_basic_{name}"), |b| {
        b.to_async(rt).iter(|| async {
            let form = FormParams::parse(black_box(body.as_bytes())).unwrap();
            service.token(form, context()).await.unwrap()
        })
    });
    let jwt_subject = id_token(&keys.rsa, JWT_CLIENT, 2);
    let jwt_body = || {
        format!(
            "{FORM_HEAD}&subject_token={jwt_subject}&client_id={JWT_CLIENT}\
             &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion={}",
            client_assertion(&keys.client)
        )
    };
    let probe = rt.block_on(service.token(
        FormParams::parse(jwt_body().as_bytes()).unwrap(),
        RequestContext {
            now: now(),
            ..RequestContext::default()
        },
    ));
    assert!(probe.is_ok(), "private_key_jwt exchange failed: {probe:?}");
    group.bench_function(format!("token_private_key_jwt_{name}"), |b| {
        b.to_async(rt).iter_batched(
            jwt_body,
            |body| async move {
                let form = FormParams::parse(body.as_bytes()).unwrap();
                let context = RequestContext {
                    now: now(),
                    ..RequestContext::default()
                };
                service.token(form, context).await.unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let keys = Keys::new();
    let rt = runtime();
    baseline(c, &keys);
    subject_token(c, &keys);
    client_auth(c, &rt, &keys);
    policy(c);

    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let service = rt.block_on(token_service(&keys, sqlite));
    id_jag(c, &rt, dir.path(), &service);
    storage(c, &rt, "sqlite", &service.store);
    exchange_core(c, &rt, "sqlite", &keys, &service);

    if let Ok(url) = std::env::var("FRONTDESK_BENCH_POSTGRES_URL") {
        let service = rt.block_on(token_service(&keys, url));
        storage(c, &rt, "postgres", &service.store);
        exchange_core(c, &rt, "postgres", &keys, &service);
    }
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(hot_path);
