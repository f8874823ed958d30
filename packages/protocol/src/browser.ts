/**
 * The browser entry: everything but signing (Node-only, `index.ts`). No module here imports a
 * Node module, so a bundler can put it in a page; `browser-entry.test.ts` checks that.
 */
export * from './baseline.ts';
export { TypedEmitter } from './emitter.ts';
export * from './errors.ts';
export * from './image/index.ts';
export * from './messages.ts';
export * from './preflight.ts';
export * from './progress.ts';
export * from './session.ts';
export type * from './transport.ts';
export * from './update.ts';
export * from './v2/index.ts';
