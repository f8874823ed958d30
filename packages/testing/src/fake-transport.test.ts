import type { DisconnectInfo } from '@esp-ble-ota/protocol';
import {
  AbortError,
  AttError,
  AttStatus,
  encodeOpcode,
  encodePacketSize,
  FIRMWARE_REVISION_UUID,
  LinkLostError,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  NotConnectedError,
  Opcode,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  OtaError,
  PayloadTooLargeError,
  TransportBusyError,
  UnknownCharacteristicError,
} from '@esp-ble-ota/protocol';
import { describe, expect, it, vi } from 'vitest';
import {
  FakeBaselineDevice,
  type FakeBaselineDeviceOptions,
  FakeTransport,
  HciReason,
} from './fake-transport.ts';
import { useBaselineRig } from './support.ts';

const rig = useBaselineRig();
const { setup } = rig;

/** Did the promise settle within the current synchronous turn? */
function settledSynchronously(promise: Promise<unknown>): boolean {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  return settled;
}

const bytes = (...values: number[]) => Uint8Array.from(values);

describe('FakeDeviceRegistry', () => {
  it('lists devices like a scan and refuses duplicate addresses', () => {
    rig.registry.add(new FakeBaselineDevice({ address: 'AA:BB:CC:DD:EE:01' }));
    rig.registry.add(new FakeBaselineDevice({ address: 'aa:bb:cc:dd:ee:02', name: 'other' }));
    expect(rig.registry.list()).toEqual([
      { address: 'AA:BB:CC:DD:EE:01', name: 'esp32' },
      { address: 'aa:bb:cc:dd:ee:02', name: 'other' },
    ]);
    expect(() =>
      rig.registry.add(new FakeBaselineDevice({ address: 'aa:bb:cc:dd:ee:01' })),
    ).toThrow(/already exists/);
    rig.registry.reset();
    expect(rig.registry.list()).toEqual([]);
  });

  it('makes connect fail for an address nobody registered', async () => {
    const transport = new FakeTransport('00:00:00:00:00:00', { registry: rig.registry });
    await expect(transport.connect()).rejects.toThrow(NotConnectedError);
    await expect(transport.connect()).rejects.toThrow(/no fake device at 00:00:00:00:00:00/);
  });

  it('lets one central at a time connect to a device', async () => {
    const { device, transport } = setup();
    const second = new FakeTransport(device.address, { registry: rig.registry });
    await transport.connect();
    await expect(second.connect()).rejects.toThrow(/already connected to another central/);
    await transport.disconnect();
    await second.connect();
    expect(second.connected).toBe(true);
  });
});

describe('FakeTransport before connect', () => {
  it('rejects every operation with NotConnectedError and has no MTU', async () => {
    const { transport } = setup();
    expect(transport.connected).toBe(false);
    expect(() => transport.mtu).toThrow(NotConnectedError);
    expect(transport.services()).toEqual([]);
    await expect(
      transport.write(OTA_CONTROL_UUID, bytes(1), { withResponse: true }),
    ).rejects.toBeInstanceOf(NotConnectedError);
    await expect(transport.read(MODEL_NUMBER_UUID)).rejects.toBeInstanceOf(NotConnectedError);
    await expect(transport.subscribe(OTA_CONTROL_UUID, () => {})).rejects.toBeInstanceOf(
      NotConnectedError,
    );
    expect(transport.recording).toEqual([]);
  });
});

