import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildAppImage } from './build.ts';
import type { ChipTarget } from './chips.ts';
import { parseAppImage } from './parse.ts';

/*
 * A golden ESP32-S3 app image assembled here byte by byte from the C definitions in ESP-IDF's
 * esp_app_format.h and esp_app_desc.h, with every offset written out, so that it shares no code
 * with the parser or the writer:
 *
 *   esp_image_header_t (24)          magic e9, segment_count, spi_mode, spi_speed:4|spi_size:4,
 *                                    entry_addr u32 @4, wp_pin @8, spi_pin_drv[3] @9,
 *                                    chip_id u16 @12, min_chip_rev @14, min_chip_rev_full u16 @15,
 *                                    max_chip_rev_full u16 @17, reserved[4] @19, hash_appended @23
 *   segment 0 header (8) @24         load_addr 0x3c000020, data_len 288
 *   esp_app_desc_t (256) @32         magic_word, secure_version @4, reserv1[2] @8, version[32] @16,
 *                                    project_name[32] @48, time[16] @80, date[16] @96,
 *                                    idf_ver[32] @112, app_elf_sha256[32] @144,
 *                                    min_efuse_blk_rev_full u16 @176, max_efuse_blk_rev_full @178,
 *                                    mmu_page_size @180, spi_flash_mode @181, reserv3[2], reserv2[18]
 *   32 bytes of "rodata" @288
 *   segment 1 header (8) @320        load_addr 0x3fc88000 (DRAM), data_len 16
 *   16 data bytes @328
 *   zero padding @344..350, checksum byte @351 (the last byte of the 16-byte block)
 *   SHA-256 of bytes 0..351 @352..383
 */
function goldenImage(): Uint8Array {
  const b = new Uint8Array(384);
  const le16 = (at: number, v: number) => {
    b[at] = v & 0xff;
    b[at + 1] = v >>> 8;
  };
  const le32 = (at: number, v: number) => {
    for (let i = 0; i < 4; i++) b[at + i] = (v >>> (8 * i)) & 0xff;
  };
  const str = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) b[at + i] = s.charCodeAt(i);
  };

  b[0] = 0xe9;
  b[1] = 2;
  b[2] = 2; // DIO
  b[3] = (0x2 << 4) | 0xf; // 4MB, 80m
  le32(4, 0x40375a1c);
  b[8] = 0xee;
  le16(12, 9); // ESP32-S3
  b[14] = 0;
  le16(15, 0); // v0.0
  le16(17, 99); // v0.99
  b[23] = 1;

  le32(24, 0x3c000020);
  le32(28, 288);
  const d = 32;
  le32(d + 0, 0xabcd5432);
  le32(d + 4, 7);
  str(d + 16, '1.4.2-rc1');
  str(d + 48, 'ota_golden');
  str(d + 80, '13:37:00');
  str(d + 96, 'Nov 24 2026');
  str(d + 112, 'v5.4.1-dirty');
  for (let i = 0; i < 32; i++) b[d + 144 + i] = 0xa0 + i;
  le16(d + 176, 1); // v0.1
  le16(d + 178, 199); // v1.99
  b[d + 180] = 16; // 64 KB pages
  b[d + 181] = 2; // DIO
  for (let i = 0; i < 32; i++) b[288 + i] = (i * 13 + 5) & 0xff;

  le32(320, 0x3fc88000);
  le32(324, 16);
  for (let i = 0; i < 16; i++) b[328 + i] = 0x10 + i;

  let checksum = 0xef;
  for (let i = 32; i < 320; i++) checksum ^= b[i] ?? 0;
  for (let i = 328; i < 344; i++) checksum ^= b[i] ?? 0;
  b[351] = checksum;
  b.set(createHash('sha256').update(b.subarray(0, 352)).digest(), 352);
  return b;
}

