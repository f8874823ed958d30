/**
 * Byte layout of an ESP-IDF app image, from ESP-IDF's esp_app_format.h (esp_image_header_t,
 * esp_image_segment_header_t) and esp_app_desc.h (esp_app_desc_t). All integers are
 * little-endian; structures are packed.
 */

export const IMAGE_MAGIC = 0xe9;
/** Seed of the XOR checksum over all segment data (ESP_ROM_CHECKSUM_INITIAL). */
export const CHECKSUM_SEED = 0xef;
export const MAX_SEGMENTS = 16;
/** The bootloader refuses segments of this length or more. */
export const MAX_SEGMENT_LENGTH = 0x1000000;
export const SHA256_LENGTH = 32;

/** esp_image_header_t: 24 bytes. */
export const HEADER = {
  size: 24,
  magic: 0,
  segmentCount: 1,
  spiMode: 2,
  /** Low nibble: spi_speed (frequency code); high nibble: spi_size. */
  spiSpeedSize: 3,
  entryAddr: 4,
  wpPin: 8,
  spiPinDrv: 9,
  chipId: 12,
  minChipRev: 14,
  minChipRevFull: 15,
  maxChipRevFull: 17,
  reserved: 19,
  hashAppended: 23,
} as const;

/** The IDF bootloader configures WP itself and writes this "disabled" value for the ROM. */
export const WP_PIN_DISABLED = 0xee;

/** esp_image_segment_header_t: 8 bytes. */
export const SEGMENT_HEADER = {
  size: 8,
  loadAddr: 0,
  dataLen: 4,
} as const;

export const APP_DESC_MAGIC = 0xabcd5432;

/** esp_app_desc_t: 256 bytes at the start of the first segment's data. */
export const APP_DESC = {
  size: 256,
  magicWord: 0,
  secureVersion: 4,
  reserv1: 8,
  version: 16,
  versionSize: 32,
  projectName: 48,
  projectNameSize: 32,
  time: 80,
  timeSize: 16,
  date: 96,
  dateSize: 16,
  idfVer: 112,
  idfVerSize: 32,
  appElfSha256: 144,
  minEfuseBlkRevFull: 176,
  maxEfuseBlkRevFull: 178,
  /** log2 of the MMU page size; 0 in images from ESP-IDF before v5.4. */
  mmuPageSize: 180,
  /** CONFIG_ESPTOOLPY_FLASHMODE_VAL in recent ESP-IDF; a reserved 0 in older images. */
  spiFlashMode: 181,
  reserv3: 182,
  reserv2: 184,
} as const;

/** esp_image_spi_mode_t. esptool only names the first four; ESP-IDF defines all six. */
export const FLASH_MODES = ['QIO', 'QOUT', 'DIO', 'DOUT', 'FAST_READ', 'SLOW_READ'] as const;
export type FlashModeName = (typeof FLASH_MODES)[number];

/** esp_image_flash_size_t, by the header's high nibble. */
export const FLASH_SIZES = ['1MB', '2MB', '4MB', '8MB', '16MB', '32MB', '64MB', '128MB'] as const;
export type FlashSizeName = (typeof FLASH_SIZES)[number];

/** Offset of the checksum byte for segments ending at `end`: the last byte of a 16-byte block. */
export function checksumOffset(end: number): number {
  return end + (15 - (end % 16));
}
