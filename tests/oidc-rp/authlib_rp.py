"""A relying party we did not write: Python's authlib (pinned in requirements.txt),
unchanged, against a running Tessera. Driven by tests/api/interop_oidc.rs over
stdin/stdout, one JSON object per line:

  argv: ISSUER CLIENT_ID REDIRECT_URI
  out:  {"authorization_url": "..."}        (PKCE S256, state and nonce)
  in:   the callback URL the browser landed on
  out:  {"token": {...}, "claims": {...}, "refreshed": {...}, ...}
  or:   {"step": ..., "error": {"type", "message"}} and exit code 1

authlib's own pieces do the work: OAuth2Session (PKCE S256, the state check of the
authorization response, the code grant, the refresh grant), OpenIDProviderMetadata
(the discovery document, with the RFC 9207 extension), and the ID token validation its
client integrations run (authlib's OpenIDMixin.parse_id_token): the signature with
joserfc against the jwks_uri's key set, restricted to id_token_signing_alg_values_supported,
then CodeIDToken's claim checks (iss, exp, iat, nonce, azp, at_hash). parse_id_token
checks no aud by default; this RP asks for it (the option authlib's claims take).
"""

import json
import os
import sys
import threading

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2 import rfc9207
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def validate_metadata(meta):
    """Runs every validator of the discovery document one by one, so that one
    failure does not hide the next. Returns the errors."""
    errors = []
    doc = OpenIDProviderMetadata(meta)
    checks = [(doc, k) for k in doc.REGISTRY_KEYS]
    ext = rfc9207.AuthorizationServerMetadata(meta)
    checks += [(ext, k) for k in ext.REGISTRY_KEYS]
    for obj, key in checks:
        try:
            object.__getattribute__(obj, f"validate_{key}")()
        except Exception as e:  # noqa: BLE001 - every refusal is reported
            errors.append(f"{key}: {e}")
    return errors


def id_token_claims(meta, jwks, id_token, client_id, nonce, access_token):
    """authlib's parse_id_token, with aud required."""
    key_set = KeySet.import_key_set(jwks)
    decoded = jwt.decode(
        id_token,
        key=key_set,
        registry=JWSRegistry(
            algorithms=meta.get("id_token_signing_alg_values_supported"),
            strict_check_header=False,
        ),
    )
    options = {
        "iss": {"essential": True, "values": [meta["issuer"]]},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
    }
    params = {"client_id": client_id, "access_token": access_token}
    if nonce is not None:
        params["nonce"] = nonce
    claims = CodeIDToken(decoded.claims, decoded.header, options, params)
    claims.validate(leeway=120)
    return dict(claims), dict(decoded.header)


def main():
    if len(sys.argv) != 4:
        print("usage: authlib_rp.py ISSUER CLIENT_ID REDIRECT_URI", file=sys.stderr)
        return 2
    issuer, client_id, redirect_uri = sys.argv[1:]
    # Never outlive the test that drives us.
    watchdog = threading.Timer(120, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()

    step = "discovery"
    try:
        http = requests.Session()
        r = http.get(f"{issuer}/.well-known/openid-configuration", timeout=30)
        r.raise_for_status()
        meta = r.json()
        # OpenID Connect Discovery 1.0, section 4.3: the issuer must be the one asked.
        if meta.get("issuer") != issuer:
            raise ValueError(f"issuer {meta.get('issuer')!r} is not {issuer!r}")
        metadata_errors = validate_metadata(meta)
        jwks = http.get(meta["jwks_uri"], timeout=30).json()

        step = "authorization request"
        session = OAuth2Session(
            client_id,
            redirect_uri=redirect_uri,
            scope="openid profile email",
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        )
        verifier = generate_token(48)
        nonce = generate_token(20)
        url, state = session.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        emit({"authorization_url": url, "state": state, "nonce": nonce})

        callback = sys.stdin.readline().strip()
        if not callback:
            raise EOFError("stdin closed before the callback URL arrived")

        step = "authorization code grant"
        token = session.fetch_token(
            meta["token_endpoint"],
            authorization_response=callback,
            code_verifier=verifier,
        )

        step = "id token"
        claims, header = id_token_claims(
            meta, jwks, token["id_token"], client_id, nonce, token["access_token"]
        )

        step = "userinfo"
        r = session.get(meta["userinfo_endpoint"], timeout=30)
        r.raise_for_status()
        userinfo = r.json()

        step = "refresh token grant"
        refreshed = session.refresh_token(
            meta["token_endpoint"], refresh_token=token["refresh_token"]
        )

        step = "refreshed id token"
        refreshed_claims = None
        if "id_token" in refreshed:
            refreshed_claims, _ = id_token_claims(
                meta,
                jwks,
                refreshed["id_token"],
                client_id,
                None,
                refreshed["access_token"],
            )
            # OpenID Connect Core 1.0, section 12.2: same iss and sub as the first.
            for k in ("iss", "sub"):
                if refreshed_claims[k] != claims[k]:
                    raise ValueError(f"refreshed ID token's {k} differs")

        emit(
            {
                "library": "authlib",
                "metadata_errors": metadata_errors,
                "token": dict(token),
                "id_token_header": header,
                "claims": claims,
                "userinfo": userinfo,
                "refreshed": dict(refreshed),
                "refreshed_claims": refreshed_claims,
            }
        )
        return 0
    except Exception as e:  # noqa: BLE001 - the test reads the library's own words
        detail = {"type": type(e).__module__ + "." + type(e).__name__, "message": str(e)}
        for attr in ("error", "description"):
            if getattr(e, attr, None):
                detail[attr] = str(getattr(e, attr))
        emit({"step": step, "error": detail})
        return 1


if __name__ == "__main__":
    sys.exit(main())
