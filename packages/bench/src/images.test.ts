import { parseAppImage } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';
import { MIB, realisticImage, realisticImageMissing } from './images.ts';

const missing = realisticImageMissing();

describe.skipIf(missing !== undefined)(
  'the realistic image (waits for firmware/target-image, built with the RISC-V toolchain)',
  () => {
    it('is a valid app image of the size asked for, with the code at the chip’s own addresses', async () => {
      for (const [chip, irom, drom] of [
        ['esp32c3', 0x42000000, 0x3c000000],
        ['esp32', 0x400d0000, 0x3f400000],
      ] as const) {
        const r = await realisticImage(chip, 'realistic-test');
        expect(r.bytes.length).toBe(MIB);
        const info = parseAppImage(r.bytes);
        expect(info.checksumValid).toBe(true);
        expect(info.hashValid).toBe(true);
        expect(info.version).toBe('realistic-test');
        const addresses = info.segments.map((s) => s.loadAddress);
        expect(addresses.some((a) => a >= irom && a < irom + 0x400000)).toBe(true);
        expect(addresses[0]).toBe(drom + 0x20);
        // Compiled code deflates like code, not like a host executable or random padding.
        expect(r.deflateRatio).toBeGreaterThan(0.5);
        expect(r.deflateRatio).toBeLessThan(0.7);
      }
    });
  },
);

describe.skipIf(missing === undefined)(
  'without the RISC-V toolchain (runs only where it is missing)',
  () => {
    it('says what to install', () => {
      expect(missing).toMatch(/riscv64-unknown-elf|firmware-target-image/);
    });
  },
);