describe('parseAppImage on a golden image built from the C structs', () => {
  const image = goldenImage();
  const info = parseAppImage(image);

  it('reads the image header', () => {
    expect(info.chip).toBe('ESP32-S3');
    expect(info.chipId).toBe(9);
    expect(info.chipKnown).toBe(true);
    expect(info.target).toBe('esp32s3');
    expect(info.flashMode).toEqual({ code: 2, name: 'DIO' });
    expect(info.flashSize).toEqual({ code: 2, name: '4MB', bytes: 4 * 1024 * 1024 });
    expect(info.flashFreq).toEqual({ code: 0xf, name: '80m', esp32Name: '80m' });
    expect(info.entryPoint).toBe(0x40375a1c);
    expect(info.wpPin).toBe(0xee);
    expect(info.minChipRev).toBe(0);
    expect(info.maxChipRev).toBe(99);
    expect(info.minChipRevLegacy).toBe(0);
  });

  it('reads the segments with esptool-style file offsets', () => {
    expect(info.segments).toEqual([
      { index: 0, loadAddress: 0x3c000020, offset: 24, dataOffset: 32, length: 288, kind: 'flash' },
      { index: 1, loadAddress: 0x3fc88000, offset: 320, dataOffset: 328, length: 16, kind: 'ram' },
    ]);
  });

  it('reads esp_app_desc_t', () => {
    expect(info.project).toBe('ota_golden');
    expect(info.version).toBe('1.4.2-rc1');
    expect(info.idfVersion).toBe('v5.4.1-dirty');
    expect(info.secureVersion).toBe(7);
    expect(info.compileDate).toBe('Nov 24 2026');
    expect(info.compileTime).toBe('13:37:00');
    expect(info.elfSha256).toBe(
      Array.from({ length: 32 }, (_, i) => (0xa0 + i).toString(16).padStart(2, '0')).join(''),
    );
    expect(info.minEfuseBlockRev).toBe(1);
    expect(info.maxEfuseBlockRev).toBe(199);
    expect(info.mmuPageSize).toBe(65536);
  });

  it('verifies the checksum and the appended hash', () => {
    const expectedHash = createHash('sha256').update(image.subarray(0, 352)).digest('hex');
    expect(info.checksum).toEqual({
      stored: image[351],
      computed: image[351],
      valid: true,
      offset: 351,
    });
    expect(info.hash).toEqual({
      appended: true,
      stored: expectedHash,
      computed: expectedHash,
      valid: true,
    });
    expect(info.checksumValid).toBe(true);
    expect(info.hashValid).toBe(true);
  });

  it('reports sizes and the SHA-256 of the whole file', () => {
    expect(info.size).toBe(384);
    expect(info.imageLength).toBe(384);
    expect(info.imageSha256).toBe(createHash('sha256').update(image).digest('hex'));
    expect(info.warnings).toEqual([]);
  });

  it('is reproduced exactly by buildAppImage from the same fields', () => {
    const built = buildAppImage({
      chip: 'ESP32-S3',
      project: 'ota_golden',
      version: '1.4.2-rc1',
      idfVersion: 'v5.4.1-dirty',
      secureVersion: 7,
      compileDate: 'Nov 24 2026',
      compileTime: '13:37:00',
      elfSha256: Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i),
      payload: Uint8Array.from({ length: 32 }, (_, i) => (i * 13 + 5) & 0xff),
      segments: [
        { loadAddress: 0x3fc88000, data: Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i) },
      ],
      entryPoint: 0x40375a1c,
      flashMode: 'DIO',
      flashSize: '4MB',
      flashFreq: '80m',
      minChipRev: 0,
      maxChipRev: 99,
      minEfuseBlockRev: 1,
      maxEfuseBlockRev: 199,
    });
    expect(Buffer.from(built).toString('hex')).toBe(Buffer.from(image).toString('hex'));
  });
});

