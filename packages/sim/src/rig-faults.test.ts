import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { startVirtualRig, type VirtualRig } from './rig.ts';
import { findByName, runBaselineExchange, waitPoweredOn } from './testing/baseline-client.ts';
import { appImage } from './testing/images.ts';

/** Console text of a board from now on (colour codes removed). */
function record(rig: VirtualRig, index = 0) {
  const board = rig.boards[index];
  if (!board) throw new Error('no board');
  let text = '';
  board.device.on('console', (d) => {
    text += stripVTControlCharacters(Buffer.from(d).toString('latin1'));
  });
  return {
    get text() {
      return text;
    },
  };
}

describe('virtual rig: several boards, faults, power cuts', () => {
  const rigs: VirtualRig[] = [];
  afterEach(async () => {
    await Promise.all(rigs.splice(0).map((r) => r.close()));
  });

  it('runs several boards at once, each with its own address, name, flash file and console', async () => {
    const rig = await startVirtualRig({
      profile: 'immediate',
      boards: [
        { name: 'bench-a', restartDelayMs: 0 },
        { name: 'bench-b', chip: 'esp32s3' },
      ],
    });
    rigs.push(rig);
    const [a, b] = rig.boards;
    if (!a || !b) throw new Error('two boards expected');
    expect(
      new Set([a.address, b.address, a.flashPath, b.flashPath, a.serialPath, b.serialPath]).size,
    ).toBe(6);
    const consoleB = record(rig, 1);

    await waitPoweredOn(rig.noble);
    const pb = await findByName(rig.noble, 'bench-b');
    expect(pb.address).toBe(b.address);
    const pa = await findByName(rig.noble, 'bench-a');
    await pa.connectAsync();
    const result = await runBaselineExchange(
      pa,
      await appImage('3.0.0-multi', join(a.flashPath, '..')),
    );
    expect(result.notifications).toEqual([0x02, 0x05]);
    await a.waitReady();
    expect(a.boots).toBe(2);
    expect(b.boots).toBe(1);
    expect(consoleB.text).toBe('');
  }, 60_000);

  it('drops the link on a named fault; the device aborts the transfer and still boots the old image', async () => {
    const rig = await startVirtualRig({
      profile: 'immediate',
      boards: [
        {
          restartDelayMs: 0,
          faults: [
            {
              kind: 'drop-link-after-bytes',
              name: 'drop-at-100k',
              bytes: 100_000,
              direction: 'c2p',
            },
          ],
        },
      ],
    });
    rigs.push(rig);
    const board = rig.boards[0];
    if (!board) throw new Error('no board');
    const log = record(rig);
    const p = await findByName(rig.noble, 'esp32');
    await p.connectAsync();
    await expect(
      runBaselineExchange(p, await appImage('3.0.0-drop', join(board.flashPath, '..'))),
    ).rejects.toThrow();
    expect(rig.faultNames()).toEqual(['drop-at-100k']);
    await board.powerCycle();
    expect(log.text).toMatch(
      /rst:0x1 \(POWERON_RESET\)[\s\S]*Loaded app from partition at offset 0x10000[\s\S]*App version:\s+1\.\d+\.\d+/,
    );
    expect(board.device.state).toBe('running');
  }, 60_000);

  it('a power cut at sampled flash operations of an update leaves a device that boots the old or the new image', async () => {
    // Count the erase/write operations of one clean update, from power-on.
    const clean = await startVirtualRig({ profile: 'immediate', boards: [{ restartDelayMs: 0 }] });
    rigs.push(clean);
    const cleanBoard = clean.boards[0];
    if (!cleanBoard) throw new Error('no board');
    const image = await appImage('4.0.0-cut', join(cleanBoard.flashPath, '..'));
    let total = 0;
    cleanBoard.device.once('off', (info) => {
      total = info.flashOps.filter((o) => o.op !== 'read').length;
    });
    const cp = await findByName(clean.noble, 'esp32');
    await cp.connectAsync();
    await runBaselineExchange(cp, image);
    await cleanBoard.waitReady();
    expect(total).toBeGreaterThan(100);

    // Every operation would take one update each (thousands); the C tests in firmware/host cut
    // at every one. Here: the first ones, spread ones, and the last ones (otadata, set boot).
    const cuts = [
      ...new Set([
        1,
        2,
        3,
        Math.floor(total / 3),
        Math.floor(total / 2),
        total - 3,
        total - 2,
        total - 1,
        total,
      ]),
    ];
    const outcomes: string[] = [];
    for (const [i, cut] of cuts.entries()) {
      // Every other cut tears its operation (half a write, half an erase) instead of skipping it.
      const torn = i % 2 === 1;
      const rig = await startVirtualRig({
        profile: 'immediate',
        boards: [{ restartDelayMs: 0, powerCutAt: cut, powerCutTorn: torn }],
      });
      rigs.push(rig);
      const board = rig.boards[0];
      if (!board) throw new Error('no board');
      const log = record(rig);
      const p = await findByName(rig.noble, 'esp32');
      await p.connectAsync();
      await runBaselineExchange(p, image).catch(() => undefined);
      // The board comes back on its own after the cut, as one on USB power does.
      for (let i = 0; i < 100 && !(board.boots >= 2 && board.device.state === 'running'); i++) {
        await new Promise((r) => setTimeout(r, 50));
        if (board.device.state === 'halted') break;
      }
      expect(board.faultLog.map((f) => f.name)).toEqual(['power-cut']);
      expect(board.device.state).toBe('running');
      const booted = [
        ...log.text.matchAll(/Loaded app from partition at offset (0x[0-9a-f]+)/g),
      ].map((m) => m[1]);
      const version = [...log.text.matchAll(/App version:\s+(\S+)/g)].map((m) => m[1]).at(-1);
      expect(['0x10000', '0x200000']).toContain(booted.at(-1));
      expect(version).toBe(booted.at(-1) === '0x200000' ? '4.0.0-cut' : '1.0.0');
      outcomes.push(`${cut}${torn ? ' torn' : ''}:${version}`);
      await rig.close();
      rigs.pop();
    }
    console.log(`power cut at operation:version booted -> ${outcomes.join(' ')} (of ${total})`);
  }, 180_000);
});
