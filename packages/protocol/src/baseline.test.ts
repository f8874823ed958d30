import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BASELINE_GATT,
  BASELINE_SERVICE_UUID,
  BASELINE_SERVICE_UUID_AS_DOCUMENTED_WRONG,
  DEVICE_INFORMATION_SERVICE_UUID,
  decodeControlValue,
  decodePacketSize,
  encodeOpcode,
  encodePacketSize,
  expandUuid,
  FIRMWARE_REVISION_UUID,
  formatUuid,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  normalizeUuid,
  Opcode,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  opcodeName,
  packetCount,
  packetSizeForMtu,
  splitPackets,
  uuidEquals,
  uuidFromBytesLE,
  uuidToBytesLE,
} from './baseline.ts';
import { BadArgumentError } from './errors.ts';

const hexString = (length: number) =>
  fc
    .uint8Array({ minLength: length / 2, maxLength: length / 2 })
    .map((b) => Buffer.from(b).toString('hex'));

describe('baseline UUIDs', () => {
  it('are the values SEED-PROTOCOL.md gives', () => {
    expect(BASELINE_SERVICE_UUID).toBe('d6f1d96d-594c-4c53-b1c6-144a1dfde6d8');
    expect(BASELINE_SERVICE_UUID_AS_DOCUMENTED_WRONG).toBe('d6f1d96d-594c-4c53-b1c6-244a1dfde6d8');
    expect(OTA_CONTROL_UUID).toBe('7ad671aa-21c0-46a4-b722-270e3ae3d830');
    expect(OTA_DATA_UUID).toBe('23408888-1f40-4cd8-9b89-ca8d45f8a5b0');
    expect(DEVICE_INFORMATION_SERVICE_UUID).toBe('180a');
    expect(MANUFACTURER_NAME_UUID).toBe('2a29');
    expect(MODEL_NUMBER_UUID).toBe('2a24');
    expect(FIRMWARE_REVISION_UUID).toBe('2a26');
  });

  it('on-air service UUID differs from the documented one only by the octal-literal byte', () => {
    const onAir = uuidToBytesLE(BASELINE_SERVICE_UUID);
    const documented = uuidToBytesLE(BASELINE_SERVICE_UUID_AS_DOCUMENTED_WRONG);
    const differing = [...onAir.keys()].filter((i) => onAir[i] !== documented[i]);
    expect(differing).toHaveLength(1);
    const i = differing[0] as number;
    expect(onAir[i]).toBe(0o24);
    expect(documented[i]).toBe(0x24);
  });

  it('declares the baseline GATT layout with its properties', () => {
    expect(BASELINE_GATT).toEqual([
      {
        uuid: '180a',
        characteristics: [
          { uuid: '2a29', properties: ['read'] },
          { uuid: '2a24', properties: ['read'] },
        ],
      },
      {
        uuid: BASELINE_SERVICE_UUID,
        characteristics: [
          { uuid: OTA_CONTROL_UUID, properties: ['read', 'write', 'notify'] },
          { uuid: OTA_DATA_UUID, properties: ['write'] },
        ],
      },
    ]);
  });
});

