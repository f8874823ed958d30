import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { buildAppImage, parseAppImage, signImage } from '@esp-ble-ota/protocol';
import {
  defaultDeviceProgram,
  type RealisticImage,
  realisticImage,
  realisticImageMissing,
  rigSigningKey,
} from '@esp-ble-ota/sim';
import type { DeflateImage } from './results.ts';

export { type RealisticImage, realisticImage, realisticImageMissing };

/** 1 MiB, issue 7's image size. */
export const MIB = 1024 * 1024;

/** esp_app_desc_t: what segment 0 holds before the host payload. */
const APP_DESC_BYTES = 256;

/** The firmware host build's directory (device program, the app images per chip). */
export const hostBuildDir = join(defaultDeviceProgram, '..');

/**
 * Deterministic bytes no compressor can shrink (xorshift32), so that padding adds size without
 * flattering compression: what deflate saves comes from the host app alone.
 */
export function incompressible(length: number, seed = 0x2545f491): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export interface BenchImage {
  bytes: Uint8Array;
  version: string;
  /** Bytes of the host app executable part (compressible) and of the padding (not). */
  appBytes: number;
  paddingBytes: number;
}

/**
 * A valid ESP app image of `size` bytes that boots on the simulated device: the host build's app
 * image for `chip` (esp-app-image's output), stamped with `version` and padded with
 * incompressible bytes after the host executable inside segment 0 (the bootloader emulation
 * reads only the executable the payload header names). Each version gives another SHA-256, so
 * the device never answers "already installed". Signed with the rig's key unless `signed` is false
 * (its boards take signed images only); the signature sector is part of `size`.
 */
export async function benchImage(
  chip: string,
  version: string,
  size = MIB,
  { signed = true }: { signed?: boolean } = {},
): Promise<BenchImage> {
  if (signed) {
    // The rig's boards take images signed by its key only (the firmware's secure default):
    // the unsigned image a sector short, then the signature sector, gives `size` again.
    const plain = await benchImage(chip, version, sizeBeforeSigning(size), { signed: false });
    return { ...plain, bytes: await signForRig(plain.bytes) };
  }
  const path = join(hostBuildDir, `ble-ota-app-${chip}.bin`);
  if (!existsSync(path)) {
    throw new Error(
      `no host app image for ${chip} at ${path}: build the firmware's host build first (pnpm --filter @esp-ble-ota/firmware-host build)`,
    );
  }
  const base = new Uint8Array(await readFile(path));
  const info = parseAppImage(base);
  const seg = info.segments[0];
  if (!seg) throw new Error(`${path} has no segment`);
  const payload = base.subarray(seg.dataOffset + APP_DESC_BYTES, seg.dataOffset + seg.length);
  const build = (padding: number) =>
    buildAppImage({
      chip: info.chipId,
      project: info.project,
      version,
      idfVersion: info.idfVersion,
      compileDate: info.compileDate,
      compileTime: info.compileTime,
      elfSha256: Buffer.from(info.elfSha256, 'hex'),
      flashSize: info.flashSize.name as '4MB',
      minChipRev: info.minChipRev,
      maxChipRev: info.maxChipRev,
      payload: concat(payload, incompressible(padding)),
    });
  const unpadded = build(0);
  if (unpadded.length > size) {
    throw new Error(
      `the host app image for ${chip} is ${unpadded.length} bytes, more than the ${size} asked for`,
    );
  }
  // The image grows byte for byte with the padding, up to the 16-byte alignment of the checksum.
  let padding = size - unpadded.length;
  let bytes = build(padding);
  while (bytes.length > size && padding > 0) {
    padding -= bytes.length - size;
    bytes = build(Math.max(0, padding));
  }
  return { bytes, version, appBytes: payload.length, paddingBytes: Math.max(0, padding) };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The unsigned size that signing brings to `size` (rounded down to a sector): the signature
 * pads the image to a 4 KB sector and adds its own sector.
 */
export function sizeBeforeSigning(size: number): number {
  return Math.floor(size / 4096) * 4096 - 4096;
}

const signedCache = new Map<string, Uint8Array>();

/**
 * `image` signed with the rig's key, which the rig's boards trust by default. An ECDSA signature
 * is new each time it is made; the same image is signed once per process, so that runs in one
 * process send the same bytes (runs in two processes differ in the signature sector).
 */
export async function signForRig(image: Uint8Array): Promise<Uint8Array> {
  const id = createHash('sha256').update(image).digest('hex');
  const known = signedCache.get(id);
  if (known) return known;
  const signed = signImage(image, [(await rigSigningKey()).key]);
  signedCache.set(id, signed);
  return signed;
}

/**
 * The realistic image of `size` bytes, signed with the rig's key (the unsigned image a sector
 * short, then the signature sector).
 */
export async function signedRealisticImage(
  chip: string,
  version: string,
  size = MIB,
): Promise<RealisticImage> {
  const plain = await realisticImage(chip, version, sizeBeforeSigning(size));
  return { ...plain, bytes: await signForRig(plain.bytes) };
}

/** What the bench's v2+deflate column sends at `size` bytes, and its deflate ratio. */
export async function deflateImageInfo(size = MIB): Promise<DeflateImage> {
  const reason = realisticImageMissing();
  if (reason === undefined) {
    const r = await realisticImage('esp32c3', 'bench-ratio', size);
    return {
      kind: 'realistic',
      deflateRatio: r.deflateRatio,
      codeBytes: r.codeBytes,
      copies: r.copies,
    };
  }
  const h = await benchImage('esp32', 'bench-ratio', size);
  return {
    kind: 'host-padded',
    deflateRatio: deflateSync(h.bytes, { level: 9 }).length / h.bytes.length,
    reason,
  };
}
