import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildAppImage } from './build.ts';
import { CHIPS } from './chips.ts';
import { ImageFormatError } from './errors.ts';
import { FLASH_MODES, FLASH_SIZES } from './layout.ts';
import { parseAppImage } from './parse.ts';
import type { AppImageInfo } from './types.ts';

/** Parses, and fails the property on any exception other than ImageFormatError. */
function parseOrRefuse(data: Uint8Array): AppImageInfo | ImageFormatError {
  try {
    return parseAppImage(data);
  } catch (error) {
    if (error instanceof ImageFormatError) return error;
    throw error;
  }
}

const chipArb = fc.constantFrom(...CHIPS);
const text = (maxBytes: number) =>
  fc
    .string({ unit: 'grapheme', maxLength: maxBytes })
    .filter((s) => !s.includes('\0') && new TextEncoder().encode(s).length <= maxBytes);

const optionsArb = fc.record({
  chip: chipArb,
  project: text(31),
  version: text(31),
  idfVersion: text(31),
  compileDate: text(15),
  compileTime: text(15),
  secureVersion: fc.nat({ max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 3000 }),
  ram: fc.array(fc.uint8Array({ minLength: 4, maxLength: 3000 }), { maxLength: 3 }),
  flashMapped: fc.array(fc.nat({ max: 0x3fff }), { maxLength: 2 }),
  flashMode: fc.constantFrom(...FLASH_MODES),
  flashSize: fc.constantFrom(...FLASH_SIZES),
  minChipRev: fc.nat({ max: 0xffff }),
  maxChipRev: fc.nat({ max: 0xffff }),
  hashAppended: fc.boolean(),
  elfSha256: fc.uint8Array({ minLength: 32, maxLength: 32 }),
});

type GeneratedOptions = typeof optionsArb extends fc.Arbitrary<infer T> ? T : never;

function build(o: GeneratedOptions): Uint8Array {
  const page = 0x10000;
  const irom = o.chip.irom[0] === o.chip.drom[0] ? o.chip.irom[0] + 0x100000 : o.chip.irom[0];
  return buildAppImage({
    ...o,
    chip: o.chip.target,
    segments: [
      ...o.ram.map((data, i) => ({
        loadAddress: 0x60000000 + i * 0x100000,
        data: data.subarray(0, data.length & ~3),
      })),
      ...o.flashMapped.map((offset, i) => ({
        loadAddress: irom + (i * 2 + 1) * page + offset * 4,
        data: new Uint8Array(64).fill(i + 1),
      })),
    ],
  });
}

/** Small valid images of every chip, with and without hash, used as mutation seeds. */
const seedImageArb = fc
  .record({
    chip: chipArb,
    payload: fc.uint8Array({ maxLength: 600 }),
    hashAppended: fc.boolean(),
    ram: fc.uint8Array({ minLength: 4, maxLength: 400 }),
  })
  .map(({ chip, payload, hashAppended, ram }) =>
    buildAppImage({
      chip: chip.target,
      project: 'fuzz',
      version: '1.0',
      payload,
      hashAppended,
      segments: [{ loadAddress: 0x60000000, data: ram.subarray(0, ram.length & ~3) }],
    }),
  );

