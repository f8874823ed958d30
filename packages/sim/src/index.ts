export type { PeripheralApp, ReadResult } from './att/app.ts';
export { AttError } from './att/app.ts';
export {
  type DeviceControllerConfig,
  type GattLayout,
  parseGattLayout,
} from './att/gatt-layout.ts';
export { VirtualPeripheral } from './att/peripheral.ts';
export {
  type LinkSecurityLevel,
  type LinkSecurityState,
  type PairingOutcome,
  SmpReason,
} from './att/smp.ts';
export { UartBridge, uartBridgePath } from './console/uart-bridge.ts';
export * from './device/flash-journal.ts';
export * from './device/frames.ts';
export * from './device/simulated-device.ts';
export * from './hci/index.ts';
export * from './link/index.ts';
export * from './rig.ts';
export * from './signing-key.ts';
export * from './target-image.ts';
