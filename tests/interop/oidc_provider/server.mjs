// node oidc-provider on loopback, for bearer_m2m's interoperability tests.
//
//   node server.mjs [PORT]          (or OIDC_PROVIDER_PORT; 0, the default, takes a free port)
//
// The issuer is http://127.0.0.1:PORT. Once it listens, one JSON line goes to stdout:
//   {"ready":"oidc-provider","version":"9.x","issuer":...,"port":...,"token_endpoint":...,"jwks_uri":...}
// and SIGTERM / SIGINT stop it. oidc-provider may print notices on stdout before it.
//
// What it runs, each a feature the tests exercise:
// * the client-credentials grant (features.clientCredentials);
// * RFC 8707 resource indicators: a token asked for with `resource=` is an RFC 9068 JWT access
//   token (RS256, `typ: at+jwt`) whose `aud` is that resource and whose lifetime is the
//   resource's `ttl` (or OIDC_PROVIDER_ACCESS_TOKEN_TTL, default 300 s); an unknown resource is
//   `invalid_target`; without `resource=` the token is opaque;
// * client_secret_post, client_secret_basic, client_secret_jwt and private_key_jwt;
// * DPoP (RFC 9449, features.dPoP) with a per-run nonceSecret, so nonces can be demanded:
//   everywhere (config `dpop.requireNonce`, OIDC_PROVIDER_DPOP_REQUIRE_NONCE=1, or at run time
//   through /_harness/dpop) or per client (`require_dpop_nonce` when registering it).
//
// Configuration: OIDC_PROVIDER_CONFIG, a JSON object, every field optional:
//   {"scopes": ["orders:read", ...],                       scopes the provider knows
//    "resources": {"https://orders.example.test/": {"scope": "orders:read orders:write", "ttl": 300}},
//    "clients": [<client metadata>, ...],                  as for POST /_harness/clients
//    "dpop": {"requireNonce": false,
//             "algorithms": ["ES256", ...]}}               dpop_signing_alg_values_supported
//                                                          (default: DPOP_ALGORITHMS below)
//
// Test-only endpoints (loopback only; nothing in them is secret-bearing):
//   POST /_harness/clients   {"metadata": {client metadata}, "require_dpop_nonce": false}
//                            registers (or replaces) a client at run time; 201 {"client_id"}
//   GET  /_harness/token-requests?since=N
//                            {"next": M, "requests": [...]}: one record per token request:
//                            client_id, client_auth (how it authenticated: client_secret_basic,
//                            client_secret_post, client_assertion or none), status, error,
//                            token_type, resource, scope, dpop (a DPoP header was sent),
//                            dpop_alg (the proof's alg), dpop_nonce_sent (the proof carried
//                            a nonce), dpop_nonce (that nonce), dpop_nonce_issued (the answer
//                            had a DPoP-Nonce), dpop_nonce_given (its value). DPoP nonces are
//                            public values (RFC 9449 section 8), not secrets.
//   POST /_harness/dpop      {"requireNonce": true|false}: the provider-wide nonce requirement
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const HARNESS_PREFIX = '/_harness/';
const DEFAULT_SCOPES = ['openid', 'orders:read', 'orders:write', 'orders:admin'];
const DPOP_ALGORITHMS = ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519'];

const config = JSON.parse(process.env.OIDC_PROVIDER_CONFIG || '{}');
const defaultTtl = positiveInteger(process.env.OIDC_PROVIDER_ACCESS_TOKEN_TTL ?? 300, 'ttl');
const resources = new Map(Object.entries(config.resources ?? {}));
const dpopState = {
  requireNonce: Boolean(config.dpop?.requireNonce) || process.env.OIDC_PROVIDER_DPOP_REQUIRE_NONCE === '1',
  clientsRequiringNonce: new Set(),
};
const tokenRequests = [];

function positiveInteger(value, name) {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) {
    throw new TypeError(`${name} must be a positive whole number of seconds, not ${value}`);
  }
  return number;
}

function providerVersion() {
  const url = new URL('./node_modules/oidc-provider/package.json', import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')).version;
}

// An unbounded in-memory adapter: oidc-provider's own memory adapter is an LRU of 1,000
// entries, which a long test session (one replay-detection entry per assertion or DPoP proof,
// one entry per opaque token) could overflow, evicting the clients registered at run time.
const store = new Map();

class TestAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid() {
    return undefined;
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const payload = await this.find(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId() {}
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = createHash('sha256').update(jwk.n).digest('base64url').slice(0, 16);
  return { ...jwk, kid, use: 'sig', alg: 'RS256' };
}

async function getResourceServerInfo(_ctx, resourceIndicator) {
  const resource = resources.get(resourceIndicator);
  if (resource === undefined) {
    throw new errors.InvalidTarget(`unknown resource indicator ${resourceIndicator}`);
  }
  return {
    scope: resource.scope ?? '',
    audience: resourceIndicator,
    accessTokenFormat: 'jwt',
    accessTokenTTL: positiveInteger(resource.ttl ?? defaultTtl, `ttl of ${resourceIndicator}`),
    jwt: { sign: { alg: 'RS256' } },
  };
}

function requireNonce(ctx) {
  const clientId = ctx.oidc?.client?.clientId;
  return dpopState.requireNonce || (clientId !== undefined && dpopState.clientsRequiringNonce.has(clientId));
}

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter: TestAdapter,
    jwks: { keys: [signingKey()] },
    scopes: config.scopes ?? DEFAULT_SCOPES,
    clients: [],
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    enabledJWA: { dPoPSigningAlgValues: config.dpop?.algorithms ?? DPOP_ALGORITHMS },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo,
      },
      dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce },
    },
    ttl: {
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTtl,
    },
  });
  provider.use(recordTokenRequests);
  return provider;
}

