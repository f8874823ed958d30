import { describe, expect, it } from 'vitest';
import { applyFlashOp, readFlashJournal } from './flash-journal.ts';

function record(op: number, addr: number, len: number, data: number[] = []): number[] {
  const head = new Uint8Array(9);
  const v = new DataView(head.buffer);
  head[0] = op;
  v.setUint32(1, addr, true);
  v.setUint32(5, len, true);
  return [...head, ...data];
}

describe('flash journal', () => {
  const bytes = new Uint8Array([
    ...record(2, 0x10, 4, [0x0f, 0xf0, 0x00, 0x55]),
    ...record(1, 0x1000, 0x1000),
  ]);

  it('reads writes with their bytes and erases', () => {
    const r = readFlashJournal(bytes);
    expect(r.map((x) => [x.op, x.addr, x.len])).toEqual([
      ['write', 0x10, 4],
      ['erase', 0x1000, 0x1000],
    ]);
    expect([...(r[0]?.data ?? [])]).toEqual([0x0f, 0xf0, 0x00, 0x55]);
  });

  it('says where a cut-off or foreign journal goes wrong', () => {
    expect(() => readFlashJournal(bytes.subarray(0, 11))).toThrow(
      /inside the 4 bytes of a write at 0x10/,
    );
    expect(() => readFlashJournal(bytes.subarray(0, 16))).toThrow(/inside a record header/);
    expect(() => readFlashJournal(new Uint8Array(record(7, 0, 0)))).toThrow(/operation 7/);
  });

  it('replays a write as NOR does (bits only clear) and tears the second half off', () => {
    const [write] = readFlashJournal(bytes);
    const flash = new Uint8Array(0x2000).fill(0xff);
    flash[0x11] = 0x3c;
    applyFlashOp(flash, write as never, true);
    expect([...flash.subarray(0x10, 0x14)]).toEqual([0x0f, 0x30, 0xff, 0xff]);
    applyFlashOp(flash, write as never);
    expect([...flash.subarray(0x10, 0x14)]).toEqual([0x0f, 0x30, 0x00, 0x55]);
  });

  it('replays an erase, torn: only the first half of the range is erased', () => {
    const erase = readFlashJournal(bytes)[1];
    const flash = new Uint8Array(0x2000);
    applyFlashOp(flash, erase as never, true);
    expect(flash[0x17ff]).toBe(0xff);
    expect(flash[0x1800]).toBe(0x00);
    expect(() => applyFlashOp(new Uint8Array(0x1000), erase as never)).toThrow(
      /runs past the 4096-byte flash/,
    );
  });
});
