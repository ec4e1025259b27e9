// STOMP frames shared by the k6 scripts.

/** CONNECT for STOMP 1.0-1.2 without heart-beats; LOGIN / PASSCODE from the environment. */
export function connectFrame() {
  let f = 'CONNECT\naccept-version:1.2,1.1,1.0\nhost:/\nheart-beat:0,0\n';
  if (__ENV.LOGIN) f += `login:${__ENV.LOGIN}\n`;
  if (__ENV.PASSCODE) f += `passcode:${__ENV.PASSCODE}\n`;
  return f + '\n\0';
}