describe('parseAppImage reporting', () => {
  it('reports a wrong checksum with both values instead of throwing', () => {
    const image = goldenImage();
    const stored = image[351] ?? 0;
    image[351] = stored ^ 0x5a;
    // Keep the hash consistent so only the checksum is wrong.
    image.set(createHash('sha256').update(image.subarray(0, 352)).digest(), 352);
    const info = parseAppImage(image);
    expect(info.checksumValid).toBe(false);
    expect(info.checksum).toMatchObject({ stored: stored ^ 0x5a, computed: stored, valid: false });
    expect(info.hashValid).toBe(true);
  });

  it('reports a changed data byte as both a checksum and a hash mismatch', () => {
    const image = goldenImage();
    image[300] = (image[300] ?? 0) ^ 0x01;
    const info = parseAppImage(image);
    expect(info.checksumValid).toBe(false);
    expect(info.hashValid).toBe(false);
    expect(info.hash.stored).not.toBe(info.hash.computed);
    expect(info.hash.computed).toBe(
      createHash('sha256').update(image.subarray(0, 352)).digest('hex'),
    );
  });

  it('reports a damaged stored digest as a hash mismatch only', () => {
    const image = goldenImage();
    image[383] = (image[383] ?? 0) ^ 0x80;
    const info = parseAppImage(image);
    expect(info.checksumValid).toBe(true);
    expect(info.hashValid).toBe(false);
  });

  it('reports a changed header byte as a hash mismatch: the header is hashed, not checksummed', () => {
    const image = goldenImage();
    image[4] = (image[4] ?? 0) ^ 0x04; // entry point
    const info = parseAppImage(image);
    expect(info.checksumValid).toBe(true);
    expect(info.hashValid).toBe(false);
  });

  it('reports hashValid null when no hash is appended', () => {
    const image = buildAppImage({ chip: 'esp32', project: 'p', version: '1', hashAppended: false });
    const info = parseAppImage(image);
    expect(info.hash).toEqual({ appended: false, stored: null, computed: null, valid: null });
    expect(info.hashValid).toBeNull();
    expect(info.checksumValid).toBe(true);
    expect(info.imageLength).toBe(image.length);
  });

  it('warns about bytes after the image and still hashes the whole file', () => {
    const image = goldenImage();
    const padded = new Uint8Array(image.length + 4096).fill(0xff);
    padded.set(image);
    const info = parseAppImage(padded);
    expect(info.imageLength).toBe(384);
    expect(info.size).toBe(384 + 4096);
    expect(info.hashValid).toBe(true);
    expect(info.imageSha256).toBe(createHash('sha256').update(padded).digest('hex'));
    expect(info.warnings.join('\n')).toMatch(/4096 bytes follow the image at offset 0x180/);
  });

  it('names an unknown chip id and warns instead of refusing', () => {
    const image = goldenImage();
    image[12] = 0x63;
    const info = parseAppImage(image);
    expect(info.chip).toBe('unknown chip (id 99)');
    expect(info.chipKnown).toBe(false);
    expect(info.target).toBeNull();
    expect(info.flashFreq).toEqual({ code: 0xf, name: null, esp32Name: '80m' });
    expect(info.segments.map((s) => s.kind)).toEqual(['unknown', 'unknown']);
    expect(info.warnings.join('\n')).toMatch(/chip id 99 is not a chip this tool knows/);
  });

  it('gives each chip its own meaning of the flash frequency code', () => {
    const freq = (chip: ChipTarget, code: number) =>
      parseAppImage(buildAppImage({ chip, project: 'p', version: '1', flashFreq: code })).flashFreq;
    expect(freq('esp32', 0)).toEqual({ code: 0, name: '40m', esp32Name: '40m' });
    expect(freq('esp32c2', 0xf)).toEqual({ code: 0xf, name: '60m', esp32Name: '80m' });
    expect(freq('esp32h2', 0)).toEqual({ code: 0, name: '24m', esp32Name: '40m' });
    expect(freq('esp32c6', 0)).toEqual({ code: 0, name: '80m', esp32Name: '40m' });
    expect(freq('esp32c5', 1)).toEqual({ code: 1, name: null, esp32Name: '26m' });
  });

  it('warns about header values with no meaning', () => {
    const image = buildAppImage({ chip: 'esp32', project: 'p', version: '1', flashMode: 9 });
    image[3] = 0x9f; // size code 9
    image[15] = 0x90; // min_chip_rev_full = 400
    image[16] = 0x01;
    image[17] = 1; // max_chip_rev_full = 1
    image[18] = 0;
    const info = parseAppImage(image);
    expect(info.flashMode).toEqual({ code: 9, name: null });
    expect(info.flashSize).toEqual({ code: 9, name: null, bytes: null });
    expect(info.warnings.join('\n')).toMatch(/unknown flash mode 9/);
    expect(info.warnings.join('\n')).toMatch(/unknown flash size code 9/);
    expect(info.warnings.join('\n')).toMatch(
      /minimum chip revision v4.0 is above the maximum v0.1/,
    );
  });

  it('warns when a flash-mapped segment is not page-aligned in the file', () => {
    const image = goldenImage();
    image[24] = 0x40; // segment 0 now claims load address 0x3c000040, data sits at 0x20
    const info = parseAppImage(image);
    expect(info.warnings.join('\n')).toMatch(
      /segment 0 \(load address 0x3c000040\) sits at file offset 0x20.*bootloader will refuse/,
    );
  });

  it('reads the legacy min_chip_rev byte and full revisions', () => {
    const c3 = parseAppImage(
      buildAppImage({
        chip: 'esp32c3',
        project: 'p',
        version: '1',
        minChipRev: 3,
        maxChipRev: 199,
      }),
    );
    expect([c3.minChipRev, c3.maxChipRev, c3.minChipRevLegacy]).toEqual([3, 199, 3]);
    const esp32 = parseAppImage(
      buildAppImage({
        chip: 'esp32',
        project: 'p',
        version: '1',
        minChipRev: 300,
        maxChipRev: 399,
      }),
    );
    expect([esp32.minChipRev, esp32.maxChipRev, esp32.minChipRevLegacy]).toEqual([300, 399, 3]);
  });
});