function clientAuthOf(ctx) {
  if (ctx.get('authorization')) return 'client_secret_basic';
  const params = ctx.oidc?.params ?? {};
  if (params.client_assertion) return 'client_assertion';
  if (params.client_secret) return 'client_secret_post';
  return 'none';
}

// The proof's header and claims as sent, unverified: for the record only (oidc-provider judges it).
function dpopProofParts(ctx) {
  const proof = ctx.get('dpop');
  if (!proof) return [{}, {}];
  try {
    return proof.split('.').slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')));
  } catch {
    return [{}, {}];
  }
}

// Koa middleware around every route: after the token endpoint answered, note what happened.
async function recordTokenRequests(ctx, next) {
  await next();
  if (ctx.oidc?.route !== 'token') return;
  const body = typeof ctx.body === 'object' && ctx.body !== null ? ctx.body : {};
  const params = ctx.oidc.params ?? {};
  const [proofHeader, proofClaims] = dpopProofParts(ctx);
  const nonce = typeof proofClaims.nonce === 'string' ? proofClaims.nonce : null;
  const nonceGiven = ctx.response.get('dpop-nonce') || null;
  tokenRequests.push({
    client_id: ctx.oidc.client?.clientId ?? params.client_id ?? null,
    client_auth: clientAuthOf(ctx),
    grant_type: params.grant_type ?? null,
    status: ctx.status,
    error: body.error ?? null,
    token_type: body.token_type ?? null,
    resource: params.resource ?? null,
    scope: body.scope ?? null,
    dpop: Boolean(ctx.get('dpop')),
    dpop_alg: typeof proofHeader.alg === 'string' ? proofHeader.alg : null,
    dpop_nonce_sent: nonce !== null,
    dpop_nonce: nonce,
    dpop_nonce_issued: nonceGiven !== null,
    dpop_nonce_given: nonceGiven,
  });
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function registerClient(provider, { metadata, require_dpop_nonce: nonce = false }) {
  await provider.Client.validate(metadata);
  await provider.Client.adapter.upsert(metadata.client_id, metadata);
  if (nonce) {
    dpopState.clientsRequiringNonce.add(metadata.client_id);
  } else {
    dpopState.clientsRequiringNonce.delete(metadata.client_id);
  }
}

async function harness(provider, req, res) {
  const url = new URL(req.url, provider.issuer);
  const route = `${req.method} ${url.pathname.slice(HARNESS_PREFIX.length)}`;
  try {
    if (route === 'POST clients') {
      const body = await readJson(req);
      await registerClient(provider, body);
      return answer(res, 201, { client_id: body.metadata.client_id });
    }
    if (route === 'GET token-requests') {
      const since = Number(url.searchParams.get('since') ?? 0);
      return answer(res, 200, { next: tokenRequests.length, requests: tokenRequests.slice(since) });
    }
    if (route === 'POST dpop') {
      dpopState.requireNonce = Boolean((await readJson(req)).requireNonce);
      return answer(res, 200, { requireNonce: dpopState.requireNonce });
    }
    return answer(res, 404, { error: 'not_found' });
  } catch (error) {
    return answer(res, 400, { error: 'invalid_request', error_description: String(error.message ?? error) });
  }
}

async function registerConfiguredClients(provider) {
  for (const metadata of config.clients ?? []) {
    await registerClient(provider, { metadata });
  }
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

async function main() {
  const requestedPort = Number(process.argv[2] ?? process.env.OIDC_PROVIDER_PORT ?? 0);
  let handle = (_req, res) => answer(res, 503, { error: 'starting' });
  const server = createServer((req, res) => handle(req, res));
  const port = await listen(server, requestedPort);
  const issuer = `http://127.0.0.1:${port}`;
  const provider = buildProvider(issuer);
  await registerConfiguredClients(provider);
  const callback = provider.callback();
  handle = (req, res) => (req.url.startsWith(HARNESS_PREFIX) ? harness(provider, req, res) : callback(req, res));

  const stop = () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({
    ready: 'oidc-provider',
    version: providerVersion(),
    issuer,
    port,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
  })}\n`);
}

main().catch((error) => {
  process.stderr.write(`oidc-provider test server failed to start: ${error.stack ?? error}\n`);
  process.exit(1);
});
