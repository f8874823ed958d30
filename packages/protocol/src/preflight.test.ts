import { describe, expect, it } from 'vitest';
import { checkImageForDevice, chipKey, ImageMismatchError } from './preflight.ts';

describe('checkImageForDevice', () => {
  const slot = { slotSize: 0x1f0000 };

  it('accepts an image for the chip the device reports, however the name is written', () => {
    expect(chipKey('ESP32-S3')).toBe(chipKey('esp32s3'));
    expect(
      checkImageForDevice({ chip: 'ESP32-S3', size: 1000 }, { model: 'esp32s3' }, slot),
    ).toEqual([]);
  });

  it('refuses an image for another chip, naming both and what to do', () => {
    const run = () =>
      checkImageForDevice({ chip: 'ESP32-S3', size: 1000 }, { model: 'ESP32' }, slot);
    expect(run).toThrow(ImageMismatchError);
    expect(run).toThrow(
      /image is for ESP32-S3 but the device is an ESP32; build the firmware for the device's target \(idf.py set-target esp32\)/,
    );
  });

  it('refuses an image larger than the slot', () => {
    expect(() =>
      checkImageForDevice({ chip: 'ESP32', size: 0x1f0001 }, { model: 'ESP32' }, slot),
    ).toThrow(/image is 2031617 bytes but the device's OTA slot holds 2031616 bytes/);
  });

  it('notes a device that reports no usable model instead of refusing', () => {
    expect(checkImageForDevice({ chip: 'ESP32', size: 1 }, {}, slot)).toEqual([
      {
        check: 'chip',
        note: 'the device reports no model (no DIS Model Number); chip not checked',
      },
    ]);
    expect(
      checkImageForDevice({ chip: 'ESP32', size: 1 }, { model: 'Widget' }, slot)[0]?.note,
    ).toMatch(/names no ESP chip/);
  });

  it('skips the chip comparison when asked, but still checks the size', () => {
    expect(
      checkImageForDevice(
        { chip: 'ESP32-S3', size: 1 },
        { model: 'ESP32' },
        { ...slot, checkChip: false },
      ),
    ).toEqual([]);
    expect(() =>
      checkImageForDevice(
        { chip: 'ESP32-S3', size: 0x1f0001 },
        { model: 'ESP32' },
        { ...slot, checkChip: false },
      ),
    ).toThrow(ImageMismatchError);
  });
});
