/**
 * UUIDs as the GATT layout JSON spells them (Contract B: lowercase, 16-bit ones as 4 hex digits)
 * and as they travel in ATT PDUs (little-endian, 2 or 16 bytes).
 */

const BASE_UUID_TAIL = '-0000-1000-8000-00805f9b34fb';

/** Normalises a UUID string: 16-bit ones to 4 hex digits, 128-bit ones to dashed lowercase. */
export function normalizeUuid(uuid: string): string {
  const hex = uuid.toLowerCase().replace(/-/g, '');
  if (/^[0-9a-f]{4}$/.test(hex)) return hex;
  if (/^[0-9a-f]{32}$/.test(hex)) {
    const dashed = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    // A 128-bit spelling of a SIG UUID travels as 16 bits, so keep one spelling for it.
    if (dashed.startsWith('0000') && dashed.endsWith(BASE_UUID_TAIL)) return dashed.slice(4, 8);
    return dashed;
  }
  throw new Error(
    `"${uuid}" is not a Bluetooth UUID: use 4 hex digits (e.g. "180a") or a 128-bit UUID with dashes`,
  );
}

/** Little-endian wire bytes of a UUID: 2 bytes for a 16-bit UUID, 16 for a 128-bit one. */
export function uuidToBytes(uuid: string): Buffer {
  const norm = normalizeUuid(uuid);
  if (norm.length === 4) {
    const out = Buffer.alloc(2);
    out.writeUInt16LE(Number.parseInt(norm, 16), 0);
    return out;
  }
  return Buffer.from(norm.replace(/-/g, ''), 'hex').reverse();
}

/** Parses wire bytes (2 or 16, little-endian) back into the normalised string form. */
export function uuidFromBytes(bytes: Uint8Array): string {
  if (bytes.length === 2) {
    return ((bytes[0] ?? 0) | ((bytes[1] ?? 0) << 8)).toString(16).padStart(4, '0');
  }
  if (bytes.length === 16) return normalizeUuid(Buffer.from(bytes).reverse().toString('hex'));
  throw new Error(`a UUID on the wire is 2 or 16 bytes, got ${bytes.length}`);
}
