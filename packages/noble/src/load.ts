import { BluetoothUnavailableError } from './errors.ts';
import type { Noble } from './noble-types.ts';

let cached: Promise<Noble> | undefined;

/**
 * Load @abandonware/noble's default instance. noble opens its HCI socket while the module
 * loads, so on a machine without an adapter (or without the capabilities to open a raw HCI
 * socket) the import itself throws; this turns that into {@link BluetoothUnavailableError}.
 * The module is imported only when called, so importing this package never touches Bluetooth.
 */
export function loadNoble(): Promise<Noble> {
  cached ??= import('@abandonware/noble').then(
    (module) => {
      const noble = (module as { default?: unknown }).default ?? module;
      return noble as Noble;
    },
    (error: unknown) => {
      // A later call may succeed (adapter plugged in, capabilities granted), so do not cache failure.
      cached = undefined;
      throw new BluetoothUnavailableError(describeLoadError(error), { cause: error });
    },
  );
  return cached;
}

/** A short reason for a failed noble load, from the errno noble's native socket reports. */
export function describeLoadError(error: unknown): string {
  const err = error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof err?.code === 'string' ? err.code : undefined;
  const message = typeof err?.message === 'string' ? err.message : String(error);
  switch (code) {
    case 'EAFNOSUPPORT':
      return 'the kernel has no Bluetooth support here (socket(AF_BLUETOOTH) failed with EAFNOSUPPORT)';
    case 'EPERM':
    case 'EACCES':
      return `not allowed to open the HCI socket (${code})`;
    case 'ENODEV':
      return 'no HCI device found (ENODEV); is the adapter plugged in and up (hciconfig hci0 up)?';
    case 'MODULE_NOT_FOUND':
    case 'ERR_MODULE_NOT_FOUND':
      return `@abandonware/noble or its HCI socket binding is not installed (${message})`;
    default:
      return code === undefined ? message : `${message} (${code})`;
  }
}
