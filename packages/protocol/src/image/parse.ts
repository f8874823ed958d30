import { hex, readCString, sha256, toHex } from './bytes.ts';
import {
  type ChipInfo,
  chipById,
  flashFrequencyName,
  formatRevision,
  isFlashMapped,
  resolveChip,
} from './chips.ts';
import { ImageFormatError } from './errors.ts';
import {
  APP_DESC,
  APP_DESC_MAGIC,
  CHECKSUM_SEED,
  checksumOffset,
  FLASH_MODES,
  FLASH_SIZES,
  HEADER,
  IMAGE_MAGIC,
  MAX_SEGMENT_LENGTH,
  MAX_SEGMENTS,
  SEGMENT_HEADER,
  SHA256_LENGTH,
} from './layout.ts';
import { findSignatureSector } from './signature.ts';
import type { AppImageInfo, AppImageSegment } from './types.ts';

const REBUILD_HINT = 'the file is cut short; build it again or copy it again';
const APP_BIN_HINT = 'flash the app .bin that ESP-IDF writes to build/<project>.bin';

/**
 * Reads an ESP-IDF app image (the `build/<project>.bin` that OTA sends) and checks its checksum
 * and appended SHA-256 the way the ESP-IDF bootloader and `esptool image-info` do.
 *
 * Structural problems (not an image, truncated, too many segments, no app descriptor) throw
 * {@link ImageFormatError}; nothing else is thrown for any input. A wrong checksum or hash is
 * not an error: it is reported in `checksumValid` / `hashValid` with both values.
 */
