import { loadNoble } from './load.ts';
import type { Noble } from './noble-types.ts';
import { findDevice, type ScanFilter, type ScannedDevice } from './scan.ts';
import { NobleTransport, type NobleTransportOptions } from './transport.ts';

export interface OpenTransportOptions extends ScanFilter, Omit<NobleTransportOptions, 'noble'> {
  /** A noble instance to use (the virtual rig's); default: load @abandonware/noble. */
  noble?: Noble | undefined;
  signal?: AbortSignal | undefined;
  /** How long to scan for the device (default 10 s). */
  scanTimeoutMs?: number | undefined;
  /** How long to wait for the adapter to power on (default 10 s). */
  adapterTimeoutMs?: number | undefined;
  /** Connect before returning (default true). */
  connect?: boolean | undefined;
}

export interface OpenedTransport {
  transport: NobleTransport;
  device: ScannedDevice;
  noble: Noble;
}

/**
 * Find a device by name, address or advertised service, and connect to it. The same code runs
 * on a real adapter and on the virtual rig: only the noble instance differs.
 */
export async function openTransport(options: OpenTransportOptions = {}): Promise<OpenedTransport> {
  const noble = options.noble ?? (await loadNoble());
  const device = await findDevice(noble, {
    name: options.name,
    address: options.address,
    serviceUuids: options.serviceUuids,
    match: options.match,
    signal: options.signal,
    timeoutMs: options.scanTimeoutMs,
    adapterTimeoutMs: options.adapterTimeoutMs,
  });
  const transportOptions: NobleTransportOptions = { noble };
  if (options.connectTimeoutMs !== undefined)
    transportOptions.connectTimeoutMs = options.connectTimeoutMs;
  if (options.characteristics !== undefined)
    transportOptions.characteristics = options.characteristics;
  if (options.maxOutstandingAclPackets !== undefined) {
    transportOptions.maxOutstandingAclPackets = options.maxOutstandingAclPackets;
  }
  if (options.disconnectTimeoutMs !== undefined) {
    transportOptions.disconnectTimeoutMs = options.disconnectTimeoutMs;
  }
  const transport = new NobleTransport(device.peripheral, transportOptions);
  if (options.connect ?? true) {
    const connectOptions = options.signal === undefined ? {} : { signal: options.signal };
    await transport.connect(connectOptions);
  }
  return { transport, device, noble };
}
