// Auth at the edge from a real browser (issue 26), Debian's headless
// Chromium driven by playwright-core, as browser.test.mjs sets it up:
//
//   - forward_auth in front of the seeds' page's WebSocket: a small auth
//     service (a Node HTTP server, as an SSO's forward-auth endpoint
//     behaves) knows the session cookie s=tom-session. The page with the
//     cookie sends tom and gets tom back; without it the socket fails and
//     the backend never sees it.
//   - [route.jwt] with token_from = ["protocol"]: the page offers
//     ["chat.v1", token] (a browser cannot set headers on a WebSocket); the
//     backend picks chat.v1 and never sees the token entry.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startBackend, startProxy, within } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = {};

// jwt signs claims with ES256 (the signature as JOSE wants it: r || s).
function jwt(key, claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = enc({ alg: 'ES256', typ: 'JWT' }) + '.' + enc(claims);
  const sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return input + '.' + sig.toString('base64url');
}

before(async () => {
  env.backend = await startBackend();
  env.asked = [];
  env.auth = http.createServer((req, res) => {
    env.asked.push(req.headers);
    if (/(^|;\s*)s=tom-session(;|$)/.test(req.headers.cookie ?? '')) {
      res.writeHead(204, { 'X-User-Id': 'tom' }).end();
    } else {
      res.writeHead(401, { 'WWW-Authenticate': 'Bearer realm="sso"' }).end('log in first');
    }
  });
  env.auth.listen(0, '127.0.0.1');
  await once(env.auth, 'listening');
  const keys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  env.key = keys.privateKey;
  env.work = fs.mkdtempSync(path.join(os.tmpdir(), 'wssproxy-e2e-auth-'));
  const keyFile = path.join(env.work, 'jwt.pem');
  fs.writeFileSync(keyFile, keys.publicKey.export({ type: 'spki', format: 'pem' }));
  env.proxy = await startProxy([
    // The seeds' page's socket, to the echo: tom comes back.
    { path: '/wss', backend: `ws://${env.backend.addr}/echo`, forward_auth: `http://127.0.0.1:${env.auth.address().port}/auth`, forward_auth_headers: ['X-User-Id'] },
    { path: '/jwt', backend: `ws://${env.backend.addr}/echo`, 'jwt.key_file': keyFile, 'jwt.token_from': ['protocol'] },
    { path: '/', static: path.join(here, '..', 'echo') },
  ], { admin: true });
  env.origin = `https://wss.test:${env.proxy.addr.split(':').pop()}`;
  env.browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP wss.test 127.0.0.1'],
  });
});

after(async () => {
  await env.browser?.close();
  await env.backend?.stop();
  await env.proxy?.stop();
  env.auth?.close();
  if (env.work) fs.rmSync(env.work, { recursive: true, force: true });
});

// seedsPage loads the seeds' page in a context of its own, with cookies.
async function seedsPage(cookies) {
  const ctx = await env.browser.newContext();
  if (cookies.length) await ctx.addCookies(cookies.map((c) => ({ ...c, url: env.origin })));
  const p = await ctx.newPage();
  const resp = await p.goto(env.origin + '/');
  assert.equal(resp.status(), 200);
  await within(15000, 'the socket to close', p.waitForFunction(() => document.getElementById('log').textContent.includes('closed: ')));
  return { ctx, log: await p.evaluate(() => document.getElementById('log').textContent) };
}

test('forward_auth: the seeds\' page with a session cookie sends tom and gets tom back', async () => {
  const { ctx, log } = await seedsPage([{ name: 's', value: 'tom-session' }]);
  assert.match(log, /connected\nsent: tom\nreceived: tom\nclosed: 1000 done/);
  const asked = env.asked.at(-1);
  assert.equal(asked['x-forwarded-uri'], '/wss');
  assert.equal(asked['x-forwarded-proto'], 'https');
  const line = await within(15000, 'the access line', new Promise((resolve) => {
    const look = () => {
      const l = env.proxy.tunnels().find((t) => t.path === '/wss');
      if (l) resolve(l); else setTimeout(look, 20);
    };
    look();
  }));
  assert.equal(line.auth, 'forward');
  assert.equal(line.subject, 'tom');
  await ctx.close();
});

test('forward_auth: without the cookie the socket fails and the backend never sees it', async () => {
  const before = env.backend.conns.size + env.proxy.tunnels().length;
  const { ctx, log } = await seedsPage([]);
  assert.match(log, /^error .*\nclosed: 1006/);
  assert.doesNotMatch(log, /connected/);
  assert.match(env.proxy.log(), /status=401 refused=auth-forward/);
  assert.equal(env.backend.conns.size + env.proxy.tunnels().length, before);
  await ctx.close();
});

test('jwt: a token offered as a subprotocol opens the socket; the backend picks its protocol and never sees the token', async () => {
  const ctx = await env.browser.newContext();
  const p = await ctx.newPage();
  await p.goto(env.origin + '/');
  const token = jwt(env.key, { sub: 'tom', exp: Math.floor(Date.now() / 1000) + 3600 });
  const got = await within(15000, 'the token socket', p.evaluate(async (token) => {
    const open = (protocols) => new Promise((ok) => {
      const ws = new WebSocket(`wss://${location.host}/jwt/x?id=jwt-ok`, protocols);
      ws.onopen = () => ws.send('hi');
      ws.onmessage = (e) => { ws.close(1000, 'done'); ok({ protocol: ws.protocol, reply: e.data }); };
      ws.onerror = () => ok({ error: true });
    });
    return { good: await open(['chat.v1', token]), bad: await open(['chat.v1', token.slice(0, -4) + 'AAAA']) };
  }, token));
  assert.deepEqual(got.good, { protocol: 'chat.v1', reply: 'hi' }, env.proxy.log().split('\n').filter((l) => l.includes('/jwt')).join('\n'));
  assert.deepEqual(got.bad, { error: true });
  const { headers } = await within(15000, 'the backend to see the close', env.backend.closed('jwt-ok'));
  assert.equal(headers['sec-websocket-protocol'], 'chat.v1');
  assert.match(env.proxy.log(), /refused=auth-jwt reason="bad signature"/);
  await ctx.close();
});