describe('FakeTransport connected', () => {
  it('negotiates the smaller MTU and exposes the device GATT', async () => {
    const { transport } = setup({ preferredMtu: 185 }, { mtu: 247 });
    const connects: number[] = [];
    transport.on('connect', () => connects.push(transport.mtu));
    await transport.connect();
    expect(transport.mtu).toBe(185);
    expect(connects).toEqual([185]);
    expect(transport.services().map((s) => s.uuid)).toEqual([
      '180a',
      'd6f1d96d-594c-4c53-b1c6-144a1dfde6d8',
    ]);
    await transport.connect(); // no-op while connected
    expect(transport.recording.filter((r) => r.kind === 'connect')).toHaveLength(1);
  });

  it('settles every operation asynchronously', async () => {
    const { transport } = setup();
    const connecting = transport.connect();
    expect(settledSynchronously(connecting)).toBe(false);
    await connecting;
    const write = transport.write(OTA_DATA_UUID, encodePacketSize(253), { withResponse: true });
    expect(settledSynchronously(write)).toBe(false);
    await write;
    const read = transport.read(MODEL_NUMBER_UUID);
    expect(settledSynchronously(read)).toBe(false);
    await read;
    const misuse = transport.write('ffff', bytes(1), { withResponse: true });
    expect(settledSynchronously(misuse)).toBe(false);
    await expect(misuse).rejects.toBeInstanceOf(UnknownCharacteristicError);
  });

  it('accepts any UUID spelling and records writes in display form', async () => {
    const { transport } = setup();
    await transport.connect();
    await transport.write('23408888-1F40-4CD8-9B89-CA8D45F8A5B0', bytes(0xf4, 0x00), {
      withResponse: true,
    });
    expect(transport.writes()).toEqual([
      { characteristic: OTA_DATA_UUID, data: bytes(0xf4, 0x00), withResponse: true },
    ]);
  });

  it('refuses a value longer than MTU - 3 without sending it', async () => {
    const { transport } = setup({}, { mtu: 23 });
    await transport.connect();
    await expect(
      transport.write(OTA_DATA_UUID, new Uint8Array(21), { withResponse: true }),
    ).rejects.toBeInstanceOf(PayloadTooLargeError);
    await expect(
      transport.write(OTA_DATA_UUID, new Uint8Array(21), { withResponse: false }),
    ).rejects.toThrow(/at most 20 bytes/);
    expect(transport.writes()).toEqual([]);
    await transport.write(OTA_DATA_UUID, new Uint8Array(20), { withResponse: true });
  });

  it('rejects a second ATT request while one is outstanding, but not Write Commands', async () => {
    const { transport } = setup();
    await transport.connect();
    const first = transport.write(OTA_DATA_UUID, bytes(1, 2), { withResponse: true });
    const second = transport.write(OTA_DATA_UUID, bytes(3, 4), { withResponse: true });
    const read = transport.read(MODEL_NUMBER_UUID);
    const subscribe = transport.subscribe(OTA_CONTROL_UUID, () => {});
    const command = transport.write(OTA_DATA_UUID, bytes(5, 6), { withResponse: false });
    await expect(second).rejects.toBeInstanceOf(TransportBusyError);
    await expect(read).rejects.toMatchObject({ code: 'BUSY' });
    await expect(subscribe).rejects.toMatchObject({ code: 'BUSY' });
    await command;
    await first;
    await transport.write(OTA_DATA_UUID, bytes(7, 8), { withResponse: true });
    expect(transport.writes().map((w) => [...w.data])).toEqual([
      [1, 2],
      [5, 6],
      [7, 8],
    ]);
  });

  it('reads the Device Information values and refuses reads the characteristic does not allow', async () => {
    const { transport } = setup({ model: 'ESP32-S3', firmwareRevision: '1.2.3' });
    await transport.connect();
    const text = async (uuid: string) => new TextDecoder().decode(await transport.read(uuid));
    expect(await text(MANUFACTURER_NAME_UUID)).toBe('Company 42');
    expect(await text(MODEL_NUMBER_UUID)).toBe('ESP32-S3');
    expect(await text(FIRMWARE_REVISION_UUID)).toBe('1.2.3');
    const error = await transport.read(OTA_DATA_UUID).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AttError);
    expect(error).toMatchObject({ status: AttStatus.READ_NOT_PERMITTED });
    expect((error as Error).message).toContain('READ_NOT_PERMITTED (0x02)');
  });

  it('has no Firmware Revision on a baseline device', async () => {
    const { transport } = setup();
    await transport.connect();
    await expect(transport.read(FIRMWARE_REVISION_UUID)).rejects.toBeInstanceOf(
      UnknownCharacteristicError,
    );
  });

  it('refuses to subscribe to a characteristic without notify', async () => {
    const { transport } = setup();
    await transport.connect();
    const error = await transport.subscribe(OTA_DATA_UUID, () => {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OtaError);
    expect(error).toMatchObject({ code: 'PROTOCOL' });
  });

  it('delivers a notification sent inside the write callback before the Write Response', async () => {
    const { transport } = setup();
    await transport.connect();
    const order: string[] = [];
    await transport.subscribe(OTA_CONTROL_UUID, (data) => order.push(`notify ${data[0]}`));
    await transport.write(OTA_DATA_UUID, encodePacketSize(253), { withResponse: true });
    await transport
      .write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: true })
      .then(() => order.push('write response'));
    expect(order).toEqual([`notify ${Opcode.REQUEST_ACK}`, 'write response']);
  });

  it('stops delivering to a listener once unsubscribed, even if the CCCD write fails', async () => {
    const { device, transport } = setup();
    await transport.connect();
    const seen: number[] = [];
    const listener = (data: Uint8Array) => seen.push(data[0] as number);
    await transport.subscribe(OTA_CONTROL_UUID, listener);
    expect(device.subscribed).toBe(true);
    const busy = transport.write(OTA_DATA_UUID, bytes(1, 0), { withResponse: true });
    await expect(transport.unsubscribe(OTA_CONTROL_UUID, listener)).rejects.toBeInstanceOf(
      TransportBusyError,
    );
    await busy;
    device.sendControlNotification(bytes(0x42));
    await transport.read(MODEL_NUMBER_UUID); // flush the link
    expect(seen).toEqual([]);
  });

  it('keeps going when a listener throws', async () => {
    const { device, transport } = setup();
    await transport.connect();
    const seen: number[] = [];
    const errors: unknown[] = [];
    const original = globalThis.queueMicrotask;
    // The fake re-throws listener errors asynchronously; capture instead of crashing the run.
    vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((callback) =>
      original(() => {
        try {
          callback();
        } catch (error) {
          errors.push(error);
        }
      }),
    );
    await transport.subscribe(OTA_CONTROL_UUID, () => {
      throw new Error('listener bug');
    });
    await transport.subscribe(OTA_CONTROL_UUID, (data) => seen.push(data[0] as number));
    device.sendControlNotification(bytes(7));
    await transport.read(MODEL_NUMBER_UUID);
    vi.restoreAllMocks();
    expect(seen).toEqual([7]);
    expect(errors).toEqual([new Error('listener bug')]);
  });
});

