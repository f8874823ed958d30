import { type FakePeripheral, FakeTransport } from '@esp-ble-ota/testing';
import { hex, trafficLines, useBaselineRig } from '@esp-ble-ota/testing/support';
import { describe, expect, it, vi } from 'vitest';
import {
  BASELINE_SERVICE_UUID,
  encodePacketSize,
  Opcode,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
} from './baseline.ts';
import {
  AbortError,
  AttStatus,
  BadImageError,
  DeviceRefusedError,
  LinkLostError,
  TimeoutError,
  UnknownCharacteristicError,
} from './errors.ts';
import type { ProgressSnapshot } from './progress.ts';
import {
  BaselineUploader,
  type PhaseEvent,
  readDeviceInformation,
  uploadBaseline,
} from './session.ts';

const rig = useBaselineRig();
const { setup } = rig;

/** An image the fake's default esp_ota_end check accepts: 0xE9 magic, then a pattern. */
function makeImage(length: number): Uint8Array {
  const image = new Uint8Array(length);
  for (let i = 0; i < length; i++) image[i] = (i * 31 + 7) & 0xff;
  image[0] = 0xe9;
  return image;
}

describe('uploadBaseline, the exchange', () => {
  it('sends exactly the baseline exchange, byte for byte', async () => {
    const { device, transport } = setup({ preferredMtu: 23 });
    await transport.connect();
    const image = makeImage(50); // 20 + 20 + 10 at MTU 23
    const result = await uploadBaseline(transport, image);

    const traffic = trafficLines(transport);
    expect(traffic).toEqual([
      `subscribe ${OTA_CONTROL_UUID}`,
      `write ${OTA_DATA_UUID} 1400`,
      `write ${OTA_CONTROL_UUID} 01`,
      `notify ${OTA_CONTROL_UUID} 02`,
      `write ${OTA_DATA_UUID} ${hex(image.subarray(0, 20))}`,
      `write ${OTA_DATA_UUID} ${hex(image.subarray(20, 40))}`,
      `write ${OTA_DATA_UUID} ${hex(image.subarray(40, 50))}`,
      `write ${OTA_CONTROL_UUID} 04`,
      `notify ${OTA_CONTROL_UUID} 05`,
      'disconnect remote 8',
    ]);
    expect(result).toMatchObject({
      bytes: 50,
      packets: 3,
      packetSize: 20,
      mtu: 23,
      requestWriteType: 'request',
      restart: { observed: true, disconnect: { initiator: 'remote', reason: 0x08 } },
    });
    expect(device.bootCount).toBe(1);
    expect(hex(device.receivedImage)).toBe(hex(image));
  });

  it('sends a short last packet and the device ends up with the image', async () => {
    const { device, transport } = setup({ preferredMtu: 247 });
    await transport.connect();
    const image = makeImage(244 * 10 + 17);
    const result = await uploadBaseline(transport, image);
    const data = transport.writes().filter((w) => w.characteristic === OTA_DATA_UUID);
    expect(data.map((w) => w.data.length)).toEqual([2, ...Array(10).fill(244), 17]);
    expect(result.packets).toBe(11);
    // The baseline pads the tail with stale bytes; the received bytes are the image.
    expect(device.written.length).toBe(244 * 11);
    expect(hex(device.bootedImage?.subarray(0, image.length) ?? new Uint8Array())).toBe(hex(image));
  });

  it('uses MTU - 3 from the negotiated MTU and honours a smaller cap', async () => {
    const { device, transport } = setup({ preferredMtu: 185 });
    await transport.connect();
    const result = await uploadBaseline(transport, makeImage(1000), { maxPacketSize: 100 });
    expect(result.packetSize).toBe(100);
    expect(device.log).toContain('Packet size is: 100');
    expect(transport.writes()[0]?.data).toEqual(encodePacketSize(100));
  });

  it("sends REQUEST and DONE as Write Commands with requestWriteType 'command', like the Python client", async () => {
    const { device, transport } = setup();
    await transport.connect();
    const image = makeImage(3000);
    const result = await uploadBaseline(transport, image, { requestWriteType: 'command' });
    const control = transport.writes().filter((w) => w.characteristic === OTA_CONTROL_UUID);
    expect(control.map((w) => [hex(w.data), w.withResponse])).toEqual([
      ['01', false],
      ['04', false],
    ]);
    const data = transport.writes().filter((w) => w.characteristic === OTA_DATA_UUID);
    expect(data.every((w) => w.withResponse)).toBe(true);
    expect(result.restart.observed).toBe(true);
    expect(hex(device.receivedImage)).toBe(hex(image));
  });

  it('connects by itself when given a transport that is not connected', async () => {
    const { transport } = setup();
    const phases: string[] = [];
    await uploadBaseline(transport, makeImage(600), {
      onPhase: (e) => phases.push(`${e.phase}:${e.state}`),
    });
    expect(phases).toEqual([
      'connect:start',
      'connect:end',
      'subscribe:start',
      'subscribe:end',
      'packet-size:start',
      'packet-size:end',
      'request:start',
      'request:end',
      'data:start',
      'data:end',
      'done:start',
      'done:end',
      'restart:start',
      'restart:end',
    ]);
  });

  it('ignores notifications it does not expect and reports them', async () => {
    const { device, transport } = setup();
    await transport.connect();
    const uploader = new BaselineUploader(transport);
    const unexpected: string[] = [];
    uploader.on('unexpectedNotification', (v) =>
      unexpected.push(v.kind === 'opcode' ? v.name : v.reason),
    );
    uploader.on('progress', (p) => {
      if (p.bytes === 253) {
        device.sendControlNotification(Uint8Array.of(0x02, 0x00));
        device.sendControlNotification(Uint8Array.of(Opcode.REQUEST_ACK));
      }
    });
    const result = await uploader.upload(makeImage(2000));
    expect(result.restart.observed).toBe(true);
    expect(unexpected).toEqual(['expected a 1-byte opcode, got 2 bytes', 'REQUEST_ACK']);
  });

  it('can run again on the same uploader after a failure', async () => {
    const { device, transport } = setup({ faults: { nakRequest: true } });
    await transport.connect();
    const uploader = new BaselineUploader(transport);
    await expect(uploader.upload(makeImage(100))).rejects.toBeInstanceOf(DeviceRefusedError);
    device.faults = {};
    const result = await uploader.upload(makeImage(100));
    expect(result.restart.observed).toBe(true);
  });

  it('refuses a second concurrent upload on one uploader', async () => {
    const { transport } = setup();
    await transport.connect();
    const uploader = new BaselineUploader(transport);
    const first = uploader.upload(makeImage(500));
    await expect(uploader.upload(makeImage(500))).rejects.toThrow(/already running/);
    await first;
  });
});

