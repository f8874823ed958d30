/**
 * What flash operations cost the device in modeled time. While an ESP32 erases or programs its
 * SPI flash the cache is off and other tasks are suspended, so the NimBLE host task stalls for
 * the whole operation (LINK-MODEL.md "ESP32 facts").
 */

export const SECTOR_BYTES = 4096;
export const BLOCK_BYTES = 65536;
export const PAGE_BYTES = 256;

export interface FlashTiming {
  readonly name: string;
  /** One 4 KB sector erase. */
  readonly sectorEraseUs: number;
  /** One 64 KB block erase. */
  readonly blockEraseUs: number;
  /** Programming one full 256-byte page. */
  readonly pageProgramUs: number;
}

/**
 * Winbond W25Q32JV-class datasheet typical values (LINK-MODEL.md: "4 KB sector erase 45 ms
 * typical (400 ms max), 64 KB block erase 150 ms typical, 256-byte page program 0.7 ms typical
 * (3 ms max). The model's default flash uses the typical values").
 */
export const FLASH_TYPICAL: FlashTiming = {
  name: 'typical',
  sectorEraseUs: 45_000,
  blockEraseUs: 150_000,
  pageProgramUs: 700,
};

/**
 * Flash as it was measured on an ESP32 (LINK-MODEL.md: "about 1 MiB in 23.6 s with per-sector
 * erase (about 92 ms per sector) against 9.8 s with 64 KB block erase", arduino-esp32 PR 7002).
 * The measurement gives erase and program together, so one of them must be assumed: programming
 * is kept at the datasheet typical (0.7 ms a page, 11.2 ms a sector), which puts all of the
 * slowdown in the erases:
 * - sector erase: 23.6 s / 256 sectors - 11.2 ms = 81.0 ms (datasheet typical 45 ms);
 * - block erase: 9.8 s / 16 blocks - 16 x 11.2 ms = 433 ms (datasheet typical 150 ms).
 * With this the model gives back the measurement: 1 MiB erased and written in 23.6 s by sectors
 * and 9.8 s by blocks (flash.test.ts).
 */
export const FLASH_MEASURED: FlashTiming = {
  name: 'measured',
  sectorEraseUs: 23_600_000 / 256 - 16 * 700,
  blockEraseUs: 9_800_000 / 16 - 256 * 700,
  pageProgramUs: 700,
};

/** The flash profiles a rig or `pnpm bench --flash` can be given by name. */
export const FLASH_PROFILES = {
  datasheet: FLASH_TYPICAL,
  measured: FLASH_MEASURED,
} as const;
export type FlashProfileName = keyof typeof FLASH_PROFILES;

/**
 * The "slow flash" fault: datasheet maxima (same LINK-MODEL.md line). LINK-MODEL.md gives no
 * block-erase maximum; 2000 ms is the W25Q32JV datasheet's tBE2 maximum and is an assumption of
 * this model, not a figure from LINK-MODEL.md.
 */
export const FLASH_SLOW: FlashTiming = {
  name: 'slow',
  sectorEraseUs: 400_000,
  blockEraseUs: 2_000_000,
  pageProgramUs: 3_000,
};

function checkRange(what: string, addr: number, len: number): void {
  if (!Number.isInteger(addr) || addr < 0 || !Number.isInteger(len) || len < 0) {
    throw new RangeError(
      `${what}: address and length must be non-negative integers, got ${addr}, ${len}`,
    );
  }
}

/**
 * Erasing [addr, addr+len). Like ESP-IDF's `esp_flash_erase_region`, aligned 64 KB blocks use the
 * block erase and the rest 4 KB sector erases; the range must be sector aligned, as the driver
 * requires.
 */
export function eraseStallUs(
  addr: number,
  len: number,
  timing: FlashTiming = FLASH_TYPICAL,
): number {
  checkRange('flash erase', addr, len);
  if (addr % SECTOR_BYTES !== 0 || len % SECTOR_BYTES !== 0) {
    throw new RangeError(
      `flash erase of ${len} bytes at 0x${addr.toString(16)} is not 4 KB aligned; erase whole sectors`,
    );
  }
  let us = 0;
  let at = addr;
  const end = addr + len;
  while (at < end) {
    if (at % BLOCK_BYTES === 0 && end - at >= BLOCK_BYTES) {
      us += timing.blockEraseUs;
      at += BLOCK_BYTES;
    } else {
      us += timing.sectorEraseUs;
      at += SECTOR_BYTES;
    }
  }
  return us;
}

/**
 * Programming `len` bytes at `addr`. A program command never crosses a 256-byte page, so the write
 * is split at page boundaries; each piece costs its share of a full page's program time (the
 * datasheet's per-byte program time makes a page roughly proportional to the bytes in it).
 */
export function writeStallUs(
  addr: number,
  len: number,
  timing: FlashTiming = FLASH_TYPICAL,
): number {
  checkRange('flash write', addr, len);
  let us = 0;
  let at = addr;
  const end = addr + len;
  while (at < end) {
    const pageEnd = (Math.floor(at / PAGE_BYTES) + 1) * PAGE_BYTES;
    const n = Math.min(end, pageEnd) - at;
    us += (timing.pageProgramUs * n) / PAGE_BYTES;
    at += n;
  }
  return Math.round(us);
}

/** A flash operation as the device program reports it (Contract B FLASH_OP frame). */
export interface FlashOp {
  op: 'erase' | 'write' | 'read';
  addr: number;
  len: number;
}

/** Stall of one reported flash operation; reads go through the cache and are not modeled. */
export function flashOpStallUs(op: FlashOp, timing: FlashTiming = FLASH_TYPICAL): number {
  switch (op.op) {
    case 'erase':
      return eraseStallUs(op.addr, op.len, timing);
    case 'write':
      return writeStallUs(op.addr, op.len, timing);
    case 'read':
      return 0;
  }
}

/**
 * The stall of erasing then writing `bytes` bytes, with the erase done per 4 KB sector (as
 * `OTA_WITH_SEQUENTIAL_WRITES` does) or per 64 KB block where possible.
 */
export function eraseAndWriteStallUs(
  bytes: number,
  eraseUnit: 'sector' | 'block',
  timing: FlashTiming = FLASH_TYPICAL,
): number {
  const eraseLen = Math.ceil(bytes / SECTOR_BYTES) * SECTOR_BYTES;
  const erase =
    eraseUnit === 'block'
      ? eraseStallUs(0, eraseLen, timing)
      : (eraseLen / SECTOR_BYTES) * timing.sectorEraseUs;
  return erase + writeStallUs(0, bytes, timing);
}

/**
 * How fast the flash alone can take an image (kB/s, kB = 1000 bytes): erase plus program time per
 * byte, the radio idle. A transfer cannot beat this unless it erases while the link is busy.
 */
export function flashCeilingKBps(
  eraseUnit: 'sector' | 'block',
  timing: FlashTiming = FLASH_TYPICAL,
): number {
  const unit = eraseUnit === 'block' ? BLOCK_BYTES : SECTOR_BYTES;
  const us = eraseAndWriteStallUs(unit, eraseUnit, timing);
  return (unit / us) * 1000;
}