describe('FakeTransport link loss', () => {
  it('rejects pending operations with LinkLostError, then emits disconnect once', async () => {
    const { device, transport } = setup({ faults: { noAnswerTo: 'DATA' } });
    await transport.connect();
    await transport.write(OTA_DATA_UUID, encodePacketSize(253), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: true });
    const events: string[] = [];
    transport.on('disconnect', (info) => events.push(`disconnect ${info.initiator}`));
    const pending = transport
      .write(OTA_DATA_UUID, bytes(0xe9, 1, 2), { withResponse: true })
      .catch((e: unknown) => {
        events.push('write rejected');
        throw e;
      });
    await vi.waitFor(() => expect(device.packetsReceived).toBe(1));
    await transport.disconnect();
    await expect(pending).rejects.toBeInstanceOf(LinkLostError);
    expect(events.sort()).toEqual(['disconnect local', 'write rejected']);
    expect(transport.connected).toBe(false);
    expect(() => transport.mtu).toThrow(NotConnectedError);
    await expect(
      transport.write(OTA_DATA_UUID, bytes(1), { withResponse: false }),
    ).rejects.toBeInstanceOf(LinkLostError);
  });

  it('reports a device-side drop as remote with its HCI reason, and can reconnect', async () => {
    const { device, transport } = setup({ faults: { dropLinkAfterBytes: 1 } });
    const infos: DisconnectInfo[] = [];
    transport.on('disconnect', (info) => infos.push(info));
    await transport.connect();
    await transport.write(OTA_DATA_UUID, encodePacketSize(253), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: false });
    const error = await transport
      .write(OTA_DATA_UUID, bytes(0xe9), { withResponse: true })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LinkLostError);
    expect(error).toMatchObject({ code: 'LINK_LOST', reason: HciReason.CONNECTION_TIMEOUT });
    expect(infos).toEqual([
      {
        initiator: 'remote',
        reason: 0x08,
        message: 'the device ended the link (HCI reason 0x08)',
      },
    ]);
    device.faults = {};
    await transport.connect();
    expect(transport.connected).toBe(true);
    await transport.subscribe(OTA_CONTROL_UUID, () => {});
  });

  it('rejects everything with NotConnectedError after close', async () => {
    const { transport } = setup();
    await transport.connect();
    await transport.close();
    await transport.close();
    await expect(transport.read(MODEL_NUMBER_UUID)).rejects.toBeInstanceOf(NotConnectedError);
    await expect(transport.connect()).rejects.toThrow(/closed/);
  });
});