describe('uploadBaseline, progress and timing', () => {
  it('reports monotonic progress ending at 100%, with rate and ETA on modeled time', async () => {
    vi.useFakeTimers();
    // 10 ms each way: one Write Request per 20 ms round trip.
    const { transport } = setup({ preferredMtu: 185, restartDelayMs: 500 }, { latencyMs: 10 });
    const clock = { now: () => Date.now() };
    const image = makeImage(182 * 40 + 50);
    const progress: ProgressSnapshot[] = [];
    const phases: PhaseEvent[] = [];
    const upload = uploadBaseline(transport, image, {
      clock,
      onProgress: (p) => progress.push(p),
      onPhase: (e) => phases.push(e),
    });
    await vi.runAllTimersAsync();
    const result = await upload;

    expect(progress[0]).toMatchObject({ bytes: 0, percent: 0 });
    for (let i = 1; i < progress.length; i++) {
      const [prev, cur] = [progress[i - 1], progress[i]] as [ProgressSnapshot, ProgressSnapshot];
      expect(cur.bytes).toBeGreaterThan(prev.bytes);
      expect(cur.percent).toBeGreaterThan(prev.percent);
    }
    const last = progress.at(-1) as ProgressSnapshot;
    expect(last).toMatchObject({
      bytes: image.length,
      total: image.length,
      percent: 100,
      etaMs: 0,
    });
    expect(progress).toHaveLength(1 + 41);
    // Full packets: 182 bytes per 20 ms.
    const mid = progress[20] as ProgressSnapshot;
    expect(mid.bytesPerSecond).toBeCloseTo(182 / 0.02, 3);
    expect(mid.etaMs).toBeCloseTo(((image.length - mid.bytes) / (182 / 0.02)) * 1000, 3);
    expect(mid.elapsedMs).toBe(20 * 20);

    expect(result.transferMs).toBe(41 * 20);
    expect(result.bytesPerSecond).toBeCloseTo((image.length * 1000) / (41 * 20), 6);
    // DONE_ACK and the restart's disconnect cross the same one-way latency, 500 ms apart.
    expect(result.restart).toMatchObject({ observed: true, afterMs: 500 });
    expect(result.phases.map((p) => p.phase)).toEqual([
      'connect',
      'subscribe',
      'packet-size',
      'request',
      'data',
      'done',
      'restart',
    ]);
    const data = result.phases.find((p) => p.phase === 'data');
    expect(data?.durationMs).toBe(41 * 20);
    for (const phase of result.phases) {
      expect(phase.durationMs).toBe(phase.endedAt - phase.startedAt);
    }
    const ends = phases.filter((e) => e.state === 'end');
    expect(ends.map((e) => e.durationMs)).toEqual(result.phases.map((p) => p.durationMs));
    expect(result.durationMs).toBe(result.endedAt - result.startedAt);
  });

  it('moves 500 kB through the fake quickly (no per-packet waste in the session)', async () => {
    const { device, transport } = setup({ preferredMtu: 247 });
    await transport.connect();
    const image = makeImage(500_000);
    const started = performance.now();
    const result = await uploadBaseline(transport, image);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(result.packets).toBe(Math.ceil(500_000 / 244));
    expect(hex(device.receivedImage)).toBe(hex(image));
  });
});

