// Firefox ESR from Debian, headless, driven by puppeteer-core over WebDriver
// BiDi (stock Firefox speaks it; playwright-core would need its own patched
// build), through wssproxy: the same pages and WebSockets as Chromium's
// suite (pages.mjs). Firefox too opens a page's WebSockets as streams of
// the page's HTTP/2 connection once extended CONNECT is advertised.
//
// Trust: e2e_test.go makes a Firefox profile whose NSS database (cert9.db)
// holds only the run's test CA as a trusted issuer, and passes it as
// FIREFOX_PROFILE; nothing here ignores certificate errors. Pages come
// from https://localhost:PORT, a name the test certificate holds.
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import puppeteer from 'puppeteer-core';
import { startBackend, startProxy } from './lib.mjs';
import { pageTests } from './pages.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

let backend, proxy, proxyOff, browser, origin, originOff;

before(async () => {
  backend = await startBackend();
  const routes = [
    { path: '/wss', backend: `ws://${backend.addr}` },
    { path: '/echo', backend: `ws://${backend.addr}` },
    { path: '/', static: path.join(here, '..', 'echo') },
  ];
  proxy = await startProxy(routes, { admin: true });
  proxyOff = await startProxy(routes, { global: { http2_websockets: false } });
  origin = `https://localhost:${proxy.addr.split(':').pop()}`;
  originOff = `https://localhost:${proxyOff.addr.split(':').pop()}`;
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX,
    headless: true,
    userDataDir: process.env.FIREFOX_PROFILE,
    extraPrefsFirefox: {
      // This machine has no internet: nothing that phones home.
      'app.update.enabled': false,
      'browser.safebrowsing.malware.enabled': false,
      'browser.safebrowsing.phishing.enabled': false,
      'network.captive-portal-service.enabled': false,
      'network.connectivity-service.enabled': false,
      'security.OCSP.enabled': 0,
    },
  });
});

after(async () => {
  await browser?.close();
  await backend?.stop();
  await proxy?.stop();
  await proxyOff?.stop();
});

// page opens a fresh page in a context of its own (its own connections).
async function page(from) {
  const ctx = await browser.createBrowserContext();
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
