import {
  AbortError,
  BASELINE_DEVICE_NAME,
  BASELINE_SERVICE_UUID,
  BASELINE_SERVICE_UUID_AS_DOCUMENTED_WRONG,
  normalizeUuid,
} from '@esp-ble-ota/protocol';
import { type PoweredOnOptions, waitForPoweredOn } from './adapter.ts';
import { DeviceNotFoundError } from './errors.ts';
import type { Noble, NoblePeripheral } from './noble-types.ts';

export interface ScannedDevice {
  /** noble's peripheral id (the address without colons on Linux). */
  id: string;
  /** Complete or shortened local name from the advertisement or scan response. */
  name: string | undefined;
  /** Lowercase colon-separated address, as noble reports it. */
  address: string;
  addressType: string;
  rssi: number;
  /** Advertised service UUIDs in noble's form (lowercase, no dashes). */
  serviceUuids: string[];
  connectable: boolean;
  peripheral: NoblePeripheral;
}

export interface ScanFilter {
  /** Exact local name. */
  name?: string | undefined;
  /** Address in any case, with or without colons. */
  address?: string | undefined;
  /** Advertised service UUID(s); a device matches if it advertises any of them. */
  serviceUuids?: readonly string[] | undefined;
  /** Further condition, evaluated after the fields above. */
  match?: ((device: ScannedDevice) => boolean) | undefined;
}

export interface ScanOptions extends ScanFilter {
  signal?: AbortSignal | undefined;
  /** How long to scan (default 5 s). */
  timeoutMs?: number | undefined;
  /** How long to wait for the adapter first. */
  adapterTimeoutMs?: number | undefined;
  /** Called when a matching device is first seen and whenever its name or RSSI changes. */
  onDevice?: ((device: ScannedDevice) => void) | undefined;
  /** Stop at the first match (findDevice). */
  first?: boolean | undefined;
}

/** Service UUIDs under which a device can advertise the OTA service. */
export const OTA_ADVERTISED_SERVICE_UUIDS: readonly string[] = [
  BASELINE_SERVICE_UUID,
  BASELINE_SERVICE_UUID_AS_DOCUMENTED_WRONG,
];

/**
 * Whether a scanned device offers the OTA service as far as its advertisement tells: it lists
 * the OTA service UUID (either spelling), or, since the baseline firmware advertises only its
 * name and no service UUIDs, it is called `esp32` and lists no service UUID at all.
 */
export function advertisesOta(device: ScannedDevice): boolean {
  const ota = OTA_ADVERTISED_SERVICE_UUIDS.map(normalizeUuid);
  if (device.serviceUuids.some((uuid) => ota.includes(safeNormalize(uuid)))) return true;
  return device.serviceUuids.length === 0 && device.name === BASELINE_DEVICE_NAME;
}

export function normalizeAddress(address: string): string {
  return address.toLowerCase().replace(/[^0-9a-f]/g, '');
}

function safeNormalize(uuid: string): string {
  try {
    return normalizeUuid(uuid);
  } catch {
    return uuid.toLowerCase();
  }
}

export function matchesFilter(device: ScannedDevice, filter: ScanFilter): boolean {
  if (filter.name !== undefined && device.name !== filter.name) return false;
  if (filter.address !== undefined) {
    const wanted = normalizeAddress(filter.address);
    if (normalizeAddress(device.address) !== wanted && normalizeAddress(device.id) !== wanted) {
      return false;
    }
  }
  if (filter.serviceUuids !== undefined && filter.serviceUuids.length > 0) {
    const wanted = filter.serviceUuids.map(normalizeUuid);
    if (!device.serviceUuids.some((uuid) => wanted.includes(safeNormalize(uuid)))) return false;
  }
  return filter.match === undefined || filter.match(device);
}

function toScanned(peripheral: NoblePeripheral): ScannedDevice {
  const adv = peripheral.advertisement ?? {};
  return {
    id: peripheral.id,
    name: adv.localName,
    address: peripheral.address,
    addressType: peripheral.addressType,
    rssi: peripheral.rssi,
    serviceUuids: [...(adv.serviceUuids ?? [])],
    connectable: peripheral.connectable,
    peripheral,
  };
}

/**
 * Scan for `timeoutMs` (or until the first match with `first`) and return the matching
 * devices, strongest signal first. Duplicates are reported by noble so that a name that only
 * arrives in a later scan response still matches; each device appears once in the result.
 */
export async function scan(noble: Noble, options: ScanOptions = {}): Promise<ScannedDevice[]> {
  const poweredOn: PoweredOnOptions = {
    signal: options.signal,
    timeoutMs: options.adapterTimeoutMs,
  };
  await waitForPoweredOn(noble, poweredOn);
  const timeoutMs = options.timeoutMs ?? 5000;
  const found = new Map<string, ScannedDevice>();

  await new Promise<void>((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) {
      reject(new AbortError('scanning: aborted before it started', { cause: signal.reason }));
      return;
    }
    let finished = false;
    const finish = (error?: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      noble.removeListener('discover', onDiscover);
      noble.stopScanning();
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = () => finish(new AbortError('scanning: aborted', { cause: signal?.reason }));
    const onDiscover = (peripheral: NoblePeripheral) => {
      const device = toScanned(peripheral);
      if (!matchesFilter(device, options)) return;
      const previous = found.get(device.id);
      found.set(device.id, device);
      if (
        previous === undefined ||
        previous.name !== device.name ||
        previous.rssi !== device.rssi
      ) {
        options.onDevice?.(device);
      }
      if (options.first) finish();
    };
    const timer = setTimeout(() => finish(), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    noble.on('discover', onDiscover);
    noble.startScanning([], true, (error) => {
      if (error) finish(error);
    });
  });

  return [...found.values()].sort((a, b) => b.rssi - a.rssi);
}

/** Scan until the first device that matches; DeviceNotFoundError when the time is up. */
export async function findDevice(noble: Noble, options: ScanOptions): Promise<ScannedDevice> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const [device] = await scan(noble, { ...options, timeoutMs, first: true });
  if (device === undefined) throw new DeviceNotFoundError(notFoundMessage(options, timeoutMs));
  return device;
}

function notFoundMessage(filter: ScanFilter, timeoutMs: number): string {
  const parts: string[] = [];
  if (filter.name !== undefined) parts.push(`named "${filter.name}"`);
  if (filter.address !== undefined) parts.push(`with address ${filter.address}`);
  if (filter.serviceUuids !== undefined && filter.serviceUuids.length > 0) {
    parts.push(`advertising ${filter.serviceUuids.join(' or ')}`);
  }
  const what = parts.length > 0 ? `a device ${parts.join(' ')}` : 'a matching device';
  return `no ${what.replace(/^a /, '')} found within ${timeoutMs} ms of scanning; is it powered, advertising and in range? (try a longer --timeout, or ble-ota scan to see what is around)`;
}
