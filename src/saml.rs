//! SAML 2.0 assertions as subject tokens (RFC 8693 `…:token-type:saml2`, IDJAG-ISSUE-07): the
//! enterprise IdPs that still speak SAML to their applications can be trusted like OpenID
//! providers. An assertion is accepted only when it is exactly what an IdP signs for single
//! sign-on: a bare `<saml:Assertion>` (base64url or base64, TX-10), signed as a whole with one
//! enveloped XML signature, by a certificate configured for its issuer, with an audience naming
//! the client (IDJAG-ISSUE-10), a live bearer confirmation and live conditions (IDJAG-SAML-04),
//! valid for no longer than the identity provider's cap (IDJAG-ACCEPT-08's rule), about a
//! subject whose `NameID` format names the same user at every sign-in (never `transient` unless
//! the identity provider is configured for it).
//!
//! XML signatures have a long record of bypasses (signature wrapping, comments splitting a
//! `NameID`, document-supplied keys, DTD tricks). The defences here are structural and checked
//! before anything is read: no DTD, no comments or processing instructions anywhere, exactly one
//! signature, a direct child of the root, whose one reference names the root by its `ID`, with
//! only the enveloped and exclusive-C14N transforms and allow-listed algorithms (RFC 8725's
//! spirit: no SHA-1, no HMAC). The cryptography is `bergshamra` with trusted keys only, strict
//! reference positions and duplicate-ID rejection; the claims are then read from the same parsed
//! document, only from the root's own children.

use base64::Engine as _;
use bergshamra_dsig::{DsigContext, VerifyResult};
use bergshamra_keys::KeysManager;
use serde_json::{Map, Value, json};
use uppsala::{Document, NodeId, NodeKind};

/// The SAML 2.0 assertion namespace.
const SAML2_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const ENTITY_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
/// SAML core §2.2.2: the format in effect when a `NameID` has no `Format`.
const UNSPECIFIED_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

/// The longest assertion lifetime accepted when the identity provider sets no
/// `saml_max_lifetime_secs`: ten minutes, from `IssueInstant` to the `NotOnOrAfter` frontdesk
/// honours (the earlier of the conditions' and the bearer confirmation's). Web SSO assertions
/// are consumed as they arrive (Okta, Entra ID, AD FS, Shibboleth confirm for five minutes; the
/// ID-JAG draft's §4.5 example too, with a one-hour `Conditions`); one valid for a year is a
/// misconfigured IdP or an assertion kept for later, and its ID would be kept as long.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 600;

/// The `NameID` formats accepted when the identity provider lists none (`saml_name_id_formats`):
/// those whose value names the same user at every sign-in (SAML core §8.3). Never `transient`
/// (a new value at each sign-in: a `sub` that is a new, useless user every time, which per-user
/// limits and refresh tokens would follow), nor `entity` (a SAML entity, not a user), nor a
/// format nobody said is stable.
pub const DEFAULT_NAME_ID_FORMATS: &[&str] = &[
    UNSPECIFIED_FORMAT,
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:WindowsDomainQualifiedName",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos",
];

/// Signature algorithms accepted: RSA PKCS#1 v1.5 and ECDSA with SHA-2. Never SHA-1, never HMAC
/// (a shared secret cannot be a certificate's key), never DSA.
const SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];

/// Digest algorithms accepted for the reference: SHA-2 only.
const DIGEST_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

/// A `NameID` longer than this is refused: it becomes the audit log's subject and the `sub` of
/// what is issued.
const MAX_NAME_ID_BYTES: usize = 1024;

/// Claims frontdesk derives from the assertion's structure, or reads from a subject token with
/// a meaning no SAML attribute has (`act`: the delegation chain nested in an issued token;
/// `sub_id`: released instead of the NameID's `saml-nameid`); an attribute of the same name does
/// not become them.
const RESERVED_CLAIMS: &[&str] = &[
    "act",
    "sub_id",
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "auth_time",
    "acr",
    "saml_nameid",
    "saml_attributes",
    "cnf",
    "may_act",
    "scope",
    "scp",
];

