/** The device side as FakeV2Device models it, driven by hand, as a firmware test would. */
import { createHash } from 'node:crypto';
import {
  abortV2Session,
  crc32,
  decodeAnswer,
  decodeInfo,
  encodeBegin,
  encodeData,
  uploadV2,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  type V2Answer,
  V2Status,
} from '@esp-ble-ota/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeDeviceRegistry, FakeTransport } from './fake-transport.ts';
import { FakeV2Device } from './v2-fake-device.ts';

let registry: FakeDeviceRegistry;
let device: FakeV2Device;
let transport: FakeTransport;
let answers: V2Answer[];

const image = new Uint8Array(3000).map((_, i) => (i * 7) & 0xff);
image[0] = 0xe9;
image[12] = 0;
image[13] = 0;
const imageSha = new Uint8Array(createHash('sha256').update(image).digest());
const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

beforeEach(async () => {
  registry = new FakeDeviceRegistry();
  device = registry.add(new FakeV2Device({ window: 1000, ackEvery: 500, restartDelayMs: 1 }));
  transport = new FakeTransport(device.address, { registry, mtu: 247 });
  await transport.connect();
  answers = [];
  await transport.subscribe(V2_CONTROL_UUID, (data) => answers.push(decodeAnswer(data)));
});

afterEach(() => device.dispose());

async function begin(restart = false) {
  await transport.write(
    V2_CONTROL_UUID,
    encodeBegin({
      deflate: false,
      restart,
      chipId: 0,
      imageSize: image.length,
      imageSha256: imageSha,
      streamSize: image.length,
    }),
    { withResponse: true },
  );
  await settle();
}

async function send(offset: number, length: number) {
  await transport.write(V2_DATA_UUID, encodeData(offset, image.subarray(offset, offset + length)), {
    withResponse: false,
  });
}

