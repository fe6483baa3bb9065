//! Assertions signed by Auth0's `saml` library (tests/idp/saml.mjs), checked at the time they
//! were issued, then tampered with in the ways SAML verifiers have been fooled before.

use base64::Engine as _;
use serde_json::json;

use super::*;

const ASSERTION: &str = include_str!("../../tests/fixtures/saml/assertion.xml");
const ASSERTION_SHA1: &str = include_str!("../../tests/fixtures/saml/assertion-sha1.xml");
const IDP_CERT: &str = include_str!("../../tests/fixtures/saml/idp.crt");
const OTHER_CERT: &str = include_str!("../../tests/fixtures/saml/other.crt");
const ISSUER: &str = "https://saml-idp.example.com/";
const AUDIENCE: &str = "https://client.example.com/sp";

fn attribute<'a>(xml: &'a str, name: &str) -> &'a str {
    let start = xml.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
    let end = xml[start..].find('"').expect("closing quote");
    &xml[start..start + end]
}

/// The fixture's own issue time: every check runs as if it had just arrived.
fn issued_at(xml: &str) -> i64 {
    instant(attribute(xml, "IssueInstant")).expect("IssueInstant")
}

fn rules(xml: &str) -> SamlRules<'static> {
    SamlRules {
        issuer: ISSUER,
        audience: AUDIENCE,
        now: issued_at(xml) + 5,
        skew: 60,
        max_age: None,
        max_lifetime: DEFAULT_MAX_LIFETIME_SECS as i64,
        name_id_formats: &[],
    }
}

fn encode(xml: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(xml)
}

fn keys() -> SamlKeys {
    SamlKeys::from_pem(IDP_CERT).expect("fixture certificate")
}

fn check_with(xml: &str, rules: &SamlRules<'_>) -> Result<VerifiedAssertion, SamlError> {
    UnverifiedAssertion::parse(&encode(xml), 64 * 1024)?.verify(&keys(), rules)
}

fn check(xml: &str) -> Result<VerifiedAssertion, SamlError> {
    check_with(xml, &rules(xml))
}

