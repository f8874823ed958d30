import { describe, expect, it } from 'vitest';
import { main } from './cli.ts';
import { loadConfig } from './config.ts';
import { turboRebuilt } from './prepare.ts';
import { listScenarios, shardOf } from './runner.ts';
import { recordKey, scenarioId } from './scenario.ts';

describe('scenario ids', () => {
  it('are the file name for a one-scenario file, file/test for several', () => {
    expect(scenarioId('/x/hil-tests/scenarios/happy-path.test.ts', 'flashes the build', 1)).toBe(
      'happy-path',
    );
    expect(scenarioId('scenarios/faults.test.ts', 'Link lost at 100 kB!', 2)).toBe(
      'faults/link-lost-at-100-kb',
    );
  });

  it('cut a long test name at a word boundary, never inside a word', () => {
    const title = 'an image that is not a valid ESP app: INVALID_IMAGE at END, the old image stays';
    const id = scenarioId('scenarios/v2-refusals.test.ts', title, 3);
    expect(id).toBe('v2-refusals/an-image-that-is-not-a-valid-esp-app-invalid-image-at-end');
    expect(id.length - 'v2-refusals/'.length).toBeLessThanOrEqual(60);
  });

  it('records are matched to vitest results by file name and title', () => {
    expect(recordKey('/abs/scenarios/a.test.ts', 'x y')).toBe(
      recordKey('scenarios/a.test.ts', 'x y'),
    );
  });
});

describe('--shard', () => {
  it('accepts i/n and refuses anything else with an example', () => {
    expect(shardOf('2/4')).toEqual({ index: 2, total: 4 });
    expect(shardOf(undefined)).toBeUndefined();
    for (const bad of ['0/2', '3/2', 'x', '1/']) {
      expect(() => shardOf(bad)).toThrow(/expected i\/n with 1 <= i <= n, e.g. --shard 2\/4/);
    }
  });

  it('a bad --shard is a usage error (exit 2)', async () => {
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => {
      errors.push(String(s));
      return true;
    }) as typeof process.stderr.write;
    try {
      expect(await main(['node', 'hil', '--shard', '5/2', '--list'])).toBe(2);
    } finally {
      process.stderr.write = write;
    }
    expect(errors.join('')).toMatch(/--shard 5\/2/);
  });
});

describe('build cache detection', () => {
  it("reads turbo's summary", () => {
    expect(turboRebuilt(' Tasks:    2 successful, 2 total\nCached:    2 cached, 2 total\n')).toBe(
      false,
    );
    expect(turboRebuilt('Cached:    1 cached, 2 total')).toBe(true);
    expect(turboRebuilt('no summary')).toBe(true);
  });
});

describe('--list', () => {
  it('lists the scenario ids of hil-tests/, split by shard', async () => {
    const config = await loadConfig({
      cwd: new URL('../../..', import.meta.url).pathname,
      env: {},
    });
    // Each call collects every scenario file (slow on a loaded machine): two calls, the shards.
    const [first, second] = await Promise.all([
      listScenarios(config, { shard: '1/2' }),
      listScenarios(config, { shard: '2/2' }),
    ]);
    const all = [...first, ...second];
    expect(all).toEqual(
      expect.arrayContaining([
        'happy-path',
        'rollback',
        'corrupt-image',
        'link-lost',
        'wrong-chip',
        'baseline-client',
      ]),
    );
    expect(first.length).toBeGreaterThan(0);
    expect(second.length).toBeGreaterThan(0);
    expect(first.filter((id) => second.includes(id))).toEqual([]);
  }, 120_000);
});
