import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type BuildAppImageOptions, buildAppImage, withSecureVersion } from './build.ts';
import { CHIPS } from './chips.ts';
import { parseAppImage } from './parse.ts';

const pattern = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + (i >> 8)) & 0xff);
const sha256Hex = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/*
 * Reference vectors: Espressif's esptool (ESP32FirmwareImage.save, the code behind
 * `esptool elf2image`, from its main branch of August 2026) was given these sections and header
 * fields (the first section named .flash.appdesc with app_elf_sha256 patched in at 0xb0) and
 * produced images with exactly these SHA-256 digests and lengths.
 */
const VECTORS: { name: string; options: BuildAppImageOptions; sha256: string; length: number }[] = [
  {
    name: 'ESP32 app with DRAM, IRAM and IROM sections (RAM split to pad IROM)',
    options: {
      chip: 'esp32',
      project: 'hello_world',
      version: 'v1.0.0',
      idfVersion: 'v5.4.1',
      compileDate: 'Nov 24 2026',
      compileTime: '12:00:00',
      payload: pattern(0x9000, 1),
      segments: [
        { loadAddress: 0x3ffb0000, data: pattern(0x2400, 2) },
        { loadAddress: 0x40080000, data: pattern(0x5000, 3) },
        { loadAddress: 0x400d0020, data: pattern(0x14000, 4) },
      ],
      entryPoint: 0x40081234,
      flashMode: 'DIO',
      flashSize: '4MB',
      flashFreq: '40m',
      minChipRev: 0,
      maxChipRev: 399,
      elfSha256: pattern(32, 5),
    },
    sha256: '805e272842c862636bccd77413c3062fa13f850c2a2fbd243573b988533d8835',
    length: 148848,
  },
  {
    name: 'ESP32-C6 with 32 KB MMU pages, IROM below the descriptor, zero padding segment',
    options: {
      chip: 'esp32c6',
      project: 'ble_ota_demo',
      version: '2.3.4',
      idfVersion: 'v5.5.1',
      mmuPageSize: 0x8000,
      secureVersion: 2,
      payload: pattern(0x1234, 6),
      segments: [
        { loadAddress: 0x42000020, data: pattern(0x3000, 7) },
        { loadAddress: 0x40800000, data: pattern(0x1800, 8) },
      ],
      flashFreq: '80m',
      maxChipRev: 99,
      elfSha256: pattern(32, 9),
    },
    sha256: 'a1c6798c7f2012c22268b6f2e64953b3630e8c67780a32a7b8b6d1feceb23e16',
    length: 45136,
  },
  {
    name: 'ESP32-S3 without appended hash, QIO 16MB 80m',
    options: {
      chip: 'esp32s3',
      project: 'no_hash',
      version: '0.0.1',
      payload: pattern(100, 10),
      segments: [{ loadAddress: 0x42010020, data: pattern(0x100, 11) }],
      flashMode: 'QIO',
      flashSize: '16MB',
      flashFreq: '80m',
      hashAppended: false,
      elfSha256: pattern(32, 12),
      entryPoint: 0x40375000,
    },
    sha256: '50e0da684f0ee8d118d86bd3ba778853370673759b7df8d2085e8b920572c05e',
    length: 65840,
  },
];

describe('buildAppImage matches esptool elf2image', () => {
  for (const v of VECTORS) {
    it(v.name, () => {
      const image = buildAppImage(v.options);
      expect(image.length).toBe(v.length);
      expect(sha256Hex(image)).toBe(v.sha256);
      const info = parseAppImage(image);
      expect(info.checksumValid).toBe(true);
      expect(info.hashValid).toBe(v.options.hashAppended === false ? null : true);
      expect(info.warnings).toEqual([]);
    });
  }

  it('splits the first RAM section to fill the gap before a flash-mapped one (ESP32 vector)', () => {
    const info = parseAppImage(buildAppImage((VECTORS[0] as (typeof VECTORS)[0]).options));
    expect(info.segments.map((s) => [s.loadAddress, s.length, s.offset, s.kind] as const)).toEqual([
      [0x3f400020, 0x9100, 0x18, 'flash'],
      [0x3ffb0000, 0x2400, 0x9120, 'ram'],
      [0x40080000, 0x4ae8, 0xb528, 'ram'],
      [0x400d0020, 0x14000, 0x10018, 'flash'],
      [0x40084ae8, 0x518, 0x24020, 'ram'],
    ]);
  });

  it('puts .flash.appdesc first even when another flash section has a lower address', () => {
    const info = parseAppImage(buildAppImage((VECTORS[1] as (typeof VECTORS)[1]).options));
    expect(info.segments.map((s) => [s.loadAddress, s.kind])).toEqual([
      [0x42800020, 'flash'],
      [0x40800000, 'ram'],
      [0, 'padding'],
      [0x42000020, 'flash'],
    ]);
    expect(info.mmuPageSize).toBe(0x8000);
  });
});

