/**
 * ESP-IDF Secure Boot v2 signatures, in the format `espsecure.py sign_data --version 2` writes
 * and the bootloader and `esp_secure_boot_verify_sbv2_signature_block()` read
 * (components/bootloader_support/include/esp_secure_boot.h, `ets_secure_boot_sig_block_t`):
 *
 * - the signed data is the image padded with 0xFF to a whole 4 KB flash sector;
 * - then one signature sector of 4 KB: up to three 1216-byte signature blocks, the rest 0xFF;
 * - a block is magic 0xE7, version (0x02 RSA-3072-PSS, 0x03 ECDSA), two reserved bytes, the
 *   SHA-256 of the signed data, the public key, the signature, a CRC-32 of the 1196 bytes
 *   before it, and 16 zero bytes;
 * - RSA: n (384 bytes), e (u32), rinv = 2^6144 mod n (384 bytes), m' = -n^-1 mod 2^32 (u32),
 *   then the RSA-PSS signature (SHA-256, MGF1-SHA-256, 32-byte salt), all little-endian;
 * - ECDSA: curve id (1 P-192, 2 P-256), the point X then Y (little-endian, 32 bytes each), the
 *   signature r then s (little-endian), then 1031 zero bytes.
 * The digest of a public key, which eFuses (or this firmware's Kconfig) hold, is the SHA-256 of
 * the key part of its block: 776 bytes for RSA, 65 for ECDSA.
 *
 * This module reads and checks signatures and runs in a page as well as in Node: verification is
 * Web Crypto's (`globalThis.crypto.subtle`, in Node 20 too), so it is asynchronous. Signing needs
 * a private key and stays in Node: `signing.ts`, exported by the package's Node entry only.
 */
import { crc32 } from '../v2/codec.ts';
import { sha256, toHex } from './bytes.ts';

export const SIG_SECTOR_SIZE = 4096;
export const SIG_BLOCK_SIZE = 1216;
export const SIG_BLOCK_MAGIC = 0xe7;
export const SIG_BLOCK_VERSION_RSA = 0x02;
export const SIG_BLOCK_VERSION_ECDSA = 0x03;
/** The bootloader reads at most three signature blocks. */
export const MAX_SIG_BLOCKS = 3;

export const RSA_BITS = 3072;
export const RSA_BYTES = RSA_BITS / 8;
/** Offsets in a block (esp_secure_boot.h). */
export const DIGEST_AT = 4;
export const KEY_AT = 36;
export const RSA_KEY_LENGTH = RSA_BYTES + 4 + RSA_BYTES + 4;
export const RSA_SIG_AT = KEY_AT + RSA_KEY_LENGTH;
export const ECDSA_KEY_LENGTH = 1 + 64;
export const ECDSA_SIG_AT = KEY_AT + ECDSA_KEY_LENGTH;
export const CRC_AT = 1196;

export type SignatureScheme = 'rsa3072' | 'ecdsa256';

export class SignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SignatureError';
  }
}

/** One parsed signature block and what checking it found. */
export interface SignatureBlockInfo {
  index: number;
  scheme: SignatureScheme | 'ecdsa192';
  /** SHA-256 of the key part of the block: the digest eFuses or Kconfig hold. */
  keyDigest: string;
  /** The image digest the block names. */
  imageDigest: string;
  crcValid: boolean;
  /** The block names the digest of the data it follows. */
  digestMatches: boolean;
  /** The signature verifies with the block's own public key. */
  signatureValid: boolean;
  /** All three: the block is as a bootloader with this key accepts it. */
  valid: boolean;
}

export interface SignatureSectorInfo {
  /** Bytes before the signature sector: the signed data (image + 0xFF padding). */
  signedLength: number;
  /** SHA-256 of those bytes. */
  signedDigest: string;
  blocks: SignatureBlockInfo[];
}

export function le(value: bigint, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let v = value;
  for (let i = 0; i < bytes; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (v !== 0n) throw new RangeError(`value does not fit ${bytes} bytes`);
  return out;
}

function fromLe(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i] as number);
  return v;
}

/** base64url without padding, as a JWK holds numbers; no Buffer, so it runs in a page too. */
function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function reversed(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(bytes).reverse();
}

