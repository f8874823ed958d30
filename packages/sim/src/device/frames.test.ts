import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DeviceFrame, encode, FrameDecoder, FrameError } from './frames.ts';

function deviceFrame(type: number, payload: number[]): Uint8Array {
  return Uint8Array.from([type, payload.length & 0xff, payload.length >> 8, ...payload]);
}

describe('host frames', () => {
  it('encode the WRITE frame as the device program expects it', () => {
    const bytes = encode.write(0x0001, 1, Uint8Array.of(0xb6, 0x00), true);
    expect([...bytes]).toEqual([0x04, 7, 0, 0x01, 0x00, 0x01, 0x00, 0x01, 0xb6, 0x00]);
  });

  it('encode CONNECT with little-endian handle and MTU', () => {
    expect([...encode.connect(0x0102, 247)]).toEqual([0x01, 4, 0, 0x02, 0x01, 247, 0]);
  });

  it('encode IDLE with the milliseconds that passed, little-endian', () => {
    expect([...encode.idle(30_000)]).toEqual([0x09, 4, 0, 0x30, 0x75, 0, 0]);
    expect([...encode.idle(-1)]).toEqual([0x09, 4, 0, 0, 0, 0, 0]);
  });
});

describe('FrameDecoder', () => {
  it('decodes every device frame type', () => {
    const d = new FrameDecoder();
    const stream = [
      deviceFrame(DeviceFrame.HELLO, [1, ...Buffer.from('esp32')]),
      deviceFrame(DeviceFrame.NOTIFY, [1, 0, 0, 0, 0x02]),
      deviceFrame(DeviceFrame.CONSOLE, [...Buffer.from('I (5) x: y\r\n')]),
      deviceFrame(DeviceFrame.WRITE_RSP, [1, 0, 1, 0, 0]),
      deviceFrame(DeviceFrame.READ_RSP, [1, 0, 3, 0, 0, ...Buffer.from('ESP32')]),
      deviceFrame(DeviceFrame.FLASH_OP, [1, 0x00, 0x00, 0x01, 0x00, 0x00, 0x10, 0, 0]),
      deviceFrame(DeviceFrame.RESET, [3]),
      deviceFrame(DeviceFrame.TERMINATE, [2, 1, 0x13]),
    ];
    const events = d.push(Buffer.concat(stream));
    expect(events).toEqual([
      { type: 'hello', advertising: true, name: 'esp32' },
      { type: 'notify', conn: 1, chrId: 0, data: Uint8Array.of(2) },
      { type: 'console', data: new Uint8Array(Buffer.from('I (5) x: y\r\n')) },
      { type: 'writeRsp', conn: 1, chrId: 1, status: 0 },
      { type: 'readRsp', conn: 1, chrId: 3, status: 0, data: new Uint8Array(Buffer.from('ESP32')) },
      { type: 'flashOp', op: 'erase', addr: 0x10000, len: 0x1000 },
      { type: 'reset', reason: 3 },
      { type: 'terminate', conn: 0x0102, reason: 0x13 },
    ]);
    expect(d.buffered).toBe(0);
  });

  it('gives the same events however the stream is split into chunks', () => {
    const payloads = fc.array(fc.uint8Array({ maxLength: 600 }), { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(payloads, fc.array(fc.nat(), { maxLength: 10 }), (datas, cuts) => {
        const stream = Buffer.concat(datas.map((p) => deviceFrame(DeviceFrame.CONSOLE, [...p])));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const d = new FrameDecoder();
        const got: Uint8Array[] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          for (const ev of d.push(stream.subarray(prev, p))) {
            if (ev.type === 'console') got.push(ev.data);
          }
          prev = p;
        }
        expect(got.map((g) => [...g])).toEqual(datas.map((p) => [...p]));
        expect(d.buffered).toBe(0);
      }),
    );
  });

  it('refuses an unknown frame type with its number', () => {
    expect(() => new FrameDecoder().push(deviceFrame(0x99, []))).toThrow(
      new FrameError('unknown device frame type 0x99'),
    );
  });
});
