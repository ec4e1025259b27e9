// STOMP frames of the k6 scripts, in one module that both k6 and Node load (nothing
// k6-only at module top): tests/node/k6-frames.test.mjs sends these very frames to a real
// gateway and checks that CONNECTED, MESSAGE and RECEIPT come back.

// k6 gives the environment as the global __ENV; elsewhere (Node) there is none.
const ENV = typeof __ENV !== 'undefined' ? __ENV : {};

/** CONNECT for STOMP 1.0-1.2 without heart-beats; LOGIN / PASSCODE from the environment. */
export function connectFrame(env = ENV) {
  let f = 'CONNECT\naccept-version:1.2,1.1,1.0\nhost:/\nheart-beat:0,0\n';
  if (env.LOGIN) f += `login:${env.LOGIN}\n`;
  if (env.PASSCODE) f += `passcode:${env.PASSCODE}\n`;
  return f + '\n\0';
}

/** SUBSCRIBE with ack:auto; with `receipt`, the server confirms it by a RECEIPT. */
export function subscribeFrame(destination, { id = '0', receipt } = {}) {
  let f = `SUBSCRIBE\nid:${id}\ndestination:${destination}\nack:auto\n`;
  if (receipt) f += `receipt:${receipt}\n`;
  return f + '\n\0';
}

/** SEND of a JSON body (stompgate's chat takes `{"text": ...}` on /app/market/<id>/chat). */
export function sendFrame(destination, body, { receipt } = {}) {
  let f = `SEND\ndestination:${destination}\ncontent-type:application/json\n`;
  if (receipt) f += `receipt:${receipt}\n`;
  return `${f}\n${body}\0`;
}

/** The body fanout-latency.js publishes: its send time (ms) in a token. */
export function latencyBody(sentMs) {
  return JSON.stringify({ text: `@@k6:${sentMs}@@` });
}

/** Send times (ms) of every latency token in a received WebSocket message. */
export function latencyTokens(data) {
  return [...data.matchAll(/@@k6:(\d+)@@/g)].map((m) => parseInt(m[1], 10));
}

/** The command of a received frame (leading EOLs, i.e. heart-beats, skipped). */
export function command(data) {
  const frame = data.replace(/^[\r\n]+/, '');
  const end = frame.search(/\r?\n|\0/);
  return end < 0 ? frame : frame.slice(0, end);
}
