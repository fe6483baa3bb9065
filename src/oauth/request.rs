//! Strict decoding of token-endpoint form bodies (RFC 6749 §3.2): a parameter sent twice is an
//! error unless the spec lets it repeat (`resource`, `audience`, RFC 8693 §2.1), an empty value
//! counts as absent (TOK-03), and unknown parameters are ignored (TOK-05).

use std::fmt;

use super::OAuthError;

/// Parameters that may appear more than once.
const REPEATABLE: &[&str] = &["resource", "audience"];

/// A decoded form. `Debug` prints parameter names only: values may be tokens or secrets.
///
/// Names and values that need no decoding (a JWT, a client id) are read in place from one copy
/// of the body instead of being copied out one by one: a token request has half a dozen
/// parameters, and each copy was an allocation on the hot path (docs/performance.md).
pub struct FormParams {
    body: String,
    pairs: Vec<(Text, Text)>,
}

/// Where a decoded name or value is.
enum Text {
    /// Unchanged by decoding: this byte range of the body.
    Body(std::ops::Range<usize>),
    /// Changed by decoding (`+` or `%XX`).
    Decoded(Box<str>),
}

impl fmt::Debug for FormParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(name, _)| self.text(name)))
            .finish()
    }
}

impl FormParams {
    /// Decodes `application/x-www-form-urlencoded` bytes. Empty values are dropped.
    ///
    /// A part without `+` or `%` decodes to itself (the body is already checked UTF-8), so it
    /// is located in place after one scan for those two bytes; only parts that need decoding go
    /// through `form_urlencoded`. Its byte-at-a-time percent-decoding iterator and the UTF-8
    /// re-check after it were 4 % of a token exchange's instructions for parts that, in a token
    /// request (a JWT, a URN, a client id), almost never change (docs/performance.md, twentieth
    /// run). The result is the same either way: `form_urlencoded`'s splitting (on `&`, then the
    /// first `=`, empty segments skipped) and decoding.
    pub fn parse(body: &[u8]) -> Result<FormParams, OAuthError> {
        let Ok(body) = std::str::from_utf8(body) else {
            return Err(OAuthError::invalid_request(
                "malformed_body",
                "The request body is not valid UTF-8",
            ));
        };
        let mut pairs = Vec::new();
        let mut start = 0;
        for segment in body.split('&') {
            let range = start..start + segment.len();
            start = range.end + 1;
            if segment.is_empty() {
                continue;
            }
            let (name, value) = match segment.find('=') {
                Some(at) => (
                    range.start..range.start + at,
                    range.start + at + 1..range.end,
                ),
                None => (range.clone(), range.end..range.end),
            };
            if value.is_empty() {
                continue;
            }
            pairs.push((decode_part(body, name), decode_part(body, value)));
        }
        Ok(FormParams {
            body: body.to_owned(),
            pairs,
        })
    }

    fn text<'a>(&'a self, text: &'a Text) -> &'a str {
        match text {
            Text::Body(range) => self.body.get(range.clone()).unwrap_or_default(),
            Text::Decoded(text) => text,
        }
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(key, _)| self.text(key) == name)
            .map(|(_, value)| self.text(value))
    }

    /// A single-valued parameter: `None` if absent, an error if repeated (TOK-04).
    pub fn single(&self, name: &'static str) -> Result<Option<&str>, OAuthError> {
        debug_assert!(!REPEATABLE.contains(&name));
        let mut values = self.values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(
                "repeated_parameter",
                format!("The parameter {name} was sent more than once"),
            ));
        }
        Ok(first)
    }

    /// A required single-valued parameter.
    pub fn required(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.single(name)?.ok_or_else(|| {
            OAuthError::invalid_request(
                "missing_parameter",
                format!("The parameter {name} is required"),
            )
        })
    }

    /// All values of a repeatable parameter.
    pub fn all(&self, name: &'static str) -> Vec<&str> {
        self.values(name).collect()
    }

    /// Rejects any parameter sent twice that may not repeat, whether or not it is known, so a
    /// smuggled second value can never be read by a later layer.
    pub fn reject_repeats(&self) -> Result<(), OAuthError> {
        for (index, (name, _)) in self.pairs.iter().enumerate() {
            let name = self.text(name);
            if REPEATABLE.contains(&name) {
                continue;
            }
            if self.pairs[..index]
                .iter()
                .any(|(earlier, _)| self.text(earlier) == name)
            {
                return Err(OAuthError::invalid_request(
                    "repeated_parameter",
                    format!("The parameter {} was sent more than once", printable(name)),
                ));
            }
        }
        Ok(())
    }
}

/// A parameter name made safe for an error description.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(40)
        .collect()
}

/// One name or value of the form at `range` of `body`, decoded as `form_urlencoded` decodes it.
fn decode_part(body: &str, range: std::ops::Range<usize>) -> Text {
    let part = body.get(range.clone()).unwrap_or_default();
    if !part.bytes().any(|byte| byte == b'+' || byte == b'%') {
        return Text::Body(range);
    }
    // As the value of a pair with an empty name, so that an `=` inside a value stays data.
    let pair = format!("={part}");
    let decoded: String = form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default();
    Text::Decoded(decoded.into_boxed_str())
}

/// `text` cut to at most `max_chars` characters: how a client-supplied string (a request id, a
/// client id, a grant type) is bounded before it is recorded. One pass over the bytes for the
/// usual short ASCII value instead of collecting it a character at a time.
pub fn clip(text: &str, max_chars: usize) -> String {
    if text.len() <= max_chars {
        // At most `max_chars` bytes, so at most `max_chars` characters.
        return text.to_owned();
    }
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => text.get(..end).unwrap_or(text).to_owned(),
        None => text.to_owned(),
    }
}

