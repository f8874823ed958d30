/**
 * The parts of @abandonware/noble this package uses, typed structurally. The package's own
 * index.d.ts describes the module-level default instance; an injected instance (the virtual
 * rig's, or one built with `@abandonware/noble/with-bindings`) has the same shape, and this
 * keeps both interchangeable without casts at every call site.
 */

import type { EventEmitter } from 'node:events';

export type NobleState =
  | 'unknown'
  | 'resetting'
  | 'unsupported'
  | 'unauthorized'
  | 'poweredOff'
  | 'poweredOn';

export interface NobleAdvertisement {
  localName?: string;
  serviceUuids?: string[];
  txPowerLevel?: number;
  manufacturerData?: Buffer;
  serviceData?: Array<{ uuid: string; data: Buffer }>;
}

export interface NobleCharacteristic extends EventEmitter {
  uuid: string;
  properties: string[];
  read(): void;
  write(data: Buffer, withoutResponse: boolean): void;
  notify(enable: boolean): void;
}

export interface NobleService extends EventEmitter {
  uuid: string;
  characteristics: NobleCharacteristic[] | null;
  discoverCharacteristics(
    uuids: string[],
    callback?: (error: unknown, characteristics: NobleCharacteristic[]) => void,
  ): void;
}

export interface NoblePeripheral extends EventEmitter {
  id: string;
  address: string;
  addressType: string;
  connectable: boolean;
  advertisement: NobleAdvertisement;
  rssi: number;
  mtu: number | null;
  state: 'error' | 'connecting' | 'connected' | 'disconnecting' | 'disconnected';
  services: NobleService[] | null;
  connect(callback?: (error?: unknown) => void): void;
  cancelConnect(): void;
  disconnect(callback?: () => void): void;
  discoverServices(
    uuids: string[],
    callback?: (error: unknown, services: NobleService[]) => void,
  ): void;
}

/**
 * Internals of noble's Linux HCI bindings (lib/hci-socket) that carry information the public
 * API drops: ATT Error Responses (noble never reports a failed Write Request) and ACL buffer
 * accounting (noble resolves a Write Command as soon as it is queued). Every field is optional
 * because other bindings (macOS, Windows, WebSocket) do not have them.
 */
export interface NobleHciInternals {
  _handles?: Record<string, number | string>;
  /** noble's ATT client per connection handle; `_security` turns 'medium' once encrypted. */
  _gatts?: Record<number, { _security?: string } | undefined>;
  _hci?: EventEmitter & {
    _socket?: EventEmitter;
    _aclBuffers?: { length: number; num: number };
    _aclQueue?: Array<{ handle: number; packet: Buffer }>;
    _aclConnections?: Map<number, { pending: number }>;
  };
}

export interface Noble extends EventEmitter {
  readonly state: NobleState;
  _state?: NobleState;
  _bindings?: NobleHciInternals;
  startScanning(
    serviceUuids?: string[],
    allowDuplicates?: boolean,
    callback?: (error?: Error) => void,
  ): void;
  stopScanning(callback?: () => void): void;
  startScanningAsync(serviceUuids?: string[], allowDuplicates?: boolean): Promise<void>;
  stopScanningAsync(): Promise<void>;
}
