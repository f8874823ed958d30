// Data model, configuration, baseline and reports.
export * from './baseline.ts';
export * from './config.ts';
// Runner orchestration (cli, runner, fixture, rigs) is exported below.
export * from './context.ts';
export * from './model.ts';
export * from './prepare.ts';
export * from './report/index.ts';
export * from './runner.ts';
export * from './scenario.ts';
