// Node's `ws` (a strict RFC 6455 client and server) on both sides of
// wssproxy: the client users' Node services and test tools have, and the
// backend many of them run.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { ca, startBackend, startProxy, within } from './lib.mjs';

let backend, proxy;

before(async () => {
  backend = await startBackend();
  proxy = await startProxy([
    { path: '/wss', backend: `ws://${backend.addr}` },
    { path: '/echo', backend: `ws://${backend.addr}` },
  ]);
});

after(async () => {
  await backend?.stop();
  await proxy?.stop();
});

// open dials wss://localhost:PORT<path> through the proxy, trusting only the
// run's CA, and resolves once the handshake is done.
async function open(path, opts = {}, protocols = undefined) {
  const ws = new WebSocket(`wss://localhost:${proxy.addr.split(':').pop()}${path}`, protocols, { ca, ...opts });
  await within(10000, `open ${path}`, once(ws, 'open'));
  return ws;
}

function nextMessage(ws) {
  return within(20000, 'a message', once(ws, 'message')).then(([data, isBinary]) => ({ data, isBinary }));
}

test("the seeds' exchange: send tom, the worker answers ok, with X-Real-IP set", async () => {
  const ws = await open('/wss?id=seeds', { headers: { 'X-Real-IP': '6.6.6.6', 'X-Forwarded-For': '6.6.6.6' } });
  ws.send('tom');
  const { data, isBinary } = await nextMessage(ws);
  assert.equal(isBinary, false);
  assert.equal(data.toString(), 'ok');
  ws.close(1000, 'done');
  const seen = await within(10000, 'the backend to see the close', backend.closed('seeds'));
  assert.equal(seen.headers['x-real-ip'], '127.0.0.1', 'X-Real-IP is the TCP peer, not what the client sent');
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'https');
});

test('subprotocol: the backend chooses, the client sees its choice', async (t) => {
  for (const [offered, want] of [[['chat.v1', 'chat.v2'], 'chat.v2'], [['chat.v1'], 'chat.v1']]) {
    const ws = await open('/echo', {}, offered);
    assert.equal(ws.protocol, want, `offered ${offered}`);
    ws.close();
  }
  // RFC 6455 §4.1: a client that asked for subprotocols fails the connection
  // when the server picks none; the proxy must not invent one.
  const ws = new WebSocket(`wss://localhost:${proxy.addr.split(':').pop()}/echo`, ['mqtt'], { ca });
  const [err] = await within(10000, 'the refusal', once(ws, 'error'));
  assert.match(err.message, /Server sent no subprotocol/);
});

test('permessage-deflate: negotiated end to end, messages cross compressed', async () => {
  const ws = await open('/echo?id=deflate', { perMessageDeflate: true });
  assert.match(ws.extensions, /^permessage-deflate/, 'the client negotiated compression');
  const conn = [...backend.conns].find((c) => c.upgradeReq.url.includes('id=deflate'));
  assert.ok(conn, 'the backend has the connection');
  assert.equal(conn.extensions, 'permessage-deflate', 'the backend negotiated compression');
  const readBefore = conn._socket.bytesRead;
  const message = 'wssproxy '.repeat(128 * 1024); // 1.1 MiB that compresses well
  ws.send(message);
  const { data } = await nextMessage(ws);
  assert.equal(data.toString(), message);
  const onWire = conn._socket.bytesRead - readBefore;
  assert.ok(onWire < message.length / 20, `the backend read ${onWire} bytes for a ${message.length}-byte message: not compressed`);
  ws.close();

  const plain = await open('/echo', { perMessageDeflate: false });
  assert.equal(plain.extensions, '', 'no compression when the client does not offer it');
  plain.close();
});

test('pings with payloads both ways', async () => {
  const ws = await open('/echo?id=pings');
  const conn = [...backend.conns].find((c) => c.upgradeReq.url.includes('id=pings'));
  const backendPing = once(conn, 'ping');
  ws.ping('from the client');
  const [pong] = await within(10000, 'the pong', once(ws, 'pong'));
  assert.equal(pong.toString(), 'from the client');
  const [seen] = await within(10000, 'the backend to see the ping', backendPing);
  assert.equal(seen.toString(), 'from the client', 'the ping reached the backend with its payload');

  const clientPing = once(ws, 'ping');
  ws.send('ping from the backend');
  const [payload] = await within(10000, "the backend's ping", clientPing);
  assert.equal(payload.toString(), 'from the backend');
  const { data } = await nextMessage(ws);
  assert.equal(data.toString(), 'pong from the backend', "the client's automatic pong reached the backend");
  ws.close();
});

test('a close code and reason cross in both directions', async () => {
  const ws = await open('/echo?id=client-close');
  const closed = once(ws, 'close');
  ws.close(4000, 'client says bye');
  const seen = await within(10000, 'the backend to see the close', backend.closed('client-close'));
  assert.equal(seen.code, 4000);
  assert.equal(seen.reason, 'client says bye');
  const [code] = await within(10000, 'the close handshake', closed);
  assert.equal(code, 4000, "the backend's echoed close frame reached the client");

  const ws2 = await open('/echo?id=server-close');
  const closed2 = once(ws2, 'close');
  ws2.send('close 4001 server says bye');
  const [code2, reason2] = await within(10000, "the backend's close", closed2);
  assert.equal(code2, 4001);
  assert.equal(reason2.toString(), 'server says bye');
  const seen2 = await within(10000, 'the backend to finish', backend.closed('server-close'));
  assert.equal(seen2.code, 4001, "the client's reply reached the backend");
});

test('a 64 MiB binary message and a 64 MiB text message, echoed intact', async () => {
  const ws = await open('/echo', { perMessageDeflate: false, maxPayload: 128 << 20 });
  const binary = randomBytes(64 << 20);
  ws.send(binary);
  const got = await nextMessage(ws);
  assert.equal(got.isBinary, true);
  assert.equal(got.data.length, binary.length);
  assert.equal(createHash('sha256').update(got.data).digest('hex'), createHash('sha256').update(binary).digest('hex'));

  const text = 'ü'.repeat(32 << 20); // 64 MiB of two-byte UTF-8
  ws.send(text);
  const gotText = await nextMessage(ws);
  assert.equal(gotText.isBinary, false);
  assert.ok(gotText.data.equals(Buffer.from(text)), 'text echoed byte for byte');
  ws.close();
});