describe('parseAppImage on arbitrary input', () => {
  it('never throws anything but ImageFormatError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (data) => {
        parseOrRefuse(data);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws anything but ImageFormatError on random bytes behind a plausible header', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 24, maxLength: 4096 }),
        fc.nat({ max: 16 }),
        fc.nat({ max: 1 }),
        (data, segments, hash) => {
          data[0] = 0xe9;
          data[1] = segments;
          data[23] = hash;
          // Give segment 0 a length that fits so the parser gets past it often.
          if (data.length >= 32) {
            new DataView(data.buffer).setUint32(28, (data.length - 32) & ~3 & 0xfff, true);
          }
          parseOrRefuse(data);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('reads a view into a larger buffer as it reads a copy, damaged or not', () => {
    fc.assert(
      fc.property(
        seedImageArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
        fc.integer({ min: 1, max: 7 }),
        (image, flips, skew) => {
          const bytes = image.slice();
          for (const [at, flip] of flips) {
            const i = at % bytes.length;
            bytes[i] = (bytes[i] ?? 0) ^ flip;
          }
          // Garbage around the view: a parser that reads its buffer, not its view, sees it.
          const backing = new Uint8Array(bytes.length + skew + 64).fill(0xa5);
          backing.set(bytes, skew);
          const view = backing.subarray(skew, skew + bytes.length);
          const fromView = parseOrRefuse(view);
          const fromCopy = parseOrRefuse(bytes);
          if (fromCopy instanceof ImageFormatError) {
            expect(fromView).toBeInstanceOf(ImageFormatError);
            expect((fromView as ImageFormatError).code).toBe(fromCopy.code);
          } else {
            expect(fromView).toEqual(fromCopy);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses every truncation of a valid image as truncated', () => {
    fc.assert(
      fc.property(seedImageArb, fc.nat(), (image, cut) => {
        const length = cut % image.length;
        const result = parseOrRefuse(image.subarray(0, length));
        expect(result).toBeInstanceOf(ImageFormatError);
        expect(['EMPTY', 'TRUNCATED', 'SEGMENT_PAST_END']).toContain(
          (result as ImageFormatError).code,
        );
      }),
      { numRuns: 500 },
    );
  });

  it('detects or refuses every single-byte change of a hashed image', () => {
    fc.assert(
      fc.property(seedImageArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (image, at, flip) => {
        const offset = at % image.length;
        const mutated = image.slice();
        mutated[offset] = (mutated[offset] ?? 0) ^ flip;
        const result = parseOrRefuse(mutated);
        if (result instanceof ImageFormatError) return;
        const hashed = image[23] === 1;
        // Clearing hash_appended (offset 23) leaves an image that the format cannot tell apart
        // from one built without a hash; every other change must show.
        if (hashed && offset !== 23) {
          expect(result.hashValid === false || result.checksumValid === false).toBe(true);
        }
        if (!hashed) {
          const info = parseAppImage(image);
          const inData = info.segments.some(
            (s) => offset >= s.dataOffset && offset < s.dataOffset + s.length,
          );
          if (inData || offset === info.checksum.offset) {
            expect(result.checksumValid).toBe(false);
          }
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('finishes quickly on headers that claim huge segments', () => {
    const data = new Uint8Array(64);
    data[0] = 0xe9;
    data[1] = 16;
    new DataView(data.buffer).setUint32(28, 0xfffffffc, true);
    const started = performance.now();
    expect(() => parseAppImage(data)).toThrow(ImageFormatError);
    expect(performance.now() - started).toBeLessThan(50);
  });
});

describe('buildAppImage and parseAppImage round trip', () => {
  it('reads back what was written, for random fields, chips and layouts', () => {
    fc.assert(
      fc.property(optionsArb, (o) => {
        const image = build(o);
        const info = parseAppImage(image);
        expect(info).toMatchObject({
          chip: o.chip.name,
          chipId: o.chip.id,
          project: o.project,
          version: o.version,
          idfVersion: o.idfVersion,
          compileDate: o.compileDate,
          compileTime: o.compileTime,
          secureVersion: o.secureVersion,
          elfSha256: Buffer.from(o.elfSha256).toString('hex'),
          flashMode: { name: o.flashMode },
          flashSize: { name: o.flashSize },
          minChipRev: o.minChipRev,
          maxChipRev: o.maxChipRev,
          checksumValid: true,
          hashValid: o.hashAppended ? true : null,
          size: image.length,
          imageLength: image.length,
        });
        expect(image.subarray(32 + 256, 32 + 256 + o.payload.length)).toEqual(o.payload);
        for (const s of info.segments.filter((s) => s.kind === 'flash')) {
          expect(s.dataOffset % 0x10000).toBe(s.loadAddress % 0x10000);
        }
      }),
      { numRuns: 300 },
    );
  });
});
