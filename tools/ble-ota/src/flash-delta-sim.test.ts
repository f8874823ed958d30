/**
 * Delta updates end to end on the virtual rig (docs/protocol-v2.md, "Delta updates"): the
 * firmware's host build runs a base image; `ble-ota flash --base` (or the store of images flashed
 * from here) sends a patch against it, which the device applies as it streams, and the board
 * boots the new version. A base the device does not run sends the whole image.
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { SerialConsole } from '@esp-ble-ota/serial';
import { startVirtualRig as startSimRig, TAKES_ANY_IMAGE } from '@esp-ble-ota/sim';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import type { VirtualRig } from './io.ts';
import { adaptRig } from './rig.ts';
import { hostImage, run, tmp } from './test/harness.ts';

/** A board that runs `image` (its firmware takes unsigned images), lent to the CLI. */
async function boardRunning(image: string) {
  const rig = await startSimRig({ boards: [{ image, security: TAKES_ANY_IMAGE }] });
  const board = rig.boards[0];
  if (board === undefined) throw new Error('the rig has no board');
  const lent: VirtualRig = { ...adaptRig(rig), close: async () => {} };
  return { rig, board, startRig: async () => lent };
}

describe('delta updates on the virtual rig (firmware host build)', () => {
  it('flash --base sends a patch against the running image; the board boots the new version', async () => {
    const base = hostImage('3.0.0');
    const next = hostImage('3.0.1'); // the first case: the version string only
    const { rig, board, startRig } = await boardRunning(base);
    const console = await SerialConsole.open(board.serialPath);
    try {
      const result = await run(['flash', next, '--sim', '--json', '--base', base], { startRig });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(ExitCode.OK);
      const events = result.out.jsonLines();
      const uploaded = events.find((e) => e.event === 'uploaded');
      expect(uploaded).toMatchObject({ protocol: 'v2', outcome: 'installed', delta: true });
      // A version change: the deflated patch is a small part of the deflated image.
      expect(Number(uploaded?.streamBytes)).toBeLessThan(Number(uploaded?.bytes) / 20);
      expect(events.find((e) => e.event === 'verified')).toMatchObject({ version: '3.0.1' });
      await console.expect(/App version:\s+3\.0\.1/, { timeout: 10_000 });
    } finally {
      await console.close();
      await rig.close();
    }
  });

  it('the store of images flashed from here makes the next update a patch, without --base', async () => {
    const store = mkdtempSync(join(tmp, 'store-'));
    const first = hostImage('4.0.0');
    const second = hostImage('4.0.1');
    const { rig, startRig } = await boardRunning(hostImage('1.0.0'));
    try {
      const a = await run(['flash', first, '--sim', '--json'], { startRig, imageStore: store });
      expect(a.code).toBe(ExitCode.OK);
      expect(a.out.jsonLines().find((e) => e.event === 'uploaded')).toMatchObject({
        delta: false,
        deltaReason: 'not-running', // the store had nothing the board runs
      });
      const b = await run(['flash', second, '--sim', '--json'], { startRig, imageStore: store });
      expect(b.stderr).toBe('');
      expect(b.code).toBe(ExitCode.OK);
      const events = b.out.jsonLines();
      expect(events.find((e) => e.event === 'uploaded')).toMatchObject({ delta: true });
      expect(events.find((e) => e.event === 'verified')).toMatchObject({ version: '4.0.1' });
      // and --no-image-store leaves it out: the whole image
      const c = await run(['flash', hostImage('4.0.2'), '--sim', '--json', '--no-image-store'], {
        startRig,
        imageStore: store,
      });
      expect(c.out.jsonLines().find((e) => e.event === 'uploaded')).toMatchObject({ delta: false });
    } finally {
      await rig.close();
    }
  });

  it('a --base the device does not run sends the whole image', async () => {
    const { rig, startRig } = await boardRunning(hostImage('5.0.0'));
    try {
      const result = await run(
        ['flash', hostImage('5.0.2'), '--sim', '--json', '--base', hostImage('5.0.1')],
        {
          startRig,
        },
      );
      expect(result.code).toBe(ExitCode.OK);
      const events = result.out.jsonLines();
      expect(events.find((e) => e.event === 'uploaded')).toMatchObject({
        delta: false,
        deltaReason: 'not-running',
      });
      expect(events.find((e) => e.event === 'verified')).toMatchObject({ version: '5.0.2' });
    } finally {
      await rig.close();
    }
  });
});
