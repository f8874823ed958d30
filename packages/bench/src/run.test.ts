import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getProfile } from '@esp-ble-ota/sim';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { type BenchResult, isSkipped } from './results.ts';
import { measureClientStack, runProfile } from './run.ts';

const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));

describe('pnpm bench on the virtual rig (firmware host build, real noble)', () => {
  it('gives the same modeled durations in two runs of one profile, and logs the link tuning', async () => {
    const a = await runProfile(getProfile('macos-esp32'));
    const b = await runProfile(getProfile('macos-esp32'));
    if (isSkipped(a.baseline)) throw new Error(a.baseline.skipped);
    expect(a.baseline.seconds).toBeGreaterThan(0);
    expect(b.baseline).toEqual(a.baseline);
    expect(b.v2).toEqual(a.v2);
    expect(b.v2Compressed).toEqual(a.v2Compressed);
    expect(b.v2PreErased).toEqual(a.v2PreErased);
    // The slot erased beforehand: the update erased nothing in it, and took less time.
    if (!isSkipped(a.v2) && a.v2PreErased && !isSkipped(a.v2PreErased)) {
      expect(a.v2PreErased.slotErases).toBe(0);
      expect(a.v2PreErased.seconds).toBeLessThan(a.v2.seconds);
    } else {
      throw new Error('no v2 run on a pre-erased slot');
    }
    if (!isSkipped(a.v2)) {
      expect(a.v2.seconds).toBeLessThan(a.baseline.seconds);
      // The classic ESP32 asks for a short interval and data length 251, never for 2M.
      expect(a.linkTuning.join('\n')).toMatch(/asked data length 251 .*granted/);
      expect(a.linkTuning.join('\n')).not.toMatch(/asked PHY/);
      expect(a.phy).toBe('1M');
      // The board runs the firmware's secure default: noble paired, so both transfers went
      // over an encrypted link, and the ceiling counts the MIC: 8 writes of 167 bytes in a
      // 15 ms event (171 bytes without the MIC).
      expect(a.encryptedLink).toEqual({ baseline: true, v2: true });
      expect(a.linkCeilingWriteBytes).toBe(167);
      expect(a.linkCeilingKBps).toBeCloseTo((8 * 167) / 15, 6);
    }
  }, 120_000);

  it('measures the client stack through noble and the virtual controller', async () => {
    const stack = await measureClientStack();
    if (isSkipped(stack)) throw new Error(stack.skipped);
    expect(stack.bytes).toBe(1024 * 1024);
    expect(stack.wallSeconds).toBeGreaterThan(0);
  }, 60_000);

  it('--json <file> writes the figures of the profiles asked for', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-'));
    try {
      const out = join(dir, 'bench.json');
      await execa(
        'pnpm',
        ['exec', 'tsx', cli, '--profile', 'linux-noble-esp32s3', '--no-sensitivity', '--json', out],
        {
          cwd: join(cli, '..', '..'),
          env: { INIT_CWD: dir },
        },
      );
      const result = JSON.parse(await readFile(out, 'utf8')) as BenchResult;
      expect(result.profiles.map((p) => p.name)).toEqual(['linux-noble-esp32s3']);
      const p = result.profiles[0];
      expect(p).toMatchObject({ central: 'linux-noble', chip: 'esp32s3', flash: 'measured' });
      expect(result.sensitivity).toBeUndefined();
      expect(p?.ceilingKBps).toBeGreaterThan(0);
      expect(p && !isSkipped(p.baseline) && p.baseline.kBps).toBeGreaterThan(0);
      if (p && !isSkipped(p.v2)) {
        expect(p.phy).toBe('2M');
        expect(p.linkTuning.join('\n')).toMatch(/asked PHY tx 1M\|2M rx 1M\|2M; granted .*PHY 2M/);
      }
      expect(typeof result.clientStackMBps).toBe('number');
      expect(result.targets).toHaveLength(5);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses an unknown profile as a usage error', async () => {
    const r = await execa('pnpm', ['exec', 'tsx', cli, '--profile', 'nope'], {
      cwd: join(cli, '..', '..'),
      reject: false,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/unknown link profile 'nope'/);
  }, 60_000);
});
