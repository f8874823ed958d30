import { describe, expect, it } from 'vitest';
import { readEraseRecord, renderPreEraseCuts } from './power-cuts-pre-erase.ts';

/** One entry of the host build's erase record log (firmware/host/src/port_host.c). */
function entry(seq: number, slotAddress: number, erasedTo: number): Uint8Array {
  const e = new Uint8Array(32).fill(0xff);
  const view = new DataView(e.buffer);
  view.setUint32(0, 0x52455250, true);
  view.setUint32(4, seq, true);
  view.setUint32(8, slotAddress, true);
  view.setUint32(12, erasedTo, true);
  let c = 0xffffffff;
  for (const b of e.subarray(0, 16)) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  view.setUint32(16, (c ^ 0xffffffff) >>> 0, true);
  return e;
}

describe('the background-erase power-cut sweep', () => {
  it('reads the newest whole entry of the erase record, as the firmware does', () => {
    const flash = new Uint8Array(0x10000).fill(0xff);
    expect(readEraseRecord(flash)).toBeUndefined();
    flash.set(entry(1, 0x10000, 0x10000), 0xc000);
    flash.set(entry(2, 0x10000, 0x20000), 0xc020);
    expect(readEraseRecord(flash)).toEqual({ slotAddress: 0x10000, erasedTo: 0x20000 });
    // a torn third entry (half programmed) fails its CRC: the second still counts
    const torn = entry(3, 0x10000, 0x30000);
    flash.set(torn.subarray(0, 16), 0xc040);
    expect(readEraseRecord(flash)).toEqual({ slotAddress: 0x10000, erasedTo: 0x20000 });
  });

  it('says what the cuts left and names every record ahead of the flash', () => {
    const text = renderPreEraseCuts({
      operations: 62,
      sweep: 'all',
      cutPoints: 124,
      counts: { new: 123, notInstalled: 0, unbootable: 1, wrong: 0 },
      believedErased: 118,
      recordAhead: [{ cut: 9, torn: true, erasedTo: 0x50000 }],
      failures: [{ cut: 9, torn: true, booted: 'nothing' }],
      wallSeconds: 80.4,
    });
    expect(text).toMatch(
      /^power cuts, background erase of the update slot then a v2 update \(62 flash operations; every one, each skipped and torn\): 124 cut points, 123 installed and booted the update, 0 did not install it, 1 unbootable, 0 wrong image; record ahead of the flash: 1 /m,
    );
    expect(text).toMatch(/^ {2}cut at operation 9 \(torn\): the record says 327680 B erased/m);
    expect(text).toMatch(/^ {2}cut at operation 9 \(torn\): booted nothing$/m);
  });
});
