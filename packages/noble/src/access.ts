import type { Clock, DeviceAccess } from '@esp-ble-ota/protocol';
import type { Noble } from './noble-types.ts';
import { findDevice, type ScanFilter, type ScannedDevice } from './scan.ts';
import { NobleTransport, type NobleTransportOptions } from './transport.ts';

export interface NobleAccessOptions {
  /** How the device to update is picked from the scan (name, address, advertised service). */
  filter: ScanFilter;
  transport?: Omit<NobleTransportOptions, 'noble'>;
  /** The clock of the device's link (the virtual rig's link model), if not the wall clock. */
  clock?: (device: ScannedDevice) => Clock | undefined;
}

/**
 * The update's way to a device through noble, on a real adapter or the virtual rig alike: scan
 * for it, and after a lost link or its restart scan again by its address (noble's peripheral of
 * the old connection does not come back).
 */
export function nobleAccess(
  noble: Noble,
  options: NobleAccessOptions,
): DeviceAccess<ScannedDevice> {
  const signal = (s: AbortSignal | undefined) => (s === undefined ? {} : { signal: s });
  return {
    find: ({ signal: s, timeoutMs }) =>
      findDevice(noble, { ...options.filter, timeoutMs, ...signal(s) }),
    findAgain: (device, { signal: s, timeoutMs }) =>
      findDevice(noble, { address: device.address, timeoutMs, ...signal(s) }),
    transport: (device) => new NobleTransport(device.peripheral, { ...options.transport, noble }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  };
}
