export * from './abort.ts';
export * from './auto.ts';
export * from './codec.ts';
export * from './delta.ts';
export * from './errors.ts';
export * from './uploader.ts';