/// Every way an assertion can fail. The description is a short ASCII sentence without assertion
/// content, safe as an `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SamlError {
    /// Larger than `tokens.max_token_bytes`.
    #[error("The SAML assertion is larger than allowed.")]
    TooLarge,
    /// Not a base64 or base64url encoded, well-formed, UTF-8 SAML 2.0 assertion; the static
    /// detail names the structural problem, never content.
    #[error("The subject_token is not an acceptable SAML 2.0 assertion: {0}.")]
    Malformed(&'static str),
    /// An `EncryptedAssertion`, `EncryptedID` or `EncryptedAttribute`.
    #[error("Encrypted SAML assertions, NameIDs and attributes are not accepted.")]
    Encrypted,
    /// No signature on the assertion itself.
    #[error("The SAML assertion is not signed; the assertion itself must carry the signature.")]
    Unsigned,
    /// A signature, digest, canonicalization or transform algorithm outside the allow-list.
    #[error("The SAML signature uses an algorithm or transform that is not accepted.")]
    AlgNotAllowed,
    /// The signature does not verify with a certificate configured for the issuer.
    #[error("The SAML signature is invalid.")]
    BadSignature,
    /// The `Issuer` is not the identity provider's configured issuer.
    #[error("The SAML assertion issuer is not the expected issuer.")]
    WrongIssuer,
    /// No `AudienceRestriction`, or one that does not name this client.
    #[error("The SAML assertion audience is not this client.")]
    WrongAudience,
    /// No `bearer` subject confirmation.
    #[error("The SAML assertion has no bearer subject confirmation.")]
    NotBearer,
    /// A bearer confirmation without `NotOnOrAfter` (SAML profiles §4.1.4.2), and no other.
    #[error(
        "The SAML assertion's bearer SubjectConfirmationData has no NotOnOrAfter; it must expire."
    )]
    NoExpiry,
    /// Past its `NotOnOrAfter` (the conditions' or the bearer confirmation's).
    #[error("The SAML assertion has expired.")]
    Expired,
    /// Past its `AuthnStatement`'s `SessionNotOnOrAfter`: the identity provider has ended the
    /// session it vouches for.
    #[error("The session of the SAML assertion's sign-in has ended.")]
    SessionEnded,
    /// Before its `NotBefore`.
    #[error("The SAML assertion is not yet valid.")]
    NotYetValid,
    /// `IssueInstant` in the future.
    #[error("The SAML assertion was issued in the future.")]
    IssuedInFuture,
    /// `IssueInstant` older than the identity provider's `max_token_age_secs`.
    #[error("The SAML assertion was issued too long ago.")]
    TooOld,
    /// Valid for longer than the identity provider's `saml_max_lifetime_secs` (IDJAG-ACCEPT-08's
    /// rule for far-future expiries, applied to assertions).
    #[error("The SAML assertion is valid for longer than this server accepts.")]
    LifetimeTooLong,
    /// A `NameID` whose `Format` the identity provider is not trusted for (by default
    /// `transient`, a new value at every sign-in).
    #[error(
        "The SAML assertion's NameID format is not accepted from this identity provider; a transient NameID is not a stable subject."
    )]
    NameIdFormatNotAccepted,
    /// A condition this server does not understand or cannot honour (SAML core §2.5.1: the
    /// assertion is then not valid).
    #[error("The SAML assertion carries a condition this server cannot honour.")]
    UnsupportedCondition,
    /// The identity provider's metadata could not be fetched and no certificate is held.
    #[error("The signing certificates of the identity provider are currently unavailable.")]
    KeysUnavailable,
}

impl SamlError {
    /// The audit log's reason, in the vocabulary of the JWT subject tokens where the failure is
    /// the same.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "subject_token_too_large",
            Self::Malformed(_) => "subject_saml_malformed",
            Self::Encrypted => "subject_saml_encrypted",
            Self::Unsigned => "subject_saml_unsigned",
            Self::AlgNotAllowed => "subject_alg_not_allowed",
            Self::BadSignature => "subject_bad_signature",
            Self::WrongIssuer => "subject_wrong_issuer",
            Self::WrongAudience => "subject_wrong_audience",
            Self::NotBearer => "subject_saml_not_bearer",
            Self::NoExpiry => "subject_saml_no_expiry",
            Self::Expired => "subject_token_expired",
            Self::SessionEnded => "subject_saml_session_ended",
            Self::NotYetValid => "subject_not_yet_valid",
            Self::IssuedInFuture => "subject_issued_in_future",
            Self::TooOld => "subject_token_too_old",
            Self::LifetimeTooLong => "subject_lifetime_too_long",
            Self::NameIdFormatNotAccepted => "subject_saml_name_id_format",
            Self::UnsupportedCondition => "subject_saml_unsupported_condition",
            Self::KeysUnavailable => "subject_keys_unavailable",
        }
    }

    /// Whether the failure says the assertion is not what its IdP gave this client (the
    /// forged-token throttle counts these); expiry and unsupported features do not. Exhaustive,
    /// so a new failure must be classified.
    pub fn suggests_forgery(&self) -> bool {
        match self {
            Self::Malformed(_)
            | Self::Unsigned
            | Self::AlgNotAllowed
            | Self::BadSignature
            | Self::WrongIssuer
            | Self::WrongAudience => true,
            Self::TooLarge
            | Self::Encrypted
            | Self::NotBearer
            | Self::NoExpiry
            | Self::Expired
            | Self::SessionEnded
            | Self::NotYetValid
            | Self::IssuedInFuture
            | Self::TooOld
            | Self::LifetimeTooLong
            | Self::NameIdFormatNotAccepted
            | Self::UnsupportedCondition
            | Self::KeysUnavailable => false,
        }
    }
}

