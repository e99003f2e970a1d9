// A relying party we did not write: the npm `openid-client` (v6, pinned in package.json),
// unchanged and with its strict checks, against a running Tessera. Driven by
// tests/api/interop_oidc.rs over stdin/stdout, one JSON object per line:
//
//   argv: ISSUER CLIENT_ID REDIRECT_URI
//   out:  {"authorization_url": "..."}        (PKCE S256, state and nonce)
//   in:   the callback URL the browser landed on
//   out:  {"token": {...}, "claims": {...}, "userinfo": {...}, "refreshed": {...}, ...}
//   or:   {"error": {"name", "code", "message", "cause"}} and exit code 1
//
// What openid-client checks on its own: the discovery document's issuer against the
// URL it was fetched for; the authorization response (state, and iss since the server
// advertises authorization_response_iss_parameter_supported); the token response; the
// ID token's iss, aud, azp, exp, iat, nonce and alg (against
// id_token_signing_alg_values_supported); userinfo's sub against the ID token's. With
// enableNonRepudiationChecks it also verifies the ID token's signature against the
// jwks_uri of discovery. allowInsecureRequests only lifts the https-only rule: the
// server under test listens on http://127.0.0.1.
import * as client from 'openid-client';
import { createInterface } from 'node:readline';

const [issuer, clientId, redirectUri] = process.argv.slice(2);
if (!issuer || !clientId || !redirectUri) {
  console.error('usage: node openid-client.mjs ISSUER CLIENT_ID REDIRECT_URI');
  process.exit(2);
}
// Never outlive the test that drives us.
setTimeout(() => {
  console.error('openid-client RP: no callback within 120 s');
  process.exit(3);
}, 120_000).unref();

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

function describe(err) {
  const out = { name: err?.name, code: err?.code, message: err?.message };
  if (err?.error) out.error = err.error;
  if (err?.error_description) out.error_description = err.error_description;
  if (err?.cause !== undefined) {
    try {
      out.cause = JSON.parse(JSON.stringify(err.cause));
    } catch {
      out.cause = String(err.cause);
    }
  }
  return out;
}

async function readLine() {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    rl.close();
    return line.trim();
  }
  throw new Error('stdin closed before the callback URL arrived');
}

const tokenJson = (t) => ({
  access_token: t.access_token,
  token_type: t.token_type,
  expires_in: t.expiresIn(),
  scope: t.scope,
  refresh_token: t.refresh_token,
  id_token: t.id_token,
});

let step = 'discovery';
try {
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(), {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });

  step = 'authorization request';
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile email',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  emit({ authorization_url: url.href, nonce, state });

  const callback = await readLine();

  step = 'authorization code grant';
  const token = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = token.claims();

  step = 'userinfo';
  const userinfo = await client.fetchUserInfo(config, token.access_token, claims.sub);

  step = 'refresh token grant';
  const refreshed = await client.refreshTokenGrant(config, token.refresh_token);

  emit({
    library: 'openid-client',
    server_metadata: config.serverMetadata(),
    token: tokenJson(token),
    claims,
    userinfo,
    refreshed: tokenJson(refreshed),
    refreshed_claims: refreshed.claims() ?? null,
  });
} catch (err) {
  emit({ step, error: describe(err) });
  process.exitCode = 1;
}
