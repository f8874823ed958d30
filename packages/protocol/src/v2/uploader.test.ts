import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  FakeDeviceRegistry,
  FakeTransport,
  type FakeTransportOptions,
  FakeV2Device,
  type FakeV2DeviceOptions,
} from '@esp-ble-ota/testing';
import { hex, randomAppImage, sha256Hex, trafficLines } from '@esp-ble-ota/testing/support';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { normalizeUuid } from '../baseline.ts';
import { AbortError, TimeoutError } from '../errors.ts';
import { buildAppImage } from '../image/build.ts';
import { signImage } from '../image/signing.ts';
import {
  crc32,
  encodeBegin,
  encodeBeginRsp,
  encodeData,
  encodeWindowAck,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  V2Status,
  type V2StatusName,
  v2StatusMessage,
} from './codec.ts';
import { V2LinkLostError, V2RefusedError } from './errors.ts';
import {
  imageManifest,
  uploadV2,
  type V2PhaseEvent,
  type V2ProgressSnapshot,
  V2Uploader,
} from './uploader.ts';

let registry: FakeDeviceRegistry;
const devices: FakeV2Device[] = [];

beforeEach(() => {
  registry = new FakeDeviceRegistry();
});

afterEach(() => {
  for (const d of devices.splice(0)) d.dispose();
  vi.useRealTimers();
});

function setup(
  deviceOptions: FakeV2DeviceOptions = {},
  transportOptions: FakeTransportOptions = {},
) {
  const device = registry.add(new FakeV2Device({ restartDelayMs: 1, ...deviceOptions }));
  devices.push(device);
  const transport = new FakeTransport(device.address, { registry, mtu: 247, ...transportOptions });
  return { device, transport };
}

/** An ESP app image header (magic, chip id) followed by `body` bytes. */
function makeImage(
  length: number,
  options: { chipId?: number; random?: boolean; seed?: number; mask?: number } = {},
) {
  if (options.random) return randomAppImage(length, options.seed ?? 12345, options);
  const image = new Uint8Array(length);
  for (let i = 0; i < length; i++) image[i] = (i * 31 + 7 + (i >> 10)) & 0xff;
  image[0] = 0xe9;
  image[12] = (options.chipId ?? 0) & 0xff;
  image[13] = (options.chipId ?? 0) >> 8;
  return image;
}

function dataWrites(transport: FakeTransport) {
  return transport.writes().filter((w) => w.characteristic === V2_DATA_UUID);
}

