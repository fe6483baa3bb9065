#!/usr/bin/env python3
"""The MCP Python SDK's standard OAuthClientProvider against frontdesk, driven headlessly.

Driven by tests/mcp_sdk.rs. Protocol on stdin/stdout:
  1. This script starts a small protected resource (an "MCP server" endpoint) on 127.0.0.1:0 and
     prints one JSON line: {"resource": "http://127.0.0.1:PORT/mcp"}.
  2. The test starts frontdesk as that resource's authorization server (code flow with the test
     IdP, Dynamic Client Registration on) and writes one JSON line: {"issuer": ..., "scope": ...}.
  3. The resource answers 401 with an RFC 9728 `resource_metadata` pointer; its protected
     resource metadata names frontdesk. The SDK discovers frontdesk's metadata, registers itself
     (RFC 7591, a public client: token_endpoint_auth_method "none"), and calls the redirect
     handler with the authorization URL. The redirect handler plays the browser: plain HTTP GETs
     through frontdesk's /authorize, the test IdP (which signs in without a form) and the
     callback, then POSTs the consent form; the last redirect carries code, state and iss,
     which the callback handler returns. The SDK redeems the code (PKCE) and retries.
  4. The resource accepts the access token only if PyJWT verifies it against frontdesk's JWKS
     (typ at+jwt, iss, aud = the resource). Prints one JSON line with the outcome; exits 0 on 200.
"""

import asyncio
import json
import re
import sys
import threading
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
import jwt
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

SEEN = {"unauthorized": 0, "authorized": 0, "claims": None, "client_id": None, "hops": []}
SETTINGS = {}
# The client's redirect URI: nothing listens there; the redirect handler reads the code from
# the Location header that points at it, as a browser hands it to a native app's listener.
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"


class Resource(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep stdout for the protocol
        pass

    def send_json(self, status, payload, headers=()):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/.well-known/oauth-protected-resource"):
            # RFC 9728: which authorization server protects this resource.
            self.send_json(
                200,
                {
                    "resource": SETTINGS["resource"],
                    "authorization_servers": [SETTINGS["issuer"]],
                    "scopes_supported": [SETTINGS["scope"]],
                    "bearer_methods_supported": ["header"],
                },
            )
            return
        auth = self.headers.get("Authorization", "")
        claims = None
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):]
            try:
                header = jwt.get_unverified_header(token)
                if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
                    raise jwt.InvalidTokenError("not an RFC 9068 access token")
                key = SETTINGS["jwks"].get_signing_key_from_jwt(token)
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=["ES256", "RS256", "PS256", "EdDSA"],
                    audience=SETTINGS["resource"],
                    issuer=SETTINGS["issuer"],
                )
            except Exception as error:  # noqa: BLE001 - any failure is a 401
                sys.stderr.write(f"resource: token refused: {error}\n")
                claims = None
        if claims is None:
            SEEN["unauthorized"] += 1
            metadata = f"{base}/.well-known/oauth-protected-resource/mcp"
            self.send_json(
                401,
                {"error": "invalid_token"},
                [("WWW-Authenticate", f'Bearer resource_metadata="{metadata}"')],
            )
            return
        SEEN["authorized"] += 1
        SEEN["claims"] = claims
        self.send_json(200, {"hello": claims["sub"]})


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        SEEN["client_id"] = client_info.client_id
        self.client = client_info


class HeadlessBrowser:
    """Follows the authorization URL the way a browser would, without a browser."""

    def __init__(self):
        self.result = None

    def hidden(self, html, name):
        found = re.search(rf'name="{name}" value="([^"]*)"', html)
        if not found:
            raise RuntimeError(f"no {name} on the consent page")
        return unescape(found.group(1))

    async def redirect_handler(self, authorization_url):
        # httpx2 keeps the cookies frontdesk sets (the browser binding of the pending request).
        async with httpx2.AsyncClient(follow_redirects=False, timeout=20) as browser:
            url = authorization_url
            for _ in range(10):
                if url.startswith(REDIRECT_URI):
                    query = parse_qs(urlparse(url).query)
                    if "error" in query:
                        raise RuntimeError(f"authorization refused: {query}")
                    self.result = AuthorizationCodeResult(
                        code=query["code"][0],
                        state=query.get("state", [None])[0],
                        iss=query.get("iss", [None])[0],
                    )
                    return
                SEEN["hops"].append(urlparse(url).path)
                response = await browser.get(url)
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    continue
                consent = re.search(r'action="([^"]*/authorize/consent)"', response.text)
                if response.status_code == 200 and consent:
                    # The consent page: approve, as the signed-in user, where its form posts,
                    # from the page's origin as a browser says (frontdesk refuses form posts
                    # that name no origin or another one).
                    page = urlparse(url)
                    response = await browser.post(
                        urljoin(url, unescape(consent.group(1))),
                        headers={"Origin": f"{page.scheme}://{page.netloc}"},
                        data={
                            "request_id": self.hidden(response.text, "request_id"),
                            "csrf_token": self.hidden(response.text, "csrf_token"),
                            "decision": "approve",
                        },
                    )
                    if not response.is_redirect:
                        raise RuntimeError(f"consent answered {response.status_code}")
                    url = urljoin(url, response.headers["location"])
                    continue
                raise RuntimeError(f"unexpected {response.status_code} at {urlparse(url).path}")
            raise RuntimeError("too many redirects")

    async def callback_handler(self):
        if self.result is None:
            raise RuntimeError("the redirect handler found no authorization response")
        return self.result


async def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Resource)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    resource = f"http://127.0.0.1:{server.server_address[1]}/mcp"
    SETTINGS["resource"] = resource
    print(json.dumps({"resource": resource}), flush=True)
    SETTINGS.update(json.loads(sys.stdin.readline()))
    SETTINGS["jwks"] = jwt.PyJWKClient(SETTINGS["issuer"] + "/jwks.json")

    browser = HeadlessBrowser()
    provider = OAuthClientProvider(
        server_url=resource,
        client_metadata=OAuthClientMetadata(
            client_name="MCP Python SDK (frontdesk test)",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryStorage(),
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    outcome = {}
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=30) as client:
            response = await client.get(resource)
            outcome = {
                "status": response.status_code,
                "body": response.json() if response.status_code == 200 else None,
            }
    except Exception as error:  # noqa: BLE001 - reported to the test
        outcome = {"status": None, "error": f"{type(error).__name__}: {error}"}
    outcome.update(SEEN)
    print(json.dumps(outcome), flush=True)
    server.shutdown()
    return 0 if outcome.get("status") == 200 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
