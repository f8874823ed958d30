import { Scenario } from '@esp-ble-ota/hil';
import { LinkLostError } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';

describe('link lost', () => {
  it('baseline: a link lost mid-transfer fails cleanly, the board keeps its firmware, and a retry succeeds', async (t) => {
    const s = await Scenario.open(t, {
      benchNeeds: 'a way to drop the BLE link on cue (virtual rig fault injection)',
      board: {
        faults: [
          {
            kind: 'drop-link-after-bytes',
            name: 'drop-link-at-100kB',
            bytes: 100_000,
            direction: 'c2p',
          },
        ],
      },
    });
    const before = await s.boot();
    const lost = await s.flash(s.images.image, { protocol: 'baseline' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    s.check('transfer failed with a lost link', lost instanceof LinkLostError, String(lost));
    expect((lost as Error).message).toMatch(/link lost during data transfer at byte \d+ of \d+/);
    // The baseline protocol cannot resume: the retry sends everything again.
    // The device aborted the half-written slot; it still runs the old image and advertises.
    const { upload } = await s.flash(s.images.image, { protocol: 'baseline' });
    expect(upload.protocol === 'baseline' && upload.result.bytes).toBe(s.result.imageBytes);
    await s.expectUpdated(before, s.images.firmware.version);
  });
});
