import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import { tmp, writeImage } from './test/harness.ts';

const BIN = fileURLToPath(new URL('../bin/ble-ota.js', import.meta.url));
const hasAdapter =
  existsSync('/sys/class/bluetooth') && readdirSync('/sys/class/bluetooth').length > 0;

function cli(...args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('the installed bin (node bin/ble-ota.js)', () => {
  it('runs the TypeScript sources and exits with the command’s code', () => {
    const ok = cli('info', writeImage('bin.bin', { version: '3.0.0' }), '--json');
    expect(ok.code).toBe(ExitCode.OK);
    expect(JSON.parse(ok.stdout)).toMatchObject({ version: '3.0.0', chip: 'ESP32' });

    const missing = cli('info', `${tmp}/nothing.bin`);
    expect(missing.code).toBe(ExitCode.USAGE);
    expect(missing.stderr).toMatch(/^error: image file not found: /m);
  });

  it.skipIf(hasAdapter)('exits with NO_ADAPTER on a machine without Bluetooth', () => {
    const result = cli('scan', '--timeout', '1s');
    expect(result.code).toBe(ExitCode.NO_ADAPTER);
    expect(result.stderr).toMatch(/error: no Bluetooth adapter: .*\(hint: on Linux run as root/);
  });
});
