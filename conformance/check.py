#!/usr/bin/env python3
"""Black-box conformance checks for a running OAuth 2.0 token-exchange server (STS).

Checks the public surface of any STS (not only frontdesk) against rows of
specs/REQUIREMENTS.md: RFC 8414 metadata, the JWKS, the token endpoint's error behaviour,
introspection and revocation. Needs no IdP and no valid subject token; with a client's
credentials (--client-id/--client-secret) it can also get past client authentication.

    python3 conformance/check.py --issuer https://sts.example.com \
        [--client-id ID --client-secret SECRET] [--client-auth client_secret_post] [--strict]

Prints one line per check, `PASS|FAIL|SKIP <ROW-ID> <what>`, then a final line
`conformance: N passed, M failed`. Exit status 1 if any check failed, 2 on a usage error.
Without --strict, a SHOULD/RECOMMENDED row that is not met is reported as PASS with a
`note:`; with --strict it fails. Python 3.11+, standard library only.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
ID_JAG_PROFILE = "urn:ietf:params:oauth:grant-profile:id-jag"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
UNKNOWN_GRANT = "urn:example:frontdesk-conformance:no-such-grant"
GARBAGE_TOKEN = "conformance-garbage-token-" + "x" * 24

# RFC 6749 Appendix A: `error` and `error_description` are NQSCHAR (%x20-21 / %x23-5B /
# %x5D-7E); `error_uri` is a URI of %x21 / %x23-5B / %x5D-7E.
NQSCHAR = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")
URICHAR = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]*$")
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
CLIENT_AUTH_METHODS = {
    "none",
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
}
# Members a standard (RFC 8414, OIDC Discovery, RFC 8705, RFC 9207, RFC 9449, ...) defines whose
# name would otherwise look like a trust relationship (META-10), or whose value may be a URL on
# another origin.
STANDARD_MEMBERS = {
    "issuer",
    "authorization_response_iss_parameter_supported",
    "tls_client_certificate_bound_access_tokens",
    "service_documentation",
    "op_policy_uri",
    "op_tos_uri",
    "mtls_endpoint_aliases",
    "jwks_uri",
    "signed_metadata",
}
TRUST_LIKE_NAME = re.compile(r"issuer|idp|identity_provider|trust|tenant|federat", re.I)


# --------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    error: str | None = None  # a transport failure, when status is 0

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def media_type(self) -> str:
        return self.header("content-type").split(";")[0].strip().lower()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to judge, not something to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Http:
    def __init__(self, timeout: float, context: ssl.SSLContext) -> None:
        self.timeout = timeout
        handlers = [NoRedirect(), urllib.request.HTTPSHandler(context=context)]
        self.proxied = urllib.request.build_opener(*handlers)
        # Loopback targets never go through a proxy from the environment.
        self.direct = urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "frontdesk-conformance/1")
        opener = self.direct if is_loopback_url(url) else self.proxied
        try:
            with opener.open(request, timeout=self.timeout) as reply:
                return Response(reply.status, lower_headers(reply.headers), reply.read())
        except urllib.error.HTTPError as reply:
            return Response(reply.code, lower_headers(reply.headers), reply.read())
        except (urllib.error.URLError, OSError, ValueError) as failure:
            reason = getattr(failure, "reason", failure)
            return Response(0, {}, b"", error=f"{method} {url}: {reason}")

    def get(self, url: str) -> Response:
        return self.request("GET", url)

    def post_form(
        self,
        url: str,
        form: list[tuple[str, str]],
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if auth is not None:
            all_headers["Authorization"] = basic(*auth)
        all_headers.update(headers or {})
        body = urllib.parse.urlencode(form).encode("ascii")
        return self.request("POST", url, body, all_headers)


def lower_headers(headers: Any) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode each part, then base64 `id:secret`."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def is_loopback_url(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def well_known_url(issuer: str, suffix: str) -> str:
    """RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path."""
    parts = urllib.parse.urlsplit(issuer)
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/{suffix}{path}", "", "")
    )


def openid_configuration_url(issuer: str) -> str:
    """OpenID Connect Discovery §4: appended to the issuer."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


# --------------------------------------------------------------------------------------------
# Reporting


class CheckFailed(Exception):
    """One check's verdict: not met."""


class CheckSkipped(Exception):
    """One check cannot be judged here."""


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)


