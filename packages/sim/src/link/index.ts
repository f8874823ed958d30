export * from './air.ts';
export * from './ceilings.ts';
export * from './device-cpu.ts';
export * from './flash.ts';
export * from './immediate-scheduler.ts';
export * from './modeled-scheduler.ts';
export * from './profiles.ts';
export * from './scenarios.ts';
export type * from './types.ts';
