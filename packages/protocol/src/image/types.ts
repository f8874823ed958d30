import type { ChipTarget } from './chips.ts';
import type { FlashModeName, FlashSizeName } from './layout.ts';

export interface AppImageSegment {
  index: number;
  /** Address the segment is loaded or mapped at (`load_addr`). */
  loadAddress: number;
  /** File offset of the segment header, as esptool's "File offs" column shows it. */
  offset: number;
  /** File offset of the segment's first data byte (`offset + 8`). */
  dataOffset: number;
  /** Data length in bytes, without the 8-byte header. */
  length: number;
  /**
   * `flash`: mapped through the cache (IROM/DROM); `ram`: copied to RAM by the bootloader;
   * `padding`: load address below 0x10000000, which the bootloader skips (elf2image's alignment
   * filler); `unknown` when the chip id is not known.
   */
  kind: 'flash' | 'ram' | 'padding' | 'unknown';
}

/** What {@link parseAppImage} found in an ESP app image. */
export interface AppImageInfo {
  /** Chip name as esptool prints it (`ESP32-S3`), or `unknown chip (id N)`. */
  chip: string;
  chipId: number;
  /** False when `chipId` is not in the chip table; `chip` and `target` then say so. */
  chipKnown: boolean;
  /** ESP-IDF target (`esp32s3`), or null for an unknown chip id. */
  target: ChipTarget | null;

  /** esp_app_desc_t.project_name */
  project: string;
  /** esp_app_desc_t.version (PROJECT_VER) */
  version: string;
  /** esp_app_desc_t.idf_ver */
  idfVersion: string;
  /** esp_app_desc_t.secure_version (anti-rollback counter) */
  secureVersion: number;
  /** esp_app_desc_t.date (`__DATE__`, empty when CONFIG_APP_COMPILE_TIME_DATE is off) */
  compileDate: string;
  /** esp_app_desc_t.time (`__TIME__`) */
  compileTime: string;
  /** esp_app_desc_t.app_elf_sha256 as 64 lowercase hex digits. */
  elfSha256: string;
  /** esp_app_desc_t.min_efuse_blk_rev_full (major * 100 + minor). */
  minEfuseBlockRev: number;
  /** esp_app_desc_t.max_efuse_blk_rev_full (major * 100 + minor). */
  maxEfuseBlockRev: number;
  /** MMU page size in bytes from esp_app_desc_t.mmu_page_size, or null when the image leaves it 0. */
  mmuPageSize: number | null;

  /** Length of the input in bytes: what an OTA upload sends. */
  size: number;
  /** Length of the image proper: header, segments, checksum block and the hash if appended. */
  imageLength: number;
  segments: AppImageSegment[];

  flashMode: { code: number; name: FlashModeName | null };
  flashSize: { code: number; name: FlashSizeName | null; bytes: number | null };
  /**
   * `name` is the meaning of `code` on this image's chip as esptool names it; `esp32Name` the
   * meaning on an ESP32, since the same code means different clocks on different chips.
   */
  flashFreq: { code: number; name: string | null; esp32Name: string | null };
  entryPoint: number;
  /** min_chip_rev_full: lowest chip revision the image runs on (major * 100 + minor). */
  minChipRev: number;
  /** max_chip_rev_full: highest chip revision the image runs on (major * 100 + minor). */
  maxChipRev: number;
  /** The legacy min_chip_rev byte (major, or minor on ESP32-C3). */
  minChipRevLegacy: number;
  wpPin: number;

  checksum: { stored: number; computed: number; valid: boolean; offset: number };
  hash: {
    appended: boolean;
    /** Hex of the stored digest, or null when none is appended. */
    stored: string | null;
    /** Hex of SHA-256 over everything before the digest, or null when none is appended. */
    computed: string | null;
    valid: boolean | null;
  };
  checksumValid: boolean;
  /** Null when no hash is appended (hash_appended = 0): there is nothing to check. */
  hashValid: boolean | null;
  /** SHA-256 of the whole input as 64 lowercase hex digits: what an OTA transfer carries. */
  imageSha256: string;

  /**
   * Things that do not stop the image from being read but that a person should see: an unknown
   * chip id or flash setting, bytes after the image, a flash-mapped segment the bootloader could
   * not map.
   */
  warnings: string[];
}