describe('normalizeUuid', () => {
  it('gives noble form for every common spelling', () => {
    expect(normalizeUuid('7AD671AA-21C0-46A4-B722-270E3AE3D830')).toBe(
      '7ad671aa21c046a4b722270e3ae3d830',
    );
    expect(normalizeUuid('0x180A')).toBe('180a');
    expect(normalizeUuid('180A')).toBe('180a');
    expect(normalizeUuid('0000180a-0000-1000-8000-00805f9b34fb')).toBe('180a');
    expect(normalizeUuid('0000180A00001000800000805F9B34FB')).toBe('180a');
    expect(normalizeUuid('12345678-0000-1000-8000-00805f9b34fb')).toBe('12345678');
    expect(normalizeUuid(' 2a26 ')).toBe('2a26');
    expect(normalizeUuid('00002a26')).toBe('2a26');
  });

  it('rejects what is not a UUID with BadArgumentError', () => {
    for (const bad of ['', '18a', 'xyz1', '7ad671aa21c0-46a4-b722-270e3ae3d830x', '12-4']) {
      expect(() => normalizeUuid(bad)).toThrow(BadArgumentError);
    }
    expect(() => normalizeUuid('7ad671aa_21c0_46a4_b722_270e3ae3d830')).toThrow(
      /not a Bluetooth UUID/,
    );
  });

  it('is idempotent and agrees with expandUuid for any input (property)', () => {
    const anyUuid = fc.oneof(hexString(4), hexString(8), hexString(32));
    fc.assert(
      fc.property(anyUuid, fc.boolean(), (hex, upper) => {
        const input = upper ? hex.toUpperCase() : hex;
        const n = normalizeUuid(input);
        expect(normalizeUuid(n)).toBe(n);
        expect(normalizeUuid(expandUuid(input))).toBe(n);
        expect(normalizeUuid(formatUuid(input))).toBe(n);
        expect(uuidEquals(input, expandUuid(input))).toBe(true);
        expect(expandUuid(input)).toMatch(
          /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
        );
      }),
    );
  });

  it('never throws anything but BadArgumentError on random strings (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        try {
          normalizeUuid(s);
        } catch (error) {
          expect(error).toBeInstanceOf(BadArgumentError);
        }
      }),
    );
  });

  it('formats like the firmware --gatt-json', () => {
    expect(formatUuid('0x2A29')).toBe('2a29');
    expect(formatUuid('7AD671AA21C046A4B722270E3AE3D830')).toBe(OTA_CONTROL_UUID);
    expect(expandUuid('2a29')).toBe('00002a29-0000-1000-8000-00805f9b34fb');
  });
});

describe('UUID bytes', () => {
  it('are little-endian as NimBLE stores them', () => {
    expect([...uuidToBytesLE('180a')]).toEqual([0x0a, 0x18]);
    const control = uuidToBytesLE(OTA_CONTROL_UUID);
    expect(control[0]).toBe(0x30);
    expect(control[15]).toBe(0x7a);
  });

  it('round-trip (property)', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ minLength: 2, maxLength: 2 }),
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        const uuid = uuidFromBytesLE(b);
        expect(uuidEquals(uuid, uuidFromBytesLE(uuidToBytesLE(uuid)))).toBe(true);
        expect(uuidEquals(expandUuid(uuid), uuid)).toBe(true);
      }),
    );
  });

  it('refuse other lengths', () => {
    expect(() => uuidFromBytesLE(new Uint8Array(3))).toThrow(BadArgumentError);
  });
});

