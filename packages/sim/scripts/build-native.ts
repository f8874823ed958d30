// Builds the virtual board's native helpers (the USB-UART bridge) into build/.
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
await mkdir(join(root, 'build'), { recursive: true });
const cc = process.env.CC ?? 'cc';
await execa(
  cc,
  [
    '-std=c11',
    '-O2',
    '-Wall',
    '-Wextra',
    '-Werror',
    '-o',
    join(root, 'build', 'uart-bridge'),
    join(root, 'native', 'uart_bridge.c'),
  ],
  { stdio: 'inherit' },
);
