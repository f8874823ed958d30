export { AttError, type PeripheralApp, type ReadResult } from './app.ts';
export {
  ATT_DEFAULT_MTU,
  ATT_INSUFFICIENT_AUTHENTICATION,
  ATT_INSUFFICIENT_ENCRYPTION,
  AttOp,
  AttServer,
} from './att-server.ts';
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
export {
  type Bond,
  c1,
  type LinkSecurityLevel,
  type LinkSecurityState,
  type PairingOutcome,
  SmpOp,
  SmpReason,
  SmpResponder,
  s1,
} from './smp.ts';
export { normalizeUuid, uuidFromBytes, uuidToBytes } from './uuid.ts';
