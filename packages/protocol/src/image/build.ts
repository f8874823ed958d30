import { hex, sha256, writeCString } from './bytes.ts';
import {
  type ChipInfo,
  type ChipName,
  type ChipTarget,
  isFlashMapped,
  resolveChip,
} from './chips.ts';
import {
  APP_DESC,
  APP_DESC_MAGIC,
  CHECKSUM_SEED,
  checksumOffset,
  FLASH_MODES,
  FLASH_SIZES,
  type FlashModeName,
  type FlashSizeName,
  HEADER,
  IMAGE_MAGIC,
  MAX_SEGMENT_LENGTH,
  MAX_SEGMENTS,
  SEGMENT_HEADER,
  SHA256_LENGTH,
  WP_PIN_DISABLED,
} from './layout.ts';
import { parseAppImage } from './parse.ts';

/** One ELF section or segment to place in the image (after elf2image's merge step). */
export interface SegmentInput {
  loadAddress: number;
  data: Uint8Array;
}

export interface BuildAppImageOptions {
  /** ESP-IDF target (`esp32s3`), chip name (`ESP32-S3`) or chip id. */
  chip: ChipTarget | ChipName | number;
  /** PROJECT_NAME, at most 31 bytes. */
  project: string;
  /** PROJECT_VER, at most 31 bytes. */
  version: string;
  /** IDF_VER, at most 31 bytes. Default `v5.5.1`. */
  idfVersion?: string;
  /** CONFIG_BOOTLOADER_APP_SECURE_VERSION. Default 0. */
  secureVersion?: number;
  /** `__DATE__` (at most 15 bytes). Default empty, as with CONFIG_APP_COMPILE_TIME_DATE off. */
  compileDate?: string;
  /** `__TIME__` (at most 15 bytes). Default empty. */
  compileTime?: string;
  /**
   * The 32 bytes elf2image patches in at offset 0xb0 (SHA-256 of the ELF file). There is no ELF
   * here, so the default is SHA-256 of `payload`: stable for the same content, different otherwise.
   */
  elfSha256?: Uint8Array;
  /** Bytes placed in the first segment right after esp_app_desc_t, as .flash.rodata would be. */
  payload?: Uint8Array;
  /** Load address of the first segment (`.flash.appdesc`). Default: start of the chip's DROM + 0x20. */
  appDescAddress?: number;
  /** Further sections: flash-mapped ones get MMU-page alignment, RAM ones fill the gaps. */
  segments?: SegmentInput[];
  /** Default: load address of the lowest RAM segment, or 0 when there is none. */
  entryPoint?: number;
  /** Default `DIO`. */
  flashMode?: FlashModeName | number;
  /** Default `2MB` (ESP-IDF's default CONFIG_ESPTOOLPY_FLASHSIZE). */
  flashSize?: FlashSizeName;
  /** Name in the chip's table (`40m`) or the raw header nibble. Default nibble 0 (40m on ESP32). */
  flashFreq?: string | number;
  /** min_chip_rev_full (major * 100 + minor). Default 0. */
  minChipRev?: number;
  /** max_chip_rev_full. Default 65535, elf2image's value when none is given. */
  maxChipRev?: number;
  /** Legacy min_chip_rev byte. Default derived from minChipRev as ESP-IDF does per chip. */
  minChipRevLegacy?: number;
  /** esp_app_desc_t.min_efuse_blk_rev_full. Default 0. */
  minEfuseBlockRev?: number;
  /** esp_app_desc_t.max_efuse_blk_rev_full. Default 65535 (no limit). */
  maxEfuseBlockRev?: number;
  /** MMU page size in bytes; must be one the chip supports. Default 64 KB. */
  mmuPageSize?: number;
  /** esp_app_desc_t.spi_flash_mode. Default: the header's flash mode, as recent ESP-IDF writes. */
  appDescFlashMode?: number;
  /** Append the SHA-256 of the image (elf2image's default). Default true. */
  hashAppended?: boolean;
}

interface Section {
  address: number;
  data: Uint8Array;
  isAppDesc: boolean;
}

/**
 * Builds an ESP app image byte for byte as `esptool elf2image` lays it out for an ESP-IDF app:
 * esp_image_header_t with the extended header, the `.flash.appdesc` segment first, every
 * flash-mapped segment placed so that its file offset and load address agree modulo the MMU page
 * (RAM segments are split to fill the gaps, zero padding segments where they cannot), the ESP32
 * 0x24-byte tail workaround, the XOR checksum in the last byte of a 16-byte block and the
 * SHA-256 of everything before it.
 *
 * Invalid options throw RangeError (this is a tool for tests and the virtual rig, not a parser).
 */
