#!/usr/bin/env python3
"""The MCP Python SDK's IdentityAssertionOAuthProvider against two frontdesk instances.

Driven by tests/mcp_sdk.rs. Protocol on stdin/stdout:
  1. This script starts a small protected resource (an "MCP server" endpoint) on 127.0.0.1:0 and
     prints one JSON line: {"resource": "http://127.0.0.1:PORT/mcp"}.
  2. The test starts frontdesk A (enterprise side) and B (the resource's authorization server)
     for that resource, then writes one JSON line with their details.
  3. The SDK client calls the resource; the resource answers 401 until it gets an access token
     that verifies (PyJWT) against B's JWKS with typ at+jwt, iss = B, aud = the resource. The
     SDK discovers B's metadata, gets an ID-JAG through the assertion callback (an ID token from
     the test IdP exchanged at A), redeems it at B (RFC 7523 jwt-bearer) and retries.
  4. Prints one JSON line with the outcome and exits 0 on a 200, 1 otherwise.
"""

import asyncio
import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import jwt
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

SEEN = {"unauthorized": 0, "authorized": 0, "claims": None}
SETTINGS = {}


class Resource(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep stdout for the protocol
        pass

    def do_GET(self):
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
                    issuer=SETTINGS["b_issuer"],
                )
            except Exception as error:  # noqa: BLE001 - any failure is a 401
                sys.stderr.write(f"resource: token refused: {error}\n")
                claims = None
        if claims is None:
            SEEN["unauthorized"] += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.end_headers()
            return
        SEEN["authorized"] += 1
        SEEN["claims"] = claims
        body = json.dumps({"hello": claims["sub"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


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
        self.client = client_info


def post_json(url, payload):
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def id_jag(audience, resource):
    """Leg 1: an ID token from the test IdP, exchanged at frontdesk A for an ID-JAG."""
    minted = post_json(
        SETTINGS["idp_control"] + "/__test/mint",
        {"claims": {"aud": SETTINGS["idp_client_id"], "sub": "user-1"}},
    )
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            SETTINGS["a_issuer"] + "/token",
            auth=(SETTINGS["a_client_id"], SETTINGS["a_client_secret"]),
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag",
                "audience": audience,
                "resource": resource,
                "scope": SETTINGS["scope"],
                "subject_token": minted["token"],
                "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            },
        )
        response.raise_for_status()
        return response.json()["access_token"]


async def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Resource)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    resource = f"http://127.0.0.1:{server.server_address[1]}/mcp"
    print(json.dumps({"resource": resource}), flush=True)
    SETTINGS.update(json.loads(sys.stdin.readline()))
    SETTINGS["resource"] = resource
    SETTINGS["jwks"] = jwt.PyJWKClient(SETTINGS["b_issuer"] + "/jwks.json")

    provider = IdentityAssertionOAuthProvider(
        server_url=resource,
        storage=MemoryStorage(),
        client_id=SETTINGS["b_client_id"],
        client_secret=SETTINGS["b_client_secret"],
        issuer=SETTINGS["b_issuer"],
        assertion_provider=id_jag,
        scope=SETTINGS["scope"],
    )
    outcome = {}
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=20) as client:
            response = await client.get(resource)
            outcome = {"status": response.status_code, "body": response.json() if response.status_code == 200 else None}
    except Exception as error:  # noqa: BLE001 - reported to the test
        outcome = {"status": None, "error": f"{type(error).__name__}: {error}"}
    outcome.update({"unauthorized": SEEN["unauthorized"], "authorized": SEEN["authorized"], "claims": SEEN["claims"]})
    print(json.dumps(outcome), flush=True)
    server.shutdown()
    return 0 if outcome.get("status") == 200 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
