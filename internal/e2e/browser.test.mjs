// Debian's headless Chromium, driven by playwright-core, through wssproxy:
// the seeds' own test is a browser page running
// `new WebSocket("wss://domain.com/wss")`. The page comes over HTTP/2, and
// wssproxy advertises extended CONNECT, so Chromium opens its WebSockets as
// streams of the page's own connection (RFC 8441); the proxy's access lines
// (proto=HTTP/2.0) and metrics (one client connection for 50 sockets) say
// so. With http2_websockets = false it opens HTTP/1.1 connections instead.
//
// Trust: e2e_test.go puts the run's test CA into $HOME/.pki/nssdb, the NSS
// database Chromium reads on Linux, so the certificate is verified as a
// browser would verify a real one; nothing here ignores certificate errors.
// The name wss.test is mapped to 127.0.0.1 with --host-resolver-rules, so
// the browser sends SNI and checks the name like it would for domain.com.
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { startBackend, startProxy } from './lib.mjs';
import { pageTests } from './pages.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

let backend, proxy, proxyOff, browser, origin, originOff;

before(async () => {
  backend = await startBackend();
  const routes = [
    { path: '/wss', backend: `ws://${backend.addr}` },
    { path: '/echo', backend: `ws://${backend.addr}` },
    // The seeds' page (the demo page: connect to /wss, send tom, show the reply).
    { path: '/', static: path.join(here, '..', 'echo') },
  ];
  proxy = await startProxy(routes, { admin: true });
  proxyOff = await startProxy(routes, { global: { http2_websockets: false } });
  origin = `https://wss.test:${proxy.addr.split(':').pop()}`;
  originOff = `https://wss.test:${proxyOff.addr.split(':').pop()}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: [
      '--no-sandbox', // CI runs as root
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking', // this machine has no internet: no update or sync checks
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP wss.test 127.0.0.1',
      // No --disable-features=LocalNetworkAccessChecks…: Local Network
      // Access only stops a page from a wider address space (public) from
      // reaching a narrower one (loopback). Here the page itself comes from
      // 127.0.0.1, as it does from a real server to its own origin, and
      // Chromium 156 opens the WebSockets without it (checked by removing
      // and adding the flag).
    ],
  });
});

after(async () => {
  await browser?.close();
  await backend?.stop();
  await proxy?.stop();
  await proxyOff?.stop();
});

// page opens a fresh page on the proxy's origin, so scripts connect to
// wss://wss.test:PORT like a page served there would.
async function page(from) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const errors = [];
  p.on('pageerror', (e) => errors.push(e));
  const resp = await p.goto(from + '/');
  assert.equal(resp.status(), 200);
  const proto = await p.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(proto, 'h2', 'the page came over HTTP/2');
  return { p, ctx, errors };
}

pageTests({
  page,
  get proxy() { return proxy; },
  get proxyOff() { return proxyOff; },
  get origin() { return origin; },
  get originOff() { return originOff; },
  get backend() { return backend; },
});