export function buildAppImage(options: BuildAppImageOptions): Uint8Array {
  const chip = resolveChip(options.chip);
  const pageSize = options.mmuPageSize ?? 0x10000;
  if (!chip.mmuPageSizes.includes(pageSize)) {
    throw new RangeError(
      `MMU page size ${pageSize} is not one ${chip.name} supports (${chip.mmuPageSizes.join(', ')})`,
    );
  }
  const flashModeCode = resolveFlashMode(options.flashMode ?? 'DIO');
  const appDescAddress = options.appDescAddress ?? chip.drom[0] + 0x20;
  // Only flash-mapped segments are placed first; the bootloader reads the descriptor there.
  if (!isFlashMapped(chip, appDescAddress)) {
    throw new RangeError(
      `appDescAddress ${hex(appDescAddress, 8)} is not flash-mapped on ${chip.name}; esp_app_desc_t must be in DROM (from ${hex(chip.drom[0], 8)})`,
    );
  }
  const payload = options.payload ?? new Uint8Array(0);
  const desc = buildAppDesc(options, pageSize, flashModeCode, payload);

  const sections: Section[] = [
    { address: appDescAddress, data: padTo4(concat([desc, payload])), isAppDesc: true },
    ...(options.segments ?? []).map((s) => ({
      address: s.loadAddress,
      data: s.loadAddress === 0 ? s.data : padTo4(s.data),
      isAppDesc: false,
    })),
  ];
  for (const s of sections) checkSection(s);
  if (sections.length > MAX_SEGMENTS) {
    throw new RangeError(
      `${sections.length} segments given; an image holds at most ${MAX_SEGMENTS}`,
    );
  }
  const ram = sections
    .filter((s) => !isFlashMapped(chip, s.address))
    .sort((a, b) => a.address - b.address);
  const header = buildHeader(options, chip, flashModeCode, ram[0]?.address ?? 0);
  const laidOut = layOutSegments(chip, pageSize, sections, ram);
  if (laidOut.length > MAX_SEGMENTS) {
    throw new RangeError(
      `alignment padding makes ${laidOut.length} segments; an image holds at most ${MAX_SEGMENTS}`,
    );
  }
  header[HEADER.segmentCount] = laidOut.length;

  const parts: Uint8Array[] = [header];
  let checksum = CHECKSUM_SEED;
  let length = header.length;
  for (const s of laidOut) {
    const segmentHeader = new Uint8Array(SEGMENT_HEADER.size);
    const view = new DataView(segmentHeader.buffer);
    view.setUint32(SEGMENT_HEADER.loadAddr, s.address, true);
    view.setUint32(SEGMENT_HEADER.dataLen, s.data.length, true);
    parts.push(segmentHeader, s.data);
    length += SEGMENT_HEADER.size + s.data.length;
    for (const byte of s.data) checksum ^= byte;
  }
  const tail = new Uint8Array(checksumOffset(length) - length + 1);
  tail[tail.length - 1] = checksum;
  parts.push(tail);
  const image = concat(parts);
  if (options.hashAppended === false) return image;
  return concat([image, sha256(image)]);
}

function resolveFlashMode(mode: FlashModeName | number): number {
  const code = typeof mode === 'number' ? mode : FLASH_MODES.indexOf(mode);
  if (code < 0 || code > 0xff) {
    throw new RangeError(
      `unknown flash mode ${String(mode)}; use one of ${FLASH_MODES.join(', ')}`,
    );
  }
  return code;
}

function resolveFlashFreq(chip: ChipInfo, freq: string | number): number {
  if (typeof freq === 'number') {
    if (!Number.isInteger(freq) || freq < 0 || freq > 0xf) {
      throw new RangeError(`flash frequency code ${freq} does not fit the header's 4-bit field`);
    }
    return freq;
  }
  const found = chip.flashFrequencies.find(([name]) => name === freq.toLowerCase());
  if (found === undefined) {
    const names = chip.flashFrequencies.map(([name]) => name).join(', ');
    throw new RangeError(`flash frequency ${freq} is not valid for ${chip.name}; use ${names}`);
  }
  return found[1];
}