#[test]
fn an_assertion_signed_by_the_configured_certificate_yields_its_claims() {
    let verified = check(ASSERTION).expect("valid");
    let claims = &verified.claims;
    assert_eq!(claims["iss"], json!(ISSUER));
    assert_eq!(claims["sub"], json!("alice@example.com"));
    assert_eq!(claims["aud"], json!(AUDIENCE));
    assert_eq!(claims["iat"], json!(issued_at(ASSERTION)));
    assert_eq!(claims["exp"], json!(issued_at(ASSERTION) + 600));
    assert_eq!(claims["jti"], json!(attribute(ASSERTION, " ID")));
    assert_eq!(verified.id, attribute(ASSERTION, " ID"));
    assert_eq!(verified.expires_at, issued_at(ASSERTION) + 600);
    assert_eq!(claims["auth_time"], json!(issued_at(ASSERTION)));
    assert_eq!(
        claims["acr"],
        json!("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
    );
    assert_eq!(claims["email"], json!("alice@example.com"));
    assert_eq!(claims["groups"], json!(["eng", "admins"]));
    assert_eq!(
        claims["saml_attributes"],
        json!({ "email": ["alice@example.com"], "groups": ["eng", "admins"], "sub": ["mallory"] })
    );
    // IDJAG-JWT-17: the saml-nameid members, present exactly when the NameID has them.
    assert_eq!(
        claims["saml_nameid"],
        json!({
            "format": "saml-nameid",
            "issuer": ISSUER,
            "nameid": "alice@example.com",
            "nameid_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        })
    );
}

#[test]
fn an_attribute_never_replaces_a_claim_derived_from_the_assertion() {
    // The fixture carries an attribute named `sub` with another value.
    assert!(ASSERTION.contains("Name=\"sub\""));
    let verified = check(ASSERTION).expect("valid");
    assert_eq!(verified.claims["sub"], json!("alice@example.com"));
}

#[test]
fn tx10_base64url_and_padded_standard_base64_both_decode() {
    let standard = base64::engine::general_purpose::STANDARD.encode(ASSERTION);
    assert!(standard.contains('+') || standard.contains('/') || standard.ends_with('='));
    for token in [encode(ASSERTION), standard] {
        UnverifiedAssertion::parse(&token, 64 * 1024)
            .and_then(|assertion| assertion.verify(&keys(), &rules(ASSERTION)))
            .expect("decodes and verifies");
    }
    assert_eq!(
        UnverifiedAssertion::parse("not*base64", 1024).unwrap_err(),
        SamlError::Malformed("not base64url or base64 encoded")
    );
}

#[test]
fn the_unverified_issuer_names_whose_certificates_to_use() {
    let assertion = UnverifiedAssertion::parse(&encode(ASSERTION), 64 * 1024).unwrap();
    assert_eq!(assertion.unverified_issuer().as_deref(), Some(ISSUER));
}

#[test]
fn a_changed_name_id_breaks_the_signature() {
    let forged = ASSERTION.replace(
        ">alice@example.com</saml:NameID>",
        ">bob@example.com</saml:NameID>",
    );
    assert_ne!(forged, ASSERTION);
    assert_eq!(check(&forged).unwrap_err(), SamlError::BadSignature);
}

#[test]
fn another_certificate_does_not_verify_and_a_rollover_pair_does() {
    let other = SamlKeys::from_pem(OTHER_CERT).unwrap();
    let assertion = UnverifiedAssertion::parse(&encode(ASSERTION), 64 * 1024).unwrap();
    assert_eq!(
        assertion.verify(&other, &rules(ASSERTION)).unwrap_err(),
        SamlError::BadSignature
    );
    // The certificate inside the assertion's KeyInfo is the right one: it is still not trusted.
    assert!(ASSERTION.contains("<X509Certificate>"));
    let both = SamlKeys::from_pem(&format!("{OTHER_CERT}\n{IDP_CERT}")).unwrap();
    assert!(assertion.verify(&both, &rules(ASSERTION)).is_ok());
}

#[test]
fn sha1_signatures_are_refused() {
    assert!(ASSERTION_SHA1.contains("xmldsig#rsa-sha1"));
    assert_eq!(check(ASSERTION_SHA1).unwrap_err(), SamlError::AlgNotAllowed);
}

#[test]
fn a_comment_splitting_the_name_id_is_refused() {
    // CVE-2017-11427's class: exclusive C14N drops comments, so the signature still verifies,
    // and a parser that reads the first text node sees another user.
    let split = ASSERTION.replace(
        ">alice@example.com</saml:NameID>",
        ">alice@example.com<!---->.evil.example</saml:NameID>",
    );
    assert_eq!(
        check(&split).unwrap_err(),
        SamlError::Malformed("comments are not allowed")
    );
}

#[test]
fn a_document_type_declaration_is_refused() {
    let with_dtd = format!("<!DOCTYPE x [<!ENTITY e \"alice\">]>{ASSERTION}");
    assert_eq!(
        check(&with_dtd).unwrap_err(),
        SamlError::Malformed("a document type declaration is not allowed")
    );
}

/// The signed fixture with a DTD in front, in UTF-16 without a byte-order mark: every byte is
/// ASCII or NUL, so the bytes are valid UTF-8 that holds no `<!DOCTYPE`, yet an encoding-sniffing
/// parser (XML 1.0 Appendix F) reads the DTD and expands its entities.
fn utf16_with_dtd(big_endian: bool) -> String {
    let xml = format!("<!DOCTYPE x [<!ENTITY e \"alice\">]>{ASSERTION}");
    let bytes: Vec<u8> = xml
        .encode_utf16()
        .flat_map(|unit| {
            if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            }
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_document_type_declaration_is_refused_in_any_encoding() {
    for big_endian in [false, true] {
        let token = utf16_with_dtd(big_endian);
        let result = UnverifiedAssertion::parse(&token, 64 * 1024)
            .and_then(|assertion| assertion.verify(&keys(), &rules(ASSERTION)));
        assert!(
            matches!(result, Err(SamlError::Malformed(_))),
            "UTF-16 (big endian: {big_endian}): {result:?}"
        );
    }
}

#[test]
fn an_unsigned_assertion_is_refused() {
    let start = ASSERTION.find("<Signature").unwrap();
    let end = ASSERTION.find("</Signature>").unwrap() + "</Signature>".len();
    let unsigned = format!("{}{}", &ASSERTION[..start], &ASSERTION[end..]);
    assert_eq!(check(&unsigned).unwrap_err(), SamlError::Unsigned);
}

#[test]
fn a_wrapped_copy_of_the_signed_assertion_does_not_vouch_for_a_changed_one() {
    // Signature wrapping: the genuine signed assertion hidden in Advice, the outer one changed.
    let evil = ASSERTION.replace(
        ">alice@example.com</saml:NameID>",
        ">bob@example.com</saml:NameID>",
    );
    let issuer_end = evil.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let wrapped = format!(
        "{}<saml:Advice>{}</saml:Advice>{}",
        &evil[..issuer_end],
        ASSERTION,
        &evil[issuer_end..]
    );
    assert!(check(&wrapped).is_err());
    // Without its signature and with another ID, the copy is merely unsigned content.
    let start = ASSERTION.find("<Signature").unwrap();
    let end = ASSERTION.find("</Signature>").unwrap() + "</Signature>".len();
    let copy =
        format!("{}{}", &ASSERTION[..start], &ASSERTION[end..]).replacen(" ID=\"", " ID=\"copy", 1);
    let moved = format!(
        "{}<saml:Advice>{}</saml:Advice>{}",
        &evil[..issuer_end],
        copy,
        &evil[issuer_end..]
    );
    assert_eq!(check(&moved).unwrap_err(), SamlError::BadSignature);
}

#[test]
fn the_audience_must_be_the_clients_entity_id() {
    // IDJAG-ISSUE-10: an assertion for another SAML SP is refused.
    let other_sp = SamlRules {
        audience: "https://other.example.com/sp",
        ..rules(ASSERTION)
    };
    assert_eq!(
        check_with(ASSERTION, &other_sp).unwrap_err(),
        SamlError::WrongAudience
    );
}

#[test]
fn the_issuer_must_be_the_identity_providers() {
    let other_issuer = SamlRules {
        issuer: "https://other-idp.example.com/",
        ..rules(ASSERTION)
    };
    assert_eq!(
        check_with(ASSERTION, &other_issuer).unwrap_err(),
        SamlError::WrongIssuer
    );
}

#[test]
fn idjag_saml_04_times_are_checked_with_the_skew() {
    let issued = issued_at(ASSERTION);
    let at = |now: i64, max_age: Option<i64>| SamlRules {
        now,
        max_age,
        ..rules(ASSERTION)
    };
    // Ten minutes' lifetime, one minute's skew either way.
    assert!(check_with(ASSERTION, &at(issued + 600 + 59, None)).is_ok());
    assert_eq!(
        check_with(ASSERTION, &at(issued + 600 + 60, None)).unwrap_err(),
        SamlError::Expired
    );
    assert!(check_with(ASSERTION, &at(issued - 60, None)).is_ok());
    assert_eq!(
        check_with(ASSERTION, &at(issued - 61, None)).unwrap_err(),
        SamlError::IssuedInFuture
    );
    assert_eq!(
        check_with(ASSERTION, &at(issued + 400, Some(300))).unwrap_err(),
        SamlError::TooOld
    );
    assert!(check_with(ASSERTION, &at(issued + 300, Some(300))).is_ok());
}

#[test]
fn only_a_bare_assertion_is_accepted() {
    let response = format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"r\" Version=\"2.0\">{ASSERTION}</samlp:Response>"
    );
    let at_issue = rules(ASSERTION);
    assert!(matches!(
        check_with(&response, &at_issue).unwrap_err(),
        SamlError::Malformed(_)
    ));
    let encrypted =
        "<saml:EncryptedAssertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"/>";
    assert_eq!(
        check_with(encrypted, &at_issue).unwrap_err(),
        SamlError::Encrypted
    );
    assert_eq!(
        check_with("<saml:Assertion", &at_issue).unwrap_err(),
        SamlError::Malformed("not well-formed XML")
    );
}

#[test]
fn a_token_over_the_size_limit_is_refused_before_decoding() {
    assert_eq!(
        UnverifiedAssertion::parse(&encode(ASSERTION), 100).unwrap_err(),
        SamlError::TooLarge
    );
}

#[test]
fn certificates_are_required_and_checked() {
    assert!(SamlKeys::from_pem("").is_err());
    assert!(
        SamlKeys::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err()
    );
    assert!(SamlKeys::from_pem("-----BEGIN CERTIFICATE-----\nAAAA").is_err());
    assert_eq!(format!("{:?}", keys()), "SamlKeys { certificates: 1 }");
}

#[test]
fn every_failure_has_an_audit_reason_and_a_safe_description() {
    for error in [
        SamlError::TooLarge,
        SamlError::Malformed("x"),
        SamlError::Encrypted,
        SamlError::Unsigned,
        SamlError::AlgNotAllowed,
        SamlError::BadSignature,
        SamlError::WrongIssuer,
        SamlError::WrongAudience,
        SamlError::NotBearer,
        SamlError::Expired,
        SamlError::NotYetValid,
        SamlError::IssuedInFuture,
        SamlError::TooOld,
        SamlError::LifetimeTooLong,
        SamlError::NameIdFormatNotAccepted,
        SamlError::UnsupportedCondition,
        SamlError::KeysUnavailable,
        SamlError::NoExpiry,
        SamlError::SessionEnded,
    ] {
        assert!(error.reason().starts_with("subject_"));
        let description = error.to_string();
        assert!(
            description.is_ascii() && !description.contains('"') && !description.contains('\\')
        );
    }
    assert!(SamlError::BadSignature.suggests_forgery());
    assert!(!SamlError::Expired.suggests_forgery());
}

#[test]
fn the_signature_must_cover_exactly_the_assertion_with_the_allowed_transforms() {
    let id = attribute(ASSERTION, " ID");
    let whole_document = ASSERTION.replace(&format!("URI=\"#{id}\""), "URI=\"\"");
    assert_eq!(
        check(&whole_document).unwrap_err(),
        SamlError::Malformed("the signature must reference the assertion by its ID")
    );
    let xpath = ASSERTION.replace(
        "<Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "<Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"><XPath>1</XPath></Transform>",
    );
    assert_ne!(xpath, ASSERTION);
    assert_eq!(check(&xpath).unwrap_err(), SamlError::AlgNotAllowed);
    let inclusive = ASSERTION.replace(
        "<CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "<CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments\"/>",
    );
    assert_ne!(inclusive, ASSERTION);
    assert_eq!(check(&inclusive).unwrap_err(), SamlError::AlgNotAllowed);
}

fn der_base64(pem: &str) -> String {
    pem.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect()
}

/// Metadata in the shape Okta publishes: one entity, its IdP role, a signing key.
fn metadata(entity_id: &str, key_descriptors: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}"><md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{key_descriptors}<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.com/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

fn key_descriptor(usage: Option<&str>, pem: &str) -> String {
    let usage = usage.map(|u| format!(" use=\"{u}\"")).unwrap_or_default();
    format!(
        "<md:KeyDescriptor{usage}><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:X509Data><ds:X509Certificate>\n{}\n</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
        der_base64(pem)
    )
}

#[test]
fn metadata_yields_the_idps_signing_certificates_and_they_verify() {
    let xml = metadata(
        ISSUER,
        &format!(
            "{}{}",
            key_descriptor(Some("signing"), IDP_CERT),
            key_descriptor(Some("encryption"), OTHER_CERT)
        ),
    );
    let certificates = metadata::signing_certificates(&xml, ISSUER).expect("certificates");
    assert_eq!(
        certificates.len(),
        1,
        "the encryption key is not a signing key"
    );
    let keys = SamlKeys::from_der(&certificates).unwrap();
    let assertion = UnverifiedAssertion::parse(&encode(ASSERTION), 64 * 1024).unwrap();
    assert!(assertion.verify(&keys, &rules(ASSERTION)).is_ok());
    // A KeyDescriptor without `use` is for signing too.
    let unlabelled = metadata(ISSUER, &key_descriptor(None, IDP_CERT));
    assert_eq!(
        metadata::signing_certificates(&unlabelled, ISSUER)
            .unwrap()
            .len(),
        1
    );
    // In an aggregate, the entity is found by its entityID.
    let aggregate = format!(
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\">{}{}</md:EntitiesDescriptor>",
        metadata("https://other.example/", &key_descriptor(None, OTHER_CERT))
            .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", ""),
        metadata(ISSUER, &key_descriptor(None, IDP_CERT))
            .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", ""),
    );
    let found = metadata::signing_certificates(&aggregate, ISSUER).unwrap();
    assert_eq!(
        found,
        metadata::signing_certificates(&unlabelled, ISSUER).unwrap()
    );
}

#[test]
fn metadata_of_another_entity_or_without_signing_keys_gives_none() {
    let other = metadata("https://other.example/", &key_descriptor(None, IDP_CERT));
    assert!(metadata::signing_certificates(&other, ISSUER).is_err());
    let encryption_only = metadata(ISSUER, &key_descriptor(Some("encryption"), IDP_CERT));
    assert!(metadata::signing_certificates(&encryption_only, ISSUER).is_err());
    let sp_role = metadata(ISSUER, &key_descriptor(None, IDP_CERT))
        .replace("IDPSSODescriptor", "SPSSODescriptor");
    assert!(metadata::signing_certificates(&sp_role, ISSUER).is_err());
    let with_dtd = format!(
        "<!DOCTYPE x>{}",
        metadata(ISSUER, &key_descriptor(None, IDP_CERT))
            .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
    );
    assert!(metadata::signing_certificates(&with_dtd, ISSUER).is_err());
}

/// An IdP's metadata endpoint on a random port: serves `document`, or 503 while it is empty.
async fn metadata_endpoint(
    document: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let app = axum::Router::new().route(
        "/metadata",
        axum::routing::get(move || {
            let (document, fetches) = (document.clone(), fetches.clone());
            async move {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = document.lock().unwrap().clone();
                if body.is_empty() {
                    (http::StatusCode::SERVICE_UNAVAILABLE, String::new())
                } else {
                    (http::StatusCode::OK, body)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metadata", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The fixture IdP's metadata (its one certificate) served on loopback: the document to change,
/// the count of fetches, the URL.
async fn served_metadata() -> (
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    String,
) {
    let document = std::sync::Arc::new(std::sync::Mutex::new(metadata(
        ISSUER,
        &key_descriptor(None, IDP_CERT),
    )));
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = metadata_endpoint(document.clone(), fetches.clone()).await;
    (document, fetches, url)
}

/// A metadata cache whose keys are stale as soon as fetched, and refetched without delay.
fn stale_at_once_cache() -> metadata::MetadataCache {
    metadata::MetadataCache::new(
        reqwest::Client::new(),
        metadata::MetadataCacheConfig {
            ttl: std::time::Duration::ZERO,
            min_refetch_interval: std::time::Duration::ZERO,
        },
    )
}

#[tokio::test]
async fn stale_metadata_keys_are_served_while_one_background_fetch_renews_them() {
    use std::sync::atomic::Ordering;
    let (document, fetches, url) = served_metadata().await;
    // Every key is stale at once: each lookup after the first starts a background refresh.
    let cache = stale_at_once_cache();
    let keys = || cache.keys("okta", &url, ISSUER);
    assert_eq!(keys().await.unwrap().certificates(), 1);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "none held: fetched inline"
    );

    // The IdP publishes its next certificate: the stale keys answer at once, the refresh
    // brings the new ones for the next lookup.
    *document.lock().unwrap() = metadata(
        ISSUER,
        &format!(
            "{}{}",
            key_descriptor(None, IDP_CERT),
            key_descriptor(None, OTHER_CERT)
        ),
    );
    assert_eq!(keys().await.unwrap().certificates(), 1);
    cache.background_refresh("okta").await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(keys().await.unwrap().certificates(), 2);
    cache.background_refresh("okta").await;
    assert_eq!(fetches.load(Ordering::SeqCst), 3);

    // The IdP's metadata fails: what it last published keeps working.
    document.lock().unwrap().clear();
    assert_eq!(keys().await.unwrap().certificates(), 2);
    cache.background_refresh("okta").await;
    assert_eq!(fetches.load(Ordering::SeqCst), 4);
    assert_eq!(keys().await.unwrap().certificates(), 2);
}

#[tokio::test]
async fn metadata_keys_held_past_their_stale_limit_are_refused_while_the_idp_fails() {
    use std::sync::atomic::Ordering;
    let (document, fetches, url) = served_metadata().await;
    // Keys are stale at once, and past the bound at once: no sleeping.
    let cache = stale_at_once_cache().with_max_stale(std::time::Duration::ZERO);
    let keys = || cache.keys("okta", &url, ISSUER);
    assert_eq!(keys().await.unwrap().certificates(), 1);
    // The IdP's metadata fails (it may have withdrawn the certificate, e.g. after a key
    // compromise): keys held past the bound no longer verify, the IdP is refused (fail closed).
    document.lock().unwrap().clear();
    assert!(keys().await.is_err());
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "fetched again inline");
    // Once it answers again, its keys are back.
    *document.lock().unwrap() = metadata(ISSUER, &key_descriptor(None, IDP_CERT));
    assert_eq!(keys().await.unwrap().certificates(), 1);
}

/// Signs `template` (an assertion with an empty signature) with the fixture IdP's key: for
/// assertions whose content the npm peer cannot produce.
fn sign(template: &str) -> String {
    let mut manager = KeysManager::new();
    manager.add_key(
        bergshamra_keys::loader::load_pem_auto(
            include_bytes!("../../tests/fixtures/saml/idp.key"),
            None,
        )
        .expect("fixture key"),
    );
    bergshamra_dsig::sign::sign(&bergshamra_dsig::DsigContext::new(manager), template)
        .expect("signed")
}

/// When [`signed`] assertions are issued.
const NOW: i64 = 1_900_000_000;

fn utc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .expect("a time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An assertion for [`AUDIENCE`] from [`ISSUER`] issued at [`NOW`] for five minutes, with the
/// `NameID` text `name_id` and `statements` after its conditions, signed by the IdP's key.
fn signed(name_id: &str, statements: &str) -> String {
    sign(&template(name_id, statements))
}

/// [`signed`]'s assertion before it is signed.
fn template(name_id: &str, statements: &str) -> String {
    template_of(
        &format!("<saml:NameID>{name_id}</saml:NameID>{}", bearer(NOW + 300)),
        &conditions(Some(NOW + 300), &[AUDIENCE]),
        statements,
    )
}

/// An assertion from [`ISSUER`] issued at [`NOW`], before it is signed: `subject` inside its
/// `Subject`, then the whole `Conditions` element `conditions`, then `statements`.
fn template_of(subject: &str, conditions: &str, statements: &str) -> String {
    let issued = utc(NOW);
    format!(
        r##"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_signed" IssueInstant="{issued}" Version="2.0"><saml:Issuer>{ISSUER}</saml:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_signed"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature><saml:Subject>{subject}</saml:Subject>{conditions}{statements}</saml:Assertion>"##
    )
}

/// A bearer `SubjectConfirmation` whose data expires at `not_on_or_after`.
fn bearer(not_on_or_after: i64) -> String {
    format!(
        r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{}"/></saml:SubjectConfirmation>"#,
        utc(not_on_or_after)
    )
}

/// `Conditions` from [`NOW`] until `not_on_or_after` (none: no end of their own), with one
/// `AudienceRestriction` listing `audiences`.
fn conditions(not_on_or_after: Option<i64>, audiences: &[&str]) -> String {
    let end = not_on_or_after
        .map(|at| format!(" NotOnOrAfter=\"{}\"", utc(at)))
        .unwrap_or_default();
    format!(
        "<saml:Conditions NotBefore=\"{}\"{end}>{}</saml:Conditions>",
        utc(NOW),
        restriction(audiences)
    )
}

fn restriction(audiences: &[&str]) -> String {
    let audiences: String = audiences
        .iter()
        .map(|audience| format!("<saml:Audience>{audience}</saml:Audience>"))
        .collect();
    format!("<saml:AudienceRestriction>{audiences}</saml:AudienceRestriction>")
}

fn check_signed(xml: &str) -> Result<VerifiedAssertion, SamlError> {
    check_with(
        xml,
        &SamlRules {
            now: NOW + 5,
            ..rules(ASSERTION)
        },
    )
}

fn attribute_statement(name: &str, value: &str) -> String {
    format!(
        r#"<saml:AttributeStatement><saml:Attribute Name="{name}"><saml:AttributeValue>{value}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>"#
    )
}

#[test]
fn a_name_id_with_a_unicode_space_is_not_another_users() {
    // An IdP that lets a user pick "alice@example.com" followed by a no-break space, an
    // ideographic space or a next-line character vouches for that user, not for alice: only the
    // XML whitespace that pretty-printing adds is trimmed.
    for space in ['\u{a0}', '\u{3000}', '\u{85}', '\u{2028}'] {
        let name = format!("alice@example.com{space}");
        let xml = signed(&name, &attribute_statement("email", &name));
        let verified = check_signed(&xml).expect("valid");
        assert_eq!(verified.claims["sub"], json!(name), "{space:?}");
        assert_eq!(verified.claims["email"], json!(name), "{space:?}");
    }
    let pretty = signed(
        "\n    alice@example.com\n  ",
        &attribute_statement("email", "\n\talice@example.com\r\n"),
    );
    let verified = check_signed(&pretty).expect("valid");
    assert_eq!(verified.claims["sub"], json!("alice@example.com"));
    assert_eq!(verified.claims["email"], json!("alice@example.com"));
}

#[test]
fn attributes_named_like_claims_the_exchange_reads_are_not_claims() {
    // `act` would be nested in an issued access token's delegation chain (RFC 8693 §4.1) and
    // `sub_id` released instead of the NameID's saml-nameid identifier (IDJAG-JWT-17): neither
    // is an IdP attribute's to set. Policy still sees them under saml_attributes.
    let statements = format!(
        "{}{}",
        attribute_statement("act", "admin@example.com"),
        attribute_statement("sub_id", "bob@example.com")
    );
    let verified = check_signed(&signed("alice@example.com", &statements)).expect("valid");
    assert!(
        verified.claims.get("act").is_none(),
        "{:?}",
        verified.claims
    );
    assert!(
        verified.claims.get("sub_id").is_none(),
        "{:?}",
        verified.claims
    );
    assert_eq!(
        verified.claims["saml_attributes"],
        json!({ "act": ["admin@example.com"], "sub_id": ["bob@example.com"] })
    );
}

#[test]
fn an_assertion_whose_bearer_confirmation_never_expires_is_refused_as_such() {
    // SAML profiles §4.1.4.2: a bearer confirmation carries NotOnOrAfter. Without one the
    // assertion is not "expired": the description says what is missing.
    let live = format!(
        "<saml:SubjectConfirmationData NotOnOrAfter=\"{}\"/>",
        utc(NOW + 300)
    );
    let template = template("alice@example.com", "");
    assert!(template.contains(&live));
    let endless = template.replace(
        &live,
        "<saml:SubjectConfirmationData Recipient=\"https://client.example.com/acs\"/>",
    );
    let error = check_signed(&sign(&endless)).unwrap_err();
    assert_eq!(error, SamlError::NoExpiry);
    assert!(error.to_string().contains("NotOnOrAfter"));
    assert!(!error.suggests_forgery());
}

/// [`check_signed`] with `change` applied to the rules.
fn check_signed_with<'a>(
    xml: &str,
    change: impl FnOnce(&mut SamlRules<'a>),
) -> Result<VerifiedAssertion, SamlError> {
    let mut rules: SamlRules<'a> = SamlRules {
        now: NOW + 5,
        ..rules(ASSERTION)
    };
    change(&mut rules);
    check_with(xml, &rules)
}

const NAME_ID: &str = "<saml:NameID>alice@example.com</saml:NameID>";

#[test]
fn idjag_saml_04_an_assertion_valid_for_longer_than_the_cap_is_refused() {
    // The npm peer's fixture lives exactly the default ten minutes: accepted at the edge.
    assert_eq!(
        issued_at(ASSERTION) + DEFAULT_MAX_LIFETIME_SECS as i64,
        instant(attribute(ASSERTION, "NotOnOrAfter")).unwrap()
    );
    assert!(check(ASSERTION).is_ok());
    let year = NOW + 365 * 86400;
    let for_a_year = sign(&template_of(
        &format!("{NAME_ID}{}", bearer(year)),
        &conditions(Some(year), &[AUDIENCE]),
        "",
    ));
    let error = check_signed(&for_a_year).unwrap_err();
    assert_eq!(error, SamlError::LifetimeTooLong);
    assert!(!error.suggests_forgery());
    assert_eq!(error.reason(), "subject_lifetime_too_long");
    // Conditions with no end of their own: the confirmation's is the lifetime.
    let open_conditions = sign(&template_of(
        &format!("{NAME_ID}{}", bearer(year)),
        &conditions(None, &[AUDIENCE]),
        "",
    ));
    assert_eq!(
        check_signed(&open_conditions).unwrap_err(),
        SamlError::LifetimeTooLong
    );
    // One second over the cap, then the identity provider's own cap.
    let hour = sign(&template_of(
        &format!("{NAME_ID}{}", bearer(NOW + 3600)),
        &conditions(Some(NOW + 3600), &[AUDIENCE]),
        "",
    ));
    assert_eq!(
        check_signed_with(&hour, |rules| rules.max_lifetime = 3599).unwrap_err(),
        SamlError::LifetimeTooLong
    );
    let verified = check_signed_with(&hour, |rules| rules.max_lifetime = 3600).expect("valid");
    assert_eq!(verified.expires_at, NOW + 3600);
}

#[test]
fn the_lifetime_capped_is_the_window_honoured_not_the_conditions_alone() {
    // The ID-JAG draft's §4.5 example (and Entra ID, AD FS): confirmed for five minutes, under
    // conditions valid for an hour. Only five minutes are honoured, so it is within the cap.
    let draft_shaped = sign(&template_of(
        &format!("{NAME_ID}{}", bearer(NOW + 300)),
        &conditions(Some(NOW + 3600), &[AUDIENCE]),
        "",
    ));
    let verified = check_signed(&draft_shaped).expect("valid");
    assert_eq!(verified.expires_at, NOW + 300);
    assert_eq!(verified.claims["exp"], json!(NOW + 300));
}

#[test]
fn an_assertion_issued_in_the_future_beyond_the_skew_is_refused() {
    let xml = signed("alice@example.com", "");
    assert_eq!(
        check_signed_with(&xml, |rules| rules.now = NOW - 61).unwrap_err(),
        SamlError::IssuedInFuture
    );
    // Within the skew, IssueInstant and the conditions' NotBefore (the same instant) pass.
    assert!(check_signed_with(&xml, |rules| rules.now = NOW - 60).is_ok());
}

fn with_format(format: &str) -> String {
    sign(&template_of(
        &format!(
            "<saml:NameID Format=\"{format}\">alice@example.com</saml:NameID>{}",
            bearer(NOW + 300)
        ),
        &conditions(Some(NOW + 300), &[AUDIENCE]),
        "",
    ))
}

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

#[test]
fn a_transient_name_id_is_not_a_subject_unless_the_identity_provider_lists_it() {
    // A transient NameID is a new value at every sign-in: as `sub` it would be a new user each
    // time. Refused by default, for what it is, and not counted as a forgery.
    let transient = with_format(TRANSIENT);
    let error = check_signed(&transient).unwrap_err();
    assert_eq!(error, SamlError::NameIdFormatNotAccepted);
    assert!(!error.suggests_forgery());
    assert!(error.to_string().contains("transient"));
    // An entity NameID names a SAML entity, not a user.
    assert_eq!(
        check_signed(&with_format(ENTITY_FORMAT)).unwrap_err(),
        SamlError::NameIdFormatNotAccepted
    );
    // Stable formats, and none at all (SAML core §2.2.2: unspecified), are accepted.
    for format in DEFAULT_NAME_ID_FORMATS {
        assert!(check_signed(&with_format(format)).is_ok(), "{format}");
    }
    assert!(check_signed(&signed("alice@example.com", "")).is_ok());
    // An identity provider listing formats accepts those and only those.
    let listed = [TRANSIENT.to_string()];
    let verified =
        check_signed_with(&transient, |rules| rules.name_id_formats = &listed).expect("listed");
    assert_eq!(
        verified.claims["saml_nameid"]["nameid_format"],
        json!(TRANSIENT)
    );
    assert_eq!(
        check_signed_with(&signed("alice@example.com", ""), |rules| rules
            .name_id_formats =
            &listed)
        .unwrap_err(),
        SamlError::NameIdFormatNotAccepted
    );
}

#[test]
fn recipient_in_response_to_and_address_are_the_clients_to_check() {
    // The client received the assertion at its own ACS, in response to its own AuthnRequest,
    // from the user's browser: none of these name frontdesk or its caller.
    let confirmation = format!(
        r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{}" Recipient="https://client.example.com/saml/acs" InResponseTo="_client-request-1" Address="203.0.113.7"/></saml:SubjectConfirmation>"#,
        utc(NOW + 300)
    );
    let xml = sign(&template_of(
        &format!("{NAME_ID}{confirmation}"),
        &conditions(Some(NOW + 300), &[AUDIENCE]),
        "",
    ));
    assert!(check_signed(&xml).is_ok());
}

fn confirmation(method: &str, not_on_or_after: i64) -> String {
    format!(
        r#"<saml:SubjectConfirmation Method="{method}"><saml:SubjectConfirmationData NotOnOrAfter="{}"/></saml:SubjectConfirmation>"#,
        utc(not_on_or_after)
    )
}

#[test]
fn idjag_saml_04_only_a_live_bearer_confirmation_confirms() {
    const HOLDER_OF_KEY: &str = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key";
    let with = |confirmations: &str| {
        check_signed(&sign(&template_of(
            &format!("{NAME_ID}{confirmations}"),
            &conditions(Some(NOW + 300), &[AUDIENCE]),
            "",
        )))
    };
    // Holder-of-key needs a proof of the key this exchange does not carry.
    assert_eq!(
        with(&confirmation(HOLDER_OF_KEY, NOW + 300)).unwrap_err(),
        SamlError::NotBearer
    );
    // A bearer confirmation that has passed (beyond the skew) does not confirm, even with a
    // live holder-of-key one beside it.
    let expired = confirmation(BEARER, NOW - 120);
    assert_eq!(
        with(&format!(
            "{expired}{}",
            confirmation(HOLDER_OF_KEY, NOW + 300)
        ))
        .unwrap_err(),
        SamlError::Expired
    );
    // One live bearer confirmation is enough.
    let verified = with(&format!("{expired}{}", confirmation(BEARER, NOW + 200))).expect("valid");
    assert_eq!(verified.expires_at, NOW + 200);
}

fn with_conditions(inner: &str) -> Result<VerifiedAssertion, SamlError> {
    check_signed(&sign(&template_of(
        &format!("{NAME_ID}{}", bearer(NOW + 300)),
        &format!(
            "<saml:Conditions NotOnOrAfter=\"{}\">{inner}</saml:Conditions>",
            utc(NOW + 300)
        ),
        "",
    )))
}

#[test]
fn one_time_use_is_honoured_and_conditions_not_understood_invalidate() {
    // SAML core §2.5.1.5: OneTimeUse is what the replay records do for every assertion.
    assert!(with_conditions(&format!("<saml:OneTimeUse/>{}", restriction(&[AUDIENCE]))).is_ok());
    // §2.5.1.6: a grant is derived from the assertion, which ProxyRestriction limits.
    let proxy = format!(
        "{}<saml:ProxyRestriction Count=\"0\"/>",
        restriction(&[AUDIENCE])
    );
    assert_eq!(
        with_conditions(&proxy).unwrap_err(),
        SamlError::UnsupportedCondition
    );
    // §2.5.1: a condition not understood makes the assertion invalid.
    let other = format!(
        "{}<saml:Condition xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"x:Delegation\"/>",
        restriction(&[AUDIENCE])
    );
    assert_eq!(
        with_conditions(&other).unwrap_err(),
        SamlError::UnsupportedCondition
    );
}

#[test]
fn idjag_issue_10_every_audience_restriction_must_name_the_client() {
    // SAML core §2.5.1.4: one restriction listing several audiences is met by any of them; the
    // assertion is then addressed to each, the client among them.
    let several = with_conditions(&restriction(&["https://other.example.com/sp", AUDIENCE]));
    assert_eq!(several.expect("valid").claims["aud"], json!(AUDIENCE));
    // Several restrictions must each be met.
    let one_not_naming = format!(
        "{}{}",
        restriction(&[AUDIENCE]),
        restriction(&["https://other.example.com/sp"])
    );
    assert_eq!(
        with_conditions(&one_not_naming).unwrap_err(),
        SamlError::WrongAudience
    );
    let none_naming = restriction(&[
        "https://other.example.com/sp",
        "https://third.example.com/sp",
    ]);
    assert_eq!(
        with_conditions(&none_naming).unwrap_err(),
        SamlError::WrongAudience
    );
    assert_eq!(
        with_conditions(&restriction(&[])).unwrap_err(),
        SamlError::WrongAudience
    );
    assert_eq!(with_conditions("").unwrap_err(), SamlError::WrongAudience);
}

#[test]
fn encrypted_name_ids_and_attributes_are_refused_as_such() {
    let encrypted_id = sign(&template_of(
        &format!(
            "<saml:EncryptedID><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedID>{}",
            bearer(NOW + 300)
        ),
        &conditions(Some(NOW + 300), &[AUDIENCE]),
        "",
    ));
    assert_eq!(
        check_signed(&encrypted_id).unwrap_err(),
        SamlError::Encrypted
    );
    let encrypted_attribute = signed(
        "alice@example.com",
        "<saml:AttributeStatement><saml:EncryptedAttribute><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedAttribute></saml:AttributeStatement>",
    );
    assert_eq!(
        check_signed(&encrypted_attribute).unwrap_err(),
        SamlError::Encrypted
    );
}

/// An unsigned assertion about bob, carried inside the signed one's `Advice`.
fn advice_about_bob() -> String {
    format!(
        r#"<saml:Advice><saml:Assertion ID="_inner" IssueInstant="{}" Version="2.0"><saml:Issuer>{ISSUER}</saml:Issuer><saml:Subject><saml:NameID>bob@example.com</saml:NameID></saml:Subject>{}</saml:Assertion></saml:Advice>"#,
        utc(NOW),
        attribute_statement("role", "admin")
    )
}

#[test]
fn the_claims_are_read_from_the_signed_assertion_never_from_one_inside_it() {
    let verified = check_signed(&signed("alice@example.com", &advice_about_bob())).expect("valid");
    assert_eq!(verified.claims["sub"], json!("alice@example.com"));
    assert_eq!(verified.id, "_signed");
    assert!(
        verified.claims.get("role").is_none(),
        "{:?}",
        verified.claims
    );
    assert_eq!(verified.claims["saml_attributes"], json!({}));
}

#[test]
fn a_signature_over_an_inner_assertion_does_not_vouch_for_the_outer_one() {
    // The outer signature made over the Advice's assertion (signature wrapping the other way
    // round): genuine, but not over what would be read.
    let template = template("mallory@example.com", &advice_about_bob()).replace(
        "<ds:Reference URI=\"#_signed\">",
        "<ds:Reference URI=\"#_inner\">",
    );
    assert!(template.contains("URI=\"#_inner\""));
    assert_eq!(
        check_signed(&sign(&template)).unwrap_err(),
        SamlError::Malformed("the signature must reference the assertion by its ID")
    );
    // A second signature anywhere in the document is refused before any is checked.
    let inner_signed = sign(
        &template_of(
            &format!(
                "<saml:NameID>bob@example.com</saml:NameID>{}",
                bearer(NOW + 300)
            ),
            &conditions(Some(NOW + 300), &[AUDIENCE]),
            "",
        )
        .replace("_signed", "_inner"),
    );
    let outer = signed(
        "alice@example.com",
        &format!("<saml:Advice>{inner_signed}</saml:Advice>"),
    );
    assert_eq!(
        check_signed(&outer).unwrap_err(),
        SamlError::Malformed("more than one signature")
    );
}

#[test]
fn a_processing_instruction_splitting_the_name_id_is_refused() {
    let split = signed("alice@example.com", "").replace(
        ">alice@example.com</saml:NameID>",
        ">alice@example.com<?x y?>.evil.example</saml:NameID>",
    );
    assert!(split.contains("<?x y?>"));
    assert_eq!(
        check_signed(&split).unwrap_err(),
        SamlError::Malformed("processing instructions are not allowed")
    );
}

#[test]
fn the_sign_ins_session_end_is_kept_and_an_ended_session_refused() {
    // SAML core §2.7.2: SessionNotOnOrAfter bounds every session derived from the assertion.
    let with_session_end = |at: i64| {
        signed(
            "alice@example.com",
            &format!(
                "<saml:AuthnStatement AuthnInstant=\"{}\" SessionNotOnOrAfter=\"{}\"/>",
                utc(NOW),
                utc(at)
            ),
        )
    };
    let verified = check_signed(&with_session_end(NOW + 8 * 3600)).expect("valid");
    assert_eq!(verified.session_ends_at, Some(NOW + 8 * 3600));
    assert_eq!(verified.claims["auth_time"], json!(NOW));
    let error = check_signed(&with_session_end(NOW - 120)).unwrap_err();
    assert_eq!(error, SamlError::SessionEnded);
    assert!(!error.suggests_forgery());
    // Within the skew it has not ended yet.
    assert!(check_signed(&with_session_end(NOW - 30)).is_ok());
    // Without one, nothing bounds it but frontdesk's own lifetimes.
    assert_eq!(
        check_signed(&signed("alice@example.com", ""))
            .expect("valid")
            .session_ends_at,
        None
    );
}

fn attribute_of(name: &str, values: &[&str]) -> String {
    let values: String = values
        .iter()
        .map(|value| format!("<saml:AttributeValue>{value}</saml:AttributeValue>"))
        .collect();
    format!(r#"<saml:Attribute Name="{name}">{values}</saml:Attribute>"#)
}

#[test]
fn released_claims_have_their_json_type_whatever_the_attributes_count() {
    // A resource AS reads "email_verified": "false" as true in JavaScript or Python, and tests a
    // substring with `"admins" in groups` on a string: attributes named like the claims an
    // audience may release become them only in their type.
    let statement = format!(
        "<saml:AttributeStatement>{}</saml:AttributeStatement>",
        [
            attribute_of("email_verified", &["false"]),
            attribute_of("phone_number_verified", &["maybe"]),
            attribute_of("groups", &["admins-readonly"]),
            attribute_of("amr", &["mfa"]),
            attribute_of("email", &["alice@example.com", "alice@evil.example"]),
            attribute_of("updated_at", &["1700000000"]),
            attribute_of("address", &["1 Main St"]),
            attribute_of("department", &["eng"]),
            attribute_of("office", &["Paris", "Berlin"]),
        ]
        .concat()
    );
    let claims = check_signed(&signed("alice@example.com", &statement))
        .expect("valid")
        .claims;
    assert_eq!(claims["email_verified"], json!(false));
    assert_eq!(claims["groups"], json!(["admins-readonly"]));
    assert_eq!(claims["amr"], json!(["mfa"]));
    assert_eq!(claims["updated_at"], json!(1_700_000_000));
    for absent in ["phone_number_verified", "email", "address"] {
        assert!(claims.get(absent).is_none(), "{absent}: {claims:?}");
    }
    // Other names keep their shape; every attribute is under saml_attributes as sent.
    assert_eq!(claims["department"], json!("eng"));
    assert_eq!(claims["office"], json!(["Paris", "Berlin"]));
    assert_eq!(
        claims["saml_attributes"]["email"],
        json!(["alice@example.com", "alice@evil.example"])
    );
    assert_eq!(
        claims["saml_attributes"]["phone_number_verified"],
        json!(["maybe"])
    );
    let truthy = signed(
        "alice@example.com",
        &format!(
            "<saml:AttributeStatement>{}</saml:AttributeStatement>",
            attribute_of("email_verified", &["1"])
        ),
    );
    assert_eq!(
        check_signed(&truthy).expect("valid").claims["email_verified"],
        json!(true)
    );
}

#[test]
fn an_attribute_sent_twice_keeps_every_value() {
    // Two statements (or two rules of the IdP) naming the same attribute: the claim is never
    // the last one alone, which would hide a value a policy denies on.
    let statements = format!(
        "<saml:AttributeStatement>{}</saml:AttributeStatement><saml:AttributeStatement>{}{}</saml:AttributeStatement>",
        attribute_of("groups", &["contractors"]),
        attribute_of("groups", &["eng"]),
        attribute_of("cost_center", &["42"]),
    );
    let claims = check_signed(&signed("alice@example.com", &statements))
        .expect("valid")
        .claims;
    assert_eq!(claims["groups"], json!(["contractors", "eng"]));
    assert_eq!(
        claims["saml_attributes"]["groups"],
        json!(["contractors", "eng"])
    );
    assert_eq!(claims["cost_center"], json!("42"));
}
