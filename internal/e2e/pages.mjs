// The browser suites' tests, shared by Chromium (browser.test.mjs) and
// Firefox (firefox.test.mjs): the seeds' page and WebSockets from pages
// served over HTTP/2, which the browser opens as streams of the page's own
// connection (RFC 8441). The proxy's access lines (proto=HTTP/2.0,
// status=200) and metrics (one client connection for 50 sockets) show the
// protocol (env.proxy has http2_websockets = true); a second proxy with the
// default (off) shows the fallback to HTTP/1.1.
//
// env is filled in by the suite's before hook: browser (closed after the
// suite, with the rest); proxy (with admin), proxyOff and proxyLimited
// (h2_max_streams = 20, with admin) from startProxy; origin, originOff and
// originLimited their https origins; backend from startBackend.
// newContext() opens a browser context of its own (its own connections).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { within } from './lib.mjs';

export function pageTests(env, newContext) {
  after(async () => {
    await env.browser?.close();
    await env.backend?.stop();
    await env.proxy?.stop();
    await env.proxyOff?.stop();
    await env.proxyLimited?.stop();
  });

  // page opens a fresh page in a context of its own on from (the proxy's
  // origin by default), so scripts connect to wss://HOST:PORT like a page
  // served there would, and checks that it came over HTTP/2.
  async function page(from = env.origin) {
    const ctx = await newContext();
    const p = await ctx.newPage();
    const errors = [];
    p.on('pageerror', (e) => errors.push(e));
    const resp = await p.goto(from + '/');
    assert.equal(resp.status(), 200);
    const proto = await p.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(proto, 'h2', 'the page came over HTTP/2');
    return { p, ctx, errors };
  }

  // tunnelLines waits until the proxy has logged n tunnel ends for path and
  // returns them.
  async function tunnelLines(px, path, n = 1) {
    return within(15000, `${n} access lines for ${path}`, new Promise((resolve) => {
      const look = () => {
        const lines = px.tunnels().filter((l) => l.path === path);
        if (lines.length >= n) resolve(lines); else setTimeout(look, 20);
      };
      look();
    }));
  }

  // overH2 asserts that every tunnel for path went over HTTP/2: a stream of
  // the page's connection, answered 200.
  async function overH2(path, n = 1) {
    for (const l of await tunnelLines(env.proxy, path, n)) {
      assert.equal(l.proto, 'HTTP/2.0', `tunnel for ${path}: ${JSON.stringify(l)}`);
      assert.equal(l.status, '200');
    }
  }

  test("the seeds' page: loaded over HTTP/2, its WebSocket a stream of the same connection, sends tom and shows the reply", async () => {
    const { p, ctx, errors } = await page();
    await within(15000, 'the reply on the page', p.waitForFunction(() => document.getElementById('result').textContent === 'reply: ok'));
    // The page closes on the reply; its close handshake is a round trip more.
    await within(15000, 'the close on the page', p.waitForFunction(() => document.getElementById('log').textContent.includes('closed: ')));
    const log = await p.evaluate(() => document.getElementById('log').textContent);
    assert.match(log, /connected\nsent: tom\nreceived: ok\nclosed: 1000 done/);
    assert.deepEqual(errors, []);
    await overH2('/wss');
    await ctx.close();
  });

  test('a 1 MiB binary message, echoed byte for byte', async () => {
    const { p, ctx } = await page();
    const result = await within(30000, 'the echo', p.evaluate(async () => {
      const data = new Uint8Array(1 << 20);
      for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
      const ws = new WebSocket(`wss://${location.host}/echo/big`);
      ws.binaryType = 'arraybuffer';
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      ws.send(data);
      const got = new Uint8Array(await new Promise((ok) => { ws.onmessage = (e) => ok(e.data); }));
      ws.close();
      return { length: got.length, same: got.length === data.length && got.every((b, i) => b === data[i]) };
    }));
    assert.deepEqual(result, { length: 1 << 20, same: true });
    await overH2('/echo/big');
    await ctx.close();
  });

  test('50 sockets at once on one connection, 20 messages each, no crossed replies', async () => {
    const { p, ctx } = await page();
    await within(30000, 'the 50 sockets to open', p.evaluate(async () => {
      window.sockets = await Promise.all(Array.from({ length: 50 }, async (_, n) => {
        const ws = new WebSocket(`wss://${location.host}/echo/many`);
        await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error(`socket ${n} failed`)); });
        return ws;
      }));
    }));
    // All 50 are open now: over HTTP/1.1 that would be 50 more client
    // connections; over HTTP/2 they share the page's. (A browser may still
    // hold a connection or two of the earlier tests' closed contexts.)
    const m = await env.proxy.metrics();
    const open = Object.entries(m).filter(([k]) => k.startsWith('wssproxy_tunnels_open')).reduce((sum, [, v]) => sum + v, 0);
    assert.equal(open, 50, 'tunnels open');
    assert.ok(m.wssproxy_client_connections <= 5, `client connections with 50 sockets open: ${m.wssproxy_client_connections}, want the page's one (and a few idle)`);
    const result = await within(60000, 'the 50 sockets', p.evaluate(async () => {
      const one = async (ws, n) => {
        const got = [];
        const done = new Promise((ok) => {
          ws.onmessage = (e) => { got.push(e.data); if (got.length === 20) ok(); };
        });
        const sent = [];
        for (let i = 0; i < 20; i++) {
          const msg = `socket ${n} message ${i} ${Math.random()}`;
          sent.push(msg);
          ws.send(msg);
        }
        await done;
        ws.close();
        return got.every((m, i) => m === sent[i]);
      };
      const all = await Promise.all(window.sockets.map(one));
      return { sockets: all.length, clean: all.filter(Boolean).length };
    }));
    assert.deepEqual(result, { sockets: 50, clean: 50 });
    await overH2('/echo/many', 50);
    await ctx.close();
  });

  test('a backend that drops TCP: the page gets 1014', async () => {
    const { p, ctx } = await page();
    const result = await within(15000, 'the close', p.evaluate(async () => {
      const ws = new WebSocket(`wss://${location.host}/echo/drop`);
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      ws.send('drop');
      const e = await new Promise((ok) => { ws.onclose = ok; });
      return { code: e.code, reason: e.reason };
    }));
    assert.deepEqual(result, { code: 1014, reason: 'backend went away' });
    await overH2('/echo/drop');
    await ctx.close();
  });

  test("the backend's close code and reason reach the page", async () => {
    const { p, ctx } = await page();
    const result = await within(15000, 'the close', p.evaluate(async () => {
      const ws = new WebSocket(`wss://${location.host}/echo/server-close`);
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      ws.send('close 4001 server says bye');
      const e = await new Promise((ok) => { ws.onclose = ok; });
      return { code: e.code, reason: e.reason, wasClean: e.wasClean };
    }));
    assert.deepEqual(result, { code: 4001, reason: 'server says bye', wasClean: true });
    const [line] = await tunnelLines(env.proxy, '/echo/server-close');
    assert.equal(line.close_code, '4001');
    assert.equal(line.closed_by, 'backend');
    await overH2('/echo/server-close');
    await ctx.close();
  });

  test("the page's close code and reason reach the backend", async () => {
    const { p, ctx } = await page();
    const closed = env.backend.closed('page-close');
    const code = await within(15000, 'the close', p.evaluate(async () => {
      const ws = new WebSocket(`wss://${location.host}/echo/page-close?id=page-close`);
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      ws.close(4002, 'page says bye');
      const e = await new Promise((ok) => { ws.onclose = ok; });
      return e.code;
    }));
    assert.equal(code, 4002);
    const seen = await within(10000, 'the backend to see the close', closed);
    assert.equal(seen.code, 4002);
    assert.equal(seen.reason, 'page says bye');
    assert.equal(seen.headers['x-real-ip'], '127.0.0.1');
    assert.equal(seen.headers.origin, env.origin, "the page's Origin reaches the backend");
    const [line] = await tunnelLines(env.proxy, '/echo/page-close');
    assert.equal(line.close_code, '4002');
    assert.equal(line.closed_by, 'client');
    await overH2('/echo/page-close');
    await ctx.close();
  });

  // open opens n WebSockets on path from page p, in waves of 100, and
  // returns how many are open.
  async function openSockets(p, n, path) {
    return within(60000, `${n} sockets to open`, p.evaluate(async ({ n, path }) => {
      window.sockets = [];
      for (let done = 0; done < n; done += 100) {
        window.sockets.push(...await Promise.all(Array.from({ length: Math.min(100, n - done) }, async (_, i) => {
          const ws = new WebSocket(`wss://${location.host}${path}`);
          await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error(`socket ${done + i} failed`)); });
          return ws;
        })));
      }
      return window.sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length;
    }, { n, path }));
  }

  // env.siteSockets WebSockets of one site on its one HTTP/2 connection
  // (more than the 100 streams wssproxy used to allow), in two tabs, then
  // a fetch and a new tab. The browsers' own caps, whatever the server
  // or protocol (measured over HTTP/1.1 too): Chromium holds at most 255
  // WebSockets per profile (one page's 256th fails at once; across tabs
  // the ones over it wait), so its suite asks for 250; Firefox at most
  // network.websocket.max-connections (200 by default; its suite raises
  // it and asks for 300).
  test('300 WebSockets on the site\'s one HTTP/2 connection (250 in Chromium), then a fetch and a new tab', async () => {
    const n = env.siteSockets;
    const { p, ctx } = await page();
    try {
      await manySockets(p, ctx, n);
    } finally {
      await ctx.close();
    }
  });

  async function manySockets(p, ctx, n) {
    const p2 = await ctx.newPage();
    assert.equal((await p2.goto(env.origin + '/?tab=2')).status(), 200);
    assert.equal(await openSockets(p, 150, '/echo/many-tabs'), 150);
    assert.equal(await openSockets(p2, n - 150, '/echo/many-tabs'), n - 150);
    const m = await env.proxy.metrics();
    const open = Object.entries(m).filter(([k]) => k.startsWith('wssproxy_tunnels_open')).reduce((sum, [, v]) => sum + v, 0);
    assert.equal(open, n, 'tunnels open');
    // One per tab at most (and idle ones of earlier tests), not one per socket.
    assert.ok(m.wssproxy_client_connections < 20, `client connections with ${n} sockets open: ${m.wssproxy_client_connections}`);
    // With all 300 open, the site still answers: a fetch from the page,
    // and a new tab.
    const fetched = await within(15000, "the page's fetch('/')", p.evaluate(async () => {
      const r = await fetch('/?fetch', { cache: 'no-store' });
      await r.text();
      return { status: r.status, proto: performance.getEntriesByType('resource').at(-1)?.nextHopProtocol };
    }));
    assert.deepEqual(fetched, { status: 200, proto: 'h2' });
    const tab = await ctx.newPage();
    const resp = await within(15000, 'a new tab', tab.goto(env.origin + '/?tab=3'));
    assert.equal(resp.status(), 200);
    assert.equal(await tab.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol), 'h2');
    for (const q of [p, p2]) {
      const echoed = await within(30000, 'an echo on the last socket', q.evaluate(async () => {
        const ws = window.sockets.at(-1);
        const got = new Promise((ok) => { ws.onmessage = (e) => ok(e.data); });
        ws.send('last');
        return got;
      }));
      assert.equal(echoed, 'last');
      await q.evaluate(() => window.sockets.forEach((ws) => ws.close()));
    }
    await overH2('/echo/many-tabs', n);
  }

  test('at h2_max_streams the browser queues: the sockets over it wait, and open when others close', async () => {
    const { p, ctx } = await page(env.originLimited);
    try {
      await queued(p);
    } finally {
      await ctx.close();
    }
  });

  async function queued(p) {
    // 20 open, 5 more asked for: the browser holds them back itself.
    await within(30000, 'the first 20 sockets', p.evaluate(async () => {
      window.states = [];
      window.sockets = Array.from({ length: 25 }, (_, n) => {
        const ws = new WebSocket(`wss://${location.host}/echo/limited`);
        window.states[n] = 'connecting';
        ws.onopen = () => { window.states[n] = 'open'; };
        ws.onerror = () => { window.states[n] = 'error'; };
        return ws;
      });
      await new Promise((ok) => {
        const look = () => (window.states.filter((s) => s === 'open').length >= 20 ? ok() : setTimeout(look, 20));
        look();
      });
    }));
    await within(15000, 'the warn line', new Promise((resolve) => {
      const look = () => (/HTTP\/2 connection at h2_max_streams/.test(env.proxyLimited.log()) ? resolve() : setTimeout(look, 20));
      look();
    }));
    const m = await env.proxyLimited.metrics();
    assert.equal(m.wssproxy_h2_streams_refused_total, 0, 'the browser sent nothing over the limit');
    const states = await p.evaluate(() => window.states.slice());
    assert.equal(states.filter((s) => s === 'open').length, 20, `states: ${states}`);
    assert.equal(states.filter((s) => s === 'error').length, 0, `states: ${states}`);
    // Ten close: the five held back open, on the same connection.
    await within(30000, 'the queued sockets to open', p.evaluate(async () => {
      window.sockets.filter((ws) => ws.readyState === WebSocket.OPEN).slice(0, 10).forEach((ws) => ws.close());
      await new Promise((ok) => {
        const look = () => (window.states.filter((s) => s === 'open').length === 25 ? ok() : setTimeout(look, 20));
        look();
      });
    }));
    const n = (await p.evaluate(() => fetch('/', { cache: 'no-store' }).then((r) => r.status)));
    assert.equal(n, 200);
    await p.evaluate(() => window.sockets.forEach((ws) => ws.close()));
  }

  test('http2_websockets off (the default): the page over HTTP/2, its WebSocket over HTTP/1.1', async () => {
    const { p, ctx } = await page(env.originOff);
    const got = await within(15000, 'the echo', p.evaluate(async () => {
      const ws = new WebSocket(`wss://${location.host}/echo/off`);
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      ws.send('tom');
      const msg = await new Promise((ok) => { ws.onmessage = (e) => ok(e.data); });
      ws.close();
      return msg;
    }));
    assert.equal(got, 'tom');
    const [line] = await tunnelLines(env.proxyOff, '/echo/off');
    assert.equal(line.proto, 'HTTP/1.1');
    assert.equal(line.status, '101');
    await ctx.close();
  });
}