/// The signing certificates trusted for one identity provider's assertions (`saml_certificates`,
/// PEM). Only these keys verify: a certificate inside the assertion's `KeyInfo` is never trusted.
#[derive(Clone)]
pub struct SamlKeys {
    manager: KeysManager,
    count: usize,
}

impl std::fmt::Debug for SamlKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlKeys")
            .field("certificates", &self.count)
            .finish()
    }
}

impl SamlKeys {
    /// The certificates (DER) of an IdP's metadata.
    pub fn from_der(certificates: &[Vec<u8>]) -> Result<SamlKeys, String> {
        let mut manager = KeysManager::new();
        for (n, der) in certificates.iter().enumerate() {
            let key = bergshamra_keys::loader::load_x509_cert_der(der)
                .map_err(|error| format!("certificate {}: {error}", n + 1))?;
            manager.add_key(key);
        }
        if certificates.is_empty() {
            return Err("no certificate".into());
        }
        Ok(SamlKeys {
            manager,
            count: certificates.len(),
        })
    }

    /// Both sets: the pinned certificates and those of the metadata verify alike.
    pub fn union(&self, other: &SamlKeys) -> SamlKeys {
        let mut manager = self.manager.clone();
        manager.add_keys(other.manager.keys().cloned());
        SamlKeys {
            manager,
            count: self.count + other.count,
        }
    }

    /// How many certificates are trusted (shown by the admin page's "test connection").
    pub fn certificates(&self) -> usize {
        self.count
    }

    /// Parses one or more PEM certificates (concatenated, as IdPs hand them out). Several are
    /// accepted together so a signer's old and new certificates overlap during its rollover.
    pub fn from_pem(text: &str) -> Result<SamlKeys, String> {
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let mut manager = KeysManager::new();
        let mut count = 0;
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            let Some(end) = rest[start..].find(END) else {
                return Err("a certificate has no END CERTIFICATE line".into());
            };
            let block = &rest[start..start + end + END.len()];
            let key = bergshamra_keys::loader::load_x509_cert_pem(block.as_bytes())
                .map_err(|error| format!("certificate {}: {error}", count + 1))?;
            manager.add_key(key);
            count += 1;
            rest = &rest[start + end + END.len()..];
        }
        if count == 0 {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
        }
        Ok(SamlKeys { manager, count })
    }
}

/// What an assertion is checked against.
#[derive(Debug, Clone, Copy)]
pub struct SamlRules<'a> {
    /// The identity provider's issuer: the assertion's `Issuer` must equal it exactly.
    pub issuer: &'a str,
    /// The value one `Audience` of every `AudienceRestriction` must equal: the authenticated
    /// client's identifier at this identity provider, its SAML SP entity ID (IDJAG-ISSUE-10).
    pub audience: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// Clock skew allowed on every time comparison.
    pub skew: i64,
    /// The oldest acceptable `IssueInstant`, in seconds before `now`.
    pub max_age: Option<i64>,
    /// The longest lifetime accepted, from `IssueInstant` to the expiry honoured, in seconds
    /// (`saml_max_lifetime_secs`, by default [`DEFAULT_MAX_LIFETIME_SECS`]).
    pub max_lifetime: i64,
    /// The `NameID` formats accepted (`saml_name_id_formats`); empty: [`DEFAULT_NAME_ID_FORMATS`].
    pub name_id_formats: &'a [String],
}

/// An assertion decoded and parsed, its signature not yet checked: only the issuer may be read,
/// to find whose certificates verify it.
pub struct UnverifiedAssertion {
    doc: Document<'static>,
    root: NodeId,
}

impl std::fmt::Debug for UnverifiedAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnverifiedAssertion(..)")
    }
}