describe('uploadBaseline, refusals', () => {
  it('fails with REFUSED when the device answers REQUEST_NAK, and sends no data', async () => {
    const { device, transport } = setup({ faults: { nakRequest: true } });
    await transport.connect();
    const error = await uploadBaseline(transport, makeImage(1000)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceRefusedError);
    expect(error).toMatchObject({ code: 'REFUSED', step: 'REQUEST' });
    expect((error as Error).message).toMatch(/^device refused the OTA request \(REQUEST_NAK\)/);
    expect(device.packetsReceived).toBe(0);
    expect(transport.writes()).toHaveLength(2);
  });

  it('fails with REFUSED when the device answers DONE_NAK, explaining what to check', async () => {
    const { transport } = setup({ faults: { nakDone: true } });
    await transport.connect();
    const phases: PhaseEvent[] = [];
    const error = await uploadBaseline(transport, makeImage(1000), {
      onPhase: (e) => phases.push(e),
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'REFUSED', step: 'DONE' });
    expect((error as Error).message).toMatch(
      /^device rejected the image at DONE \(DONE_NAK\): .*1000 bytes.*ble-ota info/,
    );
    expect(phases.at(-1)).toMatchObject({ phase: 'done', state: 'fail', error });
    expect(transport.connected).toBe(true);
  });

  it('says the device refused the image when image data gets its IMAGE_REFUSED ATT error', async () => {
    const { transport } = setup({
      preferredMtu: 256,
      faults: { refuseDataAfterBytes: { bytes: 253, status: AttStatus.IMAGE_REFUSED } },
    });
    await transport.connect();
    const error = await uploadBaseline(transport, makeImage(1000)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceRefusedError);
    expect(error).toMatchObject({ code: 'REFUSED', step: 'DATA' });
    expect((error as Error).message).toBe(
      'device refused image data at byte 253 of 1000: the device refused the image; its console says why (an app version older than the running one, a secure_version below its anti-rollback minimum, a missing or untrusted signature, or not an ESP app image). The running image stays in place',
    );
    expect((error as Error).cause).toMatchObject({ status: 0x81 });
  });

  it('leaves any other ATT error on image data as it is', async () => {
    const { transport } = setup({
      preferredMtu: 256,
      faults: { refuseDataAfterBytes: { bytes: 253, status: AttStatus.UNLIKELY_ERROR } },
    });
    await transport.connect();
    const error = await uploadBaseline(transport, makeImage(1000)).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/ATT error UNLIKELY_ERROR \(0x0e\)/);
  });

  it('fails with BAD_IMAGE on an empty image before touching the link', async () => {
    const { transport } = setup();
    await transport.connect();
    await expect(uploadBaseline(transport, new Uint8Array(0))).rejects.toBeInstanceOf(
      BadImageError,
    );
    expect(transport.recording.filter((r) => r.kind !== 'connect')).toEqual([]);
  });

  it('fails clearly on a device without the OTA characteristics', async () => {
    const plain: FakePeripheral = {
      address: 'fa:ke:00:00:00:99',
      name: 'heart-rate',
      preferredMtu: 23,
      gatt: [{ uuid: '180d', characteristics: [{ uuid: '2a37', properties: ['notify'] }] }],
      onConnect() {},
      onDisconnect() {},
      onWrite: () => 0,
      onRead: () => 0x02,
    };
    rig.registry.add(plain);
    const transport = new FakeTransport(plain.address, { registry: rig.registry });
    await transport.connect();
    const error = await uploadBaseline(transport, makeImage(10)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownCharacteristicError);
    expect((error as Error).message).toContain(OTA_CONTROL_UUID);
    expect(BASELINE_SERVICE_UUID).toContain('144a');
  });
});

