import { Scenario } from '@esp-ble-ota/hil';
import { ImageMismatchError } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';

describe('wrong chip', () => {
  it('an image for another chip is refused after connecting, before any image byte is sent', async (t) => {
    const s = await Scenario.open(t, {
      benchNeeds: 'a firmware image built for another target than the board',
    });
    const other = s.images.otherChipImage;
    if (!other) throw new Error('the build produced no image for another chip');
    const before = await s.boot();
    const refused = await s.flash(other).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((refused as Error).message).toMatch(/^image is for ESP32-S3 but the device is an ESP32/);
    s.check(
      'refused before transfer',
      refused instanceof ImageMismatchError && s.result.phases.transfer === undefined,
      String(refused),
    );
    const after = await s.boot();
    expect(after).toEqual(before);
  });
});
