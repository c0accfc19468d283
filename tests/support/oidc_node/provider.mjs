// A certified OpenID provider (node `oidc-provider`) for the strict sign-in tests,
// started on loopback by the tests themselves (tests/support/node_oidc.py).
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json: {"port": 0 or N, "issuer": "http://127.0.0.1:N" (optional with port 0),
//               "clients": [{client_id, client_secret, redirect_uris,
//                            post_logout_redirect_uris, token_endpoint_auth_method?}],
//               "accounts_file": "/path/accounts.json"}
// accounts.json: {"<login>": {"sub", "email", "email_verified", "groups", "name"}}, read again
// at every look-up, so a test can change someone's groups between two sign-ins.
//
// What it enforces, as a strict provider would: PKCE with S256 for every client (v9 knows
// no other method), email and groups served by userinfo only (conformIdTokenClaims: the ID
// token of the code flow carries `sub` and the protocol claims, nothing about the person).
// Signing in is oidc-provider's own development pages (any password; the login must be
// in accounts.json, else the sign-in ends with error=access_denied at the client).
//
// Prints "listening <issuer>" on stdout once it answers; exits on SIGTERM.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider's notices go to console.info (stdout): keep stdout for the ready line.
console.info = (...args) => console.error(...args);

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function readAccounts() {
  try {
    return JSON.parse(fs.readFileSync(config.accounts_file, 'utf8'));
  } catch (err) {
    console.error(`accounts file ${config.accounts_file}: ${err.message}`);
    return {};
  }
}

// The session's accountId is the account's `sub` (the login page's middleware below puts
// it there), and oidc-provider answers with it as the subject everywhere.
function byAccountId(accountId) {
  return Object.values(readAccounts()).find((entry) => entry.sub === accountId);
}

async function findAccount(ctx, accountId) {
  if (!byAccountId(accountId)) return undefined;
  return {
    accountId,
    async claims() {
      // read again: userinfo says what the file says now
      const now = byAccountId(accountId) || {};
      const claims = { sub: accountId };
      for (const name of ['email', 'email_verified', 'groups', 'name']) {
        if (now[name] !== undefined) claims[name] = now[name];
      }
      return claims;
    },
  };
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };

const hour = () => 3600;
const tenMinutes = () => 600;

const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>${title}</h1>${body}</main></body></html>`;
}

const server = http.createServer();
await new Promise((resolve) => server.listen(config.port || 0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = config.issuer || `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris || [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
  })),
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: true,
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out', `<p>Sign out of ${esc(ctx.host)}?</p>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p>You are signed out.</p>');
      },
    },
  },
  findAccount,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  clientBasedCORS: () => false,
  ttl: {
    AccessToken: hour,
    AuthorizationCode: () => 60,
    ClientCredentials: hour,
    DeviceCode: tenMinutes,
    BackchannelAuthenticationRequest: tenMinutes,
    PreAuthorizedCode: tenMinutes,
    IdToken: hour,
    Interaction: hour,
    RefreshToken: hour,
    Session: hour,
    Grant: hour,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<p>${esc(out.error)}: ${esc(out.error_description || '')}</p>`);
  },
});

// The development login page's form (any password) is finished here: the login typed is
// looked up in the accounts file and the session is the account's `sub`; an unknown login
// ends the sign-in with access_denied (the client gets error=access_denied back), as a
// real provider refuses a person it does not know. The consent form goes on to
// oidc-provider's own handler untouched.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || !/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const { prompt } = await provider.interactionDetails(ctx.req, ctx.res);
  if (prompt.name !== 'login') return next();
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  const entry = readAccounts()[form.get('login')];
  const result = entry
    ? { login: { accountId: entry.sub } }
    : { error: 'access_denied', error_description: 'no such account at the provider' };
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.respond = false;
  return undefined;
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

// oidc-provider checks a static client's metadata at its first use: check them now, so
// a bad redirect URI stops the start with the reason instead of failing a sign-in later.
for (const { client_id: clientId } of config.clients) {
  await provider.Client.find(clientId);
}

server.on('request', provider.callback());

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

process.stdout.write(`listening ${issuer}\n`);
