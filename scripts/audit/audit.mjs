// graphql-http's conformance audit (GraphQL over HTTP) against a running CostGraph, then the
// websocket subprotocol checks, as node's `ws` client sees them. Run by run.sh from .ci/run:
//
//   node audit.mjs http://127.0.0.1:PORT/graphql ACCESS_TOKEN
//
// Exits non-zero on any audit that is not "ok" (a MUST error or a SHOULD warning alike).
import { auditServer } from 'graphql-http';
import WebSocket from 'ws';

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node audit.mjs GRAPHQL_URL ACCESS_TOKEN');
  process.exit(2);
}

// Every request carries the token: /graphql answers 401 without one.
const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...(init.headers || {}), authorization: `Bearer ${token}` } });

let failures = 0;
const results = await auditServer({ url, fetchFn });
for (const result of results) {
  if (result.status !== 'ok') {
    failures += 1;
    let body = '';
    try {
      body = await result.response.text();
    } catch {
      // the response body was already read by the audit
    }
    console.log(`${result.status.toUpperCase()} ${result.id} ${result.name}: ${result.reason}`);
    if (body) console.log(`  body: ${body.slice(0, 300)}`);
  }
}
console.log(`graphql-http audit: ${results.length - failures} ok, ${failures} not ok`);

// A client offering only the legacy graphql-ws subprotocol: refused in the handshake, which
// `ws` reports as an unexpected response (not an opened socket closed later, nor a protocol
// error about a missing subprotocol).
const wsUrl = url.replace(/^http/, 'ws');
function legacyRefusal() {
  return new Promise((resolve) => {
    const socket = new WebSocket(wsUrl, ['graphql-ws']);
    socket.on('unexpected-response', (request, response) => {
      let body = '';
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => {
        request.destroy();
        resolve({ status: response.statusCode, body });
      });
    });
    socket.on('open', () => {
      socket.close();
      resolve({ status: 101, body: 'opened' });
    });
    socket.on('error', (error) => resolve({ status: 0, body: String(error) }));
  });
}
const refused = await legacyRefusal();
if (refused.status === 400 && refused.body.includes('graphql-transport-ws')) {
  console.log('websocket: the legacy graphql-ws subprotocol is refused in the handshake (400)');
} else {
  failures += 1;
  console.log(`FAIL websocket legacy subprotocol: ${refused.status} ${refused.body}`);
}

// And graphql-transport-ws is accepted, with the token in connection_init.
function acknowledged() {
  return new Promise((resolve) => {
    const socket = new WebSocket(wsUrl, ['graphql-transport-ws']);
    const timer = setTimeout(() => resolve('timeout'), 10000);
    socket.on('open', () => {
      socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
    });
    socket.on('message', (data) => {
      clearTimeout(timer);
      socket.close();
      resolve(JSON.parse(String(data)).type);
    });
    socket.on('error', (error) => resolve(String(error)));
  });
}
const ack = await acknowledged();
if (ack === 'connection_ack') {
  console.log('websocket: graphql-transport-ws acknowledged');
} else {
  failures += 1;
  console.log(`FAIL websocket graphql-transport-ws: ${ack}`);
}

process.exit(failures ? 1 : 0);
