import {
  FakeDeviceRegistry,
  FakeTransport,
  FakeV2Device,
  type FakeV2DeviceOptions,
} from '@esp-ble-ota/testing';
import { randomAppImage } from '@esp-ble-ota/testing/support';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../image/bytes.ts';
import {
  BEGIN_DELTA_LENGTH,
  BeginFlag,
  decodeBegin,
  decodeInfo,
  encodeBegin,
  encodeInfo,
  V2Status,
} from './codec.ts';
import { applyPatch, makePatch, PatchOp } from './delta.ts';
import { V2RefusedError } from './errors.ts';
import { uploadV2 } from './uploader.ts';

/** A base image and a new one: the version string changed, a "function" changed, a new "file"
 * inserted at 3/4 (which moves everything after it). */
function changedImage(base: Uint8Array): Uint8Array {
  const fn = base.length >> 1;
  const ins = (base.length * 3) >> 2;
  const fresh = randomAppImage(3000, 99).subarray(1);
  const out = new Uint8Array(base.length + fresh.length);
  out.set(base.subarray(0, ins));
  out.set(fresh, ins);
  out.set(base.subarray(ins), ins + fresh.length);
  out.set(new TextEncoder().encode('2.0.0-delta'), 0x30);
  for (let i = 0; i < 300; i++) out[fn + i] = (out[fn + i] as number) ^ 0x5a;
  return out;
}