describe('uploadV2, the exchange', () => {
  it('is byte for byte the spec exchange (MTU 47: INFO cut short, 20-byte frames)', async () => {
    const { device, transport } = setup({ window: 32, maxFrame: 20 }, { mtu: 47 });
    await transport.connect();
    const image = makeImage(40);
    const result = await uploadV2(transport, image, { compression: 'never' });

    const traffic = trafficLines(transport);
    const begin = encodeBegin({
      deflate: false,
      restart: false,
      chipId: 0,
      imageSize: 40,
      imageSha256: createHash('sha256').update(image).digest(),
      streamSize: 40,
    });
    expect(traffic).toEqual([
      `read ${V2_CONTROL_UUID}`,
      `subscribe ${V2_CONTROL_UUID}`,
      `write ${V2_CONTROL_UUID} ${hex(begin)}`,
      `notify ${V2_CONTROL_UUID} ${hex(encodeBeginRsp({ status: 0, offset: 0, crc32: 0, window: 32, maxFrame: 20 }))}`,
      `write-cmd ${V2_DATA_UUID} ${hex(encodeData(0, image.subarray(0, 16)))}`,
      `write-cmd ${V2_DATA_UUID} ${hex(encodeData(16, image.subarray(16, 32)))}`,
      `notify ${V2_CONTROL_UUID} ${hex(encodeWindowAck({ status: 0, committed: 32, crc32: crc32(image.subarray(0, 32)) }))}`,
      `write-cmd ${V2_DATA_UUID} ${hex(encodeData(32, image.subarray(32, 40)))}`,
      `notify ${V2_CONTROL_UUID} ${hex(encodeWindowAck({ status: 0, committed: 40, crc32: crc32(image) }))}`,
      `write ${V2_CONTROL_UUID} 11`,
      `notify ${V2_CONTROL_UUID} 9300`,
      'disconnect remote 8',
    ]);
    expect(result).toMatchObject({
      protocol: 'v2',
      outcome: 'installed',
      frameSize: 20,
      window: 32,
      sentBytes: 40,
      sentFrames: 3,
      resumedFrom: 0,
      compression: { used: false, reason: 'disabled' },
      restart: { observed: true },
    });
    expect(result.info.complete).toBe(false);
    expect(result.info.window).toBe(32);
    expect(device.bootCount).toBe(1);
    expect(device.runningImage).toEqual(image);
  });

  it('connects by itself and reports phases in order with the injected clock', async () => {
    const { transport } = setup();
    let now = 1000;
    const clock = { now: () => (now += 5) };
    const phases: V2PhaseEvent[] = [];
    const progress: V2ProgressSnapshot[] = [];
    const image = makeImage(50_000, { random: true });
    const result = await uploadV2(transport, image, {
      clock,
      onPhase: (e) => phases.push(e),
      onProgress: (p) => progress.push(p),
    });
    expect(phases.map((p) => `${p.phase}:${p.state}`)).toEqual([
      'connect:start',
      'connect:end',
      'info:start',
      'info:end',
      'begin:start',
      'begin:end',
      'data:start',
      'data:end',
      'end:start',
      'end:end',
      'restart:start',
      'restart:end',
    ]);
    expect(result.phases.map((p) => p.phase)).toEqual([
      'connect',
      'info',
      'begin',
      'data',
      'end',
      'restart',
    ]);
    expect(result.phases.every((p) => p.durationMs > 0)).toBe(true);
    const last = progress.at(-1) as V2ProgressSnapshot;
    expect(last).toMatchObject({
      percent: 100,
      bytes: image.length,
      total: image.length,
      etaMs: 0,
    });
    expect(last.streamBytes).toBe(result.streamSize);
    expect(last.bytesPerSecond).toBeGreaterThan(0);
    expect(progress[0]?.percent).toBe(0);
    for (let i = 1; i < progress.length; i++) {
      expect(progress[i]?.streamBytes).toBeGreaterThanOrEqual(progress[i - 1]?.streamBytes ?? 0);
    }
    expect(result.bytesPerSecond).toBeGreaterThan(0);
  });

  it.each([
    { window: 4096, ackEvery: undefined, mtu: 247 },
    { window: 4096, ackEvery: 1024, mtu: 247 },
    { window: 1000, ackEvery: 250, mtu: 185 },
    { window: 20_000, ackEvery: undefined, mtu: 517, maxFrame: 514 },
  ])('never has more than a window in flight (%o)', async ({ window, ackEvery, mtu, ...rest }) => {
    const { device, transport } = setup(
      { window, ...(ackEvery === undefined ? {} : { ackEvery }), writerDelayMs: 0, ...rest },
      { mtu, txBuffers: 8 },
    );
    await transport.connect();
    const image = makeImage(120_000, { random: true });
    const result = await uploadV2(transport, image);
    expect(device.windowViolations).toBe(0);
    expect(device.maxUnacked).toBeLessThanOrEqual(window);
    // With acks only at window multiples the client fills the window every time.
    if (ackEvery === undefined) expect(device.maxUnacked).toBe(window);
    expect(result.frameSize).toBe(Math.min(512, mtu - 3));
    expect(dataWrites(transport).every((w) => w.data.length <= 512)).toBe(true);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('keeps the window over a link with latency, where acks arrive a round trip late', async () => {
    const { device, transport } = setup({ window: 4096, ackEvery: 1024 }, { latencyMs: 1 });
    await transport.connect();
    const image = makeImage(30_000, { random: true });
    const result = await uploadV2(transport, image);
    expect(device.windowViolations).toBe(0);
    expect(result.ackTimeouts).toBe(0);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('keeps the window with a slow writer, where acks lag behind the frames', async () => {
    const { device, transport } = setup({ window: 2048, ackEvery: 512, writerDelayMs: 1 });
    await transport.connect();
    const image = makeImage(20_000, { random: true });
    await uploadV2(transport, image);
    expect(device.windowViolations).toBe(0);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });
});

describe('gaps and lost frames', () => {
  it('resends from the offset of a gap report and finishes with the right image', async () => {
    const dropped = new Set([240 * 3, 240 * 40, 240 * 41]);
    const { device, transport } = setup({
      window: 8192,
      faults: { dropFrame: (offset, _len, seen) => seen === 0 && dropped.has(offset) },
    });
    await transport.connect();
    const image = makeImage(60_000, { random: true });
    const result = await uploadV2(transport, image, { compression: 'never' });
    expect(result.gaps).toBeGreaterThanOrEqual(2);
    expect(result.resentBytes).toBeGreaterThan(0);
    expect(result.sentBytes).toBe(image.length + result.resentBytes);
    expect(
      device.acks.filter((a) => a.status === V2Status.BAD_REQUEST).map((a) => a.committed),
    ).toEqual(expect.arrayContaining([240 * 3, 240 * 40]));
    expect(device.windowViolations).toBe(0);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('recovers a frame lost at the end of the stream, which no later frame reveals', async () => {
    const image = makeImage(5000, { random: true });
    const lastOffset = Math.floor((image.length - 1) / 240) * 240;
    const { device, transport } = setup({
      window: 16384,
      faults: { dropFrame: (offset, _len, seen) => seen === 0 && offset === lastOffset },
    });
    await transport.connect();
    const result = await uploadV2(transport, image, {
      compression: 'never',
      maxFrame: 244,
      timeouts: { ackMs: 30 },
    });
    expect(result.ackTimeouts).toBe(1);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('recovers a frame lost at the end of a window', async () => {
    const image = makeImage(10_000, { random: true });
    const { device, transport } = setup({
      window: 2400,
      faults: { dropFrame: (offset, _len, seen) => seen === 0 && offset === 2400 - 240 },
    });
    await transport.connect();
    const result = await uploadV2(transport, image, {
      compression: 'never',
      maxFrame: 244,
      timeouts: { ackMs: 30 },
    });
    expect(result.ackTimeouts).toBe(1);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });
});

describe('resume', () => {
  it.each([
    { at: 3000, compression: 'never' as const },
    { at: 40_000, compression: 'never' as const },
    { at: 150_000, compression: 'never' as const },
    { at: 30_000, compression: 'auto' as const },
    { at: 90_000, compression: 'always' as const },
  ])(
    'after a link drop at stream byte $at ($compression) sends less than the whole image and ends with the right hash',
    async ({ at, compression }) => {
      const { device, transport } = setup({
        ackEvery: 1024,
        faults: { dropLinkAtStreamByte: at },
      });
      await transport.connect();
      // Six bits of entropy per byte: deflate shrinks it by a quarter, not to nothing.
      const image = makeImage(200_000, {
        random: true,
        mask: compression === 'never' ? 0xff : 0x3f,
      });
      const first = await uploadV2(transport, image, { compression }).catch((e: unknown) => e);
      expect(first).toBeInstanceOf(V2LinkLostError);
      const lost = first as V2LinkLostError;
      expect(lost.code).toBe('LINK_LOST');
      expect(lost.resumable).toBe(true);
      expect(lost.sentBytes).toBeGreaterThanOrEqual(lost.committed);
      expect(lost.committed).toBeGreaterThan(at - 16384 - 1024);
      expect(lost.committed).toBeLessThanOrEqual(at);
      expect(lost.message).toContain(`stream byte ${lost.committed}`);
      expect(device.hasSession).toBe(true);

      // The device may have committed more than it last acknowledged; it resumes from there.
      const held = device.committed;
      expect(held).toBeGreaterThanOrEqual(lost.committed);
      await transport.connect();
      const second = await uploadV2(transport, image, { compression });
      expect(second.resumedFrom).toBe(held);
      expect(second.compression.used).toBe(compression !== 'never');
      expect(second.sentBytes).toBe(second.streamSize - held);
      expect(second.sentBytes).toBeLessThan(second.streamSize);
      expect(second.sessionRestarted).toBe(false);
      expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
      expect(second.imageSha256).toBe(sha256Hex(image));
    },
  );

  it('starts over with the restart flag when the held session fails the CRC check', async () => {
    const { device, transport } = setup({
      ackEvery: 1024,
      faults: { dropLinkAtStreamByte: 20_000 },
    });
    await transport.connect();
    const image = makeImage(50_000, { random: true });
    await expect(uploadV2(transport, image)).rejects.toBeInstanceOf(V2LinkLostError);
    device.corruptSession(100);
    await transport.connect();
    const result = await uploadV2(transport, image);
    expect(result.sessionRestarted).toBe(true);
    expect(result.resumedFrom).toBe(0);
    expect(result.sentBytes).toBe(image.length);
    const begins = transport
      .writes()
      .filter((w) => w.characteristic === V2_CONTROL_UUID && w.data[0] === 0x10);
    expect(begins.map((b) => b.data[1])).toEqual([0, 0, 2]);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('V2Uploader resumes by itself across a reconnect driven by the caller', async () => {
    const { device, transport } = setup({ ackEvery: 2048, faults: { dropLinkAtStreamByte: 9000 } });
    const uploader = new V2Uploader(transport, { compression: 'never' });
    const image = makeImage(30_000, { random: true });
    let result: Awaited<ReturnType<V2Uploader['upload']>> | undefined;
    for (let attempt = 0; attempt < 3 && result === undefined; attempt++) {
      result = await uploader.upload(image).catch((error: unknown) => {
        if (error instanceof V2LinkLostError && error.resumable) return undefined;
        throw error;
      });
    }
    expect(result?.resumedFrom).toBeGreaterThanOrEqual(8192);
    expect(result?.sentBytes).toBe(image.length - (result?.resumedFrom ?? 0));
    expect(device.dataBytesReceived).toBeLessThan(2 * image.length);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });
});

describe('edge cases', () => {
  it('resumes a session that holds the whole stream by sending END alone', async () => {
    const { device, transport } = setup();
    await transport.connect();
    const origin = device.onWrite.bind(device);
    let cut = false;
    device.onWrite = (chr, data, withResponse) => {
      if (!cut && chr === normalizeUuid(V2_CONTROL_UUID) && data[0] === 0x11) {
        cut = true;
        transport.disconnect();
        return 'never';
      }
      return origin(chr, data, withResponse);
    };
    const image = makeImage(20_000, { random: true });
    const lost = await uploadV2(transport, image).catch((e: unknown) => e);
    expect(lost).toMatchObject({ code: 'LINK_LOST', committed: image.length });
    await transport.connect();
    const result = await uploadV2(transport, image);
    expect(result).toMatchObject({ outcome: 'installed', resumedFrom: image.length, sentBytes: 0 });
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('reports noise on v2 Control and carries on', async () => {
    const { device, transport } = setup({ ackEvery: 1024 });
    await transport.connect();
    const uploader = new V2Uploader(transport);
    const noise: string[] = [];
    uploader.on('unexpectedNotification', (_data, reason) => noise.push(reason));
    let sent = false;
    uploader.on('progress', (p) => {
      if (!sent && p.streamBytes > 0) {
        sent = true;
        device.sendControlNotification(Uint8Array.of(0x42, 1, 2));
        device.sendControlNotification(Uint8Array.of(0x93));
      }
    });
    const image = makeImage(20_000, { random: true });
    await uploader.upload(image);
    expect(noise).toHaveLength(2);
    expect(noise[0]).toMatch(/not a v2 answer/);
    expect(noise[1]).toMatch(/END_RSP is 2 bytes/);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });
});

describe('already installed', () => {
  it('reports success without sending any DATA or END', async () => {
    const image = makeImage(10_000);
    const { device, transport } = setup({ runningImage: image });
    await transport.connect();
    const phases: string[] = [];
    const result = await uploadV2(transport, image, {
      onPhase: (e) => phases.push(`${e.phase}:${e.state}`),
    });
    expect(result.outcome).toBe('already-installed');
    expect(result.sentBytes).toBe(0);
    expect(dataWrites(transport)).toHaveLength(0);
    expect(transport.writes().filter((w) => w.data[0] === 0x11)).toHaveLength(0);
    expect(device.dataBytesReceived).toBe(0);
    expect(device.bootCount).toBe(0);
    expect(phases).not.toContain('data:start');
    expect(transport.connected).toBe(true);
  });
});

describe('refusals', () => {
  it('WRONG_CHIP when the image is for another chip', async () => {
    const { transport } = setup({ chipId: 0 });
    const error = await uploadV2(transport, makeImage(1000, { chipId: 9 })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(V2RefusedError);
    expect((error as V2RefusedError).code).toBe('REFUSED');
    expect((error as V2RefusedError).statusName).toBe('WRONG_CHIP');
    expect((error as V2RefusedError).reason).toBe(
      'device refused the update: image is for another chip (WRONG_CHIP)',
    );
    expect((error as Error).message).toMatch(
      /^device refused the update: image is for another chip \(WRONG_CHIP\) at BEGIN; build/,
    );
  });

  it('TOO_LARGE when the image does not fit the slot', async () => {
    const { transport } = setup({ slotSize: 4096 });
    const error = await uploadV2(transport, makeImage(5000)).catch((e: unknown) => e);
    expect((error as V2RefusedError).statusName).toBe('TOO_LARGE');
    expect((error as Error).message).toContain('image is larger than the update slot');
  });

  // Not refusals: success, nothing to send, and an image installed by an earlier END.
  const refusals = (Object.keys(V2Status) as V2StatusName[]).filter(
    (name) => name !== 'OK' && name !== 'ALREADY_INSTALLED' && name !== 'INSTALLED_RESTARTING',
  );

  it.each(refusals)('BEGIN refused with %s shows its message and sends nothing', async (name) => {
    const { transport } = setup({ faults: { refuse: { step: 'BEGIN', status: V2Status[name] } } });
    const error = await uploadV2(transport, makeImage(1000)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(V2RefusedError);
    expect((error as V2RefusedError).step).toBe('BEGIN');
    expect((error as Error).message).toContain(v2StatusMessage(V2Status[name]));
    expect(dataWrites(transport)).toHaveLength(0);
  });

  it.each(refusals)('END refused with %s shows its message; nothing boots', async (name) => {
    const { device, transport } = setup({
      faults: { refuse: { step: 'END', status: V2Status[name] } },
    });
    const error = await uploadV2(transport, makeImage(3000)).catch((e: unknown) => e);
    expect((error as V2RefusedError).step).toBe('END');
    expect((error as V2RefusedError).status).toBe(V2Status[name]);
    expect((error as Error).message).toContain(`(${name})`);
    expect(device.bootCount).toBe(0);
  });

  it('INVALID_IMAGE from the device image check at END', async () => {
    const { device, transport } = setup({ validateImage: () => false });
    const error = await uploadV2(transport, makeImage(3000)).catch((e: unknown) => e);
    expect((error as V2RefusedError).statusName).toBe('INVALID_IMAGE');
    expect((error as Error).message).toContain('the ESP image check failed');
    expect(device.bootCount).toBe(0);
  });

  it('FLASH_ERROR reported in a WINDOW_ACK stops the data phase', async () => {
    const { transport } = setup({
      faults: { failWriteAt: { offset: 5000, status: V2Status.FLASH_ERROR } },
    });
    const error = await uploadV2(transport, makeImage(20_000, { random: true })).catch(
      (e: unknown) => e,
    );
    expect((error as V2RefusedError).step).toBe('DATA');
    expect((error as Error).message).toContain('erasing or writing flash failed (FLASH_ERROR)');
  });

  it('a link whose MTU cannot carry BEGIN is refused before anything is written', async () => {
    const { transport } = setup({}, { mtu: 23 });
    const error = await uploadV2(transport, makeImage(1000)).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/needs an ATT MTU of at least 47/);
    expect(transport.writes()).toHaveLength(0);
  });

  it.each(['never', 'always'] as const)(
    'INVALID_IMAGE while streaming when the first image byte is not the magic (compression %s)',
    async (compression) => {
      const { device, transport } = setup();
      const image = makeImage(30_000, { random: true });
      image[0] = 0x00;
      const error = await uploadV2(transport, image, { compression, chipId: 0 }).catch(
        (e: unknown) => e,
      );
      expect((error as V2RefusedError).step).toBe('DATA');
      expect((error as V2RefusedError).statusName).toBe('INVALID_IMAGE');
      expect(device.dataBytesReceived).toBeLessThan(image.length);
    },
  );

  it('an image that is not an ESP app image is refused locally', async () => {
    const { transport } = setup();
    await expect(uploadV2(transport, new Uint8Array(100).fill(1))).rejects.toMatchObject({
      code: 'BAD_IMAGE',
    });
    await expect(uploadV2(transport, new Uint8Array(0))).rejects.toMatchObject({
      code: 'BAD_IMAGE',
    });
  });
});

describe('compression', () => {
  it('shortens the stream of a compressible image and the device installs the same image', async () => {
    const { device, transport } = setup();
    const image = makeImage(100_000);
    const result = await uploadV2(transport, image);
    expect(result.compression.used).toBe(true);
    expect(result.streamSize).toBeLessThan(image.length / 2);
    expect(device.dataBytesReceived).toBe(result.streamSize);
    const begin = transport.writes().find((w) => w.data[0] === 0x10)?.data as Uint8Array;
    expect(begin[1]).toBe(1);
    expect(result.imageBytesPerSecond).toBeGreaterThan(result.bytesPerSecond);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it("'auto' leaves an incompressible image as it is; 'always' deflates it anyway", async () => {
    const image = makeImage(20_000, { random: true });
    const a = setup({ address: 'fa:ke:00:00:02:0a' });
    expect((await uploadV2(a.transport, image)).compression).toEqual({
      used: false,
      reason: 'not-smaller',
    });
    const b = setup({ address: 'fa:ke:00:00:02:0b' });
    const forced = await uploadV2(b.transport, image, { compression: 'always' });
    expect(forced.compression.used).toBe(true);
    expect(sha256Hex(b.device.runningImage)).toBe(sha256Hex(image));
  });

  it('is not used when the device cannot inflate', async () => {
    const { transport } = setup({ deflate: false });
    const result = await uploadV2(transport, makeImage(50_000));
    expect(result.compression).toEqual({ used: false, reason: 'device-unsupported' });
    expect(result.streamSize).toBe(50_000);
  });
});

describe('abort and timeouts', () => {
  it('aborts mid-transfer with AbortError; the session stays for a resume', async () => {
    const { device, transport } = setup({ ackEvery: 1024 });
    await transport.connect();
    const controller = new AbortController();
    const image = makeImage(100_000, { random: true });
    const error = await uploadV2(transport, image, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.streamBytes >= 20_000) controller.abort(new Error('user pressed Ctrl-C'));
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
    expect((error as AbortError).message).toContain('during data transfer');
    expect(device.hasSession).toBe(true);
    const resumed = await uploadV2(transport, image);
    expect(resumed.resumedFrom).toBeGreaterThanOrEqual(20_000);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('rejects at once when the signal is already aborted', async () => {
    const { transport } = setup();
    await expect(
      uploadV2(transport, makeImage(100), { signal: AbortSignal.abort() }),
    ).rejects.toBeInstanceOf(AbortError);
    expect(transport.recording).toHaveLength(0);
  });

  it('times out when the device never acknowledges, after the resend attempts', async () => {
    vi.useFakeTimers();
    const { device, transport } = setup({ faults: { neverAck: true } });
    await transport.connect();
    const outcome = uploadV2(transport, makeImage(50_000, { random: true }), {
      timeouts: { ackMs: 1000, ackRetries: 2 },
    }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2999);
    expect(device.dataFramesReceived).toBeGreaterThan(0);
    await vi.advanceTimersByTimeAsync(1);
    const error = await outcome;
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).message).toMatch(
      /timed out after 3000 ms waiting for the device to acknowledge/,
    );
  });

  it('times out when END is never answered', async () => {
    vi.useFakeTimers();
    const { transport } = setup({ faults: { noEndAnswer: true } });
    await transport.connect();
    const outcome = uploadV2(transport, makeImage(1000), { timeouts: { endMs: 4000 } }).catch(
      (e: unknown) => e,
    );
    await vi.advanceTimersByTimeAsync(4000);
    const error = await outcome;
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as Error).message).toContain('waiting for the answer to END');
  });

  it('reports a device that does not restart without failing the upload', async () => {
    vi.useFakeTimers();
    const { transport } = setup({ faults: { noRestart: true } });
    await transport.connect();
    const outcome = uploadV2(transport, makeImage(1000), { timeouts: { restartMs: 2000 } });
    await vi.advanceTimersByTimeAsync(2000);
    expect((await outcome).restart).toEqual({ observed: false, reason: 'timeout' });
  });

  it('a link drop before BEGIN is answered is LINK_LOST without a resumable session', async () => {
    const { device, transport } = setup();
    await transport.connect();
    const origin = device.onWrite.bind(device);
    device.onWrite = (chr, data, withResponse) => {
      if (data[0] === 0x10) {
        transport.disconnect();
        return 'never';
      }
      return origin(chr, data, withResponse);
    };
    const error = await uploadV2(transport, makeImage(1000)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(V2LinkLostError);
    expect((error as V2LinkLostError).resumable).toBe(false);
  });
});

describe('what the device enforces (INFO security byte)', () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const signedOnly = {
    signedOnly: true,
    antiRollback: true,
    minSecureVersion: 2,
    allowDowngrade: false,
    linkSecurity: 'encrypted' as const,
  };
  const app = (version: string, secureVersion = 2) =>
    buildAppImage({
      chip: 'esp32',
      project: 'p',
      version,
      secureVersion,
      payload: new Uint8Array(20_000).fill(3),
    });

  it("sends a signed image's manifest in pieces before BEGIN, with BEGIN's manifest flag", async () => {
    const { device, transport } = setup({ security: signedOnly, runningVersion: '1.0.0' });
    const image = signImage(app('1.1.0'), [key]);
    const result = await uploadV2(transport, image, { compression: 'never' });
    expect(result.outcome).toBe('installed');
    expect(result.info.security).toEqual(signedOnly);
    expect(device.manifests).toEqual([imageManifest(image)]);
    expect(device.beginFlags).toEqual([4]);
    // The manifest pieces came before BEGIN, each a Write Request of at most MTU - 3 bytes.
    const control = transport.writes().filter((w) => w.characteristic === V2_CONTROL_UUID);
    const opcodes = control.map((w) => w.data[0]);
    expect(opcodes.slice(0, 6)).toEqual([0x13, 0x13, 0x13, 0x13, 0x13, 0x13]);
    expect(opcodes[6]).toBe(0x10);
    expect(control.every((w) => w.data.length <= 244 && w.withResponse)).toBe(true);
  });

  it('refuses what the device would refuse before sending anything, and says so', async () => {
    const cases: Array<[Uint8Array, V2StatusName, RegExp]> = [
      [app('1.1.0'), 'UNSIGNED', /takes signed updates only, and this image has no Secure Boot/],
      [signImage(app('1.1.0', 1), [key]), 'DOWNGRADE', /secure_version is 1, the device takes 2/],
      [
        signImage(app('0.9.0'), [key]),
        'VERSION_DOWNGRADE',
        /version 0\.9\.0, the device runs 1\.0\.0/,
      ],
    ];
    for (const [i, [image, status, detail]] of cases.entries()) {
      const { device, transport } = setup({
        address: `fa:ke:00:00:03:0${i}`,
        security: signedOnly,
        runningVersion: '1.0.0',
      });
      const error = await uploadV2(transport, image).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(V2RefusedError);
      expect((error as V2RefusedError).statusName).toBe(status);
      expect((error as V2RefusedError).preflight).toBe(true);
      expect((error as Error).message).toMatch(detail);
      expect((error as Error).message).toMatch(/; nothing was sent/);
      expect(device.beginCount).toBe(0);
      expect(dataWrites(transport)).toEqual([]);
    }
  });

  it('asks for an older version only when told to, and the device decides', async () => {
    const older = signImage(app('0.9.0'), [key]);
    const refusing = setup({ security: signedOnly, runningVersion: '1.0.0' });
    const asked = await uploadV2(refusing.transport, older, { allowDowngrade: true }).catch(
      (e: unknown) => e,
    );
    expect((asked as Error).message).toMatch(/and its firmware takes no older version/);
    const allowing = setup({
      address: 'fa:ke:00:00:03:10',
      security: { ...signedOnly, allowDowngrade: true },
      runningVersion: '1.0.0',
    });
    const result = await uploadV2(allowing.transport, older, {
      allowDowngrade: true,
      compression: 'never',
    });
    expect(result.outcome).toBe('installed');
    expect(allowing.device.beginFlags).toEqual([4 | 8]);
  });

  it('with preflight off, sends it anyway and the device answers (UNSIGNED at BEGIN)', async () => {
    const { device, transport } = setup({ security: signedOnly, runningVersion: '1.0.0' });
    const error = await uploadV2(transport, app('1.1.0'), { preflight: false }).catch(
      (e: unknown) => e,
    );
    expect((error as V2RefusedError).statusName).toBe('UNSIGNED');
    expect((error as V2RefusedError).preflight).toBe(false);
    expect(device.beginCount).toBe(1);
  });
});