class Report:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def run(self, row: str, what: str, check: Callable[[Outcome], str | None]) -> bool:
        outcome = Outcome()
        try:
            detail = check(outcome)
        except CheckSkipped as skip:
            self.line("SKIP", row, what, str(skip))
            self.skipped += 1
            return False
        except CheckFailed as failure:
            self.line("FAIL", row, what, str(failure))
            self.failed += 1
            return False
        except Exception as error:  # noqa: BLE001 - a crashing check is a failed check
            self.line("FAIL", row, what, f"check raised {type(error).__name__}: {error}")
            self.failed += 1
            return False
        extra = "; ".join(([detail] if detail else []) + [f"note: {n}" for n in outcome.notes])
        self.line("PASS", row, what, extra)
        self.passed += 1
        return True

    def skip(self, row: str, what: str, why: str) -> None:
        self.line("SKIP", row, what, why)
        self.skipped += 1

    @staticmethod
    def line(verdict: str, row: str, what: str, detail: str) -> None:
        print(f"{verdict} {row} {what}" + (f" — {detail}" if detail else ""), flush=True)

    def should(self, outcome: Outcome, condition: bool, message: str) -> None:
        """A SHOULD/RECOMMENDED requirement: a note by default, a failure with --strict."""
        if condition:
            return
        if self.strict:
            raise CheckFailed(f"{message} (SHOULD; --strict)")
        outcome.notes.append(f"{message} (SHOULD)")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def describe(response: Response) -> str:
    if response.status == 0:
        return response.error or "no response"
    text = response.body[:200].decode("utf-8", "replace").replace("\n", " ")
    return f"HTTP {response.status} {response.media_type() or '(no content type)'} {text}"


def json_object(response: Response) -> dict[str, Any]:
    require(response.status != 0, describe(response))
    try:
        document = response.json()
    except (ValueError, UnicodeDecodeError):
        raise CheckFailed(f"body is not JSON: {describe(response)}") from None
    require(isinstance(document, dict), f"body is not a JSON object: {describe(response)}")
    return document


def string_array(document: dict[str, Any], name: str) -> list[str]:
    value = document.get(name)
    require(
        isinstance(value, list) and all(isinstance(item, str) for item in value),
        f"`{name}` is not a JSON array of strings: {value!r}",
    )
    return value