function buildHeader(
  options: BuildAppImageOptions,
  chip: ChipInfo,
  flashModeCode: number,
  lowestRamAddress: number,
): Uint8Array {
  const header = new Uint8Array(HEADER.size);
  const view = new DataView(header.buffer);
  const sizeCode = FLASH_SIZES.indexOf(options.flashSize ?? '2MB');
  if (sizeCode < 0) {
    throw new RangeError(`unknown flash size ${options.flashSize}; use ${FLASH_SIZES.join(', ')}`);
  }
  const freqCode = resolveFlashFreq(chip, options.flashFreq ?? 0);
  const minRev = u16(options.minChipRev ?? 0, 'minChipRev');
  // The legacy byte only carries small revisions; ESP-IDF never derives one above 255.
  const legacy =
    options.minChipRevLegacy ??
    Math.min(0xff, chip.legacyMinRevIsMinor ? minRev % 100 : Math.floor(minRev / 100));
  header[HEADER.magic] = IMAGE_MAGIC;
  header[HEADER.spiMode] = flashModeCode;
  header[HEADER.spiSpeedSize] = (sizeCode << 4) | freqCode;
  view.setUint32(HEADER.entryAddr, u32(options.entryPoint ?? lowestRamAddress, 'entryPoint'), true);
  header[HEADER.wpPin] = WP_PIN_DISABLED;
  view.setUint16(HEADER.chipId, chip.id, true);
  header[HEADER.minChipRev] = u8(legacy, 'minChipRevLegacy');
  view.setUint16(HEADER.minChipRevFull, minRev, true);
  view.setUint16(HEADER.maxChipRevFull, u16(options.maxChipRev ?? 0xffff, 'maxChipRev'), true);
  header[HEADER.hashAppended] = options.hashAppended === false ? 0 : 1;
  return header;
}

function buildAppDesc(
  options: BuildAppImageOptions,
  pageSize: number,
  flashModeCode: number,
  payload: Uint8Array,
): Uint8Array {
  const desc = new Uint8Array(APP_DESC.size);
  const view = new DataView(desc.buffer);
  view.setUint32(APP_DESC.magicWord, APP_DESC_MAGIC, true);
  view.setUint32(APP_DESC.secureVersion, u32(options.secureVersion ?? 0, 'secureVersion'), true);
  writeCString(desc, APP_DESC.version, APP_DESC.versionSize, options.version, 'version');
  writeCString(desc, APP_DESC.projectName, APP_DESC.projectNameSize, options.project, 'project');
  writeCString(desc, APP_DESC.time, APP_DESC.timeSize, options.compileTime ?? '', 'compileTime');
  writeCString(desc, APP_DESC.date, APP_DESC.dateSize, options.compileDate ?? '', 'compileDate');
  writeCString(
    desc,
    APP_DESC.idfVer,
    APP_DESC.idfVerSize,
    options.idfVersion ?? 'v5.5.1',
    'idfVersion',
  );
  const elfSha = options.elfSha256 ?? sha256(payload);
  if (elfSha.length !== SHA256_LENGTH) {
    throw new RangeError(`elfSha256 must be ${SHA256_LENGTH} bytes, got ${elfSha.length}`);
  }
  desc.set(elfSha, APP_DESC.appElfSha256);
  view.setUint16(
    APP_DESC.minEfuseBlkRevFull,
    u16(options.minEfuseBlockRev ?? 0, 'minEfuseBlockRev'),
    true,
  );
  view.setUint16(
    APP_DESC.maxEfuseBlkRevFull,
    u16(options.maxEfuseBlockRev ?? 0xffff, 'maxEfuseBlockRev'),
    true,
  );
  desc[APP_DESC.mmuPageSize] = Math.log2(pageSize);
  desc[APP_DESC.spiFlashMode] = u8(options.appDescFlashMode ?? flashModeCode, 'appDescFlashMode');
  return desc;
}

function checkSection(s: Section): void {
  if (!Number.isInteger(s.address) || s.address < 0 || s.address > 0xffffffff) {
    throw new RangeError(`segment load address ${s.address} is not a 32-bit address`);
  }
  if (s.address % 4 !== 0 || s.data.length % 4 !== 0) {
    throw new RangeError(
      `segment at ${hex(s.address, 8)} is not 4-byte aligned (address and length must be)`,
    );
  }
  if (s.data.length >= MAX_SEGMENT_LENGTH) {
    throw new RangeError(`segment at ${hex(s.address, 8)} is 16 MB or more`);
  }
}

/**
 * elf2image's placement for images whose header lists every segment: each flash-mapped segment
 * goes where `(file offset of its data) % page == load address % page`, because the cache maps
 * whole pages; the gap before it is filled with the start of the next RAM segment when that is
 * worth a header, otherwise with a zero segment at load address 0.
 */
