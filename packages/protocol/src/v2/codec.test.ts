import { crc32 as zlibCrc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.ts';
import {
  crc32,
  decodeAbortRsp,
  decodeAnswer,
  decodeBegin,
  decodeBeginRsp,
  decodeCommand,
  decodeData,
  decodeEndRsp,
  decodeInfo,
  decodeWindowAck,
  encodeAbort,
  encodeAbortRsp,
  encodeBegin,
  encodeBeginRsp,
  encodeData,
  encodeEnd,
  encodeEndRsp,
  encodeInfo,
  encodeManifest,
  encodeWindowAck,
  INFO_LENGTH,
  INFO_LENGTH_BEFORE_PRE_ERASE,
  manifestPieces,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  V2Status,
  v2StatusHint,
  v2StatusMessage,
  v2StatusName,
} from './codec.ts';

const hex = (data: Uint8Array) => Buffer.from(data).toString('hex');
const sha32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u8 = fc.integer({ min: 0, max: 0xff });

describe('v2 constants', () => {
  it('are the spec values', () => {
    expect(V2_CONTROL_UUID).toBe('44d90618-0f1a-4804-b9c7-a5ae29118ffa');
    expect(V2_DATA_UUID).toBe('fe4a130e-1430-449c-bc25-1c299d409db4');
    expect(V2Status).toEqual({
      OK: 0,
      ALREADY_INSTALLED: 1,
      TOO_LARGE: 2,
      WRONG_CHIP: 3,
      BAD_REQUEST: 4,
      FLASH_ERROR: 5,
      HASH_MISMATCH: 6,
      INVALID_IMAGE: 7,
      BUSY: 8,
      NO_SESSION: 9,
      INFLATE_ERROR: 10,
      SIZE_MISMATCH: 11,
      UNSIGNED: 12,
      BAD_SIGNATURE: 13,
      UNTRUSTED_KEY: 14,
      DOWNGRADE: 15,
      VERSION_DOWNGRADE: 16,
      MANIFEST_MISMATCH: 17,
      INSTALLED_RESTARTING: 18,
      BASE_MISMATCH: 19,
      BAD_PATCH: 20,
    });
  });

  it('crc32 is zlib crc32(0, data) and continues across chunks', () => {
    const data = new TextEncoder().encode('123456789');
    expect(crc32(data)).toBe(0xcbf43926);
    expect(crc32(data.subarray(4), crc32(data.subarray(0, 4)))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32(data)).toBe(zlibCrc32(data) >>> 0);
  });
});

describe('MANIFEST', () => {
  it('lays out version, block count, secure_version, version and the blocks, and travels in pieces', () => {
    const blocks = [new Uint8Array(1216).fill(0xe7), new Uint8Array(1216).fill(0x11)];
    const m = encodeManifest({ secureVersion: 7, version: '2.1.0', blocks });
    expect(m.length).toBe(40 + 2 * 1216);
    expect(hex(m.subarray(0, 13))).toBe('010200000700000032 2e 31 2e 30'.replaceAll(' ', ''));
    expect(m[40]).toBe(0xe7);
    expect(m[40 + 1216]).toBe(0x11);
    const pieces = manifestPieces(m, 244);
    expect(pieces.map((p) => p.length)).toEqual([
      ...new Array(10).fill(244),
      m.length - 10 * 241 + 3,
    ]);
    let joined = new Uint8Array(0);
    for (const piece of pieces) {
      const cmd = decodeCommand(piece);
      if (cmd.op !== 'MANIFEST') throw new Error('not a MANIFEST piece');
      expect(cmd.offset).toBe(joined.length);
      joined = new Uint8Array([...joined, ...cmd.bytes]);
    }
    expect(joined).toEqual(m);
    expect(manifestPieces(m, 600)[0]?.length).toBe(512);
    expect(() => encodeManifest({ secureVersion: 0, version: 'x', blocks: [] })).toThrow(
      /1 to 3 signature blocks, got 0/,
    );
    expect(() =>
      encodeManifest({ secureVersion: 0, version: 'x', blocks: [new Uint8Array(100)] }),
    ).toThrow(/signature block 1 is 1216 bytes, got 100/);
  });
});

describe('status messages', () => {
  it('name the reason and the status', () => {
    expect(v2StatusMessage(V2Status.WRONG_CHIP)).toBe(
      'device refused the update: image is for another chip (WRONG_CHIP)',
    );
    expect(v2StatusMessage(V2Status.TOO_LARGE)).toBe(
      'device refused the update: image is larger than the update slot (TOO_LARGE)',
    );
    expect(v2StatusMessage(0x42)).toMatch(/unknown status 0x42/);
    expect(v2StatusName(V2Status.INFLATE_ERROR)).toBe('INFLATE_ERROR');
    expect(v2StatusHint(V2Status.INFLATE_ERROR)).toMatch(/without compression/);
  });

  it('every refusal has its own message and a hint', () => {
    const refusals = Object.entries(V2Status).filter(
      ([name]) => name !== 'OK' && name !== 'ALREADY_INSTALLED' && name !== 'INSTALLED_RESTARTING',
    );
    const messages = new Set(refusals.map(([, v]) => v2StatusMessage(v)));
    expect(messages.size).toBe(refusals.length);
    for (const [name, value] of refusals) {
      expect(v2StatusMessage(value)).toContain(`(${name})`);
      expect(v2StatusHint(value)).toBeTruthy();
    }
  });
});

describe('layouts (pinned bytes)', () => {
  it('BEGIN is 44 bytes: op, flags, chip, size, sha, stream size', () => {
    const sha = new Uint8Array(32).fill(0xab);
    const bytes = encodeBegin({
      deflate: true,
      restart: true,
      chipId: 9,
      imageSize: 0x12345,
      imageSha256: sha,
      streamSize: 0x1000,
    });
    expect(hex(bytes)).toBe(`1003090045230100${'ab'.repeat(32)}00100000`);
  });

  it('BEGIN_RSP, WINDOW_ACK, END_RSP, ABORT_RSP, DATA, END, ABORT', () => {
    expect(
      hex(
        encodeBeginRsp({
          status: 0,
          offset: 0x1000,
          crc32: 0xdeadbeef,
          window: 0x4000,
          maxFrame: 244,
        }),
      ),
    ).toBe('900000100000efbeadde00400000f400');
    expect(hex(encodeWindowAck({ status: 4, committed: 0x200, crc32: 1 }))).toBe(
      '91040002000001000000',
    );
    expect(hex(encodeEndRsp(6))).toBe('9306');
    expect(hex(encodeAbortRsp(0))).toBe('9400');
    expect(hex(encodeData(0x01020304, Uint8Array.of(9, 8)))).toBe('040302010908');
    expect(hex(encodeEnd())).toBe('11');
    expect(hex(encodeAbort())).toBe('12');
  });

  it('INFO is 123 bytes with the fields at the spec offsets; what the device enforces at 114, the pre-erased bytes at 119', () => {
    const bytes = encodeInfo({
      deflate: true,
      resume: true,
      chipId: 5,
      slotSize: 0x180000,
      maxFrame: 512,
      window: 16384,
      runningSha256: new Uint8Array(32).fill(1),
      runningVersion: 'v1.2.3',
      sessionOffset: 77,
      sessionSha256: new Uint8Array(32).fill(2),
      manifest: true,
      security: {
        signedOnly: true,
        antiRollback: true,
        minSecureVersion: 3,
        allowDowngrade: false,
        linkSecurity: 'encrypted',
      },
      preErase: true,
      preErased: 0x1f0000,
    });
    expect(bytes.length).toBe(INFO_LENGTH);
    expect(INFO_LENGTH).toBe(123);
    expect(hex(bytes.subarray(0, 14))).toBe('020f050000001800000200400000');
    expect(hex(bytes.subarray(114))).toBe('130300000000001f00');
    expect(decodeInfo(bytes)).toMatchObject({
      manifest: true,
      preErase: true,
      preErased: 0x1f0000,
      complete: true,
      security: {
        signedOnly: true,
        antiRollback: true,
        minSecureVersion: 3,
        allowDowngrade: false,
        linkSecurity: 'encrypted',
      },
    });
    // Firmware before pre_erased: 119 bytes, complete, nothing known of the slot.
    const before = decodeInfo(bytes.subarray(0, 119));
    expect(before.complete).toBe(true);
    expect(before.preErased).toBeUndefined();
    expect(before.security?.minSecureVersion).toBe(3);
    // Firmware before the security byte: 114 bytes, complete, nothing known of its security.
    const older = decodeInfo(bytes.subarray(0, 114));
    expect(older.complete).toBe(true);
    expect(older.security).toBeUndefined();
    expect(bytes[14]).toBe(1);
    expect(new TextDecoder().decode(bytes.subarray(46, 52))).toBe('v1.2.3');
    expect(bytes[52]).toBe(0);
    expect(bytes[78]).toBe(77);
    expect(bytes[82]).toBe(2);
  });

  it('INFO cut short keeps the essential fields and marks the rest unknown', () => {
    const full = encodeInfo({
      deflate: false,
      resume: true,
      chipId: 0,
      slotSize: 1000,
      maxFrame: 20,
      window: 4096,
      runningSha256: new Uint8Array(32).fill(7),
      runningVersion: 'x',
      sessionOffset: 0,
    });
    const cut = decodeInfo(full.subarray(0, 22));
    expect(cut).toMatchObject({ window: 4096, maxFrame: 20, resume: true, deflate: false });
    expect(cut.runningSha256).toBeUndefined();
    expect(cut.complete).toBe(false);
    const whole = decodeInfo(full);
    expect(whole.complete).toBe(true);
    expect(whole.sessionSha256).toBeUndefined();
    expect(whole.runningVersion).toBe('x');
    expect(() => decodeInfo(full.subarray(0, 13))).toThrow(ProtocolError);
  });
});

describe('round trips (property)', () => {
  it('INFO', () => {
    fc.assert(
      fc.property(
        fc.record({
          protoVersion: u8,
          deflate: fc.boolean(),
          resume: fc.boolean(),
          chipId: u16,
          slotSize: u32,
          maxFrame: u16,
          window: u32,
          runningSha256: sha32,
          runningVersion: fc
            .string({ unit: 'grapheme-ascii', maxLength: 32 })
            .map((s) => s.replaceAll('\0', '')),
          sessionOffset: u32,
          sessionSha256: sha32,
        }),
        (info) => {
          const decoded = decodeInfo(encodeInfo(info));
          expect(decoded).toMatchObject({
            protoVersion: info.protoVersion,
            deflate: info.deflate,
            resume: info.resume,
            chipId: info.chipId,
            slotSize: info.slotSize,
            maxFrame: info.maxFrame,
            window: info.window,
            runningSha256: info.runningSha256,
            runningVersion: info.runningVersion,
            sessionOffset: info.sessionOffset,
            complete: true,
          });
          const zero = info.sessionSha256.every((b) => b === 0);
          expect(decoded.sessionSha256).toEqual(zero ? undefined : info.sessionSha256);
        },
      ),
    );
  });

  it('BEGIN', () => {
    fc.assert(
      fc.property(
        fc.record({
          deflate: fc.boolean(),
          restart: fc.boolean(),
          manifest: fc.boolean(),
          allowDowngrade: fc.boolean(),
          chipId: u16,
          imageSize: u32,
          imageSha256: sha32,
          streamSize: u32,
        }),
        (begin) => {
          const decoded = decodeBegin(encodeBegin(begin));
          expect(decoded).toEqual({
            ...begin,
            flags:
              (begin.deflate ? 1 : 0) |
              (begin.restart ? 2 : 0) |
              (begin.manifest ? 4 : 0) |
              (begin.allowDowngrade ? 8 : 0),
          });
          expect(decodeCommand(encodeBegin(begin))).toMatchObject({ op: 'BEGIN', ...begin });
        },
      ),
    );
  });

  it('BEGIN_RSP, WINDOW_ACK, END_RSP, ABORT_RSP', () => {
    fc.assert(
      fc.property(
        fc.record({ status: u8, offset: u32, crc32: u32, window: u32, maxFrame: u16 }),
        fc.record({ status: u8, committed: u32, crc32: u32 }),
        u8,
        (rsp, ack, status) => {
          expect(decodeBeginRsp(encodeBeginRsp(rsp))).toEqual(rsp);
          expect(decodeAnswer(encodeBeginRsp(rsp))).toEqual({ op: 'BEGIN_RSP', ...rsp });
          expect(decodeWindowAck(encodeWindowAck(ack))).toEqual(ack);
          expect(decodeAnswer(encodeWindowAck(ack))).toEqual({ op: 'WINDOW_ACK', ...ack });
          expect(decodeEndRsp(encodeEndRsp(status))).toEqual({ status });
          expect(decodeAnswer(encodeEndRsp(status))).toEqual({ op: 'END_RSP', status });
          expect(decodeAbortRsp(encodeAbortRsp(status))).toEqual({ status });
          expect(decodeAnswer(encodeAbortRsp(status))).toEqual({ op: 'ABORT_RSP', status });
        },
      ),
    );
  });

  it('DATA', () => {
    fc.assert(
      fc.property(u32, fc.uint8Array({ maxLength: 600 }), (offset, payload) => {
        const decoded = decodeData(encodeData(offset, payload));
        expect(decoded.offset).toBe(offset);
        expect(decoded.payload).toEqual(payload);
      }),
    );
  });

  it('END and ABORT', () => {
    expect(decodeCommand(encodeEnd())).toEqual({ op: 'END' });
    expect(decodeCommand(encodeAbort())).toEqual({ op: 'ABORT' });
  });
});

describe('decoders on random input', () => {
  const decoders: [string, (data: Uint8Array) => unknown][] = [
    ['decodeInfo', decodeInfo],
    ['decodeBegin', decodeBegin],
    ['decodeBeginRsp', decodeBeginRsp],
    ['decodeData', decodeData],
    ['decodeWindowAck', decodeWindowAck],
    ['decodeEndRsp', decodeEndRsp],
    ['decodeAbortRsp', decodeAbortRsp],
    ['decodeAnswer', decodeAnswer],
    ['decodeCommand', decodeCommand],
  ];
  // Biased towards valid opcodes so the length checks get exercised, not just the opcode check.
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 130 }),
    fc
      .tuple(
        fc.constantFrom(0x10, 0x11, 0x12, 0x13, 0x90, 0x91, 0x93, 0x94, 0x02),
        fc.uint8Array({ maxLength: 130 }),
      )
      .map(([op, rest]) => Uint8Array.of(op, ...rest)),
  );

  for (const [name, decode] of decoders) {
    it(`${name} returns or throws ProtocolError, nothing else`, () => {
      fc.assert(
        fc.property(input, fc.nat(8), (bytes, skew) => {
          // A view at an odd offset into a larger buffer: DataView must be built on the view.
          const backing = new Uint8Array(bytes.length + skew);
          backing.set(bytes, skew);
          const view = backing.subarray(skew);
          try {
            decode(view);
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
          }
        }),
        { numRuns: 300 },
      );
    });
  }

  it('decodeInfo of any prefix of an INFO: the fields that arrived, the rest undefined (property)', () => {
    const infoArb = fc.record({
      deflate: fc.boolean(),
      resume: fc.boolean(),
      manifest: fc.boolean(),
      chipId: u16,
      slotSize: u32,
      maxFrame: u16,
      window: u32,
      runningSha256: sha32,
      runningVersion: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 32 }),
      sessionOffset: u32,
      sessionSha256: sha32,
      security: fc.option(
        fc.record({
          signedOnly: fc.boolean(),
          antiRollback: fc.boolean(),
          minSecureVersion: u32,
          allowDowngrade: fc.boolean(),
          linkSecurity: fc.constantFrom('open', 'encrypted', 'authenticated' as const),
        }),
        { nil: undefined },
      ),
      preErased: fc.option(u32, { nil: undefined }),
    });
    fc.assert(
      fc.property(infoArb, fc.nat(INFO_LENGTH + 8), fc.nat(7), (info, cut, skew) => {
        const full = encodeInfo(info);
        const backing = new Uint8Array(full.length + skew);
        backing.set(full, skew);
        const prefix = backing.subarray(skew, skew + Math.min(cut, full.length));
        let decoded: ReturnType<typeof decodeInfo>;
        try {
          decoded = decodeInfo(prefix);
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
          expect(prefix.length).toBeLessThan(14);
          return;
        }
        expect(decoded).toMatchObject({
          chipId: info.chipId,
          slotSize: info.slotSize,
          maxFrame: info.maxFrame,
          window: info.window,
        });
        const has = (end: number) => prefix.length >= end;
        expect(decoded.runningSha256).toEqual(has(46) ? info.runningSha256 : undefined);
        expect(decoded.sessionOffset).toBe(has(82) ? info.sessionOffset : undefined);
        expect(decoded.security).toEqual(
          has(INFO_LENGTH_BEFORE_PRE_ERASE) ? info.security : undefined,
        );
        expect(decoded.preErased).toBe(
          has(INFO_LENGTH) && info.security !== undefined ? info.preErased : undefined,
        );
        // 114 bytes are a whole INFO of firmware before the security byte.
        expect(decoded.complete).toBe(has(114));
      }),
      { numRuns: 300 },
    );
  });
});
