import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stripAnsi } from './junit.ts';
import { sampleReport } from './sample.test-data.ts';
import { baselineCell, formatSummary } from './summary.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hil-summary-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The table's body rows as arrays of trimmed cells. */
function rows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('│') || l.startsWith('|'))
    .map((l) =>
      l
        .split(/[│|]/)
        .slice(1, -1)
        .map((c) => c.trim()),
    );
}

describe('formatSummary', () => {
  it('is plain ASCII off a terminal, box-drawn on one, and never cuts a scenario id', () => {
    const report = sampleReport(dir);
    const long = 'v2-refusals/an-image-that-is-not-a-valid-esp-app-invalid-image-at-end';
    const first = report.scenarios[0];
    if (!first) throw new Error('no scenario');
    report.scenarios[0] = { ...first, id: long };
    const plain = formatSummary(report);
    expect(/^[\x20-\x7e\n]*$/.test(plain)).toBe(true);
    expect(plain).toContain(`| ${long} |`);
    const widths = new Set(
      plain
        .split('\n')
        .filter((l) => l.startsWith('|') || l.startsWith('+'))
        .map((l) => l.length),
    );
    expect(widths.size).toBe(1);
    const boxed = formatSummary(report, { unicode: true });
    expect(boxed).toContain(`│ ${long} │`);
    expect(boxed.split('\n')[1]?.startsWith('┌')).toBe(true);
  });

  it('prints scenario, result, transfer time, kB/s and the baseline comparison', () => {
    const text = formatSummary(sampleReport(dir));
    expect(rows(text)).toEqual([
      ['Scenario', 'Result', 'Transfer', 'kB/s', 'vs baseline'],
      ['happy-path', 'passed', '9.8 s', '20.4', '+3% vs 9.5 s'],
      ['link-loss-retry', 'FAILED', '12.4 s', '16.1', '+55% vs 8.0 s REGRESSION'],
      ['self-test-rollback', 'FAILED', '-', '-', '-'],
      ['baseline-client', 'skipped', '-', '-', '-'],
    ]);
    expect(text).not.toContain('\u001b');
  });

  it('says where it ran, the counts, and why each failure failed', () => {
    const text = formatSummary(sampleReport(dir));
    const lines = text.split('\n');
    expect(lines[0]).toBe(
      'HIL run on sim, esp32, linux-noble-esp32, firmware 0.1.0-hil.42 (build cached)',
    );
    expect(text).toContain('1 passed, 2 failed, 1 skipped in 41.5 s');
    expect(text).toContain('Transfer times on the virtual rig are modeled link time.');
    expect(text).toContain(
      '  link-loss-retry: baseline: transfer 12.4 s is 55% slower than the baseline 8.0 s (threshold 15%)',
    );
    expect(text).toContain(
      '  self-test-rollback: expected "Loaded app from partition at offset 0x110000" within 10 s\n    last lines: <boot>',
    );
    expect(text).toContain(`    console log: ${join(dir, 'logs', 'self-test-rollback.log')}`);
    expect(text).toContain(
      '  baseline-client: bench rig: no BLE adapter configured (set HIL_BLE_NAME or bench.bleName)',
    );
  });

  it('colours results only when asked', () => {
    const coloured = formatSummary(sampleReport(dir), { color: true });
    expect(coloured).toContain('\u001b[32mpassed\u001b[0m');
    expect(coloured).toContain('\u001b[31mFAILED\u001b[0m');
    expect(rows(stripAnsi(coloured))).toEqual(rows(formatSummary(sampleReport(dir))));
  });

  it('a green run has no failure section', () => {
    const report = sampleReport(dir);
    const green = { ...report, scenarios: report.scenarios.slice(0, 1) };
    const text = formatSummary(green);
    expect(text).toContain('1 passed, 0 failed, 0 skipped');
    expect(text).not.toContain('Failures:');
    expect(text).not.toContain('Skipped:');
  });
});

describe('baselineCell', () => {
  it('shows the signed change and the baseline figure', () => {
    const base = { scenarioId: 'a', key: 'k', ok: true, message: '' };
    expect(baselineCell(undefined)).toBe('-');
    expect(baselineCell({ ...base, status: 'no-baseline' })).toBe('no baseline');
    expect(baselineCell({ ...base, status: 'faster', deltaPct: -14.7, baselineSeconds: 9.5 })).toBe(
      '-15% vs 9.5 s',
    );
    expect(baselineCell({ ...base, status: 'within', deltaPct: 0.4, baselineSeconds: 0.41 })).toBe(
      '+0.4% vs 0.41 s',
    );
  });
});