describe('the patch format', () => {
  it('a patch of a changed image rebuilds it and is a small part of it', () => {
    const base = randomAppImage(200_000, 7, { mask: 0x0f });
    const image = changedImage(base);
    const patch = makePatch(base, image);
    expect(applyPatch(base, patch, image.length)).toEqual(image);
    expect(patch.length).toBeLessThan(image.length / 20);
    expect(patch[patch.length - 1]).toBe(PatchOp.END);
  });

  it('sends code that moved as a difference from the base (DIFF), which deflates to little', () => {
    // "Code" whose 4-byte words after offset 4000 all grew by 8 (addresses after an insertion).
    const base = randomAppImage(40_000, 11, { mask: 0xff });
    const image = base.slice();
    image.set(randomAppImage(64, 12).subarray(1), 2000); // a change that breaks the copy there
    for (let i = 4000; i + 4 <= image.length; i += 64) {
      const v = new DataView(image.buffer, i, 4);
      v.setUint32(0, v.getUint32(0, true) + 8, true);
    }
    const patch = makePatch(base, image);
    expect(patch.includes(PatchOp.DIFF)).toBe(true);
    expect(applyPatch(base, patch, image.length)).toEqual(image);
  });

  it('rebuilds any image from any base (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 3000 }),
        fc.uint8Array({ minLength: 1, maxLength: 3000 }),
        (base, image) => {
          expect(applyPatch(base, makePatch(base, image), image.length)).toEqual(image);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('the reference applier refuses what the device refuses', () => {
    const base = new Uint8Array(100);
    const copy = (from: number, len: number) => [PatchOp.COPY, from, len];
    const cases: [number[], number, RegExp][] = [
      [[...copy(90, 20), PatchOp.END], 20, /outside the running image/],
      [[PatchOp.ADD, 3, 1, 2, 3, PatchOp.END], 2, /past BEGIN's image_size/],
      [[...copy(0, 10), PatchOp.END, PatchOp.END], 10, /after the patch's END/],
      [[...copy(0, 10)], 10, /without its END op/],
      [[...copy(0, 5), PatchOp.END], 10, /before the image is whole/],
      [[7], 10, /unknown patch op/],
      [
        [PatchOp.DIFF, 95, 10, ...new Array(10).fill(0), PatchOp.END],
        10,
        /outside the running image/,
      ],
      [[PatchOp.ADD, 0, PatchOp.END], 0, /length 0/],
      [[PatchOp.COPY, 0xff, 0xff, 0xff, 0xff, 0x1f, 1], 10, /not a 32-bit varint/],
    ];
    for (const [bytes, size, why] of cases) {
      expect(() => applyPatch(base, Uint8Array.from(bytes), size)).toThrow(why);
    }
  });

  it('BEGIN with a base is 76 bytes with the DELTA flag; INFO says whether the device takes it', () => {
    const baseSha256 = sha256(Uint8Array.of(1, 2, 3));
    const begin = encodeBegin({
      deflate: true,
      restart: false,
      chipId: 9,
      imageSize: 1000,
      imageSha256: new Uint8Array(32),
      streamSize: 100,
      baseSha256,
    });
    expect(begin.length).toBe(BEGIN_DELTA_LENGTH);
    expect(begin[1]).toBe(BeginFlag.DEFLATE | BeginFlag.DELTA);
    expect(decodeBegin(begin).baseSha256).toEqual(baseSha256);
    const plain = encodeBegin({
      deflate: false,
      restart: false,
      chipId: 9,
      imageSize: 1,
      imageSha256: new Uint8Array(32),
      streamSize: 1,
    });
    expect(plain.length).toBe(44);
    const info = {
      deflate: true,
      resume: true,
      chipId: 0,
      slotSize: 1,
      maxFrame: 20,
      window: 4096,
      runningSha256: new Uint8Array(32),
      runningVersion: '1.0.0',
      sessionOffset: 0,
    };
    expect(decodeInfo(encodeInfo({ ...info, delta: true })).delta).toBe(true);
    expect(decodeInfo(encodeInfo(info)).delta).toBe(false);
  });
});

describe('uploadV2 with a base', () => {
  let registry: FakeDeviceRegistry;
  const devices: FakeV2Device[] = [];
  beforeEach(() => {
    registry = new FakeDeviceRegistry();
  });
  afterEach(() => {
    for (const d of devices.splice(0)) d.dispose();
  });
  function setup(options: FakeV2DeviceOptions) {
    const device = registry.add(new FakeV2Device({ restartDelayMs: 1, ...options }));
    devices.push(device);
    return { device, transport: new FakeTransport(device.address, { registry, mtu: 247 }) };
  }
  const base = randomAppImage(120_000, 3, { mask: 0x0f });
  const image = changedImage(base);

  it('sends a patch against the running image; the device rebuilds the image', async () => {
    const { device, transport } = setup({ delta: true, runningImage: base });
    const result = await uploadV2(transport, image, { base });
    expect(result.outcome).toBe('installed');
    expect(result.delta).toMatchObject({ used: true });
    expect(result.streamSize).toBeLessThan(image.length / 20);
    expect(device.bootImage).toEqual(image);
    expect(device.beginFlags).toHaveLength(1);
    expect((device.beginFlags[0] as number) & BeginFlag.DELTA).toBe(BeginFlag.DELTA);
  });

  it('looks the base up by the running SHA-256', async () => {
    const { device, transport } = setup({ delta: true, runningImage: base });
    const asked: string[] = [];
    const result = await uploadV2(transport, image, {
      base: (sha) => {
        asked.push(sha);
        return sha === Buffer.from(sha256(base)).toString('hex') ? base : undefined;
      },
    });
    expect(asked).toEqual([Buffer.from(sha256(base)).toString('hex')]);
    expect(result.delta.used).toBe(true);
    expect(device.bootImage).toEqual(image);
  });

  it('sends the whole image to a device without delta, or one that runs another image', async () => {
    for (const [options, reason] of [
      [{ runningImage: base, address: 'fa:ke:00:00:0d:01' }, 'device-unsupported'],
      [
        { delta: true, runningImage: randomAppImage(1000, 5), address: 'fa:ke:00:00:0d:02' },
        'not-running',
      ],
    ] as const) {
      const { device, transport } = setup(options);
      const result = await uploadV2(transport, image, { base });
      expect(result.delta).toEqual({ used: false, reason });
      expect(device.bootImage).toEqual(image);
      expect(device.beginFlags.every((f) => (f & BeginFlag.DELTA) === 0)).toBe(true);
    }
  });

  it('falls back to the whole image when BEGIN answers BASE_MISMATCH', async () => {
    const { device, transport } = setup({
      delta: true,
      runningImage: base,
      faults: { baseMismatch: true },
    });
    const result = await uploadV2(transport, image, { base });
    expect(result.delta).toEqual({ used: false, reason: 'base-mismatch' });
    expect(device.beginFlags.map((f) => f & BeginFlag.DELTA)).toEqual([BeginFlag.DELTA, 0]);
    expect(device.bootImage).toEqual(image);
  });

  it("a BAD_PATCH is the device's refusal in its words", async () => {
    const { transport } = setup({
      delta: true,
      runningImage: base,
      faults: { refuse: { step: 'END', status: V2Status.BAD_PATCH } },
    });
    const error = await uploadV2(transport, image, { base }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(V2RefusedError);
    expect((error as Error).message).toMatch(/the patch is malformed .*\(BAD_PATCH\)/);
  });
});
