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
import cluster from 'node:cluster';
import crypto from 'node:crypto';
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

if (!PORT || !CLIENT_SECRET) {
  console.error('PORT and CLIENT_SECRET are required');
  process.exit(2);
}

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg: 'ES256', use: 'sig', kid: `bench-${crypto.randomBytes(6).toString('hex')}` };
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
  const cookieKey = process.env.BENCH_COOKIE_KEY || crypto.randomBytes(32).toString('hex');

  const provider = new Provider(`http://${HOST}:${PORT}`, {
    clients: [{
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
    enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
    ttl: { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || 3600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? RESOURCE,
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

  provider.listen(PORT, HOST, () => {
    console.log(`oidc-provider listening on http://${HOST}:${PORT} pid ${process.pid}`);
  });
}
