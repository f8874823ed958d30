export * from './baseline.ts';
export { TypedEmitter } from './emitter.ts';
export * from './errors.ts';
export * from './fake-transport.ts';
export * from './image/index.ts';
export * from './preflight.ts';
export * from './progress.ts';
export * from './session.ts';
export type * from './transport.ts';