/// A verified assertion: the claims the exchange uses, and what its single use is keyed by.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    /// `iss`, `sub` (the `NameID`), `aud`, `exp`, `iat`, `jti` (the assertion `ID`),
    /// `auth_time` and `acr` (the `AuthnStatement`), `saml_nameid` (the `NameID` and its
    /// qualifiers, the ID-JAG draft's `saml-nameid` members), each attribute by its `Name` (a
    /// string, or an array when it has several values; a claim an audience may release in its
    /// own JSON type, see `claim_value`), and `saml_attributes`, every attribute as an array
    /// whatever its count: the stable shape for policy over multi-valued attributes.
    pub claims: Map<String, Value>,
    /// The assertion's `ID`, recorded so it is accepted once (IDJAG-SAML-04).
    pub id: String,
    /// When the assertion stops being acceptable, unix seconds: how long its `ID` is kept.
    pub expires_at: i64,
    /// The `AuthnStatement`'s `SessionNotOnOrAfter` (SAML core §2.7.2), unix seconds: the
    /// identity provider's upper bound on sessions derived from the assertion, which a refresh
    /// token issued for it (ID-JAG draft §4.5) must not outlive.
    pub session_ends_at: Option<i64>,
}

fn malformed(detail: &'static str) -> SamlError {
    SamlError::Malformed(detail)
}

/// Decodes base64url (RFC 8693 §3) or standard base64 (the ID-JAG draft's example), padded
/// or not.
fn decode(token: &str) -> Result<Vec<u8>, SamlError> {
    let normalised: String = token
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(normalised.as_bytes())
        .map_err(|_| malformed("not base64url or base64 encoded"))
}