def find_nulls(value: Any, path: str = "$") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [n for key, item in value.items() for n in find_nulls(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [n for i, item in enumerate(value) for n in find_nulls(item, f"{path}[{i}]")]
    return []


# --------------------------------------------------------------------------------------------
# The suite


class Suite:
    def __init__(self, args: argparse.Namespace, http: Http, report: Report) -> None:
        self.args = args
        self.issuer: str = args.issuer
        self.http = http
        self.report = report
        self.metadata: dict[str, Any] | None = None
        self.jwks: dict[str, Any] | None = None
        self.creds = (args.client_id, args.client_secret) if args.client_id else None

    # -- helpers ------------------------------------------------------------------------------

    def need_metadata(self) -> dict[str, Any]:
        if self.metadata is None:
            raise CheckSkipped("metadata unavailable (META-01 failed)")
        return self.metadata

    def endpoint(self, name: str) -> str:
        url = self.need_metadata().get(name)
        if not isinstance(url, str):
            raise CheckSkipped(f"metadata has no `{name}`")
        return url

    def authenticated_form(self, url: str, form: list[tuple[str, str]], **kw: Any) -> Response:
        """POSTs `form` with the configured client credentials (header or body)."""
        assert self.creds is not None
        if self.args.client_auth == "client_secret_post":
            form = form + [("client_id", self.creds[0]), ("client_secret", self.creds[1])]
            return self.http.post_form(url, form, **kw)
        return self.http.post_form(url, form, auth=self.creds, **kw)

    def maybe_authenticated_form(self, url: str, form: list[tuple[str, str]], **kw: Any) -> Response:
        if self.creds:
            return self.authenticated_form(url, form, **kw)
        return self.http.post_form(url, form, **kw)

    def skip_if_auth_first(self, response: Response) -> None:
        """Without credentials, a server may authenticate the client before reading the request."""
        if self.creds is None and response.status == 401:
            raise CheckSkipped(
                "the server authenticated the client first (401); give --client-id/--client-secret"
            )

    def error_shape(self, what: str, response: Response, method_status: bool = False) -> None:
        """TOK-08 (RFC 6749 §5.2) for one error response of the token endpoint, as its own line."""

        def check(outcome: Outcome) -> str:
            require(response.status != 0, describe(response))
            require(
                response.media_type() == "application/json",
                f"Content-Type {response.header('content-type')!r}, want application/json",
            )
            body = json_object(response)
            code = body.get("error")
            require(isinstance(code, str) and code, f"no `error` string: {body}")
            require(bool(NQSCHAR.match(code)), f"`error` has characters outside NQSCHAR: {code!r}")
            allowed = {400, 401} if code == "invalid_client" else {400}
            if method_status:
                allowed.add(405)
            require(response.status in allowed, f"HTTP {response.status} for {code}")
            description = body.get("error_description")
            if description is not None:
                require(isinstance(description, str), "`error_description` is not a string")
                require(
                    bool(NQSCHAR.match(description)),
                    f"`error_description` has characters outside %x20-21/%x23-5B/%x5D-7E: "
                    f"{description!r}",
                )
            uri = body.get("error_uri")
            if uri is not None:
                require(isinstance(uri, str) and bool(URICHAR.match(uri)), f"bad error_uri {uri!r}")
            cache = response.header("cache-control").lower()
            require("no-store" in cache, f"Cache-Control {cache!r}, want no-store")
            return f"HTTP {response.status} {code}, no-store"

        self.report.run("TOK-08", f"error shape: {what}", check)

    def expect_error(
        self,
        row: str,
        what: str,
        send: Callable[[], Response],
        status: tuple[int, ...],
        error: str | None,
        www_authenticate: str | None = None,
        auth_first_skips: bool = False,
        shape: bool = True,
    ) -> None:
        """Sends one request and checks its status and error code under `row`; then, for the
        token endpoint (`shape`), the error response's form under TOK-08."""
        captured: list[Response] = []

        def check(outcome: Outcome) -> str:
            response = send()
            captured.append(response)
            require(response.status != 0, describe(response))
            if auth_first_skips:
                self.skip_if_auth_first(response)
            require(response.status in status, f"got {describe(response)}, want HTTP {status}")
            if www_authenticate is not None:
                challenge = response.header("www-authenticate")
                require(
                    challenge.lower().startswith(www_authenticate.lower()),
                    f"WWW-Authenticate {challenge!r}, want the {www_authenticate} scheme",
                )
            if error is None and response.media_type() != "application/json":
                return f"HTTP {response.status}"
            body = json_object(response)
            require("access_token" not in body, "a token was issued")
            if error is not None:
                require(body.get("error") == error, f"error {body.get('error')!r}, want {error!r}")
            return f"HTTP {response.status} {body.get('error')}"

        self.report.run(row, what, check)
        if shape and captured and captured[0].status >= 400:
            self.error_shape(what, captured[0], method_status=405 in status)

    # -- metadata (REQUIREMENTS.md §10) -------------------------------------------------------

    def check_metadata(self) -> None:
        report = self.report
        url = well_known_url(self.issuer, "oauth-authorization-server")

        def meta01(outcome: Outcome) -> str:
            response = self.http.get(url)
            require(response.status == 200, f"GET {url}: {describe(response)}")
            require(
                response.media_type() == "application/json",
                f"Content-Type {response.header('content-type')!r}",
            )
            self.metadata = json_object(response)
            return f"GET {url}"

        report.run("META-01", "metadata document served as JSON", meta01)
        if self.metadata is None:
            return
        meta = self.metadata

        def meta02(outcome: Outcome) -> str:
            require(
                meta.get("issuer") == self.issuer,
                f"issuer {meta.get('issuer')!r} is not byte-identical to {self.issuer!r}",
            )
            return repr(self.issuer)

        report.run("META-02", "`issuer` equals the issuer the URL was built from", meta02)

        def meta03(outcome: Outcome) -> str:
            issuer = meta.get("issuer")
            require(isinstance(issuer, str), "no issuer")
            parts = urllib.parse.urlsplit(issuer)
            require(not parts.query and "?" not in issuer, "issuer has a query")
            require(not parts.fragment and "#" not in issuer, "issuer has a fragment")
            if parts.scheme == "http" and is_loopback_url(issuer):
                return "http on a loopback host (development only)"
            require(parts.scheme == "https", f"issuer scheme is {parts.scheme!r}, want https")
            return None

        report.run("META-03", "`issuer` is https (or loopback), no query, no fragment", meta03)

        def tok12(outcome: Outcome) -> str:
            urls = {
                name: value
                for name, value in meta.items()
                if isinstance(value, str) and (name.endswith("_endpoint") or name.endswith("_uri"))
            }
            bad = [
                f"{name}={value}"
                for name, value in urls.items()
                if not value.startswith("https://") and not is_loopback_url(value)
            ]
            require(not bad, "non-https URLs: " + ", ".join(bad))
            loopback = [name for name, value in urls.items() if value.startswith("http://")]
            return f"{len(urls)} URLs" + (" (loopback http: development only)" if loopback else "")

        report.run("TOK-12", "metadata URLs are https (loopback http allowed)", tok12)

        def meta04(outcome: Outcome) -> str:
            for name in ("token_endpoint", "jwks_uri"):
                require(isinstance(meta.get(name), str) and meta[name], f"`{name}` missing")
            types = string_array(meta, "response_types_supported")
            if "authorization_endpoint" in meta:
                require("code" in types, "authorization endpoint but no `code` response type")
                methods = string_array(meta, "code_challenge_methods_supported")
                require("S256" in methods, "code_challenge_methods_supported lacks S256")
            return "token_endpoint, jwks_uri, response_types_supported present"

        report.run("META-04", "required members present", meta04)

        def meta05(outcome: Outcome) -> str:
            grants = string_array(meta, "grant_types_supported")
            require(
                TOKEN_EXCHANGE in grants or JWT_BEARER in grants,
                f"neither token-exchange nor jwt-bearer listed: {grants}",
            )
            return ", ".join(grants)

        report.run("META-05", "`grant_types_supported` lists the STS grants", meta05)

        def meta06(outcome: Outcome) -> str | None:
            if TOKEN_EXCHANGE not in meta.get("grant_types_supported", []):
                raise CheckSkipped("no token-exchange grant (not an IdP-role STS)")
            name = "identity_chaining_requested_token_types_supported"
            if name not in meta:
                report.should(outcome, False, f"`{name}` absent")
                return None
            types = string_array(meta, name)
            report.should(outcome, ID_JAG_TYPE in types, f"`{name}` lacks {ID_JAG_TYPE}")
            return ", ".join(types)

        report.run("META-06", "IdP role advertises the id-jag requested token type", meta06)

        def chain_meta01(outcome: Outcome) -> str:
            name = "identity_chaining_requested_token_types_supported"
            if name not in meta:
                raise CheckSkipped(f"`{name}` absent (OPTIONAL)")
            types = string_array(meta, name)
            require(types, f"`{name}` is empty")
            not_uris = [t for t in types if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", t)]
            require(not not_uris, f"not token-type URIs: {not_uris}")
            return ", ".join(types)

        report.run(
            "CHAIN-META-01",
            "chaining token types are a JSON array of token-type URIs",
            chain_meta01,
        )

        def meta07(outcome: Outcome) -> str | None:
            if JWT_BEARER not in meta.get("grant_types_supported", []):
                raise CheckSkipped("no jwt-bearer grant (not a resource-AS-role STS)")
            profiles = meta.get("authorization_grant_profiles_supported")
            report.should(
                outcome,
                isinstance(profiles, list) and ID_JAG_PROFILE in profiles,
                f"`authorization_grant_profiles_supported` lacks {ID_JAG_PROFILE}",
            )
            return None

        # INT-10: clients need not read the profile to redeem an ID-JAG, but it is still published.
        report.run("META-07", "RAS role advertises the id-jag grant profile (INT-10)", meta07)

        def meta08(outcome: Outcome) -> str:
            if "authorization_grant_profiles_supported" not in meta:
                raise CheckSkipped("`authorization_grant_profiles_supported` absent")
            return ", ".join(string_array(meta, "authorization_grant_profiles_supported"))

        report.run("META-08", "`authorization_grant_profiles_supported` is a string array", meta08)

        def meta09(outcome: Outcome) -> str:
            if ID_JAG_PROFILE not in (meta.get("authorization_grant_profiles_supported") or []):
                raise CheckSkipped("the id-jag profile is not listed")
            require(
                JWT_BEARER in (meta.get("grant_types_supported") or []),
                "id-jag profile listed but jwt-bearer missing from grant_types_supported",
            )
            return "jwt-bearer listed"

        report.run("META-09", "id-jag profile implies the jwt-bearer grant", meta09)

        def meta10(outcome: Outcome) -> str:
            own = origin(self.issuer)

            def own_endpoint(name: str, value: object) -> bool:
                # One URL of this server naming an endpoint (IDJAG §9.5's protected acceptance
                # discovery, say) lists no one, whatever its name says.
                return (
                    name.endswith("_endpoint")
                    and isinstance(value, str)
                    and re.match(r"^https?://", value, re.I) is not None
                    and origin(value) == own
                )

            suspicious = [
                name
                for name, value in meta.items()
                if name not in STANDARD_MEMBERS
                and TRUST_LIKE_NAME.search(name)
                and not own_endpoint(name, value)
            ]
            require(not suspicious, f"members that look like trust lists: {suspicious}")
            foreign = []
            for name, value in meta.items():
                if name in STANDARD_MEMBERS:
                    continue
                values = value if isinstance(value, list) else [value]
                for item in values:
                    if isinstance(item, str) and re.match(r"^https?://", item, re.I):
                        if origin(item) != own:
                            foreign.append(f"{name}={item}")
            require(not foreign, f"URLs of other origins (trusted parties?): {foreign}")
            return "no issuer lists, no foreign URLs"

        report.run("META-10", "no trusted-issuer allow-list revealed", meta10)

        def meta11(outcome: Outcome) -> str:
            if "token_endpoint_auth_methods_supported" not in meta:
                outcome.notes.append("absent: defaults to client_secret_basic")
                return "absent"
            methods = string_array(meta, "token_endpoint_auth_methods_supported")
            require(methods, "empty list")
            unknown = [m for m in methods if m not in CLIENT_AUTH_METHODS]
            require(not unknown, f"unregistered methods: {unknown}")
            return ", ".join(methods)

        report.run("META-11", "`token_endpoint_auth_methods_supported` is well-formed", meta11)

        # RFC 8414 §2 states the same rule for each endpoint that takes client authentication.
        for prefix in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):

            def meta12(outcome: Outcome, prefix: str = prefix) -> str:
                if prefix != "token_endpoint" and prefix not in meta:
                    raise CheckSkipped(f"no {prefix}")
                methods = meta.get(f"{prefix}_auth_methods_supported") or []
                algs_name = f"{prefix}_auth_signing_alg_values_supported"
                jwt_methods = sorted({"private_key_jwt", "client_secret_jwt"} & set(methods))
                if jwt_methods:
                    require(
                        algs_name in meta,
                        f"`{algs_name}` missing though {', '.join(jwt_methods)} is listed "
                        "(RFC 8414 §2: MUST be present)",
                    )
                elif algs_name not in meta:
                    raise CheckSkipped(f"no JWT client authentication listed for {prefix}")
                algs = string_array(meta, algs_name)
                require(algs, f"`{algs_name}` is empty")
                require("none" not in algs, f"`{algs_name}` contains none")
                return f"{algs_name}: {', '.join(algs)}"

            report.run(
                "META-12",
                f"{prefix} client-assertion algorithms listed, no `none`",
                meta12,
            )

        def meta13(outcome: Outcome) -> str:
            seen = []
            for kind in ("introspection", "revocation"):
                if f"{kind}_endpoint" in meta:
                    name = f"{kind}_endpoint_auth_methods_supported"
                    report.should(outcome, name in meta, f"`{name}` absent")
                    if name in meta:
                        string_array(meta, name)
                    seen.append(f"{kind}_endpoint")
            if "scopes_supported" in meta:
                string_array(meta, "scopes_supported")
                seen.append("scopes_supported")
            else:
                report.should(outcome, False, "`scopes_supported` absent (RECOMMENDED)")
            return ", ".join(seen) or "nothing optional advertised"

        report.run("META-13", "recommended members well-formed", meta13)

        def meta16(outcome: Outcome) -> str:
            oidc_url = openid_configuration_url(self.issuer)
            response = self.http.get(oidc_url)
            if response.status == 404:
                oidc_url = well_known_url(self.issuer, "openid-configuration")
                response = self.http.get(oidc_url)
            if response.status == 404:
                report.should(outcome, False, "no /.well-known/openid-configuration")
                return "not served"
            require(response.status == 200, f"GET {oidc_url}: {describe(response)}")
            oidc = json_object(response)
            require(oidc.get("issuer") == self.issuer, f"issuer {oidc.get('issuer')!r} differs")
            differ = [k for k in meta if k in oidc and oidc[k] != meta[k]]
            require(not differ, f"members that differ between the two documents: {differ}")
            nulls = find_nulls(oidc)
            require(not nulls, f"null values in openid-configuration: {nulls}")
            return f"{len([k for k in meta if k in oidc])} shared members agree"

        report.run("META-16", "openid-configuration agrees with the RFC 8414 document", meta16)

        def meta17(outcome: Outcome) -> str:
            token = meta.get("token_endpoint")
            require(isinstance(token, str), "no token_endpoint")
            require(
                origin(token) == origin(self.issuer),
                f"token_endpoint {token} is not on the issuer's origin",
            )
            return token

        report.run("META-17", "`token_endpoint` on the issuer's origin", meta17)

        def meta18(outcome: Outcome) -> str:
            name = "authorization_response_iss_parameter_supported"
            has_endpoint = "authorization_endpoint" in meta
            if name not in meta:
                return "absent" + ("" if has_endpoint else " (no authorization endpoint)")
            require(isinstance(meta[name], bool), f"`{name}` is not a boolean: {meta[name]!r}")
            require(has_endpoint, f"`{name}` without an authorization_endpoint (RFC 9207)")
            return f"{name}: {json.dumps(meta[name])}"

        report.run(
            "META-18", "RFC 9207 `iss` parameter only with an authorization endpoint", meta18
        )

        def meta19(outcome: Outcome) -> str:
            nulls = find_nulls(meta)
            require(not nulls, f"null values: {nulls}")
            return f"{len(meta)} members"

        report.run("META-19", "no null values", meta19)

    # -- JWKS (REQUIREMENTS.md §12) -----------------------------------------------------------

    def check_jwks(self) -> None:
        report = self.report
        holder: dict[str, Response] = {}

        def jwks01(outcome: Outcome) -> str:
            url = self.endpoint("jwks_uri")
            response = self.http.get(url)
            holder["response"] = response
            require(response.status == 200, f"GET {url}: {describe(response)}")
            require(
                response.media_type() in ("application/json", "application/jwk-set+json"),
                f"Content-Type {response.header('content-type')!r}",
            )
            document = json_object(response)
            keys = document.get("keys")
            require(isinstance(keys, list), "no `keys` array")
            require(keys, "`keys` is empty: an issuer that signs tokens publishes its keys")
            require(all(isinstance(k, dict) for k in keys), "a key is not a JSON object")
            self.jwks = document
            return f"{len(keys)} keys, {response.media_type()}"

        report.run("JWKS-01", "jwks_uri serves a JWK Set", jwks01)

        def keys() -> list[dict[str, Any]]:
            if self.jwks is None:
                raise CheckSkipped("JWKS unavailable (JWKS-01 failed)")
            return self.jwks["keys"]

        def jwks02(outcome: Outcome) -> str:
            kids = []
            for i, key in enumerate(keys()):
                for member in ("kty", "kid", "use", "alg"):
                    require(
                        isinstance(key.get(member), str) and key[member],
                        f"key {i} has no `{member}`",
                    )
                require(key["use"] == "sig", f"key {key['kid']} has use {key['use']!r}")
                kids.append(key["kid"])
            duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
            require(not duplicates, f"duplicate kids: {duplicates}")
            return f"kids {', '.join(kids)}"

        report.run("JWKS-02", "every key has kty, unique kid, use=sig and alg", jwks02)

        def jwks03(outcome: Outcome) -> str:
            leaked = [
                f"{key.get('kid')}.{member}"
                for key in keys()
                for member in PRIVATE_JWK_MEMBERS
                if member in key
            ]
            require(not leaked, f"private members published: {leaked}")
            return "public members only"

        report.run("JWKS-03", "no private key members", jwks03)

        def jwks06(outcome: Outcome) -> str:
            response = holder.get("response")
            if response is None or response.status != 200:
                raise CheckSkipped("JWKS unavailable")
            cache = response.header("cache-control")
            report.should(outcome, "max-age" in cache.lower(), "no Cache-Control max-age")
            return f"Cache-Control {cache!r}"

        report.run("JWKS-06", "JWKS carries Cache-Control max-age", jwks06)

        def jwks08(outcome: Outcome) -> str:
            for key in keys():
                kid, alg, kty = key.get("kid"), key.get("alg"), key.get("kty")
                if alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
                    require(kty == "RSA", f"{kid}: {alg} on kty {kty}")
                    modulus = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
                    bits = int.from_bytes(modulus, "big").bit_length()
                    require(bits >= 2048, f"{kid}: RSA modulus of {bits} bits")
                elif alg in ("ES256", "ES384", "ES512"):
                    curve = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
                    require(kty == "EC" and key.get("crv") == curve, f"{kid}: {alg} on {kty}")
                elif alg in ("EdDSA", "Ed25519"):
                    require(kty == "OKP" and key.get("crv") == "Ed25519", f"{kid}: {alg} on {kty}")
                else:
                    raise CheckFailed(f"{kid}: unexpected signing algorithm {alg!r}")
            return "key types match algorithms"

        report.run("JWKS-08", "key type and size match each key's alg", jwks08)

    # -- token endpoint (REQUIREMENTS.md §3, §13, §19) ---------------------------------------

    def check_token_endpoint(self) -> None:
        report = self.report
        try:
            token = self.endpoint("token_endpoint")
        except CheckSkipped as skip:
            for row in ("TOK-01", "TOK-02", "TOK-04", "TOK-09", "TOK-10", "TOK-13"):
                report.skip(row, "token endpoint checks", str(skip))
            return
        http = self.http
        exchange_form = [
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", GARBAGE_TOKEN),
            ("subject_token_type", ID_TOKEN_TYPE),
            ("requested_token_type", ID_JAG_TYPE),
        ]

        def int08(outcome: Outcome) -> str:
            require(
                origin(token) == origin(self.issuer),
                f"token_endpoint {token} is not on the issuer's scheme, host and port",
            )
            response = http.post_form(token, exchange_form)
            require(response.status != 0, describe(response))
            require(
                not 300 <= response.status < 400,
                f"the token endpoint redirects: HTTP {response.status} "
                f"Location {response.header('location')!r}",
            )
            return f"{token}: HTTP {response.status}, no redirect"

        report.run(
            "INT-08", "token endpoint on the issuer's origin, answered without a redirect", int08
        )

        def get_token() -> Response:
            query = urllib.parse.urlencode([("grant_type", TOKEN_EXCHANGE)])
            return http.get(f"{token}?{query}")

        self.expect_error("TOK-01", "GET /token issues no token", get_token, (405, 400), None)

        def json_body() -> Response:
            body = json.dumps(dict(exchange_form)).encode()
            headers = {"Content-Type": "application/json"}
            if self.creds and self.args.client_auth == "client_secret_basic":
                headers["Authorization"] = basic(*self.creds)
            return http.request("POST", token, body, headers)

        self.expect_error(
            "TOK-02",
            "JSON request body refused",
            json_body,
            (400,),
            "invalid_request",
            auth_first_skips=True,
        )

        def twice() -> Response:
            form = [("grant_type", TOKEN_EXCHANGE)] + exchange_form
            return self.maybe_authenticated_form(token, form)

        self.expect_error(
            "TOK-04",
            "repeated grant_type refused",
            twice,
            (400,),
            "invalid_request",
            auth_first_skips=True,
        )

        def in_query() -> Response:
            # If the server read the query, the garbage assertion would be judged (invalid_grant);
            # if it ignored it, the body lacks an assertion (invalid_request). Refusing is also
            # invalid_request. Either way nothing in the URL may be processed.
            query = urllib.parse.urlencode([("assertion", GARBAGE_TOKEN)])
            return self.maybe_authenticated_form(f"{token}?{query}", [("grant_type", JWT_BEARER)])

        self.expect_error(
            "TOK-13",
            "assertion in the URL query not processed",
            in_query,
            (400,),
            "invalid_request",
            auth_first_skips=True,
        )

        self.expect_error(
            "TOK-09",
            "token exchange without client credentials (TX-13)",
            lambda: http.post_form(token, exchange_form),
            (401,),
            "invalid_client",
        )
        self.expect_error(
            "TOK-09",
            "unknown client via Basic -> 401 + WWW-Authenticate: Basic",
            lambda: http.post_form(
                token, exchange_form, auth=("conformance-no-such-client", "wrong-secret")
            ),
            (401,),
            "invalid_client",
            www_authenticate="Basic",
        )

        def meta11_unlisted(outcome: Outcome) -> str:
            methods = (self.metadata or {}).get("token_endpoint_auth_methods_supported") or []
            if "none" in methods:
                raise CheckSkipped("`none` is listed")
            if self.creds is None:
                raise CheckSkipped("needs --client-id to name a registered client")
            response = http.post_form(token, exchange_form + [("client_id", self.creds[0])])
            require(response.status == 401, f"got {describe(response)}, want 401")
            body = json_object(response)
            require(body.get("error") == "invalid_client", f"error {body.get('error')!r}")
            return "client_id without a secret -> 401 invalid_client"

        report.run(
            "META-11",
            "unlisted method `none` is refused (CAUTH-09)",
            meta11_unlisted,
        )

        report.skip(
            "TOK-06",
            "successful token response shape",
            "needs a subject token from a trusted IdP (see tests/token_exchange_profiles.rs)",
        )
        if self.creds is None:
            report.skip("TOK-09", "wrong secret via Basic", "needs --client-id/--client-secret")
            report.skip("TOK-10", "unknown grant_type", "needs --client-id/--client-secret")
            return
        client_id = self.creds[0]
        self.expect_error(
            "TOK-09",
            "wrong secret via Basic -> 401 + WWW-Authenticate: Basic",
            lambda: http.post_form(token, exchange_form, auth=(client_id, "conformance-wrong")),
            (401,),
            "invalid_client",
            www_authenticate="Basic",
        )
        self.expect_error(
            "TOK-10",
            "unknown grant_type -> unsupported_grant_type",
            lambda: self.authenticated_form(token, [("grant_type", UNKNOWN_GRANT)]),
            (400,),
            "unsupported_grant_type",
        )

    # -- introspection and revocation (REQUIREMENTS.md §17) ----------------------------------

    def check_introspection(self) -> None:
        report = self.report
        meta = self.metadata or {}
        introspect = meta.get("introspection_endpoint")
        revoke = meta.get("revocation_endpoint")
        form = [("token", GARBAGE_TOKEN), ("token_type_hint", "access_token")]

        if not isinstance(introspect, str):
            for row in ("INTRO-01", "INTRO-03"):
                report.skip(row, "introspection", "no introspection_endpoint advertised")
        else:
            self.expect_error(
                "INTRO-01",
                "unauthenticated introspection -> 401",
                lambda: self.http.post_form(introspect, form),
                (401,),
                None,
                shape=False,
            )
            if self.creds is None:
                report.skip("INTRO-03", "garbage token inactive", "needs --client-id")
            else:

                def intro03(outcome: Outcome) -> str:
                    response = self.authenticated_form(introspect, form)
                    require(response.status == 200, f"got {describe(response)}, want 200")
                    require(response.media_type() == "application/json", "not application/json")
                    body = json_object(response)
                    require(body.get("active") is False, f"`active` is {body.get('active')!r}")
                    report.should(
                        outcome, set(body) == {"active"}, f"extra members for an inactive token: {body}"
                    )
                    return json.dumps(body)

                report.run("INTRO-03", "garbage token -> 200 {\"active\": false}", intro03)

        if not isinstance(revoke, str):
            for row in ("REVOKE-01", "REVOKE-02"):
                report.skip(row, "revocation", "no revocation_endpoint advertised")
            return
        self.expect_error(
            "REVOKE-01",
            "unauthenticated revocation -> 401 invalid_client",
            lambda: self.http.post_form(revoke, form),
            (401,),
            "invalid_client",
            shape=False,
        )
        if self.creds is None:
            report.skip("REVOKE-02", "garbage token revoked with 200", "needs --client-id")
            return

        def revoke02(outcome: Outcome) -> str:
            response = self.authenticated_form(revoke, form)
            require(response.status == 200, f"got {describe(response)}, want 200")
            return "HTTP 200"

        report.run("REVOKE-02", "garbage token -> 200", revoke02)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Black-box conformance checks of a running STS against specs/REQUIREMENTS.md."
    )
    parser.add_argument("--issuer", required=True, help="the issuer identifier, exactly")
    parser.add_argument("--client-id", help="a registered confidential client")
    parser.add_argument("--client-secret", help="its secret")
    parser.add_argument(
        "--client-auth",
        choices=("client_secret_basic", "client_secret_post"),
        default="client_secret_basic",
        help="how the client authenticates (default: client_secret_basic)",
    )
    parser.add_argument("--strict", action="store_true", help="SHOULD rows fail when not met")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--cafile", help="CA bundle for the server's certificate")
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (development)"
    )
    args = parser.parse_args(argv)
    if bool(args.client_id) != bool(args.client_secret):
        parser.error("--client-id and --client-secret go together")
    parts = urllib.parse.urlsplit(args.issuer)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.error(f"--issuer must be an http(s) URL, got {args.issuer!r}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    report = Report(strict=args.strict)
    suite = Suite(args, Http(args.timeout, context), report)
    suite.check_metadata()
    suite.check_jwks()
    suite.check_token_endpoint()
    suite.check_introspection()
    if report.skipped:
        print(f"({report.skipped} skipped)")
    print(f"conformance: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
