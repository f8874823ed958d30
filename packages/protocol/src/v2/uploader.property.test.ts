import { FakeDeviceRegistry, FakeTransport, FakeV2Device } from '@esp-ble-ota/testing';
import { randomAppImage, sha256Hex } from '@esp-ble-ota/testing/support';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { uploadV2 } from './uploader.ts';

describe('uploadV2 under random frame loss (property)', () => {
  it('delivers the exact image within the window', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          length: fc.integer({ min: 1, max: 30_000 }),
          seed: fc.integer(),
          mtu: fc.constantFrom(47, 100, 185, 247, 517),
          window: fc.integer({ min: 600, max: 12_000 }),
          ackDivisor: fc.constantFrom(1, 2, 4, 7),
          /** Per-mille chance that a frame's first (and second) arrival is dropped. */
          lossPermille: fc.integer({ min: 0, max: 150 }),
          lossSeed: fc.integer(),
          compression: fc.constantFrom('never' as const, 'always' as const),
          writerDelayMs: fc.constantFrom(0, 0, 1),
        }),
        async (c) => {
          const registry = new FakeDeviceRegistry();
          let rng = c.lossSeed >>> 0;
          const device = registry.add(
            new FakeV2Device({
              restartDelayMs: 0,
              window: c.window,
              ackEvery: Math.max(1, Math.floor(c.window / c.ackDivisor)),
              writerDelayMs: c.writerDelayMs,
              faults: {
                dropFrame: (_offset, _length, seen) => {
                  rng = (Math.imul(rng, 1103515245) + 12345) >>> 0;
                  return seen < 2 && (rng >>> 16) % 1000 < c.lossPermille;
                },
              },
            }),
          );
          const transport = new FakeTransport(device.address, { registry, mtu: c.mtu });
          const img = randomAppImage(c.length, c.seed);
          try {
            const result = await uploadV2(transport, img, {
              compression: c.compression,
              chipId: 0,
              // A short ack timeout makes the lost-tail probe fire often; the many retries are
              // for a loaded CI machine, where the fake's 1 ms writer delay (a real timer) can
              // stretch a window's acknowledgement past 50 x 5 ms.
              timeouts: { ackMs: 5, ackRetries: 2000 },
            });
            expect(sha256Hex(device.runningImage)).toBe(sha256Hex(img));
            expect(device.windowViolations).toBe(0);
            expect(result.sentBytes).toBeGreaterThanOrEqual(result.streamSize);
          } finally {
            device.dispose();
          }
        },
      ),
      { numRuns: 40 },
    );
  }, 60_000);
});
