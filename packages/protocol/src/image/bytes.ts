import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/**
 * SHA-256 of `data`. Synchronous on purpose (@noble/hashes, not Web Crypto's async digest):
 * image parsing and building are synchronous everywhere they are used, and the package runs
 * in a page as well as in Node, so it uses no Node module.
 */
export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

export function toHex(data: Uint8Array): string {
  let out = '';
  for (const byte of data) out += byte.toString(16).padStart(2, '0');
  return out;
}

/** Lowercase hex with a 0x prefix, zero-padded to `digits`. */
export function hex(value: number, digits: number): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}

/** Reads a C `char[n]` field: bytes up to the first NUL, decoded as UTF-8. */
export function readCString(data: Uint8Array, offset: number, size: number): string {
  const field = data.subarray(offset, offset + size);
  const nul = field.indexOf(0);
  return new TextDecoder('utf-8').decode(nul === -1 ? field : field.subarray(0, nul));
}

/** Writes `text` into a C `char[size]` field, requiring room for the terminating NUL. */
export function writeCString(
  data: Uint8Array,
  offset: number,
  size: number,
  text: string,
  field: string,
): void {
  const encoded = new TextEncoder().encode(text);
  if (encoded.length >= size) {
    throw new RangeError(
      `${field} ${JSON.stringify(text)} is ${encoded.length} bytes; esp_app_desc_t holds at most ${size - 1} (plus the terminating NUL)`,
    );
  }
  if (encoded.includes(0)) {
    throw new RangeError(`${field} ${JSON.stringify(text)} contains a NUL byte`);
  }
  data.set(encoded, offset);
}