export function parseAppImage(data: Uint8Array): AppImageInfo {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  checkMagic(data);
  if (data.length < HEADER.size) {
    throw new ImageFormatError(
      'TRUNCATED',
      `truncated ESP app image: ${data.length} bytes is shorter than the ${HEADER.size}-byte image header; ${REBUILD_HINT}`,
      data.length,
    );
  }

  const segmentCount = data[HEADER.segmentCount] ?? 0;
  if (segmentCount > MAX_SEGMENTS) {
    throw new ImageFormatError(
      'TOO_MANY_SEGMENTS',
      `corrupt ESP app image: header says ${segmentCount} segments, the bootloader accepts at most ${MAX_SEGMENTS}; the file is damaged or not an app image (${APP_BIN_HINT})`,
      HEADER.segmentCount,
    );
  }
  if (segmentCount === 0) {
    throw new ImageFormatError(
      'NO_SEGMENTS',
      `corrupt ESP app image: header says 0 segments, so there is no app descriptor and nothing to run; ${APP_BIN_HINT}`,
      HEADER.segmentCount,
    );
  }
  const hashFlag = data[HEADER.hashAppended] ?? 0;
  if (hashFlag > 1) {
    throw new ImageFormatError(
      'BAD_HASH_FLAG',
      `corrupt ESP app image: hash_appended byte at offset ${HEADER.hashAppended} is ${hex(hashFlag, 2)}, expected 0 or 1; the header is damaged, build the image again`,
      HEADER.hashAppended,
    );
  }

  const chipId = view.getUint16(HEADER.chipId, true);
  const chip = chipById(chipId);
  const warnings: string[] = [];
  if (chip === undefined) {
    warnings.push(
      `chip id ${chipId} is not a chip this tool knows; the image is for a newer chip or its header is damaged`,
    );
  }

  const segments: AppImageSegment[] = [];
  let checksum = CHECKSUM_SEED;
  let pos = HEADER.size;
  for (let index = 0; index < segmentCount; index++) {
    if (pos + SEGMENT_HEADER.size > data.length) {
      throw new ImageFormatError(
        'TRUNCATED',
        `truncated ESP app image: the header announces ${segmentCount} segments but the file ends at offset ${hex(data.length, 0)}, inside the header of segment ${index}; ${REBUILD_HINT}`,
        data.length,
      );
    }
    const loadAddress = view.getUint32(pos + SEGMENT_HEADER.loadAddr, true);
    const length = view.getUint32(pos + SEGMENT_HEADER.dataLen, true);
    const dataOffset = pos + SEGMENT_HEADER.size;
    if (length % 4 !== 0 || length >= MAX_SEGMENT_LENGTH) {
      throw new ImageFormatError(
        'BAD_SEGMENT_LENGTH',
        `corrupt ESP app image: segment ${index} at offset ${hex(pos, 0)} has length ${hex(length, 0)}, but the bootloader needs a multiple of 4 below 16 MB; the file is damaged, build it again`,
        pos + SEGMENT_HEADER.dataLen,
      );
    }
    if (dataOffset + length > data.length) {
      throw new ImageFormatError(
        'SEGMENT_PAST_END',
        `truncated ESP app image: segment ${index} (load address ${hex(loadAddress, 8)}) needs ${length} bytes from offset ${hex(dataOffset, 0)} but the file ends at ${hex(data.length, 0)}; ${REBUILD_HINT}`,
        dataOffset,
      );
    }
    for (let i = dataOffset; i < dataOffset + length; i++) checksum ^= data[i] ?? 0;
    segments.push({
      index,
      loadAddress,
      offset: pos,
      dataOffset,
      length,
      kind: segmentKind(chip, loadAddress),
    });
    pos = dataOffset + length;
  }

  const appDescOffset = HEADER.size + SEGMENT_HEADER.size;
  const first = segments[0];
  const descMagic =
    first !== undefined && first.length >= APP_DESC.size
      ? view.getUint32(appDescOffset + APP_DESC.magicWord, true)
      : undefined;
  if (descMagic !== APP_DESC_MAGIC) {
    throw new ImageFormatError(
      'NO_APP_DESC',
      noAppDescMessage(data, first?.length ?? 0, descMagic),
      appDescOffset,
    );
  }

  const storedChecksumOffset = checksumOffset(pos);
  if (storedChecksumOffset >= data.length) {
    throw new ImageFormatError(
      'TRUNCATED',
      `truncated ESP app image: the checksum byte belongs at offset ${hex(storedChecksumOffset, 0)} but the file ends at ${hex(data.length, 0)}; ${REBUILD_HINT}`,
      data.length,
    );
  }
  const storedChecksum = data[storedChecksumOffset] ?? 0;
  const hashedLength = storedChecksumOffset + 1;
  let imageLength = hashedLength;
  let hash: AppImageInfo['hash'] = { appended: false, stored: null, computed: null, valid: null };
  if (hashFlag === 1) {
    imageLength += SHA256_LENGTH;
    if (imageLength > data.length) {
      throw new ImageFormatError(
        'TRUNCATED',
        `truncated ESP app image: the header says a SHA-256 digest follows the checksum at offset ${hex(hashedLength, 0)}, but only ${data.length - hashedLength} of its ${SHA256_LENGTH} bytes are there; ${REBUILD_HINT}`,
        data.length,
      );
    }
    const stored = toHex(data.subarray(hashedLength, imageLength));
    const computed = toHex(sha256(data.subarray(0, hashedLength)));
    hash = { appended: true, stored, computed, valid: stored === computed };
  }

  // A Secure Boot v2 signature sector after 0xFF padding is what signing appends; signature.ts
  // reads and checks it (readSignatures), so it is not unknown trailing data.
  const sigAt = findSignatureSector(data);
  const signedTail =
    sigAt !== undefined &&
    sigAt >= imageLength &&
    data.subarray(imageLength, sigAt).every((b) => b === 0xff);
  if (imageLength < data.length && !signedTail) {
    warnings.push(
      `${data.length - imageLength} bytes follow the image at offset ${hex(imageLength, 0)} (a signature block or padding); they are sent with the image but not checked here`,
    );
  }

  const d = appDescOffset;
  const mmuLog2 = data[d + APP_DESC.mmuPageSize] ?? 0;
  const mmuPageSize = mmuLog2 === 0 || mmuLog2 > 31 ? null : 2 ** mmuLog2;
  checkMappedAlignment(segments, mmuPageSize ?? 0x10000, warnings);

  const flashModeCode = data[HEADER.spiMode] ?? 0;
  const speedSize = data[HEADER.spiSpeedSize] ?? 0;
  const freqCode = speedSize & 0x0f;
  const sizeCode = speedSize >> 4;
  const flashModeName = FLASH_MODES[flashModeCode] ?? null;
  const flashSizeName = FLASH_SIZES[sizeCode] ?? null;
  const freqName = chip === undefined ? null : (flashFrequencyName(chip, freqCode) ?? null);
  if (flashModeName === null) warnings.push(`unknown flash mode ${flashModeCode} in the header`);
  if (flashSizeName === null) warnings.push(`unknown flash size code ${sizeCode} in the header`);
  if (chip !== undefined && freqName === null) {
    warnings.push(`flash frequency code ${hex(freqCode, 1)} means nothing on ${chip.name}`);
  }
  const minChipRev = view.getUint16(HEADER.minChipRevFull, true);
  const maxChipRev = view.getUint16(HEADER.maxChipRevFull, true);
  if (minChipRev > maxChipRev) {
    warnings.push(
      `minimum chip revision ${formatRevision(minChipRev)} is above the maximum ${formatRevision(maxChipRev)}; no chip can boot this image`,
    );
  }

  return {
    chip: chip?.name ?? `unknown chip (id ${chipId})`,
    chipId,
    chipKnown: chip !== undefined,
    target: chip?.target ?? null,
    project: readCString(data, d + APP_DESC.projectName, APP_DESC.projectNameSize),
    version: readCString(data, d + APP_DESC.version, APP_DESC.versionSize),
    idfVersion: readCString(data, d + APP_DESC.idfVer, APP_DESC.idfVerSize),
    secureVersion: view.getUint32(d + APP_DESC.secureVersion, true),
    compileDate: readCString(data, d + APP_DESC.date, APP_DESC.dateSize),
    compileTime: readCString(data, d + APP_DESC.time, APP_DESC.timeSize),
    elfSha256: toHex(data.subarray(d + APP_DESC.appElfSha256, d + APP_DESC.appElfSha256 + 32)),
    minEfuseBlockRev: view.getUint16(d + APP_DESC.minEfuseBlkRevFull, true),
    maxEfuseBlockRev: view.getUint16(d + APP_DESC.maxEfuseBlkRevFull, true),
    mmuPageSize,
    size: data.length,
    imageLength,
    segments,
    flashMode: { code: flashModeCode, name: flashModeName },
    flashSize: {
      code: sizeCode,
      name: flashSizeName,
      bytes: flashSizeName === null ? null : 2 ** sizeCode * 0x100000,
    },
    flashFreq: {
      code: freqCode,
      name: freqName,
      esp32Name: flashFrequencyName(resolveChip('esp32'), freqCode) ?? null,
    },
    entryPoint: view.getUint32(HEADER.entryAddr, true),
    minChipRev,
    maxChipRev,
    minChipRevLegacy: data[HEADER.minChipRev] ?? 0,
    wpPin: data[HEADER.wpPin] ?? 0,
    checksum: {
      stored: storedChecksum,
      computed: checksum,
      valid: storedChecksum === checksum,
      offset: storedChecksumOffset,
    },
    hash,
    checksumValid: storedChecksum === checksum,
    hashValid: hash.valid,
    imageSha256: toHex(sha256(data)),
    warnings,
  };
}

