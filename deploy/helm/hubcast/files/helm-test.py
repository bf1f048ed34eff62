"""`helm test` for hubcast (standard library only): every admin endpoint in HUBCAST_TEST_READY_URLS answers
200, and a SignalR negotiate POSTed to HUBCAST_TEST_NEGOTIATE_URL through the gateway Service returns a
connection. With HUBCAST_JWT_SECRET the negotiate carries an HS256 token signed with it (and the
configured issuer and audience); without it (public-key or JWKS setups) the hub must answer 401 (it
requires authentication), which still proves the route reaches a gateway's hub."""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request

DEADLINE = time.monotonic() + float(os.environ.get("HUBCAST_TEST_TIMEOUT", "60"))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: str) -> str:
    claims = {"sub": "helm-test", "exp": int(time.time()) + 300}
    if os.environ.get("HUBCAST_JWT_ISSUER"):
        claims["iss"] = os.environ["HUBCAST_JWT_ISSUER"]
    if os.environ.get("HUBCAST_JWT_AUDIENCE"):
        claims["aud"] = os.environ["HUBCAST_JWT_AUDIENCE"]
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def request(url: str, method: str = "GET", headers=None):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def until_ok(what: str, check):
    """Retries check() (which raises AssertionError or OSError) until it passes or the deadline."""
    while True:
        try:
            result = check()
            print(f"ok: {what}: {result}")
            return
        except (AssertionError, OSError) as error:
            if time.monotonic() > DEADLINE:
                print(f"FAILED: {what}: {error}")
                sys.exit(1)
            time.sleep(2)


def ready(url: str):
    def check():
        status, _, body = request(url)
        assert status == 200, f"{url} answered {status} {body[:200]}"
        return status
    return check


def negotiate(url: str, secret: str):
    def check():
        headers = {"Authorization": f"Bearer {token(secret)}"} if secret else {}
        status, _, body = request(url, "POST", headers)
        if not secret:
            assert status == 401, f"expected 401 (no credentials), got {status} {body[:200]}"
            return "401 without credentials (no HMAC secret to sign a test token)"
        assert status == 200, f"negotiate answered {status} {body[:200]}"
        answer = json.loads(body)
        assert answer.get("connectionToken"), answer
        transports = [t["transport"] for t in answer.get("availableTransports", [])]
        assert "WebSockets" in transports, transports
        return f"connection {answer['connectionId']}, transports {transports}"
    return check


def main():
    for url in filter(None, os.environ.get("HUBCAST_TEST_READY_URLS", "").split(",")):
        until_ok(f"GET {url}", ready(url))
    url = os.environ["HUBCAST_TEST_NEGOTIATE_URL"]
    until_ok(f"POST {url}", negotiate(url, os.environ.get("HUBCAST_JWT_SECRET", "")))


if __name__ == "__main__":
    main()
