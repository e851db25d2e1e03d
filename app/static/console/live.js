// Subscriptions over graphql-transport-ws on /graphql, the token in connection_init.

import { storedToken } from './api.js';

const decoder = new TextDecoder();

export function subscribe(query, variables, { next, error, status }) {
  let socket = null;
  let closed = false;
  let retries = 0;

  const open = () => {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    socket = new WebSocket(`${scheme}//${location.host}/graphql`, 'graphql-transport-ws');
    socket.binaryType = 'arraybuffer'; // the server may send its pre-serialized bytes as binary
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({
        type: 'connection_init',
        payload: { Authorization: `Bearer ${storedToken()}` },
      }));
    });
    socket.addEventListener('message', (message) => {
      const text = typeof message.data === 'string' ? message.data : decoder.decode(message.data);
      const data = JSON.parse(text);
      if (data.type === 'connection_ack') {
        retries = 0;
        status?.('live');
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
      } else if (data.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      } else if (data.type === 'next') {
        if (data.payload.errors?.length) error?.(data.payload.errors);
        else next(data.payload.data);
      } else if (data.type === 'error') {
        error?.(data.payload);
      }
    });
    socket.addEventListener('close', (event) => {
      if (closed) return;
      status?.('reconnecting');
      // 4400-4499: the server refused (a bad token, a bad document): retrying would not help.
      if (event.code >= 4400 && event.code < 4500) {
        error?.([{ message: event.reason || `closed (${event.code})` }]);
        return;
      }
      retries += 1;
      setTimeout(() => closed || open(), Math.min(30000, 1000 * 2 ** Math.min(retries, 5)));
    });
  };

  open();
  return () => {
    closed = true;
    socket?.close(1000);
  };
}