describe('baseline decoders on arbitrary bytes (property)', () => {
  it('return a value or throw BadArgumentError, nothing else', () => {
    const decoders: [string, (data: Uint8Array) => unknown][] = [
      ['decodeControlValue', decodeControlValue],
      ['decodePacketSize', decodePacketSize],
      ['uuidFromBytesLE', uuidFromBytesLE],
    ];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), fc.nat(7), (bytes, skew) => {
        const backing = new Uint8Array(bytes.length + skew);
        backing.set(bytes, skew);
        const data = backing.subarray(skew);
        for (const [name, decode] of decoders) {
          try {
            decode(data);
          } catch (error) {
            expect(error, name).toBeInstanceOf(BadArgumentError);
            expect((error as Error).message, name).toMatch(/got \d+/);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('opcodes', () => {
  it('have the baseline values', () => {
    expect(Opcode).toEqual({
      NOP: 0,
      REQUEST: 1,
      REQUEST_ACK: 2,
      REQUEST_NAK: 3,
      DONE: 4,
      DONE_ACK: 5,
      DONE_NAK: 6,
    });
    expect([...encodeOpcode('REQUEST')]).toEqual([0x01]);
    expect([...encodeOpcode(Opcode.DONE)]).toEqual([0x04]);
    expect(opcodeName(5)).toBe('DONE_ACK');
    expect(opcodeName(7)).toBeUndefined();
  });

  it('refuse to encode a value that is not an opcode', () => {
    expect(() => encodeOpcode(9 as never)).toThrow(BadArgumentError);
  });

  it('decode every one-byte notification, known or not, without throwing (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 8 }), (data) => {
        const value = decodeControlValue(data);
        if (data.length === 1 && (data[0] as number) <= 6) {
          expect(value).toEqual({
            kind: 'opcode',
            opcode: data[0],
            name: opcodeName(data[0] as number),
          });
        } else {
          expect(value.kind).toBe('unknown');
          if (value.kind === 'unknown') expect([...value.raw]).toEqual([...data]);
        }
      }),
    );
  });

  it('round-trip through encode and decode', () => {
    for (const name of Object.keys(Opcode) as (keyof typeof Opcode)[]) {
      const decoded = decodeControlValue(encodeOpcode(name));
      expect(decoded).toEqual({ kind: 'opcode', opcode: Opcode[name], name });
    }
  });

  it('explain why a value is unknown', () => {
    expect(decodeControlValue(Uint8Array.of(0x02, 0x00))).toMatchObject({
      kind: 'unknown',
      reason: 'expected a 1-byte opcode, got 2 bytes',
    });
    expect(decodeControlValue(Uint8Array.of(0x42))).toMatchObject({
      reason: '0x42 is not a baseline opcode',
    });
  });
});

describe('packet size', () => {
  it('is u16 little-endian', () => {
    expect([...encodePacketSize(244)]).toEqual([0xf4, 0x00]);
    expect([...encodePacketSize(512)]).toEqual([0x00, 0x02]);
    expect(decodePacketSize(Uint8Array.of(0xb6, 0x00))).toBe(182);
  });

  it('round-trips for every valid size (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xffff }), (n) => {
        const bytes = encodePacketSize(n);
        expect(bytes).toHaveLength(2);
        expect(decodePacketSize(bytes)).toBe(n);
      }),
    );
  });

  it('is read from the first two bytes of a longer value, like the device does', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 512 }), (data) => {
        expect(decodePacketSize(data)).toBe((data[0] as number) + (data[1] as number) * 256);
      }),
    );
  });

  it('refuses out-of-range sizes and short values', () => {
    for (const bad of [0, -1, 65536, 1.5, Number.NaN]) {
      expect(() => encodePacketSize(bad)).toThrow(BadArgumentError);
    }
    expect(() => decodePacketSize(Uint8Array.of(1))).toThrow(/2 bytes/);
  });

  it('is MTU - 3, capped at 512 and at the caller cap', () => {
    expect(packetSizeForMtu(23)).toBe(20);
    expect(packetSizeForMtu(185)).toBe(182);
    expect(packetSizeForMtu(247)).toBe(244);
    expect(packetSizeForMtu(517)).toBe(512);
    expect(packetSizeForMtu(247, 100)).toBe(100);
    expect(() => packetSizeForMtu(22)).toThrow(BadArgumentError);
    expect(() => packetSizeForMtu(247, 0)).toThrow(BadArgumentError);
  });
});

describe('splitPackets', () => {
  it('gives full packets and one shorter tail that reassemble to the image (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.integer({ min: 1, max: 600 }),
        (image, size) => {
          const packets = [...splitPackets(image, size)];
          expect(packets).toHaveLength(packetCount(image.length, size));
          for (const p of packets.slice(0, -1)) expect(p).toHaveLength(size);
          const last = packets.at(-1);
          if (last !== undefined)
            expect(last.length).toBe(image.length - (packets.length - 1) * size);
          expect(Buffer.concat(packets).equals(Buffer.from(image))).toBe(true);
        },
      ),
    );
  });
});