/** Modular inverse of a modulo m (a and m coprime): m' of the key layout, not cryptography. */
export function modInverse(a: bigint, m: bigint): bigint {
  let [oldR, r] = [((a % m) + m) % m, m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return ((oldS % m) + m) % m;
}

/** rinv of the key layout: 2^6144 mod n, what the ROM's Montgomery arithmetic starts from. */
export function rsaRinv(n: bigint): bigint {
  return (1n << BigInt(RSA_BITS * 2)) % n;
}

/** The data a signature covers: `data` padded with 0xFF to a whole flash sector. */
export function padToSector(data: Uint8Array): Uint8Array {
  const rest = data.length % SIG_SECTOR_SIZE;
  if (rest === 0) return data;
  const out = new Uint8Array(data.length + SIG_SECTOR_SIZE - rest).fill(0xff);
  out.set(data, 0);
  return out;
}

/**
 * Where the signature sector starts, if `data` ends in one: its last whole 4 KB sector, sector
 * aligned, starting with a block's magic and version.
 */
export function findSignatureSector(data: Uint8Array): number | undefined {
  if (data.length < 2 * SIG_SECTOR_SIZE || data.length % SIG_SECTOR_SIZE !== 0) return undefined;
  const at = data.length - SIG_SECTOR_SIZE;
  const version = data[at + 1];
  if (
    data[at] !== SIG_BLOCK_MAGIC ||
    (version !== SIG_BLOCK_VERSION_RSA && version !== SIG_BLOCK_VERSION_ECDSA)
  ) {
    return undefined;
  }
  return at;
}

/** Big-endian bytes without leading zeros, as JWK numbers are. */
function trimmed(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

type Subtle = NonNullable<typeof globalThis.crypto>['subtle'];

/** Web Crypto, in a page or in Node 20 (globalThis.crypto). */
function subtle(): Subtle {
  const crypto = globalThis.crypto?.subtle;
  if (crypto === undefined) {
    throw new SignatureError(
      'checking signatures needs Web Crypto (crypto.subtle): use Node 20 or newer, or a page served over https or localhost',
    );
  }
  return crypto;
}

/** The RSA-3072-PSS signature of a block, checked over `signedData` with the block's own key. */
async function verifyRsa(block: Uint8Array, keyBytes: Uint8Array, signedData: Uint8Array) {
  const key = await subtle().importKey(
    'jwk',
    {
      kty: 'RSA',
      n: base64url(trimmed(reversed(keyBytes.subarray(0, RSA_BYTES)))),
      e: base64url(trimmed(reversed(keyBytes.subarray(RSA_BYTES, RSA_BYTES + 4)))),
    },
    { name: 'RSA-PSS', hash: 'SHA-256' },
    false,
    ['verify'],
  );
  return subtle().verify(
    { name: 'RSA-PSS', saltLength: 32 },
    key,
    reversed(block.subarray(RSA_SIG_AT, RSA_SIG_AT + RSA_BYTES)),
    Uint8Array.from(signedData), // a copy on an ArrayBuffer, as DOM's BufferSource type wants
  );
}

/** The ECDSA P-256 signature of a block (r, s little-endian), checked over `signedData`. */
async function verifyEcdsa(block: Uint8Array, keyBytes: Uint8Array, signedData: Uint8Array) {
  const point = new Uint8Array(65);
  point[0] = 0x04; // uncompressed X, Y (big-endian) as 'raw' import takes it
  point.set(reversed(keyBytes.subarray(1, 33)), 1);
  point.set(reversed(keyBytes.subarray(33, 65)), 33);
  const key = await subtle().importKey(
    'raw',
    point,
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['verify'],
  );
  const rs = new Uint8Array(64);
  rs.set(reversed(block.subarray(ECDSA_SIG_AT, ECDSA_SIG_AT + 32)), 0);
  rs.set(reversed(block.subarray(ECDSA_SIG_AT + 32, ECDSA_SIG_AT + 64)), 32);
  return subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, key, rs, Uint8Array.from(signedData));
}

/** Checks one block against the data it follows (`signedDigest` its SHA-256), as the bootloader would. */
export async function checkSignatureBlock(
  block: Uint8Array,
  signedData: Uint8Array,
  index = 0,
  signedDigest: string = toHex(sha256(signedData)),
): Promise<SignatureBlockInfo> {
  if (block.length < SIG_BLOCK_SIZE) {
    throw new SignatureError(
      `a signature block is ${SIG_BLOCK_SIZE} bytes, got ${block.length}; pass a whole block from the signature sector`,
    );
  }
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const isRsa = block[1] === SIG_BLOCK_VERSION_RSA;
  const keyBytes = block.subarray(KEY_AT, KEY_AT + (isRsa ? RSA_KEY_LENGTH : ECDSA_KEY_LENGTH));
  const scheme: SignatureBlockInfo['scheme'] = isRsa
    ? 'rsa3072'
    : block[KEY_AT] === 1
      ? 'ecdsa192'
      : 'ecdsa256';
  const imageDigest = toHex(block.subarray(DIGEST_AT, DIGEST_AT + 32));
  const crcValid = view.getUint32(CRC_AT, true) === crc32(block.subarray(0, CRC_AT)) >>> 0;
  const digestMatches = imageDigest === signedDigest;
  let signatureValid = false;
  try {
    if (isRsa) signatureValid = await verifyRsa(block, keyBytes, signedData);
    else if (scheme === 'ecdsa256') signatureValid = await verifyEcdsa(block, keyBytes, signedData);
  } catch (error) {
    if (error instanceof SignatureError) throw error;
    signatureValid = false; // a key that is not a key: not valid, said in the result
  }
  // The rinv and m' an RSA block carries must belong to its n, or the ROM's Montgomery
  // arithmetic would check against another key than the digest names.
  if (isRsa && signatureValid) {
    const n = fromLe(keyBytes.subarray(0, RSA_BYTES));
    const rinv = fromLe(keyBytes.subarray(RSA_BYTES + 4, RSA_BYTES * 2 + 4));
    const mdash = fromLe(keyBytes.subarray(RSA_BYTES * 2 + 4));
    const ok = rinv === rsaRinv(n) && ((mdash * n) & 0xffffffffn) === 0xffffffffn;
    signatureValid = ok;
  }
  return {
    index,
    scheme,
    keyDigest: toHex(sha256(keyBytes)),
    imageDigest,
    crcValid,
    digestMatches,
    signatureValid,
    valid: crcValid && digestMatches && signatureValid,
  };
}

/** The signature sector of a signed image, each block checked; undefined for an unsigned one. */
export async function readSignatures(data: Uint8Array): Promise<SignatureSectorInfo | undefined> {
  const at = findSignatureSector(data);
  if (at === undefined) return undefined;
  const signed = data.subarray(0, at);
  const signedDigest = toHex(sha256(signed));
  const blocks: SignatureBlockInfo[] = [];
  for (let i = 0; i < MAX_SIG_BLOCKS; i++) {
    const block = data.subarray(at + i * SIG_BLOCK_SIZE, at + (i + 1) * SIG_BLOCK_SIZE);
    if (block[0] !== SIG_BLOCK_MAGIC) break;
    blocks.push(await checkSignatureBlock(block, signed, i, signedDigest));
  }
  return { signedLength: at, signedDigest, blocks };
}