describe('uploadBaseline, timeouts', () => {
  it('times out waiting for REQUEST_ACK', async () => {
    vi.useFakeTimers();
    const { transport } = setup({ faults: { noAnswerTo: 'REQUEST' } });
    await transport.connect();
    const upload = uploadBaseline(transport, makeImage(1000));
    const outcome = upload.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(4999);
    await vi.advanceTimersByTimeAsync(1);
    const error = await outcome;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ code: 'TIMEOUT', timeoutMs: 5000 });
    expect((error as Error).message).toBe('timed out after 5000 ms waiting for REQUEST_ACK');
  });

  it('times out on a data packet whose Write Response never comes, naming the packet', async () => {
    vi.useFakeTimers();
    const { transport } = setup({ faults: { noAnswerTo: 'DATA' }, preferredMtu: 103 });
    await transport.connect();
    const outcome = uploadBaseline(transport, makeImage(1000), {
      timeouts: { writeMs: 2000 },
    }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2000);
    const error = (await outcome) as TimeoutError;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toBe(
      'timed out after 2000 ms waiting for the Write Response to data packet 1 of 10 (bytes 0 to 99)',
    );
  });

  it('times out waiting for DONE_ACK', async () => {
    vi.useFakeTimers();
    const { transport } = setup({ faults: { noAnswerTo: 'DONE', noRestart: true } });
    await transport.connect();
    const outcome = uploadBaseline(transport, makeImage(1000), {
      timeouts: { doneAckMs: 8000 },
      requestWriteType: 'command',
    }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(8000);
    const error = (await outcome) as TimeoutError;
    expect(error.message).toBe('timed out after 8000 ms waiting for DONE_ACK');
  });

  it('reports a device that never restarts without failing the upload', async () => {
    vi.useFakeTimers();
    const { device, transport } = setup({ faults: { noRestart: true } });
    await transport.connect();
    const upload = uploadBaseline(transport, makeImage(1000), { timeouts: { restartMs: 3000 } });
    await vi.advanceTimersByTimeAsync(3000);
    const result = await upload;
    expect(result.restart).toEqual({ observed: false, reason: 'timeout' });
    expect(device.bootCount).toBe(0);
    // It cleaned up after itself: no notification subscription left.
    expect(device.subscribed).toBe(false);
  });

  it('does not wait for the restart when told so', async () => {
    const { transport } = setup({ restartDelayMs: 50 });
    await transport.connect();
    const result = await uploadBaseline(transport, makeImage(1000), { waitForRestart: false });
    expect(result.restart).toEqual({ observed: false, reason: 'not-waited' });
  });
});

