import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { buildAppImage, signImage } from '@esp-ble-ota/protocol';
import { SerialPort } from 'serialport';
import { afterEach, describe, expect, it } from 'vitest';
import { ModeledAirScheduler } from './link/modeled-scheduler.ts';
import { startVirtualRig, type VirtualRig } from './rig.ts';
import { rigSigningKey } from './signing-key.ts';

const firmwareDir = join(import.meta.dirname, '..', '..', '..', 'firmware');

import { findByName, runBaselineExchange } from './testing/baseline-client.ts';
import { appImage } from './testing/images.ts';

/** Collects a pty's output until `pattern` shows up. */
function watchConsole(path: string) {
  const port = new SerialPort({ path, baudRate: 115200 });
  let text = '';
  const waiters: Array<() => void> = [];
  port.on('data', (chunk: Buffer) => {
    text += stripVTControlCharacters(chunk.toString('latin1'));
    for (const w of waiters.splice(0)) w();
  });
  return {
    get text() {
      return text;
    },
    async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = text.match(pattern);
        if (m) return m;
        if (Date.now() > deadline) {
          throw new Error(`console never showed ${pattern}; last output:\n${text.slice(-2000)}`);
        }
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
    close: () => new Promise<void>((resolve) => port.close(() => resolve())),
  };
}

describe('virtual rig, through the real noble package and a real pty', () => {
  let rig: VirtualRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it('refuses a board without a BLE radio (ESP32-S2) before it starts anything', async () => {
    await expect(startVirtualRig({ boards: [{ chip: 'esp32s2' }] })).rejects.toThrow(
      /board 1: the ESP32-S2 has no Bluetooth LE radio, .*; simulate a chip with one \(esp32, esp32c3, esp32s3/,
    );
  });

  it('halts a board that only boot-loops (no app it can run in any slot) and says why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rig-bootloop-'));
    try {
      const image = join(dir, 'no-program.bin');
      await writeFile(
        image,
        buildAppImage({
          chip: 'esp32',
          project: 'x',
          version: '0.0.1',
          payload: new Uint8Array(4096),
        }),
      );
      rig = await startVirtualRig({ profile: 'immediate', boards: [{ image }] });
      const board = rig.boards[0];
      if (!board) throw new Error('no board');
      await board.waitReady();
      expect(board.device.state).toBe('halted');
      expect(board.boots).toBe(3);
      expect(board.faultLog.map((f) => [f.name, f.detail])).toEqual([
        ['boot-loop', 'halted after 3 panic restarts in a row without an app running'],
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('updates the firmware with the baseline exchange; the console then shows the new version', async () => {
    rig = await startVirtualRig({ profile: 'immediate', boards: [{ restartDelayMs: 0 }] });
    const board = rig.boards[0];
    if (!board) throw new Error('no board');
    const console = watchConsole(board.serialPath);
    const image = await appImage('2.0.0-rig-test', join(board.flashPath, '..'));

    const pairings: string[] = [];
    board.peripheral.on('pairing', (_conn, outcome) => pairings.push(outcome.result));
    const p = await findByName(rig.noble, 'esp32');
    expect(p.address).toBe(board.address);
    await p.connectAsync();
    const result = await runBaselineExchange(p, image);
    // The firmware's secure default: its OTA writes need an encrypted link, so noble's first
    // write made it pair (LE legacy Just Works) and the device kept the bond.
    expect(pairings).toEqual(['paired']);
    expect(board.peripheral.bonds.size).toBe(1);

    expect(result.packetSize).toBe(253); // noble asks for MTU 256; the firmware prefers 517
    expect(result.packets).toBe(Math.ceil(image.length / 253));
    expect(result.notifications).toEqual([0x02, 0x05]);
    expect(result.disconnected).toBe(true);

    // The second boot: the bootloader loads ota_1, the new app confirms itself.
    await console.waitFor(/boot: Loaded app from partition at offset 0x200000/);
    const [, version] = await console.waitFor(
      /app_init: App version:\s+(\S+)\r\n(?![\s\S]*App version)/,
    );
    expect(version).toBe('2.0.0-rig-test');
    await console.waitFor(/ble_ota: Running partition: ota_1 at 0x200000, state pending-verify/);
    await console.waitFor(/main: new image confirmed/);
    await console.waitFor(
      /ble_ota_host: link: OTA writes need an encrypted link \(pairing or bonding/,
    );
    await board.waitReady();
    expect(board.device.state).toBe('running');
    expect(board.boots).toBe(2);
    await console.close();
  }, 120_000);

  it('models the baseline exchange of a 500 kB image from a macOS central to a classic ESP32 at 75-105 s', async () => {
    rig = await startVirtualRig({ profile: 'macos-esp32', boards: [{ restartDelayMs: 0 }] });
    const board = rig.boards[0];
    if (!board) throw new Error('no board');
    const uart = watchConsole(board.serialPath);
    // A valid image of 500 kB (the baseline author's figure); what it holds does not matter
    // here. Signed with the rig's key, which the board trusts by default (121 sectors, then the
    // signature sector).
    const image = signImage(
      buildAppImage({
        chip: 'esp32',
        project: 'esp_ble_ota',
        version: '2.0.0-timing',
        payload: new Uint8Array(495_000).fill(0x5a),
      }),
      [(await rigSigningKey()).key],
    );
    expect(image.length).toBeGreaterThan(499_000);
    expect(image.length).toBeLessThan(501_000);

    const p = await findByName(rig.noble, 'esp32');
    await p.connectAsync();
    const link = board.currentLink;
    if (!link) throw new Error('no link');
    // The device's receive buffering is the firmware's own configuration, declared once in
    // sdkconfig.defaults and announced by its host build, not the model's IDF default of 24.
    const sdkconfig = await readFile(join(firmwareDir, 'sdkconfig.defaults'), 'utf8');
    const configured = Number(
      sdkconfig.match(/^CONFIG_BT_NIMBLE_TRANSPORT_ACL_FROM_LL_COUNT=(\d+)$/m)?.[1],
    );
    expect(configured).toBeGreaterThan(24);
    expect(link).toBeInstanceOf(ModeledAirScheduler);
    expect((link as ModeledAirScheduler).options.peripheralRxBuffers).toBe(configured);
    const result = await runBaselineExchange(p, image);
    const modeledSeconds = link.nowUs / 1e6;

    expect(result.packetSize).toBe(182); // macOS offers MTU 185
    expect(result.notifications).toEqual([0x02, 0x05]);
    console.log(
      `baseline exchange, macos-esp32, ${image.length} B: modeled ${modeledSeconds.toFixed(1)} s (${(image.length / 1000 / modeledSeconds).toFixed(2)} kB/s)`,
    );
    expect(modeledSeconds).toBeGreaterThanOrEqual(75);
    expect(modeledSeconds).toBeLessThanOrEqual(105);
    // The device's own account of the transfer counts modeled time too, as a board's would,
    // not the second of wall time the rig took (REQUEST to DONE: all but the first packet write).
    const done = await uart.waitFor(/ble_ota: OTA done: \d+ bytes in \d+ packets, (\d+) ms/);
    const deviceMs = Number(done[1]);
    expect(deviceMs / 1000).toBeGreaterThan(modeledSeconds * 0.95);
    expect(deviceMs / 1000).toBeLessThanOrEqual(modeledSeconds);
    await uart.close();
  }, 120_000);
});
