import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAppImage } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';
import { defaultDeviceProgram } from './device/simulated-device.ts';

// The firmware's host build wraps its app into ESP app images for each chip; the client's
// inspector must read them as it reads images from idf.py (issue: image builder <-> inspector).
const buildDir = join(defaultDeviceProgram, '..');
const chips: Record<string, { name: string; id: number }> = {
  esp32: { name: 'ESP32', id: 0 },
  esp32s2: { name: 'ESP32-S2', id: 2 },
  esp32c3: { name: 'ESP32-C3', id: 5 },
  esp32s3: { name: 'ESP32-S3', id: 9 },
  esp32c2: { name: 'ESP32-C2', id: 12 },
  esp32c6: { name: 'ESP32-C6', id: 13 },
  esp32h2: { name: 'ESP32-H2', id: 16 },
};

describe("the host build's images, read by the protocol package's inspector", () => {
  const version = async () =>
    (await readFile(join(buildDir, '..', '..', 'version.txt'), 'utf8')).split('\n')[0]?.trim();

  for (const [target, chip] of Object.entries(chips)) {
    it(`ble-ota-app-${target}.bin is a valid ${chip.name} image of this firmware`, async () => {
      const bytes = new Uint8Array(await readFile(join(buildDir, `ble-ota-app-${target}.bin`)));
      const info = parseAppImage(bytes);
      expect(info.chip).toBe(chip.name);
      expect(info.chipId).toBe(chip.id);
      expect(info.project).toBe('esp_ble_ota');
      expect(info.version).toBe(await version());
      expect(info.idfVersion).toMatch(/^v5\./);
      expect(info.checksumValid).toBe(true);
      expect(info.hashValid).toBe(true);
      expect(info.warnings).toEqual([]);
    });
  }

  it('the self-test-fail variant says so in its version', async () => {
    const info = parseAppImage(
      new Uint8Array(await readFile(join(buildDir, 'ble-ota-app-selftest-fail.bin'))),
    );
    expect(info.version).toBe(`${await version()}-bad`);
    expect(info.hashValid).toBe(true);
  });
});
