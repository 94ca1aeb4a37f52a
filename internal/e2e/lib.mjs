// Shared parts of the end-to-end suites: a Node `ws` backend that users could
// have written, and a real wssproxy process in front of it. e2e_test.go
// builds the binary and the certificates and passes them in the environment:
//
//   WSSPROXY_BIN  the wssproxy binary (built with -race)
//   E2E_DIR       holds ca.pem (the run's test CA) and cert.pem/key.pem (a
//                 leaf it signed for wss.test, localhost and 127.0.0.1)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { WebSocketServer } from 'ws';

export const dir = process.env.E2E_DIR;
export const ca = dir && fs.readFileSync(path.join(dir, 'ca.pem'));

if (!process.env.WSSPROXY_BIN || !dir) {
  throw new Error('run through `go test ./internal/e2e` (it sets WSSPROXY_BIN and E2E_DIR)');
}

// A deadline for anything that waits on the network, so a hang fails the
// test with a name instead of running into the suite's timeout.
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// startBackend runs a plain ws:// server on 127.0.0.1:0, the kind that sits
// behind nginx today. By path:
//
//   /wss   the seeds' Workerman worker: every message is answered with "ok"
//   /echo  echoes every message with its type; a few text commands make the
//          server act first:
//            "close <code> <reason>"  closes with that code and reason
//            "drop"                   drops TCP without a close frame
//            "ping <payload>"         pings with that payload, then reports
//                                     the pong's payload as "pong <payload>"
//
// Subprotocols: the first of "chat.v2", "chat.v1" the client offered.
// permessage-deflate is accepted when offered. Each connection's close code
// and reason, as the backend saw them, resolve closes.get(id), where id is
// the connection's ?id= query parameter.
export async function startBackend() {
  const server = http.createServer((req, res) => { res.writeHead(426).end(); });
  const wss = new WebSocketServer({
    server,
    maxPayload: 128 << 20,
    perMessageDeflate: { threshold: 0 },
    handleProtocols: (offered) => ['chat.v2', 'chat.v1'].find((p) => offered.has(p)) ?? false,
  });
  const closes = new Map(); // id -> { promise, resolve }
  const closeOf = (id) => {
    if (!closes.has(id)) {
      let resolve;
      const promise = new Promise((r) => { resolve = r; });
      closes.set(id, { promise, resolve });
    }
    return closes.get(id);
  };
  const conns = new Set();
  wss.on('connection', (ws, req) => {
    const url = new URL(req.url, 'http://backend');
    const id = url.searchParams.get('id');
    ws.upgradeReq = req;
    conns.add(ws);
    ws.on('close', (code, reason) => {
      conns.delete(ws);
      if (id) closeOf(id).resolve({ code, reason: reason.toString(), headers: req.headers });
    });
    ws.on('message', (data, isBinary) => {
      if (url.pathname.startsWith('/wss')) {
        ws.send('ok');
        return;
      }
      const text = isBinary ? '' : data.toString();
      let m;
      if ((m = /^close (\d+) (.*)$/s.exec(text))) {
        ws.close(Number(m[1]), m[2]);
      } else if (text === 'drop') {
        ws.terminate(); // TCP gone, no close frame
      } else if ((m = /^ping (.*)$/s.exec(text))) {
        ws.once('pong', (payload) => ws.send('pong ' + payload.toString()));
        ws.ping(m[1]);
      } else {
        ws.send(data, { binary: isBinary });
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    addr: `127.0.0.1:${server.address().port}`,
    wss,
    conns,
    closed: (id) => closeOf(id).promise,
    async stop() {
      for (const ws of conns) ws.terminate();
      wss.close();
      server.close();
    },
  };
}

// startProxy runs wssproxy with a config made of the run's certificate,
// loopback listeners and the given [[route]] tables, waits until it listens,
// and returns its address. stop() sends SIGTERM to that PID only and fails if
// the process reported a data race or exited badly. Options:
//
//   global  more top-level keys, e.g. { http2_websockets: false }
//   admin   serve the admin endpoints on 127.0.0.1:0; metrics() reads them
export async function startProxy(routes, { global = {}, admin = false } = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'wssproxy-e2e-'));
  const lines = [
    'listen = "127.0.0.1:0"',
    'log_level = "debug"',
    'shutdown_timeout = "5s"',
    ...Object.entries(global).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
    '[tls]',
    `cert = ${JSON.stringify(path.join(dir, 'cert.pem'))}`,
    `key = ${JSON.stringify(path.join(dir, 'key.pem'))}`,
    '[admin]',
    `listen = ${admin ? '"127.0.0.1:0"' : '""'}`,
  ];
  for (const r of routes) {
    lines.push('[[route]]');
    for (const [k, v] of Object.entries(r)) lines.push(`${k} = ${JSON.stringify(v)}`);
  }
  const config = path.join(work, 'wssproxy.toml');
  fs.writeFileSync(config, lines.join('\n') + '\n');

  const child = spawn(process.env.WSSPROXY_BIN, ['-config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = once(child, 'exit');
  const addr = await within(20000, 'wssproxy to listen', new Promise((resolve, reject) => {
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = /msg=listening addr=(\S+)/.exec(log);
      if (m) resolve(m[1]);
    });
    exited.then(([code]) => reject(new Error(`wssproxy exited (${code}) before listening:\n${log}`)));
  }));
  const adminAddr = admin && await within(20000, 'the admin listener', new Promise((resolve) => {
    const look = () => {
      const m = /msg="admin listening" addr=(\S+)/.exec(log);
      if (m) resolve(m[1]); else setTimeout(look, 10);
    };
    look();
  }));
  return {
    addr,
    admin: adminAddr, // host:port of the admin listener, with admin
    log: () => log,
    // tunnels: the "tunnel closed" access lines so far, as objects.
    tunnels: () => log.split('\n').filter((l) => l.includes('msg="tunnel closed"')).map(parseLine),
    // metrics: the admin endpoint's samples, name{labels} -> value.
    async metrics() {
      const text = await (await fetch(`http://${adminAddr}/metrics`)).text();
      const out = {};
      for (const l of text.split('\n')) {
        const m = /^(.+) (\S+)$/.exec(l);
        if (m && !l.startsWith('#')) out[m[1]] = Number(m[2]);
      }
      return out;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const [code, signal] = await within(40000, 'wssproxy to stop', exited);
      fs.rmSync(work, { recursive: true, force: true });
      if (/WARNING: DATA RACE|panic:/.test(log)) throw new Error(`wssproxy reported:\n${log}`);
      if (code !== 0) throw new Error(`wssproxy exited with ${code ?? signal} after SIGTERM (want 0):\n${log}`);
    },
  };
}

// parseLine reads a text-format log line (key=value, values quoted when
// they hold spaces) into an object.
export function parseLine(line) {
  const out = {};
  for (const m of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    out[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
  }
  return out;
}