impl UnverifiedAssertion {
    /// Decodes and parses `token`. Refuses a DTD before parsing (SAML never needs one, and it is
    /// where entity tricks live) and any comment or processing instruction after (they are how a
    /// signed `NameID` is split without breaking its signature).
    pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedAssertion, SamlError> {
        if token.len() > max_bytes {
            return Err(SamlError::TooLarge);
        }
        let bytes = decode(token)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not UTF-8 XML"))?;
        if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
            return Err(malformed("a document type declaration is not allowed"));
        }
        // The UTF-8 text just checked is what is parsed. A parser given the bytes sniffs their
        // encoding (XML 1.0 Appendix F): UTF-16 without a byte-order mark is all ASCII and NUL,
        // valid UTF-8 in which the check above finds no `<!DOCTYPE`, and would be read as a
        // document with a DTD and expanded entities.
        let doc = uppsala::parse(text).map_err(|_| malformed("not well-formed XML"))?;
        if doc.doctype.is_some() {
            return Err(malformed("a document type declaration is not allowed"));
        }
        let doc = doc.into_static();
        let root = doc.document_element().ok_or(malformed("no root element"))?;
        for node in doc.descendants(doc.root()) {
            match doc.node_kind(node) {
                Some(NodeKind::Comment(_)) => {
                    return Err(malformed("comments are not allowed"));
                }
                Some(NodeKind::ProcessingInstruction(_)) => {
                    return Err(malformed("processing instructions are not allowed"));
                }
                _ => {}
            }
        }
        let element = doc.element(root).ok_or(malformed("no root element"))?;
        if element.name.matches(Some(SAML2_NS), "EncryptedAssertion") {
            return Err(SamlError::Encrypted);
        }
        if !element.name.matches(Some(SAML2_NS), "Assertion") {
            return Err(malformed(
                "the root element must be a SAML 2.0 Assertion (send the assertion, not the Response)",
            ));
        }
        Ok(UnverifiedAssertion { doc, root })
    }

    /// The `Issuer` the assertion claims, unverified: which identity provider to check it with.
    pub fn unverified_issuer(&self) -> Option<String> {
        let issuer = self.child(self.root, "Issuer")?;
        text_only(&self.doc, issuer).ok()
    }

    /// Checks the signature with `keys`, then the issuer, audience, confirmation and times, and
    /// returns the claims.
    pub fn verify(
        &self,
        keys: &SamlKeys,
        rules: &SamlRules<'_>,
    ) -> Result<VerifiedAssertion, SamlError> {
        let doc = &self.doc;
        let root = self.root;
        let element = doc.element(root).ok_or(malformed("no root element"))?;
        if element.get_attribute("Version") != Some("2.0") {
            return Err(malformed("Version must be 2.0"));
        }
        let id = element
            .get_attribute("ID")
            .filter(|id| !id.is_empty())
            .ok_or(malformed("the assertion has no ID"))?
            .to_string();
        self.check_signature_structure(&id)?;
        self.check_signature(keys)?;

        // Only now is the content trusted, and only the root's own children are read.
        let issuer_node = self
            .only_child(root, "Issuer")?
            .ok_or(malformed("no Issuer"))?;
        let issuer = text_only(doc, issuer_node)?;
        if doc
            .get_attribute(issuer_node, "Format")
            .is_some_and(|format| format != ENTITY_FORMAT)
            || issuer != rules.issuer
        {
            return Err(SamlError::WrongIssuer);
        }
        let issued_at = instant(
            element
                .get_attribute("IssueInstant")
                .ok_or(malformed("no IssueInstant"))?,
        )?;
        if issued_at > rules.now + rules.skew {
            return Err(SamlError::IssuedInFuture);
        }
        if rules
            .max_age
            .is_some_and(|max_age| rules.now - issued_at > max_age + rules.skew)
        {
            return Err(SamlError::TooOld);
        }

        let conditions_expire = self.check_conditions(rules)?;
        let subject = self
            .only_child(root, "Subject")?
            .ok_or(malformed("no Subject"))?;
        let confirmation_expires = self.check_bearer_confirmation(subject, rules)?;
        let expires_at =
            conditions_expire.map_or(confirmation_expires, |at| at.min(confirmation_expires));
        // The window honoured, not each `NotOnOrAfter`: IdPs such as Entra ID and AD FS (and the
        // ID-JAG draft's example) confirm for minutes under conditions valid for an hour.
        if expires_at.saturating_sub(issued_at) > rules.max_lifetime {
            return Err(SamlError::LifetimeTooLong);
        }

        let mut claims = Map::new();
        let (name_id, name_id_claim) = self.name_id(subject, &issuer, rules.name_id_formats)?;
        claims.insert("iss".into(), json!(issuer));
        claims.insert("sub".into(), json!(name_id));
        claims.insert("aud".into(), json!(rules.audience));
        claims.insert("iat".into(), json!(issued_at));
        claims.insert("exp".into(), json!(expires_at));
        claims.insert("jti".into(), json!(id));
        claims.insert("saml_nameid".into(), name_id_claim);
        let mut session_ends_at = None;
        if let Some(statement) = self.only_child(root, "AuthnStatement")? {
            if let Some(at) = doc.get_attribute(statement, "AuthnInstant") {
                claims.insert("auth_time".into(), json!(instant(at)?));
            }
            if let Some(at) = doc.get_attribute(statement, "SessionNotOnOrAfter") {
                let at = instant(at)?;
                // The identity provider has already ended the sign-in's session.
                if at <= rules.now - rules.skew {
                    return Err(SamlError::SessionEnded);
                }
                session_ends_at = Some(at);
            }
            if let Some(class) = self
                .child(statement, "AuthnContext")
                .and_then(|context| self.child(context, "AuthnContextClassRef"))
            {
                claims.insert("acr".into(), json!(text_only(doc, class)?));
            }
        }
        self.attributes(&mut claims)?;
        Ok(VerifiedAssertion {
            claims,
            id,
            expires_at,
            session_ends_at,
        })
    }

    /// One signature, a direct child of the assertion, covering exactly the assertion, with
    /// allow-listed algorithms and transforms. Checked before any cryptography, so nothing the
    /// verifier could be steered to (another element, an external URI, an XPath or XSLT
    /// transform) is ever reached.
    fn check_signature_structure(&self, id: &str) -> Result<(), SamlError> {
        let doc = &self.doc;
        let signatures: Vec<NodeId> = doc
            .descendants(self.root)
            .into_iter()
            .filter(|node| is(doc, *node, DSIG_NS, "Signature"))
            .collect();
        let signature = match signatures.as_slice() {
            [] => return Err(SamlError::Unsigned),
            [one] if doc.parent(*one) == Some(self.root) => *one,
            [_] => return Err(SamlError::Unsigned),
            _ => return Err(malformed("more than one signature")),
        };
        let signed_info = dsig_child(doc, signature, "SignedInfo")?;
        let c14n = dsig_child(doc, signed_info, "CanonicalizationMethod")?;
        if doc.get_attribute(c14n, "Algorithm") != Some(EXC_C14N) {
            return Err(SamlError::AlgNotAllowed);
        }
        let method = dsig_child(doc, signed_info, "SignatureMethod")?;
        if !doc
            .get_attribute(method, "Algorithm")
            .is_some_and(|alg| SIGNATURE_METHODS.contains(&alg))
        {
            return Err(SamlError::AlgNotAllowed);
        }
        let references: Vec<NodeId> = element_children(doc, signed_info)
            .filter(|node| is(doc, *node, DSIG_NS, "Reference"))
            .collect();
        let [reference] = references.as_slice() else {
            return Err(malformed("the signature must have exactly one Reference"));
        };
        if doc.get_attribute(*reference, "URI") != Some(&format!("#{id}")) {
            return Err(malformed(
                "the signature must reference the assertion by its ID",
            ));
        }
        let transforms = dsig_child(doc, *reference, "Transforms")?;
        let mut enveloped = false;
        for transform in element_children(doc, transforms) {
            match doc.get_attribute(transform, "Algorithm") {
                Some(ENVELOPED) if is(doc, transform, DSIG_NS, "Transform") => enveloped = true,
                Some(EXC_C14N) if is(doc, transform, DSIG_NS, "Transform") => {}
                _ => return Err(SamlError::AlgNotAllowed),
            }
        }
        if !enveloped {
            return Err(SamlError::AlgNotAllowed);
        }
        let digest = dsig_child(doc, *reference, "DigestMethod")?;
        if !doc
            .get_attribute(digest, "Algorithm")
            .is_some_and(|alg| DIGEST_METHODS.contains(&alg))
        {
            return Err(SamlError::AlgNotAllowed);
        }
        Ok(())
    }

    fn check_signature(&self, keys: &SamlKeys) -> Result<(), SamlError> {
        // Trusted keys only, strict reference positions, duplicate IDs refused: the library's
        // hardened defaults.
        let context = DsigContext::new(keys.manager.clone());
        match bergshamra_dsig::verify::verify_document(&context, &self.doc) {
            Ok(VerifyResult::Valid { references, .. })
                if references.len() == 1
                    && references[0].digest_verified
                    && references[0].resolved_node == Some(self.root) =>
            {
                Ok(())
            }
            Ok(VerifyResult::Valid { .. }) => Err(SamlError::BadSignature),
            Ok(VerifyResult::Invalid { reason }) => {
                tracing::debug!(%reason, "SAML signature did not verify");
                Err(SamlError::BadSignature)
            }
            Err(error) => {
                tracing::debug!(%error, "SAML signature could not be verified");
                Err(SamlError::BadSignature)
            }
        }
    }

    /// `NotBefore`/`NotOnOrAfter`, and every `AudienceRestriction` naming the client (SAML core
    /// §2.5.1.4: each restriction must be met). Returns the conditions' expiry, if any.
    fn check_conditions(&self, rules: &SamlRules<'_>) -> Result<Option<i64>, SamlError> {
        let doc = &self.doc;
        let Some(conditions) = self.only_child(self.root, "Conditions")? else {
            // IDJAG-ISSUE-10: the audience must name the client, so it must be there.
            return Err(SamlError::WrongAudience);
        };
        if let Some(not_before) = doc.get_attribute(conditions, "NotBefore")
            && instant(not_before)? > rules.now + rules.skew
        {
            return Err(SamlError::NotYetValid);
        }
        let expires = doc
            .get_attribute(conditions, "NotOnOrAfter")
            .map(instant)
            .transpose()?;
        if expires.is_some_and(|at| at <= rules.now - rules.skew) {
            return Err(SamlError::Expired);
        }
        let mut restricted = false;
        for condition in element_children(doc, conditions) {
            if is(doc, condition, SAML2_NS, "AudienceRestriction") {
                let mut named = false;
                for audience in element_children(doc, condition) {
                    if !is(doc, audience, SAML2_NS, "Audience") {
                        return Err(malformed(
                            "an AudienceRestriction holds only Audience elements",
                        ));
                    }
                    named |= text_only(doc, audience)? == rules.audience;
                }
                if !named {
                    return Err(SamlError::WrongAudience);
                }
                restricted = true;
            } else if !is(doc, condition, SAML2_NS, "OneTimeUse") {
                // ProxyRestriction limits what may be derived from the assertion, and a
                // Condition of another schema is not understood: either way, not valid.
                return Err(SamlError::UnsupportedCondition);
            }
        }
        if !restricted {
            return Err(SamlError::WrongAudience);
        }
        Ok(expires)
    }

    /// At least one `bearer` confirmation whose data is live (SAML profiles §4.1.4.2: a bearer
    /// confirmation carries `NotOnOrAfter`). Returns the latest such expiry.
    ///
    /// The data's other attributes are the client's to check, not frontdesk's: the client took
    /// the assertion at its own assertion consumer service as a SAML SP. `Recipient` names that
    /// URL, which frontdesk is not and does not know; what it would prove (the assertion was
    /// meant for this SP) the audience already proves, against the client's SP entity ID, and
    /// client authentication proves the presenter is that client. `InResponseTo` names the
    /// client's own `AuthnRequest` (or is absent, IdP-initiated), which frontdesk never saw.
    /// `Address` is the user agent's address, not the client's (and NAT makes it unreliable
    /// even where it is the presenter's): SAML core §2.4.1.2 leaves its check optional.
    fn check_bearer_confirmation(
        &self,
        subject: NodeId,
        rules: &SamlRules<'_>,
    ) -> Result<i64, SamlError> {
        let doc = &self.doc;
        let mut bearer = false;
        let mut not_yet_valid = false;
        let mut expired = false;
        let mut latest: Option<i64> = None;
        for confirmation in element_children(doc, subject)
            .filter(|node| is(doc, *node, SAML2_NS, "SubjectConfirmation"))
        {
            if doc.get_attribute(confirmation, "Method") != Some(BEARER) {
                continue;
            }
            bearer = true;
            let Some(data) = self.child(confirmation, "SubjectConfirmationData") else {
                continue;
            };
            if let Some(not_before) = doc.get_attribute(data, "NotBefore")
                && instant(not_before)? > rules.now + rules.skew
            {
                not_yet_valid = true;
                continue;
            }
            let Some(not_on_or_after) = doc.get_attribute(data, "NotOnOrAfter") else {
                continue;
            };
            let expires = instant(not_on_or_after)?;
            if expires > rules.now - rules.skew {
                latest = Some(latest.map_or(expires, |at| at.max(expires)));
            } else {
                expired = true;
            }
        }
        match latest {
            Some(expires) => Ok(expires),
            None if !bearer => Err(SamlError::NotBearer),
            None if not_yet_valid => Err(SamlError::NotYetValid),
            None if expired => Err(SamlError::Expired),
            // Bearer confirmations, none of them with data that expires.
            None => Err(SamlError::NoExpiry),
        }
    }

    /// The `NameID` (never an `EncryptedID` or a `BaseID`) and its `saml-nameid` members
    /// (ID-JAG draft §3.2).
    /// Its `Format` (unspecified when absent) must be one of `formats` (by default
    /// [`DEFAULT_NAME_ID_FORMATS`]): the `NameID` becomes the `sub`, so it must name the same
    /// user at every sign-in.
    fn name_id(
        &self,
        subject: NodeId,
        issuer: &str,
        formats: &[String],
    ) -> Result<(String, Value), SamlError> {
        let doc = &self.doc;
        if self.child(subject, "EncryptedID").is_some() {
            return Err(SamlError::Encrypted);
        }
        let node = self
            .only_child(subject, "NameID")?
            .ok_or(malformed("the Subject has no NameID"))?;
        let format = doc
            .get_attribute(node, "Format")
            .unwrap_or(UNSPECIFIED_FORMAT);
        let accepted = if formats.is_empty() {
            DEFAULT_NAME_ID_FORMATS.contains(&format)
        } else {
            formats.iter().any(|accepted| accepted == format)
        };
        if !accepted {
            return Err(SamlError::NameIdFormatNotAccepted);
        }
        let name_id = text_only(doc, node)?;
        if name_id.is_empty() || name_id.len() > MAX_NAME_ID_BYTES {
            return Err(malformed("the NameID is empty or longer than 1024 bytes"));
        }
        let mut member = Map::new();
        member.insert("format".into(), json!("saml-nameid"));
        member.insert("issuer".into(), json!(issuer));
        member.insert("nameid".into(), json!(name_id));
        for (attribute, name) in [
            ("Format", "nameid_format"),
            ("NameQualifier", "name_qualifier"),
            ("SPNameQualifier", "sp_name_qualifier"),
            ("SPProvidedID", "sp_provided_id"),
        ] {
            if let Some(value) = doc.get_attribute(node, attribute) {
                member.insert(name.into(), json!(value));
            }
        }
        Ok((name_id, Value::Object(member)))
    }

    /// Each `Attribute` of every `AttributeStatement`, by `Name`: one value as a string, several
    /// as an array, and all of them as arrays under `saml_attributes`. Values with markup inside
    /// are skipped; reserved claim names are never replaced.
    fn attributes(&self, claims: &mut Map<String, Value>) -> Result<(), SamlError> {
        let doc = &self.doc;
        let mut all = Map::new();
        for statement in element_children(doc, self.root)
            .filter(|node| is(doc, *node, SAML2_NS, "AttributeStatement"))
        {
            for attribute in element_children(doc, statement) {
                if is(doc, attribute, SAML2_NS, "EncryptedAttribute") {
                    return Err(SamlError::Encrypted);
                }
                if !is(doc, attribute, SAML2_NS, "Attribute") {
                    continue;
                }
                let Some(name) = doc.get_attribute(attribute, "Name") else {
                    continue;
                };
                let values: Vec<Value> = element_children(doc, attribute)
                    .filter(|node| is(doc, *node, SAML2_NS, "AttributeValue"))
                    .filter_map(|node| text_only(doc, node).ok())
                    .map(Value::String)
                    .collect();
                // The same Name twice (two statements, or an IdP's rules each adding values):
                // one attribute with every value, never the last one alone, which would hide
                // a value a policy denies on.
                match all.get_mut(name) {
                    Some(Value::Array(held)) => held.extend(values),
                    _ => {
                        all.insert(name.to_string(), Value::Array(values));
                    }
                }
            }
        }
        for (name, values) in &all {
            if RESERVED_CLAIMS.contains(&name.as_str()) {
                continue;
            }
            let values: Vec<String> = values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|value| value.as_str().map(str::to_string))
                .collect();
            if let Some(value) = claim_value(name, values) {
                claims.insert(name.clone(), value);
            }
        }
        claims.insert("saml_attributes".into(), Value::Object(all));
        Ok(())
    }

    /// The first child of `parent` in the SAML namespace named `local`.
    fn child(&self, parent: NodeId, local: &str) -> Option<NodeId> {
        element_children(&self.doc, parent).find(|node| is(&self.doc, *node, SAML2_NS, local))
    }

    /// The child named `local`, refusing two of them (the schema allows one).
    fn only_child(&self, parent: NodeId, local: &str) -> Result<Option<NodeId>, SamlError> {
        let mut found = element_children(&self.doc, parent)
            .filter(|node| is(&self.doc, *node, SAML2_NS, local));
        let first = found.next();
        if found.next().is_some() {
            return Err(malformed("an element the schema allows once appears twice"));
        }
        Ok(first)
    }
}

