import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  applyBaselineVerdicts,
  baselineKey,
  compareToBaseline,
  emptyBaseline,
  readBaseline,
  updateBaseline,
  writeBaseline,
} from './baseline.ts';
import type { Baseline, HilReport, ScenarioResult } from './model.ts';

const thresholds = { transferSlowerPct: 15 };

function scenario(id: string, over: Partial<ScenarioResult> = {}): ScenarioResult {
  return {
    id,
    title: id,
    suite: 'ota',
    result: 'passed',
    phases: { transfer: { wallMs: 100, modeledMs: 9500 } },
    transferSeconds: 9.5,
    kBps: 21.05,
    imageBytes: 200_000,
    ...over,
  };
}

function report(scenarios: ScenarioResult[]): HilReport {
  return {
    rig: 'sim',
    target: 'esp32',
    linkProfile: 'linux-noble-esp32',
    startedAt: '2026-11-24T21:00:00.000Z',
    finishedAt: '2026-11-24T21:01:00.000Z',
    firmware: {
      version: '0.1.0-hil.42',
      image: 'firmware/host/build/app.bin',
      size: 200_000,
      sha256: 'a'.repeat(64),
      built: true,
    },
    scenarios,
  };
}

const baseline: Baseline = {
  schemaVersion: 1,
  scenarios: {
    'happy-path': {
      'linux-noble-esp32': {
        transferSeconds: 9.5,
        kBps: 21.05,
        imageBytes: 200_000,
        recordedAt: '2026-11-20T10:00:00.000Z',
        firmwareVersion: '0.1.0-hil.41',
      },
    },
  },
};

