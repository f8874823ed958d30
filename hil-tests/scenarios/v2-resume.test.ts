import { readFile } from 'node:fs/promises';
import { readRunContext, Scenario } from '@esp-ble-ota/hil';
import { V2LinkLostError } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';

// The link drops after this share of the stream; the retry continues from the device's
// committed offset (checked by its CRC), sends less than the whole image again, and the
// device's SHA-256 check at END proves the result is the image.
for (const share of [0.1, 0.5, 0.9]) {
  describe('v2 resume', () => {
    it(`resumes after a link drop at ${share * 100}% of the stream`, async (t) => {
      const image = await readFile((await readRunContext()).images.image);
      const s = await Scenario.open(t, {
        benchNeeds: 'a way to drop the BLE link on cue (virtual rig fault injection)',
        board: {
          faults: [
            {
              kind: 'drop-link-after-bytes',
              name: `drop-link-at-${share * 100}pct`,
              bytes: Math.round(image.length * share),
              direction: 'c2p',
            },
          ],
        },
      });
      const before = await s.boot();
      const lost = await s.flash(image, { protocol: 'v2', compression: 'never' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      s.check(
        'link lost mid-stream, resumable',
        lost instanceof V2LinkLostError && lost.resumable,
        String(lost),
      );
      const committed = (lost as V2LinkLostError).committed;

      const { upload } = await s.flash(image, { protocol: 'v2', compression: 'never' });
      if (upload.protocol !== 'v2') throw new Error('expected v2');
      // Frames in flight when the link dropped may have been committed after the client's
      // last ack: the device's offset is at least what the client knew.
      expect(upload.result.resumedFrom).toBeGreaterThanOrEqual(committed);
      expect(upload.result.resumedFrom).toBeGreaterThan(0);
      expect(upload.result.sentBytes).toBeLessThan(image.length);
      expect(upload.result.sentBytes).toBeGreaterThanOrEqual(
        image.length - upload.result.resumedFrom,
      );
      s.check(
        'resumed, sent less than the whole image',
        true,
        `resumed at ${upload.result.resumedFrom} of ${image.length}, sent ${upload.result.sentBytes} B`,
      );
      await s.expectUpdated(before, s.images.firmware.version);
    });
  });
}
