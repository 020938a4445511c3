// A development OpenID Connect provider for the course hub's tests and demo.
//
// panva's oidc-provider (a certified OpenID provider) with:
//   - accounts (username, password, claims, a `groups` claim) read from a JSON file at every
//     request, so a test can change someone's groups while the provider runs;
//   - confidential clients from a JSON file, authenticating with `client_secret_post`;
//   - the authorization-code flow with PKCE (required) and refresh tokens;
//   - a plain HTML login form (username + password) that a test can fill in with an HTTP client.
//
// Usage:
//   node dev_idp/server.mjs --accounts dev_idp/accounts.json --clients CLIENTS.json [--port 0]
//       [--access-token-ttl SECONDS]   (default 3600; tests use a few seconds to exercise refresh)
//
// It listens on 127.0.0.1 only (a free port with --port 0) and prints one line when ready:
//   issuer=http://127.0.0.1:PORT
// Secrets (client secrets, passwords, tokens) are never printed.
// For development and tests only: keys and sessions live in memory, every restart forgets them.

import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { Provider, errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    accounts: { type: 'string' },
    clients: { type: 'string' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'access-token-ttl': { type: 'string', default: '3600' },
  },
});
if (!args.accounts || !args.clients) {
  console.error('usage: node dev_idp/server.mjs --accounts FILE --clients FILE [--port N]');
  process.exit(2);
}

function readJson(path, what) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read the ${what} file ${path}: ${err.message}`);
  }
}

/** The accounts by username, re-read at every use:
 * {"accounts": [{"username", "password", "sub"?, ...claims}]}; `sub` defaults to the username. */
function accounts() {
  const data = readJson(args.accounts, 'accounts');
  return new Map((data.accounts || []).map((a) => [a.username, a]));
}

const CLAIMS = ['sub', 'name', 'given_name', 'family_name', 'preferred_username', 'email',
  'email_verified', 'groups', 'eduperson_entitlement'];

function account(accountId) {
  const entry = [...accounts().values()].find((a) => (a.sub || a.username) === accountId);
  if (!entry) return undefined;
  return {
    accountId,
    async claims() {
      const claims = { sub: accountId, preferred_username: entry.username };
      for (const key of CLAIMS) {
        if (key in entry) claims[key] = entry[key];
      }
      return claims;
    },
  };
}

function samePassword(given, expected) {
  const a = Buffer.from(String(given ?? ''));
  const b = Buffer.from(String(expected ?? ''));
  return a.length === b.length && b.length > 0 && timingSafeEqual(a, b);
}

const clients = readJson(args.clients, 'clients').clients.map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_post',
}));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'dev-idp', use: 'sig', alg: 'RS256' };

const server = createServer();
await new Promise((resolve) => server.listen(Number(args.port), args.host, resolve));
const issuer = `http://${args.host}:${server.address().port}`;

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body><h1>${esc(title)}</h1>${body}
<p><small>Development identity provider (oidc-provider). Not for production.</small></p></body></html>`;
}

function loginForm(uid, clientId, error = '', username = '') {
  return page('Sign in', `
<p>to continue to <b>${esc(clientId)}</b></p>
${error ? `<p role="alert" class="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>Username <input name="username" value="${esc(username)}" autofocus></label>
  <label>Password <input name="password" type="password"></label>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>`);
}

const provider = new Provider(issuer, {
  clients,
  findAccount: (ctx, sub) => account(sub),
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups', 'eduperson_entitlement'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  // one machine, one clock: an expired access token is refused at once (the default
  // tolerance of 15 s would hide the refresh-token path from short-lived test tokens)
  clockTolerance: 0,
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // a first-party client: no consent screen, the requested scopes are granted
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const grant = await ctx.oidc.provider.Grant.find(grantId);
      if (grant) return grant;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email groups');
    await grant.save();
    return grant;
  },
  // refresh tokens for every client allowed the grant, without offline_access + prompt=consent
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: Number(args['access-token-ttl']),
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', Object.entries(out)
      .map(([k, v]) => `<p><b>${esc(k)}</b>: ${esc(v)}</p>`).join(''));
  },
});

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The login interaction: GET shows the form, POST checks the password from the accounts file.
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
  if (!m) return next();
  const [, uid, action] = m;
  ctx.set('cache-control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = page('Sign-in error', '<p>This sign-in request has expired. Start again from the hub.</p>');
      return undefined;
    }
    throw err;
  }
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  const clientId = details.params.client_id;
  if (ctx.method === 'GET' && !action) {
    if (details.prompt.name !== 'login') {
      // consent is granted by loadExistingGrant: nothing to ask
      return provider.interactionFinished(ctx.req, ctx.res, {}, { mergeWithLastSubmission: true });
    }
    ctx.type = 'html';
    ctx.body = loginForm(uid, clientId);
    return undefined;
  }
  if (ctx.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(ctx.req, ctx.res, {
      error: 'access_denied', error_description: 'The user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  if (ctx.method === 'POST' && action === 'login') {
    const form = await formBody(ctx.req);
    const username = form.get('username') || '';
    const entry = accounts().get(username);
    if (!entry || !samePassword(form.get('password'), entry.password)) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginForm(uid, clientId, 'Unknown username or wrong password.', username);
      return undefined;
    }
    return provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId: entry.sub || username },
    }, { mergeWithLastSubmission: false });
  }
  return ctx.throw(405);
});

server.on('request', provider.callback());
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
console.log(`issuer=${issuer}`);