function layOutSegments(
  chip: ChipInfo,
  pageSize: number,
  sections: Section[],
  ramSorted: Section[],
): Section[] {
  const flash = sections
    .filter((s) => isFlashMapped(chip, s.address))
    .sort((a, b) => a.address - b.address);
  // elf2image moves .flash.appdesc first: on chips whose IROM and DROM share one bus range the
  // descriptor need not have the lowest address, but the bootloader reads it from segment 0.
  const descIndex = flash.findIndex((s) => s.isAppDesc);
  if (descIndex > 0) flash.unshift(...flash.splice(descIndex, 1));
  for (let i = 1; i < flash.length; i++) {
    const previous = flash[i - 1] as Section;
    const current = flash[i] as Section;
    if (Math.floor(current.address / pageSize) === Math.floor(previous.address / pageSize)) {
      throw new RangeError(
        `segment at ${hex(current.address, 8)} lands in the same ${pageSize / 1024} KB flash mapping as the one at ${hex(previous.address, 8)}; merge them`,
      );
    }
  }

  const ram = ramSorted.map((s) => ({ ...s }));
  const out: Section[] = [];
  let pos = HEADER.size;
  const emit = (s: Section) => {
    out.push(s);
    pos += SEGMENT_HEADER.size + s.data.length;
  };
  for (const segment of flash) {
    for (;;) {
      const pad = alignmentPadding(pos, segment.address, pageSize);
      if (pad === 0) break;
      const filler = ram[0];
      if (filler !== undefined && pad > SEGMENT_HEADER.size) {
        emit({ address: filler.address, data: filler.data.subarray(0, pad), isAppDesc: false });
        filler.data = filler.data.subarray(pad);
        filler.address += pad;
        if (filler.data.length === 0) ram.shift();
      } else {
        emit({ address: 0, data: new Uint8Array(pad), isAppDesc: false });
      }
    }
    emit(chip.id === 0 ? esp32MappedTail(segment, pos, pageSize) : segment);
  }
  for (const s of ram) emit(s);
  return out;
}

/** Data bytes a filler segment needs so the next segment's data lands page-aligned. */
function alignmentPadding(pos: number, address: number, pageSize: number): number {
  const alignPast = (address % pageSize) - SEGMENT_HEADER.size;
  let pad = pageSize - (pos % pageSize) + alignPast;
  if (pad === 0 || pad === pageSize) return 0;
  // The filler brings its own 8-byte header.
  pad -= SEGMENT_HEADER.size;
  if (pad < 0) pad += pageSize;
  return pad;
}

/**
 * The ESP32's older second-stage bootloaders did not map the last MMU page when a mapped segment
 * ran less than 0x24 bytes into it, so elf2image pads such segments.
 */
function esp32MappedTail(segment: Section, pos: number, pageSize: number): Section {
  const end = pos + SEGMENT_HEADER.size + segment.data.length;
  const remainder = end % pageSize;
  if (remainder >= 0x24) return segment;
  return { ...segment, data: concat([segment.data, new Uint8Array(0x24 - remainder)]) };
}

function padTo4(data: Uint8Array): Uint8Array {
  const pad = (4 - (data.length % 4)) % 4;
  return pad === 0 ? data : concat([data, new Uint8Array(pad)]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function uint(value: number, bits: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new RangeError(`${field} ${value} does not fit an unsigned ${bits}-bit field`);
  }
  return value;
}
const u8 = (v: number, f: string) => uint(v, 8, f);
const u16 = (v: number, f: string) => uint(v, 16, f);
const u32 = (v: number, f: string) => uint(v, 32, f);

/**
 * A copy of `image` with its `esp_app_desc_t.secure_version` (the anti-rollback counter) set,
 * checksum and appended SHA-256 brought up to date, as a build with another
 * CONFIG_BOOTLOADER_APP_SECURE_VERSION would have it. The image must be intact and unsigned:
 * a signature would no longer hold, so sign the result afterwards.
 */
export function withSecureVersion(image: Uint8Array, secureVersion: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, u32(secureVersion, 'secureVersion'), true);
  return withAppDescField(image, APP_DESC.secureVersion, bytes);
}

/**
 * A copy of `image` with its `esp_app_desc_t.version` (PROJECT_VER) set, as a build of another
 * version would have it; like {@link withSecureVersion}, sign the result afterwards.
 */
export function withAppVersion(image: Uint8Array, version: string): Uint8Array {
  const field = new Uint8Array(APP_DESC.versionSize);
  writeCString(field, 0, APP_DESC.versionSize, version, 'version');
  return withAppDescField(image, APP_DESC.version, field);
}

/** Writes `bytes` at `offset` into the app description, then mends checksum and hash. */
function withAppDescField(image: Uint8Array, offset: number, bytes: Uint8Array): Uint8Array {
  const info = parseAppImage(image);
  if (!info.checksumValid || info.hashValid === false) {
    throw new RangeError('the image is corrupt (checksum or SHA-256); rebuild it first');
  }
  const first = info.segments[0];
  if (first === undefined) throw new RangeError('the image has no segment, so no app descriptor');
  const out = Uint8Array.from(image);
  const at = first.dataOffset + offset;
  const before = out.slice(at, at + bytes.length);
  out.set(bytes, at);
  // The checksum is the XOR of all segment data: only the changed bytes move it.
  let checksum = out[info.checksum.offset] as number;
  for (let i = 0; i < bytes.length; i++)
    checksum ^= (before[i] as number) ^ (out[at + i] as number);
  out[info.checksum.offset] = checksum;
  if (info.hash.appended) {
    const end = info.imageLength - SHA256_LENGTH;
    out.set(sha256(out.subarray(0, end)), end);
  }
  return out;
}