/// Claims that are lists by definition (RFC 9068 §2.2.3.1, OpenID Connect Core §2), whatever
/// the attribute's count: a resource AS testing `"admins" in groups` on a string would test a
/// substring.
const LIST_CLAIMS: &[&str] = &["groups", "roles", "entitlements", "amr"];

/// The claim an attribute `name` with `values` becomes, in the JSON type the claim has wherever
/// it is released (`crate::trust::RELEASABLE_CLAIMS`): SAML values are strings, and a resource
/// AS reading `"email_verified": "false"` in JavaScript or Python reads true. An OpenID Connect
/// claim whose values cannot have its type (several emails, an address, `email_verified` of
/// `maybe`) is no claim; every attribute stays under `saml_attributes` as sent. Other names: a
/// string for one value, an array for several.
fn claim_value(name: &str, values: Vec<String>) -> Option<Value> {
    if LIST_CLAIMS.contains(&name) {
        return (!values.is_empty()).then(|| json!(values));
    }
    let typed = crate::trust::RELEASABLE_CLAIMS.contains(&name);
    let one = match <[String; 1]>::try_from(values) {
        Ok([one]) => one,
        Err(values) if values.is_empty() || typed => return None,
        Err(values) => return Some(json!(values)),
    };
    match name {
        // xs:boolean's lexical forms.
        "email_verified" | "phone_number_verified" => match one.as_str() {
            "true" | "1" => Some(Value::Bool(true)),
            "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        "updated_at" => one.parse::<i64>().ok().map(Value::from),
        // A JSON object (OpenID Connect Core §5.1.1), which one string is not.
        "address" => None,
        _ => Some(Value::String(one)),
    }
}

fn is(doc: &Document<'_>, node: NodeId, namespace: &str, local: &str) -> bool {
    doc.element(node)
        .is_some_and(|element| element.name.matches(Some(namespace), local))
}

fn element_children<'d>(
    doc: &'d Document<'static>,
    parent: NodeId,
) -> impl Iterator<Item = NodeId> + 'd {
    doc.children_iter(parent)
        .filter(|node| doc.element(*node).is_some())
}