describe('FakeV2Device', () => {
  it('reports a gap once, then again only after it accepted a frame', async () => {
    await begin();
    await send(0, 100);
    await send(200, 100); // gap: 100 expected
    await send(300, 100); // same gap: silent
    await send(100, 100); // fills it
    await send(400, 100); // new gap at 200
    await settle();
    const acks = answers.filter((a) => a.op === 'WINDOW_ACK');
    expect(acks).toEqual([
      {
        op: 'WINDOW_ACK',
        status: V2Status.BAD_REQUEST,
        committed: 100,
        crc32: crc32(image.subarray(0, 100)),
      },
      {
        op: 'WINDOW_ACK',
        status: V2Status.BAD_REQUEST,
        committed: 200,
        crc32: crc32(image.subarray(0, 200)),
      },
    ]);
  });

  it('answers a resent frame it already holds with where it stands', async () => {
    await begin();
    await send(0, 100);
    await send(100, 100);
    await send(0, 100);
    await settle();
    expect(answers.at(-1)).toMatchObject({
      op: 'WINDOW_ACK',
      status: V2Status.BAD_REQUEST,
      committed: 200,
    });
  });

  it('acknowledges when the committed offset crosses a multiple of ackEvery, and at the end', async () => {
    await begin();
    for (let offset = 0; offset < image.length; offset += 240) await send(offset, 240);
    await settle();
    const committed = answers
      .filter((a) => a.op === 'WINDOW_ACK')
      .map((a) => (a.op === 'WINDOW_ACK' ? a.committed : 0));
    expect(committed).toEqual([720, 1200, 1680, 2160, 2640, 3000]);
  });

  it('sizes DATA frames to whole link-layer packets when it knows the data length, as the firmware does', async () => {
    let n = 0;
    const frameAt = async (mtu: number, linkDataLength?: number) => {
      n += 1;
      const d = registry.add(
        new FakeV2Device({
          address: `24:0a:c4:00:01:0${n}`,
          ...(linkDataLength === undefined ? {} : { linkDataLength }),
        }),
      );
      const t = new FakeTransport(d.address, { registry, mtu });
      await t.connect();
      const info = decodeInfo(await t.read(V2_CONTROL_UUID));
      await t.disconnect();
      d.dispose();
      return info.maxFrame;
    };
    expect(await frameAt(517, 251)).toBe(495); // 2 x 251 - 4 - 3
    expect(await frameAt(256, 251)).toBe(244); // 251 - 4 - 3
    expect(await frameAt(517)).toBe(512); // without it: min(maxFrame, MTU - 3)
  });

  it('reports the held session in INFO and resumes it on the same BEGIN after a reconnect', async () => {
    await begin();
    await send(0, 240);
    await send(240, 240);
    await settle();
    await transport.disconnect();
    await transport.connect();
    const info = decodeInfo(await transport.read(V2_CONTROL_UUID));
    expect(info.sessionOffset).toBe(480);
    expect(info.sessionSha256).toEqual(imageSha);
    answers = [];
    await transport.subscribe(V2_CONTROL_UUID, (data) => answers.push(decodeAnswer(data)));
    await begin();
    expect(answers[0]).toMatchObject({
      op: 'BEGIN_RSP',
      status: 0,
      offset: 480,
      crc32: crc32(image.subarray(0, 480)),
    });
    await begin(true);
    expect(answers[1]).toMatchObject({ op: 'BEGIN_RSP', status: 0, offset: 0 });
  });

  it('answers DATA without a session with NO_SESSION, and ABORT drops a session', async () => {
    await send(0, 10);
    await settle();
    expect(answers[0]).toMatchObject({ op: 'WINDOW_ACK', status: V2Status.NO_SESSION });
    await begin();
    expect(device.hasSession).toBe(true);
    await transport.unsubscribe(V2_CONTROL_UUID, () => {});
    await abortV2Session(transport);
    expect(device.hasSession).toBe(false);
    expect(answers.at(-1)).toMatchObject({ op: 'ABORT_RSP', status: 0 });
  });

  it('answers malformed commands like the firmware: BAD_REQUEST for known ones, ATT 0x13 else', async () => {
    await transport.write(V2_CONTROL_UUID, Uint8Array.of(0x10, 0, 0), { withResponse: true });
    await transport.write(V2_CONTROL_UUID, Uint8Array.of(0x11, 0), { withResponse: true });
    await settle();
    expect(answers.map((a) => [a.op, a.status])).toEqual([
      ['BEGIN_RSP', V2Status.BAD_REQUEST],
      ['END_RSP', V2Status.BAD_REQUEST],
    ]);
    await expect(
      transport.write(V2_CONTROL_UUID, Uint8Array.of(0x7f), { withResponse: true }),
    ).rejects.toMatchObject({ code: 'ATT_ERROR', status: 0x13 });
    await expect(
      transport.write(V2_DATA_UUID, Uint8Array.of(0, 0, 0, 0), { withResponse: true }),
    ).rejects.toMatchObject({ code: 'ATT_ERROR', status: 0x0d });
  });

  it('after a failure while streaming, DATA gets NO_SESSION once and END the failure', async () => {
    device.faults.failWriteAt = { offset: 200, status: V2Status.FLASH_ERROR };
    await begin();
    await send(0, 240);
    await send(240, 240);
    await send(480, 240);
    await settle();
    await transport.write(V2_CONTROL_UUID, Uint8Array.of(0x11), { withResponse: true });
    await settle();
    expect(answers.map((a) => [a.op, a.status])).toEqual([
      ['BEGIN_RSP', V2Status.OK],
      ['WINDOW_ACK', V2Status.FLASH_ERROR],
      ['WINDOW_ACK', V2Status.NO_SESSION],
      ['END_RSP', V2Status.FLASH_ERROR],
    ]);
  });

  it('after an ABORT the next upload starts from 0', async () => {
    await begin();
    await send(0, 240);
    await send(240, 240);
    await settle();
    await abortV2Session(transport);
    const result = await uploadV2(transport, image, { compression: 'never' });
    expect(result.resumedFrom).toBe(0);
  });
});
