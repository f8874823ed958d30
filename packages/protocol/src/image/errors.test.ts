import { describe, expect, it } from 'vitest';
import { buildAppImage } from './build.ts';
import { ImageFormatError, type ImageFormatErrorCode } from './errors.ts';
import { parseAppImage } from './parse.ts';

function refusal(data: Uint8Array): ImageFormatError {
  try {
    parseAppImage(data);
  } catch (error) {
    if (error instanceof ImageFormatError) return error;
    throw error;
  }
  throw new Error('parseAppImage accepted the input');
}

function expectRefusal(data: Uint8Array, code: ImageFormatErrorCode, message: RegExp | string) {
  const error = refusal(data);
  expect(error.code).toBe(code);
  expect(error.name).toBe('ImageFormatError');
  expect(error).toBeInstanceOf(Error);
  if (typeof message === 'string') expect(error.message).toBe(message);
  else expect(error.message).toMatch(message);
  return error;
}

const bytes = (...values: number[]) => Uint8Array.from(values);
const withHash = () =>
  buildAppImage({ chip: 'esp32', project: 'p', version: '1', payload: new Uint8Array(64) });
const withoutHash = () =>
  buildAppImage({ chip: 'esp32', project: 'p', version: '1', hashAppended: false });

/** Header + one segment of `segmentData` + checksum block, assembled by hand. */
function oneSegmentImage(segmentData: Uint8Array): Uint8Array {
  const end = 24 + 8 + segmentData.length;
  const out = new Uint8Array(end + (15 - (end % 16)) + 1);
  out.set([0xe9, 1, 2, 0x20]);
  out[8] = 0xee;
  const view = new DataView(out.buffer);
  view.setUint32(24, 0x3f400020, true);
  view.setUint32(28, segmentData.length, true);
  out.set(segmentData, 32);
  return out;
}

