import { Scenario } from '@esp-ble-ota/hil';
import { PatchOp, V2RefusedError } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';

/** u32 as the patch format's varint (unsigned LEB128). */
function varint(v: number): number[] {
  const out: number[] = [];
  let x = v >>> 0;
  while (x >= 0x80) {
    out.push((x & 0x7f) | 0x80);
    x >>>= 7;
  }
  out.push(x);
  return out;
}

// Delta updates (docs/protocol-v2.md, "Delta updates"): the board runs the run's previous build;
// the client sends a patch against it and the board rebuilds the new build as it streams.
describe('delta update', () => {
  it('a patch against the previous build installs the new one and the board confirms it', async (t) => {
    const s = await Scenario.open(t, {
      benchNeeds: "the board running the run's previous build (images.previousImage)",
    });
    const previous = s.images.previousImage;
    if (!previous) throw new Error('the build produced no previous image');
    const before = await s.boot();
    const { upload } = await s.flash(s.images.image, { protocol: 'v2', base: previous });
    expect(upload.protocol).toBe('v2');
    if (upload.protocol !== 'v2') return;
    s.check('sent as a patch', upload.result.delta.used, JSON.stringify(upload.result.delta));
    s.check(
      'the stream is a small part of the image',
      upload.result.streamSize < upload.result.imageSize / 4,
      `${upload.result.streamSize} B stream for a ${upload.result.imageSize} B image`,
    );
    await s.expectUpdated(before, s.images.firmware.version);
  });

  it('a base the board does not run: the whole image goes, and installs', async (t) => {
    const s = await Scenario.open(t);
    const before = await s.boot();
    // The new build as "base": the board runs the previous one, so INFO's SHA-256 differs.
    const { upload } = await s.flash(s.images.image, { protocol: 'v2', base: s.images.image });
    if (upload.protocol !== 'v2') throw new Error('expected protocol v2');
    expect(upload.result.delta).toEqual({ used: false, reason: 'not-running' });
    await s.expectUpdated(before, s.images.firmware.version);
  });

  it('a corrupted patch (a copy from outside the running image) is refused, and the old image boots', async (t) => {
    const s = await Scenario.open(t, {
      benchNeeds: "the board running the run's previous build (images.previousImage)",
    });
    const previous = s.images.previousImage;
    if (!previous) throw new Error('the build produced no previous image');
    const { readFile } = await import('node:fs/promises');
    const baseSize = (await readFile(previous)).length;
    const before = await s.boot();
    const refused = await s
      .flash(s.images.image, {
        protocol: 'v2',
        base: previous,
        // First op: 16 bytes from 8 bytes before the base's end.
        alterPatch: (patch) =>
          Uint8Array.from([PatchOp.COPY, ...varint(baseSize - 8), ...varint(16), ...patch]),
      })
      .catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/BAD_PATCH/);
    s.check('refused while streaming', refused instanceof V2RefusedError, String(refused));
    expect(await s.boot()).toEqual(before);
  });
});
