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
 * All cryptography is node:crypto (OpenSSL); this module only lays the bytes out.
 */
import {
  constants,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { crc32 } from 'node:zlib';
import { sha256, toHex } from './bytes.ts';

export const SIG_SECTOR_SIZE = 4096;
export const SIG_BLOCK_SIZE = 1216;
export const SIG_BLOCK_MAGIC = 0xe7;
export const SIG_BLOCK_VERSION_RSA = 0x02;
export const SIG_BLOCK_VERSION_ECDSA = 0x03;
/** The bootloader reads at most three signature blocks. */
export const MAX_SIG_BLOCKS = 3;

const RSA_BITS = 3072;
const RSA_BYTES = RSA_BITS / 8;
/** Offsets in a block (esp_secure_boot.h). */
const DIGEST_AT = 4;
const KEY_AT = 36;
const RSA_KEY_LENGTH = RSA_BYTES + 4 + RSA_BYTES + 4;
const RSA_SIG_AT = KEY_AT + RSA_KEY_LENGTH;
const ECDSA_KEY_LENGTH = 1 + 64;
const ECDSA_SIG_AT = KEY_AT + ECDSA_KEY_LENGTH;
const CRC_AT = 1196;

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

function le(value: bigint, bytes: number): Uint8Array {
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

function fromBe(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

function fromBase64url(text: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(text ?? '', 'base64url'));
}

function reversed(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes).reverse();
}

/** Modular inverse of a modulo m (a and m coprime): m' of the key layout, not cryptography. */
function modInverse(a: bigint, m: bigint): bigint {
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
function rsaRinv(n: bigint): bigint {
  return (1n << BigInt(RSA_BITS * 2)) % n;
}

/** The scheme of a key, or a clear refusal of one the bootloader cannot use. */
export function keyScheme(key: KeyObject): SignatureScheme {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && details?.modulusLength === RSA_BITS) return 'rsa3072';
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') return 'ecdsa256';
  const what =
    key.asymmetricKeyType === 'rsa'
      ? `an RSA-${details?.modulusLength} key`
      : key.asymmetricKeyType === 'ec'
        ? `an EC key on ${details?.namedCurve}`
        : `a ${key.asymmetricKeyType} key`;
  throw new SignatureError(
    `${what} cannot sign for Secure Boot v2: use RSA-3072 (every chip with Secure Boot v2) or ECDSA P-256 (ESP32-C2, C6, H2, P4); ble-ota keygen makes one`,
  );
}

/** Reads a PEM (or DER PKCS#8) private key as espsecure and OpenSSL write them. */
export function loadSigningKey(pem: string | Uint8Array): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(typeof pem === 'string' ? pem : Buffer.from(pem));
  } catch (error) {
    throw new SignatureError(
      `not a private key (${error instanceof Error ? error.message : String(error)}); give the PEM file espsecure.py generate_signing_key or ble-ota keygen wrote`,
    );
  }
  keyScheme(key);
  return key;
}

/** The key part of a signature block: what the block carries and its digest covers. */
export function publicKeyBytes(key: KeyObject): Uint8Array {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  if (keyScheme(pub) === 'rsa3072') {
    const n = fromBe(fromBase64url(jwk.n));
    const e = fromBe(fromBase64url(jwk.e));
    const rinv = rsaRinv(n);
    const mdash = (1n << 32n) - modInverse(n, 1n << 32n);
    const out = new Uint8Array(RSA_KEY_LENGTH);
    out.set(le(n, RSA_BYTES), 0);
    out.set(le(e, 4), RSA_BYTES);
    out.set(le(rinv, RSA_BYTES), RSA_BYTES + 4);
    out.set(le(mdash & 0xffffffffn, 4), RSA_BYTES * 2 + 4);
    return out;
  }
  const out = new Uint8Array(ECDSA_KEY_LENGTH);
  out[0] = 2; // ETS_ECDSA_CURVE_P256
  out.set(reversed(fromBase64url(jwk.x)), 1);
  out.set(reversed(fromBase64url(jwk.y)), 33);
  return out;
}

/** SHA-256 of a public key as a signature block carries it (espsecure digest_sbv2_public_key). */
export function publicKeyDigest(key: KeyObject): string {
  return toHex(sha256(publicKeyBytes(key)));
}

/** The data a signature covers: `data` padded with 0xFF to a whole flash sector. */
export function padToSector(data: Uint8Array): Uint8Array {
  const rest = data.length % SIG_SECTOR_SIZE;
  if (rest === 0) return data;
  const out = new Uint8Array(data.length + SIG_SECTOR_SIZE - rest).fill(0xff);
  out.set(data, 0);
  return out;
}

