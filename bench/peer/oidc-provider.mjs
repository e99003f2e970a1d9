// Reference server for bench/: the npm `oidc-provider` (panva), configured like Tessera's
// client_credentials path so the two can be compared in one run.
//
//   - one client `bench`: grant client_credentials only, client_secret_basic, scope api:read
//   - access tokens are RFC 9068 JWTs signed with ES256 (P-256), as Tessera's are
//   - in-memory adapter (the library default), no audit trail, no request logging
//   - listens on 127.0.0.1 only
//
// oidc-provider 9 issues a JWT for client_credentials only when the token is bound to a
// resource server: the resourceIndicators feature supplies a default resource (requests
// carry no `resource` parameter), and that resource server asks for the `jwt` format.
// Without it the grant still works but yields an opaque, resource-less token and drops
// non-OpenID scopes such as api:read.
//
// Environment (set by bench/bench.py):
//   PORT            port on 127.0.0.1 (required)
//   CLIENT_SECRET   secret of the `bench` client (required)
//   PEER_DIR        folder whose node_modules holds oidc-provider (default: cwd)
//   WORKERS         1 (default): one process. N > 1: node:cluster primary + N workers that
//                   share the port and the signing key.
//   INTERACTIVE     1: also the authorization code flow, for bench's code-exchange, refresh
//                   and introspect scenarios (one process only: the state is in memory):
//                   - a public client `bench-spa` (PKCE, no secret, redirect
//                     http://127.0.0.1:9/cb), refresh tokens rotated on every use, ID tokens
//                     RS256 as Tessera's; its access tokens are the library's opaque ones (a
//                     JWT access token cannot be introspected here), so an exchange signs one
//                     token (the ID token) where Tessera signs two
//                   - a confidential client `bench-rs` (client_secret_basic, CLIENT_SECRET)
//                     that may introspect
//                   - GET /interaction/:uid logs `bench-alice` in and grants what was asked,
//                     with no page (the bench logs in once; later codes come straight from
//                     /auth with the session and the stored grant)
//                   - an unbounded in-memory adapter: the library's keeps 1,000 entries, fewer
//                     than the codes minted ahead of a run
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const HOST = '127.0.0.1';
const PORT = Number(process.env.PORT);
const WORKERS = Math.max(1, Number(process.env.WORKERS || 1));
const CLIENT_SECRET = process.env.CLIENT_SECRET;
const PEER_DIR = path.resolve(process.env.PEER_DIR || process.cwd());
const RESOURCE = 'urn:tessera-bench:api';
const SCOPE = 'api:read';
const INTERACTIVE = process.env.INTERACTIVE === '1';
const REDIRECT = 'http://127.0.0.1:9/cb';
const PERSON = 'bench-alice';

if (!PORT || !CLIENT_SECRET) {
  console.error('PORT and CLIENT_SECRET are required');
  process.exit(2);
}

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg: 'ES256', use: 'sig', kid: `bench-${crypto.randomBytes(6).toString('hex')}` };
}

function newRsaKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg: 'RS256', use: 'sig', kid: `bench-rsa-${crypto.randomBytes(6).toString('hex')}` };
}

// INTERACTIVE: an in-memory adapter without the library's 1,000-entry bound, expiring
// entries lazily. Same interface as lib/adapters/memory_adapter.js.
const store = new Map();
const live = (key) => {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.exp && e.exp <= Date.now()) { store.delete(key); return undefined; }
  return e.value;
};
class MapAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    const exp = expiresIn ? Date.now() + expiresIn * 1000 : 0;
    store.set(this.key(id), { value: payload, exp });
    if (payload.grantId) {
      const g = `grant:${payload.grantId}`;
      const members = live(g) || [];
      members.push(this.key(id));
      store.set(g, { value: members, exp: 0 });
    }
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { value: id, exp });
    if (payload.uid) store.set(`sessionUid:${payload.uid}`, { value: id, exp });
  }
  async find(id) { return live(this.key(id)); }
  async findByUid(uid) { const id = live(`sessionUid:${uid}`); return id && this.find(id); }
  async findByUserCode(code) { const id = live(`userCode:${code}`); return id && this.find(id); }
  async consume(id) { const v = live(this.key(id)); if (v) v.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    const g = `grant:${grantId}`;
    for (const k of live(g) || []) store.delete(k);
    store.delete(g);
  }
}