describe('compareToBaseline', () => {
  it('fails a transfer slower than the threshold and shows both figures', () => {
    const cmp = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 12.4, kBps: 16.13 })]),
      baseline,
      thresholds,
    );
    expect(cmp.ok).toBe(false);
    const [v] = cmp.verdicts;
    expect(v).toMatchObject({
      scenarioId: 'happy-path',
      key: 'linux-noble-esp32',
      status: 'slower',
      ok: false,
      transferSeconds: 12.4,
      baselineSeconds: 9.5,
      kBps: 16.13,
      baselineKBps: 21.05,
    });
    expect(v?.deltaPct).toBeCloseTo(30.526, 2);
    expect(v?.message).toBe(
      'transfer 12.4 s is 31% slower than the baseline 9.5 s (threshold 15%)',
    );
  });

  it('passes a slowdown within the threshold and says by how much', () => {
    const cmp = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 10.2 })]),
      baseline,
      thresholds,
    );
    expect(cmp.ok).toBe(true);
    expect(cmp.verdicts[0]?.status).toBe('within');
    expect(cmp.verdicts[0]?.message).toBe(
      'transfer 10.2 s is 7% slower than the baseline 9.5 s (within 15%)',
    );
  });

  it('the threshold is a limit, not a step: exactly 15% passes, 15.2% fails', () => {
    const at = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 9.5 * 1.15 })]),
      baseline,
      thresholds,
    );
    expect(at.verdicts[0]?.ok).toBe(true);
    const over = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 9.5 * 1.152 })]),
      baseline,
      thresholds,
    );
    expect(over.verdicts[0]?.ok).toBe(false);
    // Rounded to whole percent it would read "15% slower (threshold 15%)".
    expect(over.verdicts[0]?.message).toBe(
      'transfer 10.9 s is 15.2% slower than the baseline 9.5 s (threshold 15%)',
    );
  });

  it('notes a faster transfer', () => {
    const cmp = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 8.1 })]),
      baseline,
      thresholds,
    );
    expect(cmp.verdicts[0]).toMatchObject({ status: 'faster', ok: true });
    expect(cmp.verdicts[0]?.message).toBe('transfer 8.1 s vs baseline 9.5 s: faster by 15%');
    const much = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 5 })]),
      baseline,
      thresholds,
    );
    expect(much.verdicts[0]?.message).toBe(
      'transfer 5.0 s vs baseline 9.5 s: faster by 47%; consider pnpm hil --update-baseline',
    );
  });

  it('reports a missing entry as "no baseline", not a failure', () => {
    const cmp = compareToBaseline(
      report([scenario('retry-after-link-loss', { transferSeconds: 11.25 })]),
      baseline,
      thresholds,
    );
    expect(cmp.ok).toBe(true);
    expect(cmp.verdicts[0]).toMatchObject({ status: 'no-baseline', ok: true });
    expect(cmp.verdicts[0]?.message).toBe(
      'no baseline for retry-after-link-loss on linux-noble-esp32 (transfer 11.3 s); record one with pnpm hil --update-baseline',
    );
  });

  it('does not compare across link profiles', () => {
    const cmp = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 30, linkProfile: 'macos-esp32' })]),
      baseline,
      thresholds,
    );
    expect(cmp.verdicts[0]).toMatchObject({ key: 'macos-esp32', status: 'no-baseline' });
  });

  it('does not compare failed, skipped or unmeasured scenarios', () => {
    const cmp = compareToBaseline(
      report([
        scenario('happy-path', { result: 'failed', error: { message: 'boom' } }),
        scenario('wrong-chip', { transferSeconds: undefined }),
        scenario('bench-only', { result: 'skipped', skipReason: 'no board' }),
      ]),
      baseline,
      thresholds,
    );
    expect(cmp.verdicts.map((v) => [v.status, v.message])).toEqual([
      ['not-measured', 'not compared (scenario failed)'],
      ['not-measured', 'not compared (no transfer measured)'],
      ['not-measured', 'not compared (scenario skipped)'],
    ]);
    expect(cmp.ok).toBe(true);
  });

  it('shows more decimals when one would hide the difference', () => {
    const small: Baseline = {
      schemaVersion: 1,
      scenarios: {
        'happy-path': {
          'linux-noble-esp32': {
            transferSeconds: 0.412,
            kBps: 485,
            recordedAt: '2026-11-20T10:00:00Z',
          },
        },
      },
    };
    const cmp = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 0.481 })]),
      small,
      thresholds,
    );
    const close = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 9.54 })]),
      baseline,
      thresholds,
    );
    expect(close.verdicts[0]?.message).toBe(
      'transfer 9.54 s is 0.4% slower than the baseline 9.50 s (within 15%)',
    );
    expect(cmp.verdicts[0]?.message).toBe(
      'transfer 0.48 s is 17% slower than the baseline 0.41 s (threshold 15%)',
    );
  });

  it('scales the baseline to a grown image: the same speed passes, a slower one fails', () => {
    const same = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 12.4, imageBytes: 260_000 })]),
      baseline,
      thresholds,
    );
    expect(same.verdicts[0]).toMatchObject({ status: 'within', ok: true });
    const slower = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 16, imageBytes: 260_000 })]),
      baseline,
      thresholds,
    );
    expect(slower.verdicts[0]).toMatchObject({ status: 'slower', ok: false });
    expect(slower.verdicts[0]?.message).toBe(
      "transfer 16.0 s is 30% slower than the baseline 12.3 s (threshold 15%); the baseline's 9.5 s for 200000 bytes scaled to this image's 260000",
    );
  });

  it('optionally fails on lower throughput even when the transfer time is within', () => {
    const cmp = compareToBaseline(
      report([scenario('happy-path', { transferSeconds: 10, kBps: 15 })]),
      baseline,
      { transferSlowerPct: 15, kBpsLowerPct: 10 },
    );
    expect(cmp.verdicts[0]).toMatchObject({ status: 'slower', ok: false });
    expect(cmp.verdicts[0]?.message).toBe(
      'throughput 15.0 kB/s is 29% lower than the baseline 21.1 kB/s (threshold 10%)',
    );
  });

  it('keys the bench by target', () => {
    expect(baselineKey({ rig: 'bench', target: 'esp32s3' }, { linkProfile: 'x' })).toBe(
      'bench-esp32s3',
    );
    expect(baselineKey({ rig: 'sim', target: 'esp32', linkProfile: 'a' }, {})).toBe('a');
    expect(baselineKey({ rig: 'sim', target: 'esp32' }, {})).toBe('sim-esp32');
  });
});

describe('applyBaselineVerdicts', () => {
  it('fails regressed scenarios with the verdict message and attaches the comparison', () => {
    const r = report([
      scenario('happy-path', { transferSeconds: 12.4 }),
      scenario('other', { transferSeconds: 3 }),
    ]);
    const cmp = compareToBaseline(r, baseline, thresholds);
    const applied = applyBaselineVerdicts(r, cmp);
    expect(applied.baseline).toBe(cmp);
    expect(applied.scenarios[0]?.result).toBe('failed');
    expect(applied.scenarios[0]?.error?.message).toBe(
      'baseline: transfer 12.4 s is 31% slower than the baseline 9.5 s (threshold 15%)',
    );
    expect(applied.scenarios[1]).toBe(r.scenarios[1]);
    expect(r.scenarios[0]?.result).toBe('passed');
  });
});