/** One signature block over `signedData` (the padded image; `digest` its SHA-256) with `key`. */
export function signatureBlock(
  signedData: Uint8Array,
  key: KeyObject,
  digest: Uint8Array = sha256(signedData),
): Uint8Array {
  const scheme = keyScheme(key);
  const block = new Uint8Array(SIG_BLOCK_SIZE);
  block[0] = SIG_BLOCK_MAGIC;
  block[1] = scheme === 'rsa3072' ? SIG_BLOCK_VERSION_RSA : SIG_BLOCK_VERSION_ECDSA;
  block.set(digest, DIGEST_AT);
  block.set(publicKeyBytes(key), KEY_AT);
  if (scheme === 'rsa3072') {
    const signature = cryptoSign('sha256', signedData, {
      key,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    });
    block.set(reversed(new Uint8Array(signature)), RSA_SIG_AT);
  } else {
    const rs = new Uint8Array(cryptoSign('sha256', signedData, { key, dsaEncoding: 'ieee-p1363' }));
    block.set(reversed(rs.subarray(0, 32)), ECDSA_SIG_AT);
    block.set(reversed(rs.subarray(32, 64)), ECDSA_SIG_AT + 32);
  }
  new DataView(block.buffer).setUint32(CRC_AT, crc32(block.subarray(0, CRC_AT)) >>> 0, true);
  return block;
}

/**
 * Signs an app image as `espsecure.py sign_data --version 2` does: the image padded with 0xFF to
 * a sector, then a 4 KB signature sector with one block per key (at most three).
 */
export function signImage(image: Uint8Array, keys: readonly KeyObject[]): Uint8Array {
  if (keys.length === 0 || keys.length > MAX_SIG_BLOCKS) {
    throw new SignatureError(
      `give 1 to ${MAX_SIG_BLOCKS} signing keys (the bootloader reads at most ${MAX_SIG_BLOCKS} signature blocks), got ${keys.length}`,
    );
  }
  if (findSignatureSector(image) !== undefined) {
    throw new SignatureError(
      'the image is already signed (it ends in a Secure Boot v2 signature sector); sign the unsigned image, with all keys at once',
    );
  }
  const signed = padToSector(image);
  const digest = sha256(signed);
  const sector = new Uint8Array(SIG_SECTOR_SIZE).fill(0xff);
  keys.forEach((key, i) => {
    sector.set(signatureBlock(signed, key, digest), i * SIG_BLOCK_SIZE);
  });
  const out = new Uint8Array(signed.length + SIG_SECTOR_SIZE);
  out.set(signed, 0);
  out.set(sector, signed.length);
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

function rsaKeyFromBlock(keyBytes: Uint8Array): KeyObject {
  const n = reversed(keyBytes.subarray(0, RSA_BYTES));
  const e = reversed(keyBytes.subarray(RSA_BYTES, RSA_BYTES + 4));
  let start = 0;
  while (start < e.length - 1 && e[start] === 0) start++;
  return createPublicKey({
    key: { kty: 'RSA', n: base64url(n), e: base64url(e.subarray(start)) },
    format: 'jwk',
  });
}

function ecKeyFromBlock(keyBytes: Uint8Array): KeyObject {
  return createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: base64url(reversed(keyBytes.subarray(1, 33))),
      y: base64url(reversed(keyBytes.subarray(33, 65))),
    },
    format: 'jwk',
  });
}

/** Checks one block against the data it follows (`signedDigest` its SHA-256), as the bootloader would. */
export function checkSignatureBlock(
  block: Uint8Array,
  signedData: Uint8Array,
  index = 0,
  signedDigest: string = toHex(sha256(signedData)),
): SignatureBlockInfo {
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
    if (isRsa) {
      signatureValid = cryptoVerify(
        'sha256',
        signedData,
        {
          key: rsaKeyFromBlock(keyBytes),
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: 32,
        },
        reversed(block.subarray(RSA_SIG_AT, RSA_SIG_AT + RSA_BYTES)),
      );
    } else if (scheme === 'ecdsa256') {
      const rs = new Uint8Array(64);
      rs.set(reversed(block.subarray(ECDSA_SIG_AT, ECDSA_SIG_AT + 32)), 0);
      rs.set(reversed(block.subarray(ECDSA_SIG_AT + 32, ECDSA_SIG_AT + 64)), 32);
      signatureValid = cryptoVerify(
        'sha256',
        signedData,
        { key: ecKeyFromBlock(keyBytes), dsaEncoding: 'ieee-p1363' },
        rs,
      );
    }
  } catch {
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
export function readSignatures(data: Uint8Array): SignatureSectorInfo | undefined {
  const at = findSignatureSector(data);
  if (at === undefined) return undefined;
  const signed = data.subarray(0, at);
  const signedDigest = toHex(sha256(signed));
  const blocks: SignatureBlockInfo[] = [];
  for (let i = 0; i < MAX_SIG_BLOCKS; i++) {
    const block = data.subarray(at + i * SIG_BLOCK_SIZE, at + (i + 1) * SIG_BLOCK_SIZE);
    if (block[0] !== SIG_BLOCK_MAGIC) break;
    blocks.push(checkSignatureBlock(block, signed, i, signedDigest));
  }
  return { signedLength: at, signedDigest, blocks };
}
