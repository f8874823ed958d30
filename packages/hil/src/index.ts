// Data model, configuration, baseline and reports.
export * from './baseline.ts';
export * from './config.ts';
export * from './model.ts';
export * from './report/index.ts';

// Runner orchestration (cli, runner, fixture, rigs) is exported below.
