export * from './access.ts';
export * from './images.ts';
export * from './results.ts';
export * from './run.ts';
