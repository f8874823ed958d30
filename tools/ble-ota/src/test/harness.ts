import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BuildAppImageOptions, buildAppImage } from '@esp-ble-ota/protocol';
import type { CliIo, OutputStream, SimOptions, VirtualRig } from '../io.ts';
import { main } from '../main.ts';

export class Sink implements OutputStream {
  text = '';
  isTTY = false;
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
  /** Lines parsed as JSON (for --json output). */
  jsonLines(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  out: Sink;
  /** How often the command reached for a radio (real adapter or rig). */
  radioOpened: number;
}

export interface RunOptions {
  startRig?: (options: SimOptions) => Promise<VirtualRig>;
  signal?: AbortSignal;
  /** The store of images flashed (BLE_OTA_IMAGE_STORE); default a new empty one per run. */
  imageStore?: string;
}

/** Run the CLI in-process. Without a rig, any attempt to use a radio is counted and refused. */
export async function run(argv: string[], options: RunOptions = {}): Promise<RunResult> {
  const stdout = new Sink();
  const stderr = new Sink();
  let radioOpened = 0;
  const io: CliIo = {
    stdout,
    stderr,
    loadNoble: async () => {
      radioOpened++;
      throw new Error('test: no radio here');
    },
    startRig: async (sim) => {
      radioOpened++;
      if (options.startRig === undefined) throw new Error('test: no rig here');
      return options.startRig(sim);
    },
  };
  if (options.signal !== undefined) io.signal = options.signal;
  // Never the user's ~/.cache, and no run sees what an earlier test flashed unless it asks.
  process.env.BLE_OTA_IMAGE_STORE = options.imageStore ?? mkdtempSync(join(tmp, 'image-store-'));
  const code = await main(argv, io);
  return { code, stdout: stdout.text, stderr: stderr.text, out: stdout, radioOpened };
}

export const tmp = mkdtempSync(join(tmpdir(), 'ble-ota-test-'));

export function writeImage(name: string, options: Partial<BuildAppImageOptions> = {}): string {
  const bytes = buildAppImage({ chip: 'esp32', project: 'blink', version: '2.1.0', ...options });
  return writeBytes(name, bytes);
}

export function writeBytes(name: string, bytes: Uint8Array): string {
  const path = join(tmp, name);
  writeFileSync(path, bytes);
  return path;
}

/** A sparse file of `size` zero bytes: a huge file that takes no disk space. */
export function writeSparse(name: string, size: number): string {
  const path = join(tmp, name);
  writeFileSync(path, '');
  truncateSync(path, size);
  return path;
}

/** A named pipe (POSIX only). */
export function makeFifo(name: string): string {
  const path = join(tmp, name);
  execFileSync('mkfifo', [path]);
  return path;
}

/**
 * Runs the CLI with `fifo` among its paths. An open() of a FIFO blocks until the other end is
 * opened, forever with nobody there: after `ms` this opens the other end (read and write, which
 * never blocks) and closes it again, so a command stuck there ends and the test can fail on
 * `blocked` rather than hang.
 */
export async function runNearFifo(
  argv: string[],
  fifo: string,
  ms = 3000,
): Promise<RunResult & { blocked: boolean }> {
  let blocked = false;
  const timer = setTimeout(() => {
    blocked = true;
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    setTimeout(() => closeSync(fd), 100);
  }, ms);
  try {
    return { ...(await run(argv)), blocked };
  } finally {
    clearTimeout(timer);
  }
}

/** The firmware's host build (device program, app, image tool). */
export const hostBuild = fileURLToPath(
  new URL('../../../../firmware/host/build/', import.meta.url),
);
export const hostAppElf = join(hostBuild, 'ble-ota-app.elf');

/**
 * An ESP app image of the firmware's host app, as idf.py would make it, with our version (and
 * anti-rollback counter): one the simulated board can run.
 */
export function hostImage(version: string, chip = 'esp32', secureVersion = 0): string {
  const out = join(tmp, `host-${chip}-${version}-sv${secureVersion}.bin`);
  execFileSync(join(hostBuild, 'esp-app-image'), [
    '--chip',
    chip,
    '--version',
    version,
    '--project',
    'esp_ble_ota',
    '--idf-ver',
    'v5.3.1',
    '--secure-version',
    String(secureVersion),
    '--out',
    out,
    hostAppElf,
  ]);
  return out;
}
