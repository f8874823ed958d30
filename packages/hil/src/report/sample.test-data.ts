/**
 * A realistic report of a virtual-rig run for the report writers' tests: console logs shaped
 * like ESP-IDF output (ANSI colours included), throughput samples of a real-looking transfer.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyBaselineVerdicts, compareToBaseline } from '../baseline.ts';
import type { Baseline, HilReport, ThroughputSample } from '../model.ts';

export const HAPPY_LOG = [
  'ets Jun  8 2016 00:22:57',
  '',
  'rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)',
  '\u001b[0;32mI (29) boot: ESP-IDF v5.2.1 2nd stage bootloader\u001b[0m',
  '\u001b[0;32mI (73) boot: Loaded app from partition at offset 0x110000\u001b[0m',
  '\u001b[0;32mI (312) cpu_start: App version:      0.1.0-hil.42\u001b[0m',
  '\u001b[0;32mI (1204) ble_ota: self-test passed, image confirmed\u001b[0m',
  '',
].join('\n');

export const ROLLBACK_LOG = [
  '\u001b[0;31mE (1302) ble_ota: self-test failed: ota_control not registered\u001b[0m',
  'ets Jun  8 2016 00:22:57',
  '\u001b[0;32mI (73) boot: Loaded app from partition at offset 0x10000\u001b[0m',
  '',
].join('\n');

/** Cumulative bytes of a 200 kB transfer at about 21 kB/s with a stall in the middle. */
export function samples(totalBytes: number, kBps: number): ThroughputSample[] {
  const out: ThroughputSample[] = [{ tMs: 0, bytes: 0 }];
  let bytes = 0;
  let t = 0;
  while (bytes < totalBytes) {
    t += 250;
    // A 500 ms stall at 40 %: the chart should show the dip.
    const stalled = bytes > totalBytes * 0.4 && bytes < totalBytes * 0.45 && t % 1000 < 500;
    bytes = Math.min(totalBytes, bytes + (stalled ? 0 : kBps * 250));
    out.push({ tMs: t, bytes: Math.round(bytes) });
  }
  return out;
}

export const BASELINE: Baseline = {
  schemaVersion: 1,
  scenarios: {
    'happy-path': {
      'linux-noble-esp32': {
        transferSeconds: 9.5,
        kBps: 21.05,
        imageBytes: 200_000,
        recordedAt: '2026-11-20T10:00:00.000Z',
        firmwareVersion: '0.1.0-hil.40',
      },
    },
    'link-loss-retry': {
      'linux-noble-esp32': {
        transferSeconds: 8,
        kBps: 25,
        imageBytes: 200_000,
        recordedAt: '2026-11-20T10:00:00.000Z',
      },
    },
  },
};

/** Writes the console logs into `dir` and returns a report that names them. */
export function sampleReport(dir: string): HilReport {
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const happyLog = join(logs, 'happy-path.log');
  const rollbackLog = join(logs, 'self-test-rollback.log');
  writeFileSync(happyLog, HAPPY_LOG);
  writeFileSync(rollbackLog, ROLLBACK_LOG);
  const report: HilReport = {
    rig: 'sim',
    target: 'esp32',
    linkProfile: 'linux-noble-esp32',
    startedAt: '2026-11-24T21:00:00.000Z',
    finishedAt: '2026-11-24T21:00:41.500Z',
    firmware: {
      version: '0.1.0-hil.42',
      image: 'firmware/host/build/ble-ota-app.bin',
      size: 200_000,
      sha256: '3f'.repeat(32),
      built: false,
      buildMs: 18_900,
    },
    scenarios: [
      {
        id: 'happy-path',
        title: 'update over BLE and boot the new firmware',
        suite: 'ota',
        result: 'passed',
        phases: {
          connect: { wallMs: 45, modeledMs: 310 },
          transfer: { wallMs: 820, modeledMs: 9_800 },
          finalize: { wallMs: 30, modeledMs: 420 },
          reboot: { wallMs: 510, modeledMs: 1_300 },
        },
        transferSeconds: 9.8,
        kBps: 20.41,
        imageBytes: 200_000,
        throughput: samples(200_000, 21),
        consoleLog: happyLog,
        linkProfile: 'linux-noble-esp32',
        fromVersion: '0.1.0-hil.41',
        toVersion: '0.1.0-hil.42',
        checks: [
          { name: 'booted the other slot', ok: true, detail: '0x110000' },
          { name: 'self-test confirmed', ok: true },
        ],
      },
      {
        id: 'link-loss-retry',
        title: 'link lost mid-transfer, then a clean retry',
        suite: 'faults',
        result: 'passed',
        phases: {
          connect: { wallMs: 50, modeledMs: 600 },
          transfer: { wallMs: 900, modeledMs: 12_400 },
          finalize: { wallMs: 25, modeledMs: 410 },
          reboot: { wallMs: 490, modeledMs: 1_290 },
        },
        transferSeconds: 12.4,
        kBps: 16.13,
        imageBytes: 200_000,
        throughput: samples(200_000, 16),
        linkProfile: 'linux-noble-esp32',
        faults: ['disconnect-at-40%'],
      },
      {
        id: 'self-test-rollback',
        title: 'new firmware fails its self-test & the bootloader rolls back',
        suite: 'faults',
        result: 'failed',
        error: {
          message:
            'expected "Loaded app from partition at offset 0x110000" within 10 s\nlast lines: <boot>',
          stack:
            'Error: expected "Loaded app from partition at offset 0x110000" within 10 s\n    at verify (runner.ts:120:11)',
        },
        phases: { connect: { wallMs: 40 }, transfer: { wallMs: 800, modeledMs: 9_700 } },
        consoleLog: rollbackLog,
        faults: ['self-test-fails'],
      },
      {
        id: 'baseline-client',
        title: "the baseline's Python-style client updates our firmware",
        suite: 'compat',
        result: 'skipped',
        skipReason: 'bench rig: no BLE adapter configured (set HIL_BLE_NAME or bench.bleName)',
        phases: {},
      },
    ],
  };
  return applyBaselineVerdicts(
    report,
    compareToBaseline(report, BASELINE, { transferSlowerPct: 15 }),
  );
}
