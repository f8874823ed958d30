import { describe, expect, it } from 'vitest';
import { pduAirUs, T_IFS_US } from './air.ts';
import { ModeledAirScheduler } from './modeled-scheduler.ts';
import type { LinkParams } from './types.ts';

const MACOS_ESP32: LinkParams = {
  phy: '1M',
  dataLength: 251,
  connIntervalMs: 15,
  attMtu: 185,
  encrypted: false,
};

function delivered(link: ModeledAirScheduler, dir: 'c2p' | 'p2c', bytes: number): Promise<number> {
  return new Promise((resolve) => link.send(dir, bytes, () => resolve(link.nowUs)));
}

describe('ModeledAirScheduler', () => {
  it('delivers the first PDU at the first anchor, after its air time', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    expect(await delivered(link, 'c2p', 189)).toBe(pduAirUs(189, '1M'));
  });

  it('answers a Write Request only in a later event: one write every second interval', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    const starts: number[] = [];
    for (let i = 0; i < 5; i++) {
      starts.push(link.nowUs);
      await new Promise<void>((resolve) => {
        link.send('c2p', 189, () => link.send('p2c', 5, resolve));
      });
    }
    // The request goes at anchor 2k, the response at anchor 2k+1, then the next request.
    const responseAt = link.nowUs;
    expect(responseAt).toBe(9 * 15_000 + pduAirUs(0, '1M') + T_IFS_US + pduAirUs(5, '1M'));
    expect(link.stats.events).toBe(10);
  });

  it('holds the answer of a stalled peripheral until the stall is over, then the next anchor', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    const at = await new Promise<number>((resolve) => {
      link.send('c2p', 189, () => {
        link.stallPeripheral(45_000);
        link.send('p2c', 5, () => resolve(link.nowUs));
      });
    });
    // Ready at 1592 + 45000 us: the first anchor after that is 60 ms.
    expect(at).toBe(60_000 + pduAirUs(0, '1M') + T_IFS_US + pduAirUs(5, '1M'));
  });

  it("holds the writer's answer until its work is done, but not the host's next PDU", async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    let secondAt = 0;
    const answerAt = await new Promise<number>((resolve) => {
      link.send('c2p', 189, () => {
        link.occupyWriter(45_000); // e.g. SHA-256 of a large window
        link.send('p2c', 5, () => resolve(link.nowUs));
      });
      link.send('c2p', 189, () => {
        secondAt = link.nowUs;
      });
    });
    // The second write arrives in the same event; the answer waits for the writer (60 ms anchor).
    expect(secondAt).toBeLessThan(15_000);
    expect(answerAt).toBe(60_000 + pduAirUs(0, '1M') + T_IFS_US + pduAirUs(5, '1M'));
  });

  it("delays the host's next PDU by its own work, and a flash stall also delays the writer", async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32, { peripheralRxBuffers: 1 });
    const times: number[] = [];
    await new Promise<void>((resolve) => {
      link.send('c2p', 189, () => {
        times.push(link.nowUs);
        link.busyHost(20_000);
      });
      link.send('c2p', 189, () => {
        times.push(link.nowUs);
        resolve();
      });
    });
    expect((times[1] as number) - (times[0] as number)).toBeGreaterThanOrEqual(20_000);
    const l2 = new ModeledAirScheduler(MACOS_ESP32);
    l2.occupyWriter(1_000);
    l2.stallPeripheral(10_000);
    expect(l2.writerBusyUntilUs).toBe(11_000);
    l2.occupyWriter(500, true);
    expect(l2.writerBusyUntilUs).toBe(11_500);
    const idle = new ModeledAirScheduler(MACOS_ESP32);
    idle.occupyWriter(500, true); // an idle writer lends nothing
    expect(idle.writerBusyUntilUs).toBe(0);
  });

  it('NAKs when the peripheral buffers are full and delivers after the stall, in order', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32, { peripheralRxBuffers: 2 });
    link.stallPeripheral(20_000);
    const order: number[] = [];
    const times: number[] = [];
    const acks: number[] = [];
    await new Promise<void>((resolve) => {
      for (let i = 0; i < 4; i++) {
        link.send(
          'c2p',
          100,
          () => {
            order.push(i);
            times.push(link.nowUs);
            if (i === 3) resolve();
          },
          () => acks.push(link.nowUs),
        );
      }
    });
    expect(order).toEqual([0, 1, 2, 3]);
    expect(link.stats.naks).toBeGreaterThan(0);
    // Nothing reaches the stalled host; the first two wait in its buffers.
    expect(times[0]).toBe(20_000);
    expect(times[1]).toBe(20_000);
    // The third was refused until the host freed a buffer, so its credit came back late.
    expect(acks[2]).toBeGreaterThan(20_000);
    expect(acks[0]).toBeLessThan(15_000);
  });

  it('runs callbacks in modeled-time order, both directions', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    const seen: number[] = [];
    const stamp = (t: number) => {
      seen.push(t);
    };
    await Promise.all([
      delivered(link, 'p2c', 27).then(stamp),
      delivered(link, 'c2p', 251).then(stamp),
      delivered(link, 'c2p', 27).then(stamp),
    ]);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(link.stats.exchanges).toBe(2);
  });

  it('freezes modeled time while held, whatever the wall clock does', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    let release: () => void = () => {};
    const first = await new Promise<number>((resolve) => {
      link.send('c2p', 189, () => {
        release = link.hold();
        resolve(link.nowUs);
      });
    });
    const later = delivered(link, 'c2p', 20);
    await new Promise((r) => setTimeout(r, 30));
    expect(link.nowUs).toBe(first);
    link.stallPeripheral(1_000);
    release();
    release();
    // The second PDU was queued while frozen and goes in the next event; the host takes it after
    // the stall that began at the frozen instant.
    expect(await later).toBe(15_000 + pduAirUs(20, '1M'));
  });

  it('applies a connection update from the next anchor of the old interval', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    await delivered(link, 'c2p', 10);
    link.setParams({ connIntervalMs: 30 });
    expect(await delivered(link, 'c2p', 10)).toBe(15_000 + pduAirUs(10, '1M'));
    expect(await delivered(link, 'c2p', 10)).toBe(45_000 + pduAirUs(10, '1M'));
    expect(() => link.setParams({ connIntervalMs: 8 })).toThrow(/1.25 ms/);
    expect(() => link.send('c2p', 252, () => {})).toThrow(/fragment it first/);
  });

  it('drops everything on abort', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    let called = false;
    link.send('c2p', 100, () => {
      called = true;
    });
    link.abort();
    await link.whenIdle();
    await new Promise((r) => setImmediate(r));
    expect(called).toBe(false);
    expect(await delivered(link, 'c2p', 10)).toBeGreaterThanOrEqual(0);
  });

  it('models 100 s of link time in well under a second of wall time', async () => {
    const link = new ModeledAirScheduler(MACOS_ESP32);
    const wall = performance.now();
    for (let i = 0; i < 3000; i++) {
      await new Promise<void>((resolve) =>
        link.send('c2p', 189, () => link.send('p2c', 5, resolve)),
      );
    }
    expect(link.nowUs).toBeGreaterThan(89_000_000);
    expect(performance.now() - wall).toBeLessThan(1_500);
  });
});