describe('FakeTransport cancellation', () => {
  it('rejects at once on an already aborted signal without touching the link', async () => {
    const { transport } = setup();
    await transport.connect();
    const signal = AbortSignal.abort(new Error('user gave up'));
    await expect(
      transport.write(OTA_DATA_UUID, bytes(1), { withResponse: true, signal }),
    ).rejects.toBeInstanceOf(AbortError);
    await expect(transport.read(MODEL_NUMBER_UUID, { signal })).rejects.toMatchObject({
      code: 'ABORTED',
      name: 'AbortError',
    });
    expect(transport.recording.filter((r) => r.kind !== 'connect')).toEqual([]);
  });

  it('rejects an aborted request promptly, but the bearer stays busy until the device answers', async () => {
    const { device, transport } = setup({ faults: { noAnswerTo: 'DATA' } });
    await transport.connect();
    await transport.write(OTA_DATA_UUID, encodePacketSize(253), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: true });
    const controller = new AbortController();
    const pending = transport.write(OTA_DATA_UUID, bytes(0xe9), {
      withResponse: true,
      signal: controller.signal,
    });
    await vi.waitFor(() => expect(device.packetsReceived).toBe(1));
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortError);
    await expect(transport.read(MODEL_NUMBER_UUID)).rejects.toBeInstanceOf(TransportBusyError);
  });
});

describe('FakeTransport back-pressure', () => {
  it('holds a Write Command until the controller has a free buffer', async () => {
    vi.useFakeTimers();
    const { device, transport } = setup({}, { latencyMs: 10, txBuffers: 2 });
    const connecting = transport.connect();
    await vi.advanceTimersByTimeAsync(10);
    await connecting;
    const resolved: number[] = [];
    const writes = [1, 2, 3].map((n) =>
      transport.write(OTA_DATA_UUID, bytes(n), { withResponse: false }).then(() => {
        resolved.push(n);
      }),
    );
    await vi.advanceTimersByTimeAsync(0);
    expect(resolved).toEqual([1, 2]);
    expect(device.dataValue[0]).toBe(0);
    await vi.advanceTimersByTimeAsync(10);
    await Promise.all(writes);
    expect(resolved).toEqual([1, 2, 3]);
    await vi.advanceTimersByTimeAsync(10);
    expect(device.dataValue[0]).toBe(3);
  });
});

