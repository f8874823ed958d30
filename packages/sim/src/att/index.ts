export { AttError, type PeripheralApp, type ReadResult } from './app.ts';
export { ATT_DEFAULT_MTU, AttOp, AttServer } from './att-server.ts';
export {
  AttributeDb,
  type GattCharacteristicDef,
  type GattLayout,
  type GattProperty,
  type GattServiceDef,
} from './gatt-layout.ts';
export {
  type ConnectionParameters,
  VirtualPeripheral,
  type VirtualPeripheralOptions,
} from './peripheral.ts';
export { normalizeUuid, uuidFromBytes, uuidToBytes } from './uuid.ts';
