export { type NobleAccessOptions, nobleAccess } from './access.ts';
export { type PoweredOnOptions, waitForPoweredOn } from './adapter.ts';
export {
  ADAPTER_HINT,
  BluetoothUnavailableError,
  DeviceNotFoundError,
  type NobleErrorCode,
  NobleTransportError,
} from './errors.ts';
export { type AttErrorResponse, HciObserver } from './hci-observer.ts';
export { describeLoadError, loadNoble } from './load.ts';
export {
  installNobleMtuHook,
  MAX_REQUESTED_MTU,
  NOBLE_DEFAULT_MTU,
  requestedMtu,
  setRequestedMtu,
} from './mtu.ts';
export type {
  Noble,
  NobleAdvertisement,
  NobleCharacteristic,
  NoblePeripheral,
  NobleService,
  NobleState,
} from './noble-types.ts';
export { type OpenedTransport, type OpenTransportOptions, openTransport } from './open.ts';
export {
  advertisesOta,
  findDevice,
  matchesFilter,
  normalizeAddress,
  OTA_ADVERTISED_SERVICE_UUIDS,
  type ScanFilter,
  type ScannedDevice,
  type ScanOptions,
  scan,
} from './scan.ts';
export {
  describeHciReason,
  NobleTransport,
  type NobleTransportOptions,
  OTA_CHARACTERISTICS,
} from './transport.ts';
