"""The interactive login for bench/: a public client with PKCE, a human who logs in once
through the password form, and codes minted at GET /oauth/authorize with that session.
Used by bench.py (code-exchange, refresh, introspect) and callgrind.py. Standard library
only; 127.0.0.1 only. The requests are those of tests/api/code_flow.rs."""

from __future__ import annotations

import base64
import hashlib
import html
import http.client
import json
import os
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

HOST = "127.0.0.1"
REDIRECT = "http://127.0.0.1:9/cb"
OIDC_SCOPE = "openid profile email"


class InteractiveError(Exception):
    pass


@dataclass
class Setup:
    client_id: str      # the public client (token_endpoint_auth_methods ["none"])
    username: str
    password: str
    rs_id: str          # a confidential client that introspects
    rs_secret: str
    org: str = "default"
    authorize_path: str = "/oauth/authorize"
    token_path: str = "/oauth/token"
    introspect_path: str = "/oauth/introspect"
    peer: bool = False  # oidc-provider (bench/peer/oidc-provider.mjs, INTERACTIVE=1)


def peer_setup(rs_secret: str) -> Setup:
    """The same roles on the reference oidc-provider (its clients are in its configuration)."""
    return Setup("bench-spa", "bench-alice", "", "bench-rs", rs_secret, org="",
                 authorize_path="/auth", token_path="/token", introspect_path="/token/introspection", peer=True)


def provision(admin, port: int) -> Setup:
    """The public client, a person with an email and a name, and a resource server's client,
    through the admin API (`admin` is bench.Admin)."""
    st, doc = admin.post("/api/v2/oauth/clients", {
        "client_id": "bench-spa", "name": "bench single-page app",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [REDIRECT], "token_endpoint_auth_methods": ["none"]})
    if st != 201:
        raise InteractiveError(f"create the public client: HTTP {st} {str(doc)[:300]}")
    password = "bench " + os.urandom(9).hex()
    st, doc = admin.post("/api/v2/users", {"type": "human", "username": "bench-alice", "password": password})
    if st != 201:
        raise InteractiveError(f"create the person: HTTP {st} {str(doc)[:300]}")
    st, doc2 = admin.send("PATCH", f"/api/v2/users/{doc['id']}",
                          {"email": "alice@example.com", "display_name": "Alice Liddell"})
    if st != 200:
        raise InteractiveError(f"name the person: HTTP {st} {str(doc2)[:300]}")
    st, rs = admin.post("/api/v2/oauth/clients", {"client_id": "bench-rs", "name": "bench resource server"})
    if st != 201 or "client_secret" not in rs:
        raise InteractiveError(f"create the resource server's client: HTTP {st} {str(rs)[:300]}")
    return Setup("bench-spa", "bench-alice", password, "bench-rs", rs["client_secret"])


def pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_query(s: Setup, challenge: str) -> str:
    return urllib.parse.urlencode({
        "response_type": "code", "client_id": s.client_id, "redirect_uri": REDIRECT,
        "scope": OIDC_SCOPE, "state": os.urandom(6).hex(), "nonce": os.urandom(6).hex(),
        "code_challenge": challenge, "code_challenge_method": "S256"}, quote_via=urllib.parse.quote)


