import { readFile } from 'node:fs/promises';
import { Scenario } from '@esp-ble-ota/hil';
import { buildAppImage, V2RefusedError } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';

// Each refusal reason of the device, as the user reads it. The client's own pre-flight checks
// are switched off here so that the device has to say it.
describe('v2 refusals', () => {
  it('an image for another chip: WRONG_CHIP', async (t) => {
    const s = await Scenario.open(t, {
      benchNeeds: 'a firmware image built for another target than the board',
    });
    const other = s.images.otherChipImage;
    if (!other) throw new Error('the build produced no image for another chip');
    const before = await s.boot();
    const refused = await s
      .flash(other, { protocol: 'v2', skipPreflight: true })
      .catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/another chip.*WRONG_CHIP/);
    s.check(
      'refused up front',
      refused instanceof V2RefusedError && s.result.phases.transfer === undefined,
      String(refused),
    );
    expect(await s.boot()).toEqual(before);
  });

  it('an image larger than the slot: TOO_LARGE', async (t) => {
    const s = await Scenario.open(t);
    const huge = buildAppImage({
      chip: s.ctx.target as 'esp32',
      project: 'esp_ble_ota',
      version: 'too-large',
      payload: new Uint8Array(0x200000).fill(0xa5),
    });
    const before = await s.boot();
    const refused = await s
      .flash(huge, { protocol: 'v2', skipPreflight: true, compression: 'never' })
      .catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/larger than.*TOO_LARGE/);
    s.check(
      'refused up front',
      refused instanceof V2RefusedError && s.result.phases.transfer === undefined,
      String(refused),
    );
    expect(await s.boot()).toEqual(before);
  });

  it('an image that is not a valid ESP app: INVALID_IMAGE at END, the old firmware stays', async (t) => {
    const s = await Scenario.open(t, {
      benchNeeds:
        "an image corrupted before it was signed (a bench's images come signed by its build; changed afterwards they are BAD_SIGNATURE, signed-updates covers that)",
    });
    const unsigned = s.images.unsignedImage;
    if (!unsigned) throw new Error('the build produced no unsigned image to corrupt');
    // Corrupt the app, then sign it with the key the board trusts: the signature holds and the
    // SHA-256 sent at BEGIN is of these very bytes, so only the device's ESP image check
    // (esp_ota_end) can tell.
    const corrupt = new Uint8Array(await readFile(unsigned));
    corrupt[corrupt.length >> 1] = (corrupt[corrupt.length >> 1] ?? 0) ^ 0xff;
    const image = await s.signed(corrupt);
    const before = await s.boot();
    const refused = await s
      .flash(image, { protocol: 'v2', allowCorrupt: true })
      .catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/INVALID_IMAGE/);
    s.check(
      'refused at END',
      refused instanceof V2RefusedError && refused.step === 'END',
      String(refused),
    );
    expect(await s.boot()).toEqual(before);
  });
});
