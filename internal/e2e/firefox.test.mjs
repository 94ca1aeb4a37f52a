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
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before } from 'node:test';
import puppeteer from 'puppeteer-core';
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
    { path: '/', static: path.join(here, '..', 'echo') },
  ];
  env.proxy = await startProxy(routes, { admin: true, global: { http2_websockets: true } });
  env.proxyOff = await startProxy(routes); // http2_websockets unset: off, the default
  env.proxyLimited = await startProxy(routes, { admin: true, global: { http2_websockets: true, h2_max_streams: 20 } });
  env.origin = `https://localhost:${env.proxy.addr.split(':').pop()}`;
  env.originOff = `https://localhost:${env.proxyOff.addr.split(':').pop()}`;
  env.siteSockets = 300; // over Firefox's default cap of 200, raised below (pages.mjs)
  env.originLimited = `https://localhost:${env.proxyLimited.addr.split(':').pop()}`;
  env.browser = await puppeteer.launch({
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
      // Firefox holds at most this many WebSockets in all (default 200,
      // whatever the server): raised for the test of 300 (pages.mjs).
      'network.websocket.max-connections': 400,
    },
  });
});

pageTests(env, () => env.browser.createBrowserContext());