fn dsig_child(doc: &Document<'static>, parent: NodeId, local: &str) -> Result<NodeId, SamlError> {
    let mut found = element_children(doc, parent).filter(|node| is(doc, *node, DSIG_NS, local));
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        _ => Err(malformed("the signature's SignedInfo is not well-formed")),
    }
}

/// The text of an element that holds only text (SAML values never hold markup), trimmed of the
/// whitespace pretty-printing adds: XML's own (space, tab, CR, LF), never Unicode's wider set.
/// `str::trim` would also drop a no-break or ideographic space, so a user the IdP knows as
/// `alice@example.com` followed by one would become the `sub` (or `email`) of `alice@example.com`.
fn text_only(doc: &Document<'_>, node: NodeId) -> Result<String, SamlError> {
    let mut text = String::new();
    for child in doc.children_iter(node) {
        match doc.node_kind(child) {
            Some(NodeKind::Text(part) | NodeKind::CData(part)) => text.push_str(part),
            _ => return Err(malformed("a value holds markup where text is expected")),
        }
    }
    Ok(text
        .trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        .to_string())
}

/// An `xs:dateTime` (SAML core §1.3.3: UTC) as unix seconds.
fn instant(text: &str) -> Result<i64, SamlError> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|at| at.timestamp())
        .map_err(|_| malformed("a time is not an xs:dateTime in UTC"))
}

pub mod metadata;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