describe('baseline file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hil-baseline-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a missing file is an empty baseline', async () => {
    expect(await readBaseline(join(dir, 'hil-baseline.json'))).toEqual(emptyBaseline());
  });

  it('round-trips with sorted keys', async () => {
    const file = join(dir, 'sub', 'hil-baseline.json');
    const unsorted: Baseline = {
      schemaVersion: 1,
      scenarios: {
        zeta: { b: { transferSeconds: 1, kBps: 2, recordedAt: '2026-11-20T10:00:00Z' } },
        alpha: {
          z: { transferSeconds: 3, kBps: 4, recordedAt: '2026-11-20T10:00:00Z' },
          a: { transferSeconds: 5, kBps: 6, recordedAt: '2026-11-20T10:00:00Z' },
        },
      },
    };
    await writeBaseline(file, unsorted);
    const text = readFileSync(file, 'utf8');
    expect(text.endsWith('}\n')).toBe(true);
    expect(text.indexOf('"alpha"')).toBeLessThan(text.indexOf('"zeta"'));
    expect(text.indexOf('"a"')).toBeLessThan(text.indexOf('"z"'));
    expect(await readBaseline(file)).toEqual(unsorted);
  });

  it('refuses an invalid file with the field and what to do', async () => {
    const file = join(dir, 'hil-baseline.json');
    writeFileSync(
      file,
      JSON.stringify({
        schemaVersion: 1,
        scenarios: { 'happy-path': { 'linux-noble-esp32': { transferSeconds: 'slow' } } },
      }),
    );
    await expect(readBaseline(file)).rejects.toThrow(
      /scenarios\.happy-path\.linux-noble-esp32\.transferSeconds: .*expected number[\s\S]*--update-baseline/,
    );
    writeFileSync(file, '{ "schemaVersion": 1, ');
    await expect(readBaseline(file)).rejects.toThrow(/is not valid JSON/);
  });
});

describe('updateBaseline', () => {
  it('records passed scenarios, keeps the others, never records a failure', () => {
    const r = report([
      scenario('happy-path', { transferSeconds: 8.2, kBps: 24.39, toVersion: '0.1.0-hil.43' }),
      scenario('new-one', { transferSeconds: 4, kBps: undefined, imageBytes: 100_000 }),
      scenario('broken', { result: 'failed', error: { message: 'x' }, transferSeconds: 99 }),
      scenario('wrong-chip', { transferSeconds: undefined }),
    ]);
    const old: Baseline = {
      schemaVersion: 1,
      scenarios: {
        ...baseline.scenarios,
        broken: {
          'linux-noble-esp32': { transferSeconds: 7, kBps: 1, recordedAt: '2026-11-20T10:00:00Z' },
        },
        'other-shard': {
          'macos-esp32': { transferSeconds: 20, kBps: 10, recordedAt: '2026-11-20T10:00:00Z' },
        },
      },
    };
    const at = new Date('2026-11-24T22:00:00Z');
    const { baseline: next, updated, skipped } = updateBaseline(old, r, at);
    expect(updated).toEqual(['happy-path @ linux-noble-esp32', 'new-one @ linux-noble-esp32']);
    expect(skipped).toEqual([
      { scenarioId: 'broken', reason: 'scenario failed' },
      { scenarioId: 'wrong-chip', reason: 'no transfer measured' },
    ]);
    expect(next.scenarios['happy-path']?.['linux-noble-esp32']).toEqual({
      transferSeconds: 8.2,
      kBps: 24.39,
      imageBytes: 200_000,
      recordedAt: '2026-11-24T22:00:00.000Z',
      firmwareVersion: '0.1.0-hil.43',
    });
    expect(next.scenarios['new-one']?.['linux-noble-esp32']).toMatchObject({
      kBps: 25,
      firmwareVersion: '0.1.0-hil.42',
    });
    expect(next.scenarios.broken).toEqual(old.scenarios.broken);
    expect(next.scenarios['other-shard']).toEqual(old.scenarios['other-shard']);
    // The input is not modified.
    expect(old.scenarios['happy-path']?.['linux-noble-esp32']?.transferSeconds).toBe(9.5);
    // What was recorded compares as equal on the next run.
    const again = compareToBaseline(r, next, thresholds);
    expect(again.verdicts[0]?.message).toBe('transfer 8.2 s equals the baseline');
  });
});