if (WORKERS > 1 && cluster.isPrimary) {
  // The primary only forks; every worker gets the same key so any of them can sign.
  const shared = {
    BENCH_JWKS: JSON.stringify({ keys: [newSigningKey()] }),
    BENCH_COOKIE_KEY: crypto.randomBytes(32).toString('hex'),
  };
  for (let i = 0; i < WORKERS; i += 1) cluster.fork(shared);
  let stopping = false;
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) console.error(`worker ${worker.process.pid} exited (${signal || code})`);
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 200);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  console.log(`primary ${process.pid}: ${WORKERS} workers`);
} else {
  await serve();
}

async function serve() {
  // oidc-provider lives in PEER_DIR/node_modules (bench/.peer), not beside this file.
  const entry = createRequire(path.join(PEER_DIR, 'package.json')).resolve('oidc-provider');
  const { default: Provider, errors } = await import(pathToFileURL(entry).href);

  const jwks = process.env.BENCH_JWKS ? JSON.parse(process.env.BENCH_JWKS) : { keys: [newSigningKey()] };
  if (INTERACTIVE) jwks.keys.push(newRsaKey()); // ID tokens, RS256 as Tessera's
  const cookieKey = process.env.BENCH_COOKIE_KEY || crypto.randomBytes(32).toString('hex');

  const interactive = !INTERACTIVE ? {} : {
    adapter: MapAdapter,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({
        sub, email: 'alice@example.com', email_verified: true, name: 'Alice Liddell', preferred_username: PERSON,
      }),
    }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // A refresh token for every code of a client allowed the grant (Tessera's rule), not only
    // with offline_access (which the library honours only with prompt=consent); rotated on
    // every use, as Tessera does.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    pkce: { required: () => true },
  };
  const interactiveClients = !INTERACTIVE ? [] : [{
    client_id: 'bench-spa',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [REDIRECT],
    token_endpoint_auth_method: 'none',
    id_token_signed_response_alg: 'RS256',
  }, {
    client_id: 'bench-rs',
    client_secret: CLIENT_SECRET,
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }];

  const provider = new Provider(`http://${HOST}:${PORT}`, {
    ...interactive,
    clients: [...interactiveClients, {
      client_id: 'bench',
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      scope: SCOPE,
    }],
    scopes: [SCOPE],
    jwks,
    cookies: { keys: [cookieKey] },
    enabledJWA: { idTokenSigningAlgValues: INTERACTIVE ? ['ES256', 'RS256'] : ['ES256'] },
    ttl: {
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || 3600,
      ...(INTERACTIVE ? {
        AccessToken: 3600, IdToken: 3600, RefreshToken: 14 * 86400, Grant: 14 * 86400,
        Session: 14 * 86400, Interaction: 3600,
      } : {}),
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: INTERACTIVE,
        // The library's default, said out loud: confidential clients may introspect any token.
        allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none'
          || token.clientId === ctx.oidc.client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        // bench-spa's access tokens stay the library's opaque ones (introspectable).
        defaultResource: async (_ctx, client, oneOf) => oneOf ?? (client?.clientId === 'bench' ? RESOURCE : undefined),
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: SCOPE,
            audience: RESOURCE,
            accessTokenTTL: 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));

  const onListen = () => {
    console.log(`oidc-provider listening on http://${HOST}:${PORT} pid ${process.pid}${INTERACTIVE ? ' (interactive)' : ''}`);
  };
  if (!INTERACTIVE) {
    provider.listen(PORT, HOST, onListen);
    return;
  }
  const app = provider.callback();
  http.createServer(async (req, res) => {
    if (!req.url.startsWith('/interaction/')) return app(req, res);
    try {
      // The bench's one login: bench-alice, everything asked for granted.
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({ accountId: PERSON, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { login: { accountId: PERSON }, consent: { grantId } },
        { mergeWithLastSubmission: false });
    } catch (err) {
      console.error('interaction', err);
      res.statusCode = 500;
      res.end(String(err));
    }
    return undefined;
  }).listen(PORT, HOST, onListen);
}
