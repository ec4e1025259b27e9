// A real stompgate for the Node tests: started on a free loopback port with the given
// flags, stopped with SIGTERM. STOMPGATE_BIN picks the binary (scripts/test.sh sets it).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const BIN = resolve(process.env.STOMPGATE_BIN ?? '../../target/debug/stompgate');

/** Starts the gateway with `args` after `--port 0 --bind 127.0.0.1`; resolves to { proc, port, url }. */
export function startGateway(args = []) {
  return new Promise((ok, fail) => {
    const proc = spawn(BIN, ['--port', '0', '--bind', '127.0.0.1', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => fail(new Error('gateway did not start within 20 s')), 20000);
    proc.on('exit', (code) => fail(new Error(`gateway exited early (${code})`)));
    proc.stdout.on('data', (chunk) => {
      const m = /stompgate listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(chunk.toString());
      if (m) {
        clearTimeout(timer);
        const port = Number(m[1]);
        ok({ proc, port, url: `ws://127.0.0.1:${port}/ws` });
      }
    });
  });
}

/** SIGTERM, then its exit code (or 'timeout' after 10 s). */
export async function stopGateway(gateway) {
  const exited = new Promise((ok) => gateway.proc.once('exit', ok));
  gateway.proc.kill('SIGTERM');
  return Promise.race([exited, new Promise((ok) => setTimeout(() => ok('timeout'), 10000))]);
}
