#!/usr/bin/env -S npx tsx
import { main } from './main.ts';

// `pnpm ble-ota ...` runs the root script in the repository root; paths on the command line
// are meant relative to where the user typed it.
const invokedFrom = process.env.INIT_CWD;
if (process.env.npm_lifecycle_event === 'ble-ota' && invokedFrom !== undefined) {
  process.chdir(invokedFrom);
}

const controller = new AbortController();
let interrupted = false;
function onSigint(): void {
  // First Ctrl-C: stop cleanly (disconnect, close the port) and exit 130. Second: at once.
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort(new Error('interrupted (Ctrl-C)'));
}
process.on('SIGINT', onSigint);

// noble's HCI bindings add their own SIGINT handler when the adapter opens, and exit(1) at once
// if theirs is the last one. Keep ours last, so Ctrl-C ends the command cleanly with 130.
process.on('newListener', (event) => {
  if (event !== 'SIGINT') return;
  setImmediate(() => {
    const listeners = process.listeners('SIGINT');
    if (listeners.at(-1) === onSigint) return;
    process.removeListener('SIGINT', onSigint);
    process.on('SIGINT', onSigint);
  });
});

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
});
// noble keeps its HCI socket open and would keep the process alive.
process.exit(code);
