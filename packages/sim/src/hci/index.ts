export type { AirScheduler } from '../link/types.ts';
export { Connection } from './connection.ts';
export {
  type ControllerConfig,
  DEFAULT_CONTROLLER_CONFIG,
  type LinkRequest,
  VirtualController,
} from './controller.ts';
export type { AttPduMatch, Fault, FaultKind, FaultRecord } from './faults.ts';
export {
  createNoble,
  installVirtualHci,
  loadNoble,
  type Noble,
  releaseNoble,
} from './install.ts';
export { type RadioFaultRecord, VirtualRadio, type VirtualRadioOptions } from './radio.ts';
export { VirtualHciSocket } from './socket.ts';
