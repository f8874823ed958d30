import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BadArgumentError } from './errors.ts';
import { ProgressTracker } from './progress.ts';

function manualClock(start = 1000) {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

describe('ProgressTracker', () => {
  it('reports bytes, percent, rate and ETA on the injected clock', () => {
    const clock = manualClock();
    const tracker = new ProgressTracker({ total: 10_000, clock });
    const first = tracker.snapshot();
    expect(first).toMatchObject({ bytes: 0, total: 10_000, percent: 0, elapsedMs: 0 });
    expect(first.bytesPerSecond).toBeUndefined();
    expect(first.etaMs).toBeUndefined();

    clock.advance(1000);
    const s = tracker.update(2000);
    expect(s.percent).toBe(20);
    expect(s.bytesPerSecond).toBe(2000);
    expect(s.averageBytesPerSecond).toBe(2000);
    expect(s.etaMs).toBe(4000);
    expect(s.elapsedMs).toBe(1000);
  });

  it('converges on a steady rate and ends at exactly 100% with ETA 0', () => {
    const clock = manualClock();
    const tracker = new ProgressTracker({ total: 100 * 182, clock, smoothingMs: 500 });
    let last = tracker.snapshot();
    for (let i = 1; i <= 100; i++) {
      clock.advance(30); // one Write Request per two 15 ms connection intervals
      last = tracker.update(i * 182);
    }
    expect(last.percent).toBe(100);
    expect(last.etaMs).toBe(0);
    expect(last.bytesPerSecond).toBeCloseTo(182 / 0.03, 6);
  });

  it('smooths a burst instead of jumping to it', () => {
    const clock = manualClock();
    const tracker = new ProgressTracker({ total: 1_000_000, clock, smoothingMs: 2000 });
    for (let i = 1; i <= 20; i++) {
      clock.advance(100);
      tracker.update(i * 1000); // 10 kB/s
    }
    clock.advance(100);
    const after = tracker.update(20_000 + 100_000); // one 1 MB/s sample
    expect(after.bytesPerSecond).toBeGreaterThan(10_000);
    expect(after.bytesPerSecond).toBeLessThan(100_000);
  });

  it('folds updates at the same instant into the next interval', () => {
    const clock = manualClock();
    const tracker = new ProgressTracker({ total: 1000, clock });
    tracker.update(100);
    tracker.update(200);
    expect(tracker.snapshot().bytesPerSecond).toBeUndefined();
    clock.advance(100);
    expect(tracker.update(300).bytesPerSecond).toBe(3000);
  });

  it('treats an empty transfer as complete', () => {
    const tracker = new ProgressTracker({ total: 0, clock: manualClock() });
    expect(tracker.snapshot()).toMatchObject({ percent: 100, etaMs: 0 });
  });

  it('refuses progress that goes backwards or past the total', () => {
    const tracker = new ProgressTracker({ total: 100, clock: manualClock() });
    tracker.update(50);
    expect(() => tracker.update(40)).toThrow(BadArgumentError);
    expect(() => tracker.update(101)).toThrow(/from 50/);
    expect(() => new ProgressTracker({ total: -1 })).toThrow(BadArgumentError);
    expect(() => new ProgressTracker({ total: 1, smoothingMs: 0 })).toThrow(BadArgumentError);
  });

  it('keeps percent monotonic, within 0..100, and rate/ETA finite and non-negative (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(500)), {
          maxLength: 50,
        }),
        (total, steps) => {
          const clock = manualClock();
          const tracker = new ProgressTracker({ total, clock });
          let bytes = 0;
          let percent = 0;
          for (const [fraction, dt] of steps) {
            bytes = Math.min(total, bytes + Math.floor(fraction * (total - bytes)));
            clock.advance(dt);
            const s = tracker.update(bytes);
            expect(s.percent).toBeGreaterThanOrEqual(percent);
            expect(s.percent).toBeLessThanOrEqual(100);
            percent = s.percent;
            if (s.bytesPerSecond !== undefined) {
              expect(Number.isFinite(s.bytesPerSecond)).toBe(true);
              expect(s.bytesPerSecond).toBeGreaterThanOrEqual(0);
            }
            if (s.etaMs !== undefined) expect(s.etaMs).toBeGreaterThanOrEqual(0);
          }
          clock.advance(1);
          const end = tracker.update(total);
          expect(end.percent).toBe(100);
          expect(end.etaMs).toBe(0);
        },
      ),
    );
  });
});
