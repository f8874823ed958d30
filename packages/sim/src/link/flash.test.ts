import { describe, expect, it } from 'vitest';
import {
  eraseAndWriteStallUs,
  eraseStallUs,
  FLASH_MEASURED,
  FLASH_SLOW,
  FLASH_TYPICAL,
  flashCeilingKBps,
  flashOpStallUs,
  writeStallUs,
} from './flash.ts';

describe('flash cost model (LINK-MODEL.md "ESP32 facts")', () => {
  it('uses the datasheet typical values by default and the maxima for slow flash', () => {
    expect(eraseStallUs(0x110000, 4096)).toBe(45_000);
    expect(eraseStallUs(0x110000, 4096, FLASH_SLOW)).toBe(400_000);
    expect(eraseStallUs(0x110000, 65536)).toBe(150_000);
    expect(writeStallUs(0, 256)).toBe(700);
    expect(writeStallUs(0, 256, FLASH_SLOW)).toBe(3_000);
  });

  it('erases aligned 64 KB blocks with the block erase and the rest sector by sector', () => {
    // 0x10f000..0x121000: one sector, one block at 0x110000, one sector after it.
    expect(eraseStallUs(0x10f000, 0x12000)).toBe(45_000 + 150_000 + 45_000);
    expect(() => eraseStallUs(0x100, 4096)).toThrow(/4 KB aligned/);
  });

  it('splits writes at page boundaries and charges each piece its share of a page', () => {
    expect(writeStallUs(0, 182)).toBe(Math.round((700 * 182) / 256));
    expect(writeStallUs(200, 182)).toBe(writeStallUs(0, 182));
    expect(writeStallUs(0, 4096)).toBe(16 * 700);
  });

  it('turns device FLASH_OP reports into stalls', () => {
    expect(flashOpStallUs({ op: 'erase', addr: 0x110000, len: 4096 })).toBe(45_000);
    expect(flashOpStallUs({ op: 'write', addr: 0x110000, len: 256 }, FLASH_SLOW)).toBe(3_000);
    expect(flashOpStallUs({ op: 'read', addr: 0, len: 1 << 20 })).toBe(0);
  });

  it('puts per-sector erase of 1 MiB near the measured 23.6 s and block erase below 10 s', () => {
    // LINK-MODEL.md: "about 1 MiB in 23.6 s with per-sector erase (about 92 ms per sector)
    // against 9.8 s with 64 KB block erase (arduino-esp32 PR 7002)". Those runs include the
    // link; the flash alone must stay below them.
    const mib = 1 << 20;
    expect(eraseAndWriteStallUs(mib, 'sector', FLASH_TYPICAL) / 1e6).toBeLessThan(23.6);
    expect(eraseAndWriteStallUs(mib, 'block', FLASH_TYPICAL) / 1e6).toBeLessThan(9.8);
    expect(flashCeilingKBps('sector')).toBeCloseTo(4096 / 56.2, 1);
    expect(flashCeilingKBps('block')).toBeGreaterThan(flashCeilingKBps('sector'));
  });
});

describe('the measured flash profile', () => {
  it('gives back the measurement it was derived from: 1 MiB in 23.6 s by sectors, 9.8 s by blocks', () => {
    const mib = 1024 * 1024;
    expect(eraseAndWriteStallUs(mib, 'sector', FLASH_MEASURED) / 1e6).toBeCloseTo(23.6, 6);
    expect(eraseAndWriteStallUs(mib, 'block', FLASH_MEASURED) / 1e6).toBeCloseTo(9.8, 6);
    // and is slower than the datasheet by about what LINK-MODEL.md says (~1.9x for blocks)
    const ratio =
      eraseAndWriteStallUs(mib, 'block', FLASH_MEASURED) /
      eraseAndWriteStallUs(mib, 'block', FLASH_TYPICAL);
    expect(ratio).toBeGreaterThan(1.7);
    expect(ratio).toBeLessThan(2.1);
  });
});