describe('FakeBaselineDevice', () => {
  async function requested(options: FakeBaselineDeviceOptions = {}, mtu = 256) {
    const { device, transport } = setup(options, { mtu });
    await transport.connect();
    const notes: number[] = [];
    await transport.subscribe(OTA_CONTROL_UUID, (data) => notes.push(data[0] as number));
    return { device, transport, notes };
  }

  it('reads the packet size from OTA Data at REQUEST, accepting a Write Command for the opcode', async () => {
    const { device, transport, notes } = await requested();
    await transport.write(OTA_DATA_UUID, encodePacketSize(100), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: false });
    await vi.waitFor(() => expect(notes).toEqual([Opcode.REQUEST_ACK]));
    expect(device.updating).toBe(true);
    expect(device.packetSize).toBe(100);
    expect([...(await transport.read(OTA_CONTROL_UUID))]).toEqual([Opcode.REQUEST_ACK]);
  });

  it('drops Write Commands silently when told to behave like a stack that checks properties', async () => {
    const { device, transport, notes } = await requested({ acceptWriteCommands: false });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: false });
    await transport.read(MODEL_NUMBER_UUID);
    expect(notes).toEqual([]);
    expect(device.updating).toBe(false);
  });

  it('answers wrong-length values with ATT error 0x0D', async () => {
    const { transport } = await requested({ preferredMtu: 527 }, 517);
    await expect(
      transport.write(OTA_CONTROL_UUID, bytes(1, 0), { withResponse: true }),
    ).rejects.toMatchObject({ status: AttStatus.INVALID_ATTRIBUTE_VALUE_LENGTH });
    await expect(
      transport.write(OTA_DATA_UUID, new Uint8Array(513), { withResponse: true }),
    ).rejects.toMatchObject({ status: 0x0d });
  });

  it('writes packet_size bytes for every packet, padding a short tail with stale bytes', async () => {
    const { device, transport } = await requested();
    await transport.write(OTA_DATA_UUID, encodePacketSize(4), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: true });
    await transport.write(OTA_DATA_UUID, bytes(0xe9, 1, 2, 3), { withResponse: true });
    await transport.write(OTA_DATA_UUID, bytes(4, 5), { withResponse: true });
    expect([...device.written]).toEqual([0xe9, 1, 2, 3, 4, 5, 2, 3]);
    expect([...device.receivedImage]).toEqual([0xe9, 1, 2, 3, 4, 5]);
  });

  it('writes exactly what arrived when the padding defect is off', async () => {
    const { device, transport } = await requested({ padShortPackets: false });
    await transport.write(OTA_DATA_UUID, encodePacketSize(4), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: true });
    await transport.write(OTA_DATA_UUID, bytes(0xe9, 1, 2, 3), { withResponse: true });
    await transport.write(OTA_DATA_UUID, bytes(4, 5), { withResponse: true });
    expect([...device.written]).toEqual([0xe9, 1, 2, 3, 4, 5]);
  });

  it('restarts inside the DONE callback: DONE_ACK arrives, the Write Response never does', async () => {
    const { device, transport, notes } = await requested();
    await transport.write(OTA_DATA_UUID, encodePacketSize(4), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: true });
    await transport.write(OTA_DATA_UUID, bytes(0xe9, 1, 2, 3), { withResponse: true });
    const done = transport.write(OTA_CONTROL_UUID, encodeOpcode('DONE'), { withResponse: true });
    await expect(done).rejects.toBeInstanceOf(LinkLostError);
    expect(notes).toEqual([Opcode.REQUEST_ACK, Opcode.DONE_ACK]);
    expect(device.bootCount).toBe(1);
    expect([...(device.bootedImage ?? [])]).toEqual([0xe9, 1, 2, 3]);
    expect(device.updating).toBe(false);
  });

  it('answers DONE with DONE_NAK when esp_ota_end would fail, and stays up', async () => {
    const { device, transport, notes } = await requested();
    await transport.write(OTA_DATA_UUID, encodePacketSize(4), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('REQUEST'), { withResponse: true });
    await transport.write(OTA_DATA_UUID, bytes(0x7f, 0x45, 0x4c, 0x46), { withResponse: true });
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('DONE'), { withResponse: true });
    expect(notes).toEqual([Opcode.REQUEST_ACK, Opcode.DONE_NAK]);
    expect(device.log).toContain('esp_ota_write failed (ESP_ERR_OTA_VALIDATE_FAILED)!');
    expect(transport.connected).toBe(true);
    expect(device.bootCount).toBe(0);
  });

  it('answers DONE without a REQUEST with DONE_NAK', async () => {
    const { transport, notes } = await requested();
    await transport.write(OTA_CONTROL_UUID, encodeOpcode('DONE'), { withResponse: true });
    expect(notes).toEqual([Opcode.DONE_NAK]);
  });
});
