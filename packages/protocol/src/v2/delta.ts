/**
 * Delta updates (docs/protocol-v2.md, "Delta updates"): the patch a device applies as it streams,
 * against the image it runs.
 *
 * The difference search is fossil-delta's (the Fossil SCM delta algorithm by D. Richard Hipp,
 * ported to TypeScript by Dmitry Chestnykh): a rolling hash over 16-byte blocks of the base, then
 * the longest match around each hit, in pure JavaScript, so it runs in Node and in a page alike
 * (bsdiff-node is a native addon, and its patches carry bzip2 blocks the device cannot read).
 * A fossil delta is already a sequential list of copy-from-source and insert-literal commands,
 * which is what our format is; makePatch translates it, op for op, and sends an inserted run as
 * a DIFF against the base bytes right after the previous copy when that makes it mostly zeros:
 * code that moved has its PC-relative calls and addresses changed, not its instructions, and
 * bsdiff's insight is that the difference deflates to little where the literal bytes do not.
 */
import { createDelta } from 'fossil-delta';

export const PatchOp = { END: 0x00, COPY: 0x01, ADD: 0x02, DIFF: 0x03 } as const;

const FOSSIL_DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~';
const FOSSIL_VALUE = new Map<number, number>(
  [...FOSSIL_DIGITS].map((c, i) => [c.charCodeAt(0), i]),
);

class PatchWriter {
  #chunks: Uint8Array[] = [];
  #buf = new Uint8Array(64 * 1024);
  #len = 0;

  byte(b: number): void {
    if (this.#len === this.#buf.length) this.#flush();
    this.#buf[this.#len++] = b;
  }

  varint(v: number): void {
    let x = v >>> 0;
    while (x >= 0x80) {
      this.byte((x & 0x7f) | 0x80);
      x >>>= 7;
    }
    this.byte(x);
  }

  bytes(data: Uint8Array): void {
    this.#flush();
    this.#chunks.push(data.slice());
  }

  #flush(): void {
    if (this.#len > 0) this.#chunks.push(this.#buf.slice(0, this.#len));
    this.#len = 0;
  }

  result(): Uint8Array {
    this.#flush();
    const out = new Uint8Array(this.#chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/**
 * The patch that rebuilds `image` from `base`: COPY(base offset, length) / ADD(length, bytes) /
 * END, numbers as unsigned LEB128. Deterministic for given inputs, so a resumed session sends the
 * same stream (the CRC at BEGIN would catch it otherwise).
 */
export function makePatch(base: Uint8Array, image: Uint8Array): Uint8Array {
  if (image.length === 0) throw new RangeError('an empty image has no patch');
  const delta = createDelta(base, image);
  const out = new PatchWriter();
  let at = 0;
  const int = (): number => {
    let v = 0;
    for (;;) {
      const d = FOSSIL_VALUE.get(delta[at] as number);
      if (d === undefined) return v;
      v = v * 64 + d;
      at++;
    }
  };
  const targetSize = int();
  if (delta[at++] !== 0x0a) throw new Error('fossil-delta: malformed header');
  let produced = 0;
  /** Where in the base the image would go on after the last copy: what a DIFF is against. */
  let baseNext = 0;
  for (;;) {
    const count = int();
    const cmd = delta[at++];
    if (cmd === 0x40 /* @ copy */) {
      const offset = int();
      if (delta[at++] !== 0x2c) throw new Error('fossil-delta: malformed copy');
      if (count > 0) {
        out.byte(PatchOp.COPY);
        out.varint(offset);
        out.varint(count);
      }
      produced += count;
      baseNext = offset + count;
    } else if (cmd === 0x3a /* : insert */) {
      const literal = delta.subarray(at, at + count);
      const diff = count > 0 ? differenceFrom(base, baseNext, literal) : undefined;
      if (diff !== undefined) {
        out.byte(PatchOp.DIFF);
        out.varint(baseNext);
        out.varint(count);
        out.bytes(diff);
      } else if (count > 0) {
        out.byte(PatchOp.ADD);
        out.varint(count);
        out.bytes(literal);
      }
      at += count;
      produced += count;
      baseNext += count;
    } else if (cmd === 0x3b /* ; checksum: the end */) {
      break;
    } else {
      throw new Error(`fossil-delta: unknown command 0x${(cmd ?? 0).toString(16)}`);
    }
  }
  if (produced !== targetSize || produced !== image.length) {
    throw new Error(
      `fossil-delta: the delta rebuilds ${produced} bytes, the image has ${image.length}`,
    );
  }
  out.byte(PatchOp.END);
  return out.result();
}

/** `literal` minus the base bytes at `from` (mod 256), if they lie in the base and at least half
 *  of the difference is zeros (then it deflates to less than the literal); else undefined. */
function differenceFrom(
  base: Uint8Array,
  from: number,
  literal: Uint8Array,
): Uint8Array | undefined {
  if (from + literal.length > base.length) return undefined;
  const diff = new Uint8Array(literal.length);
  let zeros = 0;
  for (let i = 0; i < literal.length; i++) {
    const d = ((literal[i] as number) - (base[from + i] as number)) & 0xff;
    diff[i] = d;
    if (d === 0) zeros++;
  }
  return zeros * 2 >= literal.length ? diff : undefined;
}

/**
 * Applies a patch as the device does, with the same refusals (the device's are in
 * ble_ota_patch.c); throws with the device's reason. For tests and for a client that checks its
 * patch before sending it.
 */
export function applyPatch(base: Uint8Array, patch: Uint8Array, imageSize: number): Uint8Array {
  const out = new Uint8Array(imageSize);
  let produced = 0;
  let at = 0;
  const varint = (): number => {
    let v = 0;
    for (let i = 0; i < 5; i++) {
      const b = patch[at++];
      if (b === undefined) throw new Error('the patch stream ended without its END op');
      if (i === 4 && (b & 0x7f) > 0x0f) throw new Error('a patch number is not a 32-bit varint');
      v += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) return v;
    }
    throw new Error('a patch number is not a 32-bit varint');
  };
  for (;;) {
    const op = patch[at++];
    if (op === undefined) throw new Error('the patch stream ended without its END op');
    if (op === PatchOp.END) {
      if (produced !== imageSize) throw new Error('the patch ends before the image is whole');
      if (at !== patch.length) throw new Error("bytes after the patch's END");
      return out;
    }
    if (op !== PatchOp.COPY && op !== PatchOp.ADD && op !== PatchOp.DIFF) {
      throw new Error('unknown patch op');
    }
    const from = op === PatchOp.ADD ? 0 : varint();
    const length = varint();
    if (length === 0) throw new Error('a patch op of length 0');
    if (length > imageSize - produced) throw new Error("the patch writes past BEGIN's image_size");
    if (op !== PatchOp.ADD && from + length > base.length) {
      throw new Error('the patch copies from outside the running image (its base)');
    }
    if (op === PatchOp.COPY) {
      out.set(base.subarray(from, from + length), produced);
    } else if (op === PatchOp.DIFF) {
      if (at + length > patch.length) throw new Error('the patch stream ended without its END op');
      for (let i = 0; i < length; i++) {
        out[produced + i] = ((base[from + i] as number) + (patch[at + i] as number)) & 0xff;
      }
      at += length;
    } else {
      if (at + length > patch.length) throw new Error('the patch stream ended without its END op');
      out.set(patch.subarray(at, at + length), produced);
      at += length;
    }
    produced += length;
  }
}