function checkMagic(data: Uint8Array): void {
  const first = data[0];
  if (first === undefined) {
    throw new ImageFormatError(
      'EMPTY',
      `not an ESP app image: the file is empty; ${APP_BIN_HINT}`,
      0,
    );
  }
  if (first === IMAGE_MAGIC) return;
  throw new ImageFormatError(
    'BAD_MAGIC',
    `not an ESP app image: first byte is ${hex(first, 2)}, expected ${hex(IMAGE_MAGIC, 2)} (${magicHint(data)})`,
    0,
  );
}

function startsWith(data: Uint8Array, prefix: readonly number[]): boolean {
  return prefix.every((byte, i) => data[i] === byte);
}

/** Names the likely mistake for the files people most often pass instead of an app image. */
function magicHint(data: Uint8Array): string {
  if (data[0] === 0x7f) {
    return startsWith(data, [0x7f, 0x45, 0x4c, 0x46])
      ? 'this is an ELF file; flash the .bin from build/, not the .elf'
      : 'is this an ELF file? flash the .bin from build/, not the .elf';
  }
  if (data[0] === 0xff) {
    return 'it starts like erased flash; for a flash dump or merged image, pass only the app partition, or the app .bin from build/';
  }
  if (startsWith(data, [0xaa, 0x50])) {
    return 'this looks like a partition table (partition-table.bin); flash the app .bin from build/';
  }
  if (data[0] === 0xea) {
    return 'this looks like an ESP8266 v2 image; this tool handles ESP32-family app images';
  }
  if (data[0] === 0x3a) {
    return 'this looks like an Intel HEX file; use the binary .bin from build/';
  }
  if (startsWith(data, [0x1f, 0x8b])) return 'this is gzip-compressed; decompress it first';
  if (startsWith(data, [0x50, 0x4b])) return 'this is a zip archive; extract the app .bin first';
  return APP_BIN_HINT;
}

function noAppDescMessage(data: Uint8Array, firstLength: number, magic: number | undefined) {
  const at = HEADER.size + SEGMENT_HEADER.size;
  const found =
    magic === undefined
      ? `the first segment is ${firstLength} bytes, too short for the ${APP_DESC.size}-byte esp_app_desc_t`
      : `the first segment starts with ${hex(magic, 8)}, not the esp_app_desc_t magic ${hex(APP_DESC_MAGIC, 8)}`;
  // esp_bootloader_desc_t starts with magic byte 0x50 at the same place in bootloader images.
  const hint =
    data[at] === 0x50
      ? 'this looks like a bootloader image (bootloader.bin); OTA updates take the app .bin from build/'
      : 'this is not an ESP-IDF app image (a bootloader or a non-IDF program?); OTA updates take the app .bin from build/';
  return `not an ESP app image: ${found} (${hint})`;
}

function segmentKind(chip: ChipInfo | undefined, address: number): AppImageSegment['kind'] {
  // esp_image_format.c: load addresses below 0x10000000 are reserved (0 is elf2image padding).
  if (chip !== undefined && isFlashMapped(chip, address)) return 'flash';
  if (address < 0x10000000) return 'padding';
  return chip === undefined ? 'unknown' : 'ram';
}

function checkMappedAlignment(segments: AppImageSegment[], page: number, warnings: string[]) {
  for (const s of segments) {
    if (s.kind === 'flash' && s.dataOffset % page !== s.loadAddress % page) {
      warnings.push(
        `segment ${s.index} (load address ${hex(s.loadAddress, 8)}) sits at file offset ${hex(s.dataOffset, 0)}, which the cache cannot map at that address with ${page / 1024} KB pages; the bootloader will refuse the image`,
      );
    }
  }
}