describe('parseAppImage refuses what is not an app image', () => {
  it('refuses empty input', () => {
    expectRefusal(
      new Uint8Array(0),
      'EMPTY',
      'not an ESP app image: the file is empty; flash the app .bin that ESP-IDF writes to build/<project>.bin',
    );
  });

  it('names the ELF mistake', () => {
    expectRefusal(
      bytes(0x7f, 0x45, 0x4c, 0x46, 1, 1, 1),
      'BAD_MAGIC',
      'not an ESP app image: first byte is 0x7f, expected 0xe9 (this is an ELF file; flash the .bin from build/, not the .elf)',
    );
    expectRefusal(
      bytes(0x7f, 0),
      'BAD_MAGIC',
      'not an ESP app image: first byte is 0x7f, expected 0xe9 (is this an ELF file? flash the .bin from build/, not the .elf)',
    );
  });

  it('names other files people pass by mistake', () => {
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(64).fill(0xff), /first byte is 0xff.*erased flash.*app partition/],
      [bytes(0xaa, 0x50, 1, 2), /first byte is 0xaa.*partition table/],
      [bytes(0xea, 4, 0, 0), /first byte is 0xea.*ESP8266 v2 image/],
      [new TextEncoder().encode(':10000000'), /first byte is 0x3a.*Intel HEX/],
      [bytes(0x1f, 0x8b, 8), /first byte is 0x1f.*gzip-compressed; decompress it first/],
      [bytes(0x50, 0x4b, 3, 4), /first byte is 0x50.*zip archive/],
      [
        bytes(0x00, 1, 2),
        /first byte is 0x00, expected 0xe9 \(flash the app \.bin that ESP-IDF writes/,
      ],
    ];
    for (const [data, message] of cases) {
      const error = expectRefusal(data, 'BAD_MAGIC', message);
      expect(error.offset).toBe(0);
    }
  });

  it('refuses a header cut short', () => {
    const error = expectRefusal(
      withHash().subarray(0, 20),
      'TRUNCATED',
      'truncated ESP app image: 20 bytes is shorter than the 24-byte image header; the file is cut short; build it again or copy it again',
    );
    expect(error.offset).toBe(20);
  });

  it('refuses more than 16 segments', () => {
    const image = withHash();
    image[1] = 17;
    expectRefusal(
      image,
      'TOO_MANY_SEGMENTS',
      /header says 17 segments, the bootloader accepts at most 16/,
    );
  });

  it('refuses zero segments', () => {
    const image = withHash();
    image[1] = 0;
    expectRefusal(image, 'NO_SEGMENTS', /header says 0 segments, so there is no app descriptor/);
  });

  it('refuses a hash_appended byte other than 0 or 1', () => {
    const image = withHash();
    image[23] = 2;
    const error = expectRefusal(
      image,
      'BAD_HASH_FLAG',
      /hash_appended byte at offset 23 is 0x02, expected 0 or 1/,
    );
    expect(error.offset).toBe(23);
  });

  it('refuses a file that ends inside a segment header', () => {
    expectRefusal(
      withHash().subarray(0, 28),
      'TRUNCATED',
      /announces 1 segments but the file ends at offset 0x1c, inside the header of segment 0/,
    );
  });

  it('refuses a segment that runs past the end of the file', () => {
    const error = expectRefusal(
      withHash().subarray(0, 200),
      'SEGMENT_PAST_END',
      /segment 0 \(load address 0x3f400020\) needs 320 bytes from offset 0x20 but the file ends at 0xc8; the file is cut short/,
    );
    expect(error.offset).toBe(32);
  });

  it('refuses a segment length the bootloader rejects', () => {
    const odd = withHash();
    odd[28] = (odd[28] ?? 0) + 1;
    expectRefusal(
      odd,
      'BAD_SEGMENT_LENGTH',
      /segment 0 at offset 0x18 has length 0x141, but the bootloader needs a multiple of 4 below 16 MB/,
    );
    const huge = withHash();
    huge.set([0, 0, 0, 1], 28);
    expectRefusal(huge, 'BAD_SEGMENT_LENGTH', /has length 0x1000000/);
  });

  it('refuses a file that ends before the checksum byte', () => {
    const image = withoutHash();
    expectRefusal(
      image.subarray(0, image.length - 1),
      'TRUNCATED',
      `truncated ESP app image: the checksum byte belongs at offset 0x${(image.length - 1).toString(16)} but the file ends at 0x${(image.length - 1).toString(16)}; the file is cut short; build it again or copy it again`,
    );
  });

  it('refuses a file that ends inside the appended hash', () => {
    const image = withHash();
    expectRefusal(
      image.subarray(0, image.length - 10),
      'TRUNCATED',
      /a SHA-256 digest follows the checksum at offset 0x[0-9a-f]+, but only 22 of its 32 bytes are there/,
    );
  });

  it('refuses a first segment without esp_app_desc_t', () => {
    const wrongMagic = withHash();
    wrongMagic[32] = 0x33;
    const error = expectRefusal(
      wrongMagic,
      'NO_APP_DESC',
      'not an ESP app image: the first segment starts with 0xabcd5433, not the esp_app_desc_t magic 0xabcd5432 (this is not an ESP-IDF app image (a bootloader or a non-IDF program?); OTA updates take the app .bin from build/)',
    );
    expect(error.offset).toBe(32);
    expectRefusal(
      oneSegmentImage(new Uint8Array(16)),
      'NO_APP_DESC',
      /the first segment is 16 bytes, too short for the 256-byte esp_app_desc_t/,
    );
  });

  it('recognises a bootloader image by its esp_bootloader_desc_t magic byte', () => {
    const segment = new Uint8Array(256);
    segment[0] = 0x50;
    expectRefusal(
      oneSegmentImage(segment),
      'NO_APP_DESC',
      /starts with 0x00000050.*this looks like a bootloader image \(bootloader\.bin\); OTA updates take the app \.bin/,
    );
  });

  it('accepts the smallest image: one 256-byte descriptor segment', () => {
    const image = oneSegmentImage(
      buildAppImage({ chip: 'esp32', project: 'p', version: '1' }).subarray(32, 288),
    );
    const info = parseAppImage(image);
    expect(info.project).toBe('p');
    expect(info.checksumValid).toBe(false); // the checksum byte was left 0
    expect(info.hashValid).toBeNull();
  });
});