/// Most values one scope parameter may hold. No client asks for more than a few dozen; without
/// a bound, the de-duplication below costs the square of the count, which a request of tens of
/// thousands of distinct values (a 64 KiB query string at `/authorize`) turns into a tenth of a
/// second of one core each.
pub const MAX_SCOPE_VALUES: usize = 256;

/// Splits a space-delimited scope string into unique tokens, preserving order (RFC 6749 §3.3).
/// More than [`MAX_SCOPE_VALUES`] values (duplicates counted) is `invalid_scope`
/// (`too_many_scopes`).
pub fn parse_scope(scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for (count, token) in scope
        .unwrap_or("")
        .split(' ')
        .filter(|token| !token.is_empty())
        .enumerate()
    {
        if count >= MAX_SCOPE_VALUES {
            return Err(OAuthError::new(
                super::ErrorCode::InvalidScope,
                "too_many_scopes",
                format!("The scope parameter holds more than {MAX_SCOPE_VALUES} values"),
            ));
        }
        if token
            .chars()
            .any(|c| c == '"' || c == '\\' || !c.is_ascii_graphic())
        {
            return Err(OAuthError::new(
                super::ErrorCode::InvalidScope,
                "malformed_scope",
                "The scope parameter contains characters not allowed by RFC 6749 section 3.3",
            ));
        }
        if !scopes.iter().any(|existing| existing == token) {
            scopes.push(token.to_string());
        }
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_single_parameters_are_refused_tok_04() {
        let form = FormParams::parse(b"grant_type=a&grant_type=b").expect("parse");
        assert_eq!(
            form.single("grant_type").expect_err("dup").reason,
            "repeated_parameter"
        );
        assert!(form.reject_repeats().is_err());
    }

    #[test]
    fn resource_and_audience_may_repeat_tok_04() {
        let form =
            FormParams::parse(b"resource=a&resource=b&audience=x&audience=y").expect("parse");
        assert!(form.reject_repeats().is_ok());
        assert_eq!(form.all("resource"), vec!["a", "b"]);
        assert_eq!(form.all("audience"), vec!["x", "y"]);
    }

    #[test]
    fn empty_values_are_absent_tok_03() {
        let form = FormParams::parse(b"scope=&grant_type=x").expect("parse");
        assert_eq!(form.single("scope").expect("ok"), None);
    }

    #[test]
    fn values_are_percent_decoded_and_debug_hides_them() {
        let form = FormParams::parse(b"subject_token=a%2Bb+c").expect("parse");
        assert_eq!(form.single("subject_token").expect("ok"), Some("a+b c"));
        assert_eq!(format!("{form:?}"), "[\"subject_token\"]");
    }

    /// The in-place fast path must decode exactly as `form_urlencoded` does, including the
    /// awkward cases: `=` inside a value, empty names and segments, `+`, bad and non-UTF-8
    /// percent escapes.
    #[test]
    fn parsing_matches_form_urlencoded_on_awkward_bodies() {
        let bodies: &[&[u8]] = &[
            b"a=b=c&d=%3D%3d",
            b"=x&&a=1&",
            b"a&b=&c=3",
            b"+=+&x+y=1+2",
            b"x=%zz&y=%&z=%4",
            b"x=%E2%82%AC&y=%ff%fe",
            b"n%20ame=v+al&n%20ame=w",
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=eyJ.eyJ.sig",
            b"",
        ];
        for body in bodies {
            let form = FormParams::parse(body).expect("parse");
            let ours: Vec<(String, String)> = form
                .pairs
                .iter()
                .map(|(name, value)| (form.text(name).to_owned(), form.text(value).to_owned()))
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(body)
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn clip_keeps_at_most_the_given_number_of_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        // Characters, not bytes: "é" is two bytes and must not be split.
        assert_eq!(clip("ééé", 2), "éé");
        assert_eq!(clip("éé", 2), "éé");
        assert_eq!(clip("", 0), "");
    }

    /// Space-delimited, case-sensitive scope tokens; order and repeats do not matter (TOK-11).
    #[test]
    fn scopes_are_split_deduplicated_and_case_sensitive_tok_11() {
        assert_eq!(
            parse_scope(Some("b a  B a")).expect("ok"),
            vec!["b", "a", "B"]
        );
        assert!(parse_scope(Some("a\"b")).is_err());
        assert!(parse_scope(None).expect("ok").is_empty());
    }

    /// A bound on the values, duplicates counted, so splitting stays cheap whatever is sent.
    #[test]
    fn more_than_max_scope_values_is_invalid_scope() {
        let values = |n: usize| {
            (0..n)
                .map(|i| format!("s{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            parse_scope(Some(&values(MAX_SCOPE_VALUES)))
                .expect("at the bound")
                .len(),
            MAX_SCOPE_VALUES
        );
        let error = parse_scope(Some(&values(MAX_SCOPE_VALUES + 1))).expect_err("past it");
        assert_eq!(
            (error.code, error.reason),
            (crate::oauth::ErrorCode::InvalidScope, "too_many_scopes")
        );
        let repeated = vec!["read"; MAX_SCOPE_VALUES + 1].join(" ");
        assert!(parse_scope(Some(&repeated)).is_err(), "duplicates count");
    }
}
