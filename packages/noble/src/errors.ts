/**
 * Failures that belong to the BLE host side rather than to the OTA exchange. Link drops,
 * timeouts and aborts use the protocol package's error classes so that one `code` switch in a
 * tool covers both.
 */

export type NobleErrorCode =
  /** noble could not open or use a Bluetooth adapter. */
  | 'NO_ADAPTER'
  /** A scan ended without a device that matches the filter. */
  | 'DEVICE_NOT_FOUND';

export class NobleTransportError extends Error {
  readonly code: NobleErrorCode;

  constructor(code: NobleErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = 'NobleTransportError';
  }
}

export const ADAPTER_HINT =
  'hint: on Linux run as root or give node cap_net_raw,cap_net_admin (sudo setcap cap_net_raw,cap_net_admin+eip $(readlink -f $(which node)))';

export class BluetoothUnavailableError extends NobleTransportError {
  constructor(cause: string, options?: { cause?: unknown }) {
    super('NO_ADAPTER', `no Bluetooth adapter: ${cause} (${ADAPTER_HINT})`, options);
    this.name = 'BluetoothUnavailableError';
  }
}

export class DeviceNotFoundError extends NobleTransportError {
  constructor(message: string) {
    super('DEVICE_NOT_FOUND', message);
    this.name = 'DeviceNotFoundError';
  }
}
