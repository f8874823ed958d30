import {
  type AppImageInfo,
  FLASH_SIZES,
  ImageFormatError,
  parseAppImage,
  readSignatures,
  type SignatureSectorInfo,
  signatureProblem,
  signatureText,
} from '@esp-ble-ota/protocol';
import { CliError } from './errors.ts';
import { ExitCode } from './exit-codes.ts';
import { readInputFile } from './files.ts';

export interface LoadedImage {
  path: string;
  bytes: Uint8Array;
  info: AppImageInfo;
  /** The Secure Boot v2 signature sector, each block checked; undefined when unsigned. */
  signatures?: SignatureSectorInfo;
}

const BUILD_HINT = 'pass the app image that ESP-IDF builds (build/<project>.bin)';

/**
 * The largest file that can be an app image: the largest flash an image header can name (its
 * size code n means 2^n MiB). A larger file is refused before it is read.
 */
export const MAX_IMAGE_BYTES = 2 ** (FLASH_SIZES.length - 1) * 1024 * 1024;

/**
 * Read and parse an image file. A path that names no readable regular file is a usage error; a
 * file too large to be an app image, or that is none, is IMAGE_INVALID.
 */
export async function loadImage(path: string): Promise<LoadedImage> {
  const bytes = await readInputFile(path, {
    noun: 'image file',
    hint: BUILD_HINT,
    maxBytes: MAX_IMAGE_BYTES,
    tooLarge: (size) => ({
      exitCode: ExitCode.IMAGE_INVALID,
      message: `${path} is ${size}, too large to be an ESP app image: one is at most ${MAX_IMAGE_BYTES / 1024 / 1024} MiB (the largest flash its header can name); ${BUILD_HINT}`,
    }),
  });
  try {
    const info = parseAppImage(bytes);
    const signatures = await readSignatures(bytes);
    return signatures === undefined ? { path, bytes, info } : { path, bytes, info, signatures };
  } catch (error) {
    if (error instanceof ImageFormatError) {
      throw new CliError(ExitCode.IMAGE_INVALID, `${path}: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

const hex8 = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;

/**
 * Refuse an image whose checksum or appended SHA-256 is wrong: the bootloader would reject it
 * after the whole upload, so say so before the first byte goes out.
 */
export function assertImageIntact(image: LoadedImage): void {
  const { info, path } = image;
  if (!info.checksumValid) {
    throw new CliError(
      ExitCode.IMAGE_INVALID,
      `${path} is corrupt: its checksum byte is ${hex8(info.checksum.stored)} but the segments sum to ${hex8(info.checksum.computed)}; the bootloader would reject it. Rebuild the image or copy it again.`,
    );
  }
  if (info.hashValid === false) {
    throw new CliError(
      ExitCode.IMAGE_INVALID,
      `${path} is corrupt: its appended SHA-256 (${info.hash.stored}) does not match its content (${info.hash.computed}); the bootloader would reject it. Rebuild the image or copy it again.`,
    );
  }
}

/** The fields `info --json` promises, plus the rest of what the inspector found. */
export function imageJson(image: LoadedImage): Record<string, unknown> {
  const { info } = image;
  return {
    file: image.path,
    chip: info.chip,
    chipId: info.chipId,
    project: info.project,
    version: info.version,
    idfVersion: info.idfVersion,
    secureVersion: info.secureVersion,
    size: info.size,
    checksumValid: info.checksumValid,
    hashValid: info.hashValid,
    target: info.target,
    compileDate: info.compileDate,
    compileTime: info.compileTime,
    elfSha256: info.elfSha256,
    imageSha256: info.imageSha256,
    imageLength: info.imageLength,
    segments: info.segments.length,
    flashMode: info.flashMode.name,
    flashSize: info.flashSize.name,
    flashFreq: info.flashFreq.name,
    entryPoint: info.entryPoint,
    minChipRev: info.minChipRev,
    maxChipRev: info.maxChipRev,
    signed: image.signatures !== undefined,
    signatures:
      image.signatures?.blocks.map((b) => ({
        scheme: b.scheme,
        keyDigest: b.keyDigest,
        valid: b.valid,
        crcValid: b.crcValid,
        digestMatches: b.digestMatches,
        signatureValid: b.signatureValid,
      })) ?? [],
    warnings: info.warnings,
  };
}

/** What is wrong with a signature block (the protocol package words it for every front end). */
export { signatureProblem };

/** The lines `info` prints for the signature sector. */
function signatureRows(image: LoadedImage): [string, string][] {
  const sig = image.signatures;
  if (sig === undefined) return [['Signature', 'none (not signed for Secure Boot v2)']];
  return sig.blocks.map((b) => [`Signature ${b.index + 1}`, signatureText(b)]);
}

export function imageText(image: LoadedImage): string {
  const { info } = image;
  const rows: [string, string][] = [
    ['File', image.path],
    ['Chip', `${info.chip} (chip id ${info.chipId})`],
    ['Project', info.project],
    ['Version', info.version],
    ['ESP-IDF', info.idfVersion],
    ['Secure version', String(info.secureVersion)],
    ['Compiled', `${info.compileDate} ${info.compileTime}`.trim() || '(not recorded)'],
    ['Size', `${info.size} bytes`],
    ['Segments', String(info.segments.length)],
    [
      'Flash',
      `${info.flashMode.name ?? info.flashMode.code} ${info.flashSize.name ?? info.flashSize.code} ${info.flashFreq.name ?? info.flashFreq.code}`,
    ],
    ['Entry point', `0x${info.entryPoint.toString(16).padStart(8, '0')}`],
    [
      'Checksum',
      info.checksumValid
        ? `valid (${hex8(info.checksum.stored)})`
        : `INVALID (stored ${hex8(info.checksum.stored)}, computed ${hex8(info.checksum.computed)})`,
    ],
    [
      'Hash',
      info.hashValid === null
        ? 'not appended'
        : info.hashValid
          ? 'valid'
          : `INVALID (stored ${info.hash.stored}, computed ${info.hash.computed})`,
    ],
    ['ELF SHA-256', info.elfSha256],
    ['Image SHA-256', info.imageSha256],
    ...signatureRows(image),
  ];
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  const lines = rows.map(([k, v]) => `${`${k}:`.padEnd(width + 1)}${v}`);
  for (const warning of info.warnings) lines.push(`warning: ${warning}`);
  return `${lines.join('\n')}\n`;
}
