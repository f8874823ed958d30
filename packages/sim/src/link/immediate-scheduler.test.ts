import { describe, expect, it } from 'vitest';
import { ImmediateAirScheduler } from './immediate-scheduler.ts';

describe('ImmediateAirScheduler', () => {
  it('delivers in send order, asynchronously, at modeled time 0', async () => {
    const link = new ImmediateAirScheduler({ attMtu: 247 });
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => {
      link.send(
        'c2p',
        100,
        () => seen.push('a'),
        () => seen.push('a-ack'),
      );
      link.send('p2c', 10, () => seen.push('b'));
      link.send('c2p', 10, () => {
        seen.push('c');
        resolve();
      });
    });
    expect(seen).toEqual([]);
    await done;
    expect(seen).toEqual(['a', 'a-ack', 'b', 'c']);
    expect(link.nowUs).toBe(0);
    expect(link.sent).toEqual({ c2p: 2, p2c: 1 });
  });

  it('pauses while held and counts stalls without waiting for them', async () => {
    const link = new ImmediateAirScheduler();
    const release = link.hold();
    let got = false;
    link.send('c2p', 1, () => {
      got = true;
    });
    link.stallPeripheral(45_000);
    await new Promise((r) => setImmediate(r));
    expect(got).toBe(false);
    release();
    await new Promise((r) => setImmediate(r));
    expect(got).toBe(true);
    expect(link.stalledUs).toBe(45_000);
  });

  it('moves more than 5 MB/s of 244-byte PDUs', async () => {
    const link = new ImmediateAirScheduler({ attMtu: 247 });
    const n = 40_000;
    const start = performance.now();
    await new Promise<void>((resolve) => {
      let left = n;
      const next = () => {
        left -= 1;
        if (left === 0) resolve();
        else if (left % 8 === 0) for (let i = 0; i < 8; i++) link.send('c2p', 251, next);
      };
      for (let i = 0; i < 8; i++) link.send('c2p', 251, next);
    });
    const mbps = (n * 244) / ((performance.now() - start) / 1000) / 1e6;
    expect(mbps).toBeGreaterThan(5);
  });
});
