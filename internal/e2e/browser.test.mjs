// Debian's headless Chromium, driven by playwright-core, through wssproxy:
// the seeds' own test is a browser page running
// `new WebSocket("wss://domain.com/wss")`. The page comes over HTTP/2, and
// with http2_websockets = true wssproxy advertises extended CONNECT, so
// Chromium opens its WebSockets as streams of the page's own connection
// (RFC 8441); the proxy's access lines (proto=HTTP/2.0) and metrics (one
// client connection for 50 sockets) say so. By default (off) it opens
// HTTP/1.1 connections instead.
//
// Trust: e2e_test.go puts the run's test CA into $HOME/.pki/nssdb, the NSS
// database Chromium reads on Linux, so the certificate is verified as a
// browser would verify a real one; nothing here ignores certificate errors.
// The name wss.test is mapped to 127.0.0.1 with --host-resolver-rules, so
// the browser sends SNI and checks the name like it would for domain.com.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before } from 'node:test';
import { chromium } from 'playwright-core';
import { startBackend, startProxy } from './lib.mjs';
import { pageTests } from './pages.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

// env is what the before hook starts, for pages.mjs's tests (and their
// after hook, which stops it).
const env = {};

before(async () => {
  env.backend = await startBackend();
  const routes = [
    { path: '/wss', backend: `ws://${env.backend.addr}` },
    { path: '/echo', backend: `ws://${env.backend.addr}` },
    // The seeds' page (the demo page: connect to /wss, send tom, show the reply).
    { path: '/', static: path.join(here, '..', 'echo') },
  ];
  env.proxy = await startProxy(routes, { admin: true, global: { http2_websockets: true } });
  env.proxyOff = await startProxy(routes); // http2_websockets unset: off, the default
  env.proxyLimited = await startProxy(routes, { admin: true, global: { http2_websockets: true, h2_max_streams: 20 } });
  env.origin = `https://wss.test:${env.proxy.addr.split(':').pop()}`;
  env.originOff = `https://wss.test:${env.proxyOff.addr.split(':').pop()}`;
  env.siteSockets = 250; // Chromium's cap: 255 WebSockets per profile (pages.mjs)
  env.originLimited = `https://wss.test:${env.proxyLimited.addr.split(':').pop()}`;
  env.browser = await chromium.launch({
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

pageTests(env, () => env.browser.newContext());