describe('buildAppImage layout rules', () => {
  it('places every flash-mapped segment at a file offset congruent to its address', () => {
    for (const chip of CHIPS) {
      const page = chip.mmuPageSizes[0] as number;
      const irom = chip.irom[0] === chip.drom[0] ? chip.irom[0] + 0x100000 : chip.irom[0];
      const info = parseAppImage(
        buildAppImage({
          chip: chip.target,
          project: 'align',
          version: '1',
          mmuPageSize: page,
          payload: pattern(5000, chip.id),
          segments: [
            { loadAddress: irom + page + 0x120, data: pattern(3 * page + 4, 1) },
            { loadAddress: irom + 5 * page + 0x40, data: pattern(64, 2) },
            { loadAddress: 0x60000000, data: pattern(700, 3) },
          ],
        }),
      );
      const mapped = info.segments.filter((s) => s.kind === 'flash');
      expect(mapped).toHaveLength(3);
      for (const s of mapped) expect(s.dataOffset % page).toBe(s.loadAddress % page);
      expect(info.warnings).toEqual([]);
    }
  });

  it('pads an ESP32 mapped segment that ends less than 0x24 bytes into a page', () => {
    // IROM data starts at file offset 0x10020; 0xfff0 bytes end it at 0x20010, 0x10 into a page.
    const options = (chip: 'esp32' | 'esp32s3', address: number): BuildAppImageOptions => ({
      chip,
      project: 'tail',
      version: '1',
      segments: [{ loadAddress: address, data: pattern(0xfff0, 1) }],
    });
    const esp32 = parseAppImage(buildAppImage(options('esp32', 0x400d0020)));
    expect(esp32.segments[2]).toMatchObject({ loadAddress: 0x400d0020, length: 0xfff0 + 0x14 });
    const s3 = parseAppImage(buildAppImage(options('esp32s3', 0x42010020)));
    expect(s3.segments[2]).toMatchObject({ loadAddress: 0x42010020, length: 0xfff0 });
  });

  it('puts the payload right after esp_app_desc_t in the first segment', () => {
    const payload = pattern(1001, 7);
    const image = buildAppImage({ chip: 'esp32c3', project: 'p', version: '1', payload });
    const info = parseAppImage(image);
    expect(info.segments[0]?.length).toBe(256 + 1004);
    expect(image.subarray(32 + 256, 32 + 256 + payload.length)).toEqual(payload);
    expect(info.elfSha256).toBe(sha256Hex(payload));
  });

  it('writes the header defaults elf2image and ESP-IDF use', () => {
    const image = buildAppImage({
      chip: 'esp32',
      project: 'p',
      version: '1',
      segments: [{ loadAddress: 0x40080400, data: pattern(8, 1) }],
    });
    const info = parseAppImage(image);
    expect(info.flashMode.name).toBe('DIO');
    expect(info.flashSize.name).toBe('2MB');
    expect(info.flashFreq.name).toBe('40m');
    expect(info.wpPin).toBe(0xee);
    expect(info.entryPoint).toBe(0x40080400);
    expect([info.minChipRev, info.maxChipRev]).toEqual([0, 0xffff]);
    expect(info.idfVersion).toBe('v5.5.1');
    expect(info.mmuPageSize).toBe(0x10000);
    expect(image[32 + 181]).toBe(2); // esp_app_desc_t.spi_flash_mode follows the header
    expect(image.subarray(9, 12)).toEqual(new Uint8Array(3)); // spi_pin_drv
    expect(image.subarray(19, 23)).toEqual(new Uint8Array(4)); // reserved
  });
});

describe('buildAppImage round trip', () => {
  it('reads back every field it was given, on every chip', () => {
    for (const chip of CHIPS) {
      const [freqName, freqCode] = chip.flashFrequencies[1] ?? ['', 0];
      const info = parseAppImage(
        buildAppImage({
          chip: chip.name,
          project: `project-${chip.target}`,
          version: `3.${chip.id}.0`,
          idfVersion: 'v5.3.2-567-gabcdef',
          secureVersion: chip.id + 1,
          compileDate: 'Jan  1 2026',
          compileTime: '00:00:01',
          flashMode: 'QOUT',
          flashSize: '8MB',
          flashFreq: freqName,
          minChipRev: 102,
          maxChipRev: 299,
          minEfuseBlockRev: 2,
          maxEfuseBlockRev: 99,
          entryPoint: 0x40000400,
          payload: pattern(333, chip.id),
        }),
      );
      expect(info).toMatchObject({
        chip: chip.name,
        chipId: chip.id,
        target: chip.target,
        project: `project-${chip.target}`,
        version: `3.${chip.id}.0`,
        idfVersion: 'v5.3.2-567-gabcdef',
        secureVersion: chip.id + 1,
        compileDate: 'Jan  1 2026',
        compileTime: '00:00:01',
        flashMode: { code: 1, name: 'QOUT' },
        flashSize: { code: 3, name: '8MB' },
        flashFreq: { code: freqCode },
        minChipRev: 102,
        maxChipRev: 299,
        minChipRevLegacy: chip.legacyMinRevIsMinor ? 2 : 1,
        minEfuseBlockRev: 2,
        maxEfuseBlockRev: 99,
        entryPoint: 0x40000400,
        checksumValid: true,
        hashValid: true,
        warnings: [],
      });
    }
  });

  it('keeps UTF-8 text intact', () => {
    const info = parseAppImage(
      buildAppImage({ chip: 'esp32', project: 'Wärmepumpe', version: 'v1 – ☃' }),
    );
    expect(info.project).toBe('Wärmepumpe');
    expect(info.version).toBe('v1 – ☃');
  });
});

