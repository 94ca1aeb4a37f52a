// The admin dashboard in Debian's headless Chromium (playwright-core): 50
// live tunnels from Node `ws` clients, each sending a message every 200 ms,
// show as 50 rows of the tunnel table, the charts draw lines, and a click
// on a row's close button closes that client's tunnel with 1008.
//
// The admin page is plain HTTP on 127.0.0.1, so no certificate is involved
// on the browser's side; the clients trust the run's CA (lib.mjs's ca).
// E2E_SCREENSHOT, when set, is where to save a screenshot of the page
// under that load, E2E_SCREENSHOT_AFTER milliseconds of it later
// (docs/dashboard.png was taken so).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { ca, startBackend, startProxy, within } from './lib.mjs';

const env = {};
const clients = []; // { ws, port, closed: Promise<{code, reason}> }

before(async () => {
  env.backend = await startBackend();
  env.proxy = await startProxy([
    { path: '/echo', backend: `ws://${env.backend.addr}` },
    { path: '/chat', backend: `ws://${env.backend.addr}/echo`, message_rate: 20 },
  ], { admin: true });
  env.browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  for (let i = 0; i < 50; i++) {
    const path = i % 5 === 0 ? '/chat' : '/echo';
    const ws = new WebSocket(`wss://127.0.0.1:${env.proxy.addr.split(':').pop()}${path}?id=dash${i}`, { ca });
    const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await within(10000, `client ${i} to connect`, new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }));
    ws.on('error', () => {});
    const timer = setInterval(() => { if (ws.readyState === WebSocket.OPEN) ws.send(`message from ${i}`); }, 200);
    ws.on('close', () => clearInterval(timer));
    clients.push({ ws, port: ws._socket.localPort, closed, timer });
  }
});

after(async () => {
  for (const c of clients) {
    clearInterval(c.timer);
    c.ws.terminate();
  }
  await env.browser?.close();
  await env.backend?.stop();
  await env.proxy?.stop();
});

test('the dashboard shows 50 live tunnels and charts, and closes one with 1008', async () => {
  const ctx = await env.browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(new Error(m.text())); });
  const resp = await page.goto(`http://${env.proxy.admin}/`);
  assert.equal(resp.status(), 200);

  // 50 rows, kept live by the script (the charts are only there with it).
  await page.waitForFunction(() => document.querySelectorAll('#tunnel-rows tr').length === 50 &&
    !document.getElementById('charts').hidden, null, { timeout: 15000 });
  // Lines in every chart; the messages chart needs two samples after the
  // clients began (History samples every 2 s).
  await page.waitForFunction(() => ['chart-open', 'chart-handshakes', 'chart-messages', 'chart-bytes']
    .every((id) => Number(document.getElementById(id).dataset.points) >= 2), null, { timeout: 15000 });
  const msgLegend = await page.textContent('#chart-messages + .legend');
  assert.match(msgLegend, /route\[1\] \/echo/);
  assert.match(msgLegend, /route\[2\] \/chat/);
  const open = await page.textContent('#open-count');
  assert.equal(open.trim(), '50');
  if (process.env.E2E_SCREENSHOT) {
    // E2E_SCREENSHOT_AFTER: milliseconds more of traffic first, for charts with a history.
    await new Promise((r) => setTimeout(r, Number(process.env.E2E_SCREENSHOT_AFTER) || 0));
    await page.screenshot({ path: process.env.E2E_SCREENSHOT, fullPage: false });
  }

  // Close the first row's tunnel by clicking its button.
  const row = page.locator('#tunnel-rows tr').first();
  const client = (await row.locator('td').nth(2).textContent()).trim(); // 127.0.0.1:PORT
  const port = Number(client.split(':').pop());
  const target = clients.find((c) => c.port === port);
  assert.ok(target, `a client on port ${port}`);
  await row.locator('button.close').click();
  const { code, reason } = await within(10000, 'the close frame', target.closed);
  assert.equal(code, 1008);
  assert.equal(reason, 'closed by the operator');
  await page.waitForFunction(() => document.querySelectorAll('#tunnel-rows tr').length === 49, null, { timeout: 15000 });
  assert.deepEqual(errors, []);
  assert.match(env.proxy.log(), /msg="admin: tunnel close asked".*code=1008.*asked_by=127\.0\.0\.1:\d+/);
  await ctx.close();
});