describe('uploadBaseline, cancellation and link loss', () => {
  it('stops cleanly when aborted mid-transfer, naming the phase and position', async () => {
    const { device, transport } = setup({ preferredMtu: 247 });
    await transport.connect();
    const controller = new AbortController();
    const error = await uploadBaseline(transport, makeImage(10_000), {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.bytes >= 2440) controller.abort(new Error('user pressed Ctrl-C'));
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
    expect(error).toMatchObject({ code: 'ABORTED', name: 'AbortError' });
    expect((error as Error).message).toBe(
      'upload aborted during data transfer at byte 2440 of 10000',
    );
    expect(((error as Error).cause as Error).message).toBe('user pressed Ctrl-C');
    await transport.read('2a24'); // flush the link
    expect(device.packetsReceived).toBe(10);
    expect(device.subscribed).toBe(false);
    expect(transport.connected).toBe(true);
  });

  it('honours both the uploader-wide signal and the per-upload signal', async () => {
    const { transport } = setup();
    await transport.connect();
    const wide = new AbortController();
    const uploader = new BaselineUploader(transport, { signal: wide.signal });
    const perCall = new AbortController();
    uploader.on('progress', (p) => {
      if (p.bytes > 0) perCall.abort();
    });
    await expect(uploader.upload(makeImage(2000), { signal: perCall.signal })).rejects.toThrow(
      /^upload aborted during data transfer at byte 253 of 2000/,
    );
    const again = new BaselineUploader(transport, { signal: wide.signal });
    again.on('progress', (p) => {
      if (p.bytes > 0) wide.abort();
    });
    await expect(
      again.upload(makeImage(2000), { signal: new AbortController().signal }),
    ).rejects.toBeInstanceOf(AbortError);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const { transport } = setup();
    await transport.connect();
    await expect(
      uploadBaseline(transport, makeImage(100), { signal: AbortSignal.abort() }),
    ).rejects.toThrow('upload aborted before it started');
    expect(transport.recording.filter((r) => r.kind !== 'connect')).toEqual([]);
  });

  it('can be aborted while waiting for REQUEST_ACK', async () => {
    const { transport } = setup({ faults: { noAnswerTo: 'REQUEST' } });
    await transport.connect();
    const uploader = new BaselineUploader(transport);
    const controller = new AbortController();
    uploader.on('phase', (e) => {
      if (e.phase === 'request' && e.state === 'start') setTimeout(() => controller.abort(), 5);
    });
    await expect(uploader.upload(makeImage(100), { signal: controller.signal })).rejects.toThrow(
      'upload aborted while waiting for REQUEST_ACK',
    );
  });

  it('fails with LINK_LOST naming the byte position when the link drops during data', async () => {
    const { transport } = setup({ preferredMtu: 247, faults: { dropLinkAfterBytes: 123_456 } });
    await transport.connect();
    const error = await uploadBaseline(transport, makeImage(500_000)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LinkLostError);
    expect(error).toMatchObject({ code: 'LINK_LOST', reason: 0x08 });
    // 505 packets of 244 bytes were acknowledged; the 506th would reach byte 123464.
    expect((error as Error).message).toMatch(
      /^link lost during data transfer at byte 123220 of 500000: the device ended the link \(HCI reason 0x08\); the baseline protocol cannot resume/,
    );
  });

  it('fails with LINK_LOST when the link drops while waiting for DONE_ACK', async () => {
    const { device, transport } = setup({ faults: { noAnswerTo: 'DONE', noRestart: true } });
    await transport.connect();
    const uploader = new BaselineUploader(transport, { requestWriteType: 'command' });
    uploader.on('phase', (e) => {
      if (e.phase === 'done' && e.state === 'start') {
        setTimeout(() => device.sendControlNotification(Uint8Array.of(0x00)), 1);
        setTimeout(() => transport.disconnect(), 5);
      }
    });
    await expect(uploader.upload(makeImage(1000))).rejects.toThrow(
      /^link lost while waiting for DONE_ACK: disconnected by this side/,
    );
  });
});

describe('readDeviceInformation', () => {
  it('reads what a baseline device offers and leaves the firmware revision out', async () => {
    const { transport } = setup();
    await transport.connect();
    expect(await readDeviceInformation(transport)).toEqual({
      manufacturer: 'Company 42',
      model: 'ESP32',
    });
  });

  it('includes the firmware revision our firmware adds', async () => {
    const { transport } = setup({ model: 'ESP32-C3', firmwareRevision: '0.3.1' });
    await transport.connect();
    expect(await readDeviceInformation(transport)).toEqual({
      manufacturer: 'Company 42',
      model: 'ESP32-C3',
      firmwareRevision: '0.3.1',
    });
  });
});
