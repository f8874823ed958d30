/**
 * Signing app images for Secure Boot v2 (the layout is in `signature.ts`). It needs a private
 * key and node:crypto (OpenSSL), so it is Node-only: the package's Node entry exports it, its
 * browser entry does not. Checking signatures is `signature.ts`, which runs in a page too.
 */
import {
  constants,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  type KeyObject,
} from 'node:crypto';
import { crc32 } from '../v2/codec.ts';
import { sha256, toHex } from './bytes.ts';
import {
  CRC_AT,
  DIGEST_AT,
  ECDSA_KEY_LENGTH,
  ECDSA_SIG_AT,
  findSignatureSector,
  KEY_AT,
  le,
  MAX_SIG_BLOCKS,
  modInverse,
  padToSector,
  RSA_BITS,
  RSA_BYTES,
  RSA_KEY_LENGTH,
  RSA_SIG_AT,
  reversed,
  rsaRinv,
  SIG_BLOCK_MAGIC,
  SIG_BLOCK_SIZE,
  SIG_BLOCK_VERSION_ECDSA,
  SIG_BLOCK_VERSION_RSA,
  SIG_SECTOR_SIZE,
  SignatureError,
  type SignatureScheme,
} from './signature.ts';

function fromBe(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function fromBase64url(text: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(text ?? '', 'base64url'));
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
