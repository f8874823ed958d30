#!/usr/bin/env -S npx tsx
import { main } from './main.ts';

const controller = new AbortController();
let interrupted = false;
process.on('SIGINT', () => {
  // First Ctrl-C: stop cleanly (disconnect, close the port). Second: leave at once.
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort(new Error('interrupted (Ctrl-C)'));
});

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
});
// noble keeps its HCI socket open and would keep the process alive.
process.exit(code);
