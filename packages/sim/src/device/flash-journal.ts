/**
 * The device program's flash journal (`--flash-journal`, firmware/host/README.md): every erase
 * command and write of a boot, in order, with a write's bytes. Replaying the first N records on
 * the flash as it was at power-on gives the flash as it was after operation N, and replaying
 * record N+1 torn gives what a power cut during it leaves (as firmware/host/src/flash.c tears
 * it). The bench's full power-cut sweep boots each of those flashes instead of making one update
 * per cut point; its sampled run checks the replay against real cuts of the device program.
 */

export interface FlashJournalRecord {
  op: 'erase' | 'write';
  addr: number;
  len: number;
  /** A write's bytes. */
  data?: Uint8Array;
}

const HEAD = 9;

export function readFlashJournal(bytes: Uint8Array): FlashJournalRecord[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: FlashJournalRecord[] = [];
  for (let at = 0; at < bytes.length; ) {
    if (bytes.length - at < HEAD) {
      throw new Error(`flash journal ends inside a record header at byte ${at} of ${bytes.length}`);
    }
    const kind = bytes[at];
    const addr = view.getUint32(at + 1, true);
    const len = view.getUint32(at + 5, true);
    at += HEAD;
    if (kind === 1) {
      out.push({ op: 'erase', addr, len });
    } else if (kind === 2) {
      if (bytes.length - at < len) {
        throw new Error(
          `flash journal ends inside the ${len} bytes of a write at 0x${addr.toString(16)}`,
        );
      }
      out.push({ op: 'write', addr, len, data: bytes.subarray(at, at + len) });
      at += len;
    } else {
      throw new Error(
        `flash journal record at byte ${at - HEAD} has operation ${kind}, not 1 (erase) or 2 (write)`,
      );
    }
  }
  return out;
}

/**
 * Does one journaled operation on `flash`, as the device's flash would: a write ANDs its bytes
 * in (NOR can only clear bits), an erase sets its range to 0xFF. `torn`: only the first half of
 * the write's bytes or of the erased range, as a power cut during the operation leaves it.
 */
export function applyFlashOp(flash: Uint8Array, r: FlashJournalRecord, torn = false): void {
  if (r.addr + r.len > flash.length) {
    throw new Error(
      `journaled ${r.op} of ${r.len} bytes at 0x${r.addr.toString(16)} runs past the ${flash.length}-byte flash`,
    );
  }
  const n = torn ? Math.floor(r.len / 2) : r.len;
  if (r.op === 'erase') {
    flash.fill(0xff, r.addr, r.addr + n);
    return;
  }
  const data = r.data as Uint8Array;
  for (let i = 0; i < n; i++)
    flash[r.addr + i] = (flash[r.addr + i] as number) & (data[i] as number);
}