describe('buildAppImage refuses options it cannot write', () => {
  const base = { chip: 'esp32', project: 'p', version: '1' } as const;
  const cases: [string, BuildAppImageOptions, RegExp][] = [
    [
      'unknown chip',
      { ...base, chip: 'esp8266' as 'esp32' },
      /unknown chip "esp8266"; known chips: esp32 \(0\)/,
    ],
    [
      'long version',
      { ...base, version: 'v'.repeat(32) },
      /version "v+" is 32 bytes; .* at most 31/,
    ],
    ['long project', { ...base, project: 'p'.repeat(40) }, /project .* at most 31/],
    ['long date', { ...base, compileDate: 'x'.repeat(16) }, /compileDate .* at most 15/],
    ['NUL in text', { ...base, version: 'a\0b' }, /contains a NUL byte/],
    [
      'page size',
      { ...base, mmuPageSize: 0x8000 },
      /MMU page size 32768 is not one ESP32 supports/,
    ],
    [
      'flash freq',
      { ...base, flashFreq: '60m' },
      /flash frequency 60m is not valid for ESP32; use 80m, 40m, 26m, 20m/,
    ],
    ['flash freq code', { ...base, flashFreq: 16 }, /does not fit the header's 4-bit field/],
    ['flash mode', { ...base, flashMode: 'OPI' as 'QIO' }, /unknown flash mode OPI/],
    ['flash size', { ...base, flashSize: '3MB' as '2MB' }, /unknown flash size 3MB/],
    [
      'descriptor outside flash',
      { ...base, appDescAddress: 0x3ffb0000 },
      /appDescAddress 0x3ffb0000 is not flash-mapped on ESP32; esp_app_desc_t must be in DROM \(from 0x3f400000\)/,
    ],
    ['elf sha', { ...base, elfSha256: new Uint8Array(31) }, /elfSha256 must be 32 bytes, got 31/],
    [
      'revision',
      { ...base, maxChipRev: 70000 },
      /maxChipRev 70000 does not fit an unsigned 16-bit field/,
    ],
    [
      'unaligned segment',
      { ...base, segments: [{ loadAddress: 0x3ffb0002, data: new Uint8Array(4) }] },
      /segment at 0x3ffb0002 is not 4-byte aligned/,
    ],
    [
      'same mapping page',
      {
        ...base,
        segments: [
          { loadAddress: 0x400d0020, data: new Uint8Array(4) },
          { loadAddress: 0x400d8000, data: new Uint8Array(4) },
        ],
      },
      /segment at 0x400d8000 lands in the same 64 KB flash mapping as the one at 0x400d0020; merge them/,
    ],
    [
      'too many segments',
      {
        ...base,
        segments: Array.from({ length: 16 }, (_, i) => ({
          loadAddress: 0x3ffb0000 + i * 0x100,
          data: new Uint8Array(4),
        })),
      },
      /17 segments given; an image holds at most 16/,
    ],
  ];
  for (const [name, options, message] of cases) {
    it(name, () => {
      expect(() => buildAppImage(options)).toThrow(RangeError);
      expect(() => buildAppImage(options)).toThrow(message);
    });
  }
});

describe('withSecureVersion', () => {
  it('sets the anti-rollback counter and keeps the checksum and SHA-256 valid', () => {
    const image = buildAppImage({
      chip: 'esp32',
      project: 'p',
      version: '1.0.0',
      secureVersion: 1,
    });
    const raised = withSecureVersion(image, 7);
    const info = parseAppImage(raised);
    expect(info.secureVersion).toBe(7);
    expect(info.checksumValid).toBe(true);
    expect(info.hashValid).toBe(true);
    expect(raised.length).toBe(image.length);
    expect(parseAppImage(image).secureVersion).toBe(1);
  });
});
