// The virtual board's UART bridge: a pty, opened like /dev/ttyUSB0 on a bench.
import { existsSync } from 'node:fs';
import { UartBridge } from '@esp-ble-ota/sim';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import { run, tmp, writeBytes } from './test/harness.ts';

const bridges: UartBridge[] = [];
afterEach(async () => {
  for (const b of bridges.splice(0)) await b.close();
});

async function bridge(): Promise<UartBridge> {
  const b = await UartBridge.open();
  bridges.push(b);
  return b;
}

const BOOT = [
  'ets Jun  8 2016 00:22:57\r\n',
  'rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n',
  '\x1b[0;32mI (29) boot: ESP-IDF v5.3.1 2nd stage bootloader\x1b[0m\r\n',
  '\x1b[0;32mI (312) cpu_start: App version:      2.0.0\x1b[0m\r\n',
];

describe('ble-ota monitor', () => {
  it('prints the console and stops at --until', async () => {
    const b = await bridge();
    // Bytes sent before monitor opened the port would be a test of the pty, not of monitor.
    let feeding: ReturnType<typeof setInterval> | undefined;
    const start = setTimeout(() => {
      feeding = setInterval(() => {
        const next = BOOT.shift();
        if (next !== undefined) b.write(next);
      }, 30);
    }, 300);
    try {
      const result = await run(['monitor', b.path, '--until', 'App version', '--timeout', '10s']);
      expect(result.code).toBe(ExitCode.OK);
      expect(result.stdout).toContain('rst:0x1 (POWERON_RESET)');
      expect(result.stdout).toContain('I (312) cpu_start: App version:      2.0.0');
    } finally {
      clearTimeout(start);
      clearInterval(feeding);
    }
  });

  it('exits with TIMEOUT when the text does not appear', async () => {
    const b = await bridge();
    b.write('I (10) boot: nothing to see\r\n');
    const result = await run(['monitor', b.path, '--until', 'App version', '--timeout', '300ms']);
    expect(result.code).toBe(ExitCode.TIMEOUT);
    expect(result.stderr).toMatch(/"App version" did not appear within 300 ms/);
  });

  it('explains that a port without modem lines cannot reset the board', async () => {
    const b = await bridge();
    const result = await run(['monitor', b.path, '--reset', '--timeout', '1s']);
    expect(result.code).toBe(ExitCode.USAGE);
    expect(result.stderr).toMatch(/cannot reset the board through .*DTR\/RTS/);
  });

  it('refuses a regular file and a directory as not a serial port, saying what they are', async () => {
    const file = writeBytes('console.log', new TextEncoder().encode('I (10) boot: saved\n'));
    for (const [path, what] of [
      [file, 'a regular file'],
      [tmp, 'a directory'],
    ] as const) {
      const result = await run(['monitor', path, '--timeout', '1s']);
      expect(result.code).toBe(ExitCode.USAGE);
      expect(result.stderr).toBe(
        `error: ${path} is ${what}, not a serial port; pass the board's serial port (e.g. /dev/ttyUSB0 or /dev/ttyACM0; ls /dev/ttyUSB* /dev/ttyACM*), or --sim for the virtual rig\n`,
      );
    }
  });

  it.skipIf(!existsSync('/dev/null'))(
    'refuses a character device that is no terminal (/dev/null) as not a serial port',
    async () => {
      const result = await run(['monitor', '/dev/null', '--timeout', '1s']);
      expect(result.code).toBe(ExitCode.USAGE);
      expect(result.stderr).toMatch(
        /^error: \/dev\/null is a character device but not a serial port \(it takes no serial settings: .*\); pass the board's serial port \(e\.g\. \/dev\/ttyUSB0/,
      );
      // a usage error: no stack trace
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    },
  );

  it('names a serial port that does not exist', async () => {
    const result = await run(['monitor', '/dev/ttyNOPE0', '--timeout', '1s']);
    expect(result.code).toBe(ExitCode.USAGE);
    expect(result.stderr).toMatch(
      /serial port not found: \/dev\/ttyNOPE0; is the board plugged in\?/,
    );
  });
});