def exchange_body(s: Setup, code: str, verifier: str) -> str:
    return urllib.parse.urlencode({"grant_type": "authorization_code", "client_id": s.client_id,
                                   "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier})


def refresh_body_prefix(s: Setup) -> str:
    return f"grant_type=refresh_token&client_id={urllib.parse.quote(s.client_id)}&refresh_token="


def refresh_body(s: Setup, token: str) -> str:
    return refresh_body_prefix(s) + urllib.parse.quote(token, safe="")


class Browser:
    """A cookie jar over one kept-alive connection; redirects are followed by hand."""

    def __init__(self, port: int, cookies: dict | None = None):
        self.port = port
        self.cookies: dict[str, str] = dict(cookies or {})
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body.encode() if body is not None else None, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
                if attempt == 2:
                    raise
        for c in r.headers.get_all("Set-Cookie") or []:
            k, _, v = c.split(";", 1)[0].partition("=")
            if v and "Max-Age=0" not in c:
                self.cookies[k.strip()] = v.strip()
            else:
                self.cookies.pop(k.strip(), None)
        return r.status, r.headers, data

    def log_in(self, s: Setup) -> None:
        """The whole first login: authorize, the login form, back to authorize, a code."""
        if s.peer:
            return self._log_in_peer(s)
        _, challenge = pkce()
        st, h, body = self.request("GET", f"{s.authorize_path}?{authorize_query(s, challenge)}")
        loc = h.get("Location", "")
        if st not in (302, 303) or not loc.startswith(f"/login/{s.org}"):
            raise InteractiveError(f"authorize without a session: expected a redirect to the login, got {st} "
                                   f"{loc or body[:200]!r}")
        st, _, page = self.request("GET", loc)
        text = page.decode(errors="replace")

        def field(name: str) -> str:
            try:
                return html.unescape(text.split(f'name="{name}" value="', 1)[1].split('"', 1)[0])
            except IndexError:
                raise InteractiveError(f"login form without {name!r}: {st} {text[:300]}") from None

        form = urllib.parse.urlencode({"csrf": field("csrf"), "return_to": field("return_to"),
                                       "username": s.username, "password": s.password})
        st, h, page = self.request("POST", f"/login/{s.org}", form)
        if "tessera_session" not in self.cookies:
            raise InteractiveError(f"login refused: {st} {page[:300]!r}")
        self.mint_code(s)  # the way back from the login ends with a code, as in a browser

    def _log_in_peer(self, s: Setup) -> None:
        self._follow_peer(s, f"{s.authorize_path}?{authorize_query(s, pkce()[1])}")

    def _follow_peer(self, s: Setup, path: str) -> str:
        """oidc-provider: /auth → /interaction/{uid} (which logs the person in and grants,
        with no page) → /auth/{uid} → the client, with a code; returns that last Location.
        It comes this way again if the grant was revoked (a code used twice revokes it)."""
        base = f"http://{HOST}:{self.port}"
        for _ in range(6):
            st, h, body = self.request("GET", path)
            loc = h.get("Location", "")
            if st not in (302, 303) or not loc:
                raise InteractiveError(f"oidc-provider login: {st} at {path}: {body[:300]!r}")
            if loc.startswith(REDIRECT):
                if "code=" not in loc:
                    raise InteractiveError(f"oidc-provider login ended without a code: {loc}")
                return loc
            path = loc[len(base):] if loc.startswith(base) else loc
        raise InteractiveError("oidc-provider login: too many redirects")

    def mint_code(self, s: Setup) -> tuple[str, str]:
        """(code, verifier): one authorization request with the session."""
        verifier, challenge = pkce()
        st, h, body = self.request("GET", f"{s.authorize_path}?{authorize_query(s, challenge)}")
        loc = h.get("Location", "")
        if s.peer and st in (302, 303) and loc.startswith("/interaction/"):
            loc = self._follow_peer(s, loc)
        elif st not in (302, 303) or not loc.startswith(REDIRECT):
            raise InteractiveError(f"authorize with a session: expected 302 to the client, got {st} "
                                   f"{loc or body[:300]!r}")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
        if "code" not in q:
            raise InteractiveError(f"no code in {loc}")
        return q["code"][0], verifier

    def tokens(self, s: Setup) -> dict:
        """A code, exchanged: the token response."""
        code, verifier = self.mint_code(s)
        st, _, body = self.request("POST", s.token_path, exchange_body(s, code, verifier),
                                   {"Accept": "application/json"})
        if st != 200:
            raise InteractiveError(f"code exchange: HTTP {st} {body[:300]!r}")
        return json.loads(body)


def mint_codes(port: int, s: Setup, cookies: dict, n: int, threads: int = 16,
               max_seconds: float = 40.0) -> tuple[list[tuple[str, str]], float]:
    """Up to n codes, in the order they were minted (over `threads` connections of the
    same session), stopping after max_seconds (a code lives 60 s); returns them and the
    seconds it took."""
    t = time.monotonic()
    deadline = t + max_seconds
    per = [n // threads + (i < n % threads) for i in range(threads)]
    out: list[list[tuple[float, str, str]]] = [[] for _ in range(threads)]

    def work(k: int) -> None:
        b = Browser(port, cookies)
        for _ in range(per[k]):
            if time.monotonic() > deadline:
                break
            code, verifier = b.mint_code(s)
            out[k].append((time.monotonic(), code, verifier))
        b.conn.close()

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, range(threads)))
    merged = sorted((x for part in out for x in part), key=lambda x: x[0])
    return [(c, v) for _, c, v in merged], time.monotonic() - t


def token_chains(port: int, s: Setup, cookies: dict, n: int, threads: int = 8) -> list[dict]:
    """n fresh logins' token responses (each its own grant, so its own refresh chain)."""
    lock = threading.Lock()
    out: list[dict] = []

    def work(k: int) -> None:
        b = Browser(port, cookies)
        for _ in range(n // threads + (k < n % threads)):
            doc = b.tokens(s)
            with lock:
                out.append(doc)
        b.conn.close()

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, range(threads)))
    return out
