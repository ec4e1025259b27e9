// Benchmark peer: Bun's built-in WebSocket pub/sub (uWebSockets inside), speaking the same
// minimal STOMP subset as the bare broadcaster src/bin/ceiling.rs, so that the load
// generator drives both (and stompgate) the same way:
//
//   CONNECT / STOMP  -> CONNECTED (version 1.2, no heart-beats)
//   SUBSCRIBE        -> the socket joins the topic named by its destination header
//   SEND             -> one MESSAGE (subscription:0, as loadgen subscribes with id:0)
//                       published to every socket of that destination; the body as sent
//   DISCONNECT       -> RECEIPT, then close
//   receipt header   -> RECEIPT for SUBSCRIBE, SEND and DISCONNECT
//
// Nothing else: no parser beyond finding the command and two headers, no acks, no
// transactions. Frames may come several to a WebSocket message (split at NUL); a lone EOL
// is a client heart-beat and is ignored.
//
//   bun server.js [--port N] [--bind ADDR]     (port 0: a free one; the chosen one is printed)
//
// Bun's defaults are kept except `idleTimeout` (0: never close a silent client, as the
// ceiling does not; Bun's default of 120 s would close the idle and slow-consumer scenarios'
// clients, which send nothing once subscribed).

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = parseInt(arg('--port', process.env.PORT ?? '0'), 10);
const hostname = arg('--bind', '127.0.0.1');
const OFFERED = ['v12.stomp', 'v11.stomp', 'v10.stomp'];
const CONNECTED = 'CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:bun-peer\n\n\0';
let nextMsg = 0;

/** The value of header `name` in a frame head (`head` starts after the command line). */
function header(head, name) {
  const key = `\n${name}:`;
  const i = head.indexOf(key);
  if (i < 0) return undefined;
  const from = i + key.length;
  const end = head.indexOf('\n', from);
  return head.slice(from, end < 0 ? head.length : end);
}

function receipt(ws, head) {
  const id = header(head, 'receipt');
  if (id !== undefined) ws.send(`RECEIPT\nreceipt-id:${id}\n\n\0`);
}

function onFrame(server, ws, raw) {
  let s = 0;
  while (s < raw.length && (raw[s] === '\n' || raw[s] === '\r')) s++;
  if (s === raw.length) return; // heart-beat
  const f = s ? raw.slice(s) : raw;
  const headEnd = f.indexOf('\n\n');
  const head = headEnd < 0 ? f : f.slice(0, headEnd);
  if (f.startsWith('SEND')) {
    const dest = header(head, 'destination');
    if (dest === undefined) return;
    const body = headEnd < 0 ? '' : f.slice(headEnd + 2);
    server.publish(dest, `MESSAGE\ndestination:${dest}\nsubscription:0\nmessage-id:${nextMsg++}\n\n${body}\0`);
    receipt(ws, head);
  } else if (f.startsWith('SUBSCRIBE')) {
    const dest = header(head, 'destination');
    if (dest === undefined) return;
    ws.subscribe(dest);
    receipt(ws, head);
  } else if (f.startsWith('CONNECT') || f.startsWith('STOMP')) {
    ws.send(CONNECTED);
  } else if (f.startsWith('DISCONNECT')) {
    receipt(ws, head);
    ws.close();
  }
}

const server = Bun.serve({
  port,
  hostname,
  fetch(req, srv) {
    const offered = (req.headers.get('sec-websocket-protocol') ?? '').split(',').map((p) => p.trim());
    const proto = OFFERED.find((p) => offered.includes(p));
    const headers = proto ? { 'Sec-WebSocket-Protocol': proto } : undefined;
    if (srv.upgrade(req, { headers })) return undefined;
    return new Response('a STOMP-over-WebSocket peer: connect with a WebSocket\n', { status: 426 });
  },
  websocket: {
    idleTimeout: 0,
    message(ws, data) {
      const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
      let at = 0;
      for (;;) {
        const nul = text.indexOf('\0', at);
        if (nul < 0) {
          if (at < text.length) onFrame(server, ws, text.slice(at));
          break;
        }
        onFrame(server, ws, text.slice(at, nul));
        at = nul + 1;
      }
    },
  },
});

console.log(`bun-peer listening on http://${hostname}:${server.port} (Bun ${Bun.version})`);
