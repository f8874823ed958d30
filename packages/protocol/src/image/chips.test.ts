import { describe, expect, it } from 'vitest';
import { buildAppImage } from './build.ts';
import {
  CHIPS,
  chipById,
  formatRevision,
  hasBleRadio,
  isFlashMapped,
  noBleRadioReason,
  resolveChip,
} from './chips.ts';
import { parseAppImage } from './parse.ts';

describe('chip table', () => {
  it('knows which chips have no Bluetooth LE radio and says so', () => {
    expect(CHIPS.filter((c) => !hasBleRadio(c.target)).map((c) => c.target)).toEqual([
      'esp32s2',
      'esp32p4',
    ]);
    expect(hasBleRadio('esp32c3')).toBe(true);
    expect(noBleRadioReason('esp32s2')).toBe(
      'the ESP32-S2 has no Bluetooth LE radio, so it cannot run this firmware or be updated over BLE',
    );
  });

  it('uses the chip ids of esp_chip_id_t', () => {
    const ids = Object.fromEntries(CHIPS.map((c) => [c.name, c.id]));
    expect(ids).toMatchObject({
      ESP32: 0,
      'ESP32-S2': 2,
      'ESP32-C3': 5,
      'ESP32-S3': 9,
      'ESP32-C2': 12,
      'ESP32-C6': 13,
      'ESP32-H2': 16,
      'ESP32-P4': 18,
      'ESP32-C61': 20,
      'ESP32-C5': 23,
    });
    expect(new Set(CHIPS.map((c) => c.id)).size).toBe(CHIPS.length);
    expect(chipById(0xffff)).toBeUndefined();
  });

  it('resolves targets, names in any spelling, and ids', () => {
    expect(resolveChip('esp32s3').id).toBe(9);
    expect(resolveChip('ESP32-S3').id).toBe(9);
    expect(resolveChip('esp32_c6').id).toBe(13);
    expect(resolveChip(23).name).toBe('ESP32-C5');
    expect(() => resolveChip('esp8266')).toThrow(
      /unknown chip "esp8266"; known chips: esp32 \(0\), esp32s2 \(2\)/,
    );
    expect(() => resolveChip(99)).toThrow(RangeError);
  });

  it('knows which addresses the cache maps from flash', () => {
    const esp32 = resolveChip('esp32');
    expect(isFlashMapped(esp32, 0x3f400020)).toBe(true);
    expect(isFlashMapped(esp32, 0x400d0020)).toBe(true);
    expect(isFlashMapped(esp32, 0x40080000)).toBe(false);
    expect(isFlashMapped(esp32, 0x3ffb0000)).toBe(false);
    expect(isFlashMapped(resolveChip('esp32c6'), 0x42800020)).toBe(true);
    expect(isFlashMapped(resolveChip('esp32c6'), 0x40800000)).toBe(false);
  });

  it('formats revisions as esptool does', () => {
    expect(formatRevision(0)).toBe('v0.0');
    expect(formatRevision(3)).toBe('v0.3');
    expect(formatRevision(301)).toBe('v3.1');
    expect(formatRevision(65535)).toBe('v655.35');
  });
});

describe('parseAppImage input handling', () => {
  it('reads a view into a larger buffer (a Node Buffer slice) at its own offset', () => {
    const image = buildAppImage({ chip: 'esp32c3', project: 'offset', version: '9' });
    const backing = new Uint8Array(image.length + 13).fill(0xaa);
    backing.set(image, 13);
    const view = Buffer.from(backing.buffer, 13, image.length);
    const info = parseAppImage(view);
    expect(info.project).toBe('offset');
    expect(info.chip).toBe('ESP32-C3');
    expect(info.checksumValid).toBe(true);
    expect(info.hashValid).toBe(true);
  });
});
