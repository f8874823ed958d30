/**
 * `pnpm hil`: build the firmware, run the scenario suites of hil-tests/ (vitest) on the
 * configured rig, then merge what vitest says with what each scenario recorded into the
 * reports, compare the transfers with the stored baseline, and print a summary.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { execa } from 'execa';
import {
  applyBaselineVerdicts,
  compareToBaseline,
  readBaseline,
  updateBaseline,
  writeBaseline,
} from './baseline.ts';
import { type ConfigFlags, findSerialPort, type LoadedConfig, loadConfig } from './config.ts';
import { CONTEXT_ENV, type RunContext, writeRunContext } from './context.ts';
import type { HilReport, ScenarioResult } from './model.ts';
import { prepareImages } from './prepare.ts';
import { formatSummary, writeReports } from './report/index.ts';
import { recordKey, type ScenarioRecord, scenarioFileSlug, scenarioId } from './scenario.ts';

export interface RunOptions {
  cwd?: string;
  flags?: ConfigFlags;
  updateBaseline?: boolean;
  /** `i/n`: run the i-th of n shards (vitest's own sharding, by file). */
  shard?: string;
  /** Print the scenario ids and exit. */
  list?: boolean;
  /** Only scenarios whose name matches (vitest -t). */
  grep?: string;
  /** Where progress and the summary go. */
  log?: (line: string) => void;
  color?: boolean;
  /** The summary goes to a terminal: box-drawn borders (ASCII otherwise). */
  terminal?: boolean;
}

interface VitestAssertion {
  title: string;
  fullName: string;
  status: 'passed' | 'failed' | 'skipped' | 'pending' | 'todo' | 'disabled';
  failureMessages: string[];
  duration?: number | null;
}

interface VitestJson {
  success: boolean;
  numTotalTests: number;
  testResults: {
    name: string;
    status: string;
    message?: string;
    assertionResults: VitestAssertion[];
  }[];
}

export function hilTestsDir(config: LoadedConfig): string {
  return resolve(config.root, 'hil-tests');
}

async function simLinkProfiles(): Promise<string[]> {
  const sim = await import('@esp-ble-ota/sim');
  return [...sim.PROFILES.map((p) => p.name), 'immediate'];
}

/** The scenario ids vitest would run, without building or running anything. */
export async function listScenarios(config: LoadedConfig, opts: RunOptions): Promise<string[]> {
  const out = await execa(
    'pnpm',
    [
      'exec',
      'vitest',
      'list',
      '--json',
      ...(opts.shard ? ['--shard', opts.shard] : []),
      ...(opts.grep ? ['-t', opts.grep] : []),
    ],
    { cwd: hilTestsDir(config) },
  );
  const tests = JSON.parse(out.stdout) as { name: string; file: string }[];
  const perFile = new Map<string, number>();
  for (const t of tests) perFile.set(t.file, (perFile.get(t.file) ?? 0) + 1);
  return tests.map((t) =>
    scenarioId(t.file, t.name.split(' > ').at(-1) ?? t.name, perFile.get(t.file) ?? 1),
  );
}

export function shardOf(spec: string | undefined): HilReport['shard'] {
  if (!spec) return undefined;
  const m = spec.match(/^(\d+)\/(\d+)$/);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > Number(m[2])) {
    throw new Error(`--shard ${spec}: expected i/n with 1 <= i <= n, e.g. --shard 2/4`);
  }
  return { index: Number(m[1]), total: Number(m[2]) };
}

async function readScenarioRecords(dir: string): Promise<Map<string, ScenarioRecord>> {
  const records = new Map<string, ScenarioRecord>();
  if (!existsSync(dir)) return records;
  for (const f of await readdir(dir)) {
    if (!f.endsWith('.json')) continue;
    const r = JSON.parse(await readFile(join(dir, f), 'utf8')) as ScenarioRecord;
    records.set(r.key, r);
  }
  return records;
}

/** Runs everything; resolves with the process exit code. */
export async function runHil(opts: RunOptions = {}): Promise<number> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const flags = opts.flags ?? {};
  const config = await loadConfig({
    cwd: opts.cwd ?? process.cwd(),
    flags,
    ...(flags.rig === 'bench' ? {} : { linkProfiles: await simLinkProfiles() }),
  });
  const shard = shardOf(opts.shard);

  if (opts.list) {
    for (const id of await listScenarios(config, opts)) log(id);
    return 0;
  }

  const resultsDir = resolve(config.root, config.resultsDir);
  const scenariosDir = join(resultsDir, 'scenarios');
  const logsDir = join(resultsDir, 'logs');
  await rm(scenariosDir, { recursive: true, force: true });
  await rm(logsDir, { recursive: true, force: true });
  await mkdir(resultsDir, { recursive: true });
  const startedAt = new Date();

  log(
    `hil: rig ${config.rig}, target ${config.target}${config.rig === 'sim' ? `, link profile ${config.sim.linkProfile}` : ''}`,
  );
  const images = await prepareImages(config);
  log(
    `hil: build ${images.firmware.version} (${images.firmware.size} B) ${images.firmware.built ? 'built' : 'unchanged, build cache hit'} in ${(images.buildMs / 1000).toFixed(1)} s`,
  );

  const ctx: RunContext = {
    rig: config.rig,
    target: config.target,
    simBuildDir: resolve(config.root, config.sim.buildDir),
    bleName: config.bench.bleName,
    ...(config.bench.bleAddress ? { bleAddress: config.bench.bleAddress } : {}),
    ...(config.rig === 'sim' ? { linkProfile: config.sim.linkProfile } : {}),
    images,
    resultsDir,
    scenariosDir,
    logsDir,
  };
  if (config.rig === 'bench') {
    const port = await findSerialPort(config.bench);
    ctx.serialPort = port.path;
    log(`hil: bench board on ${port.path} (${port.description})`);
  }
  const contextFile = join(resultsDir, '.run', 'context.json');
  await writeRunContext(contextFile, ctx);

  const vitestJson = join(resultsDir, '.run', 'vitest.json');
  await rm(vitestJson, { force: true });
  const run = await execa(
    'pnpm',
    [
      'exec',
      'vitest',
      'run',
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${vitestJson}`,
      ...(opts.shard ? ['--shard', opts.shard] : []),
      ...(opts.grep ? ['-t', opts.grep] : []),
    ],
    {
      cwd: hilTestsDir(config),
      env: { [CONTEXT_ENV]: contextFile, HIL_RIG: config.rig },
      stdio: ['ignore', 'inherit', 'inherit'],
      reject: false,
    },
  );
  if (!existsSync(vitestJson)) {
    log(`hil: the scenario run ended (exit ${run.exitCode}) without results; see its output above`);
    return 1;
  }
  const vitest = JSON.parse(await readFile(vitestJson, 'utf8')) as VitestJson;
  const records = await readScenarioRecords(scenariosDir);

  const scenarios: ScenarioResult[] = [];
  for (const file of vitest.testResults) {
    for (const a of file.assertionResults) {
      const id = scenarioId(file.name, a.title, file.assertionResults.length);
      const { key: _key, ...rec }: Partial<ScenarioRecord> =
        records.get(recordKey(file.name, a.title)) ?? {};
      const status =
        a.status === 'passed' ? 'passed' : a.status === 'failed' ? 'failed' : 'skipped';
      const s: ScenarioResult = {
        title: a.title,
        suite: basename(file.name),
        ...rec,
        id,
        result: status,
        phases: rec.phases ?? {},
      };
      if (status === 'failed') {
        const message = a.failureMessages[0] ?? 'failed';
        s.error = { message: message.split('\n')[0] ?? message, stack: message };
      }
      if (status === 'skipped') s.skipReason = rec.skipReason ?? `skipped by vitest (${a.status})`;
      scenarios.push(s);
    }
    if (file.assertionResults.length === 0 && file.status === 'failed') {
      const id = scenarioFileSlug(file.name);
      scenarios.push({
        id,
        title: `${basename(file.name)} did not load`,
        suite: basename(file.name),
        result: 'failed',
        error: { message: file.message ?? 'the suite failed to load' },
        phases: {},
      });
    }
  }

  let report: HilReport = {
    rig: config.rig,
    target: config.target,
    ...(config.rig === 'sim' ? { linkProfile: config.sim.linkProfile } : {}),
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    firmware: { ...images.firmware, buildMs: images.buildMs },
    scenarios,
    ...(shard ? { shard } : {}),
  };
  const baselineFile = resolve(config.root, config.baselineFile);
  let baseline = await readBaseline(baselineFile);
  if (opts.updateBaseline) {
    // On purpose: this run's figures become the reference, so they are not judged by the old.
    const next = updateBaseline(baseline, report, new Date());
    await writeBaseline(baselineFile, next.baseline);
    baseline = next.baseline;
    const skipped = next.skipped.map((s) => `${s.scenarioId}: ${s.reason}`).join('; ');
    log(
      `hil: baseline ${config.baselineFile} updated: ${next.updated.length} entries${skipped ? `, not recorded: ${skipped}` : ''}`,
    );
  }
  const comparison = compareToBaseline(report, baseline, config.thresholds, config.baselineFile);
  report = applyBaselineVerdicts(report, comparison);
  const written = await writeReports(resultsDir, report, { attachmentRoot: config.root });
  log(formatSummary(report, { color: opts.color ?? false, unicode: opts.terminal ?? false }));
  log(`hil: reports in ${written.json}, ${written.junit}, ${written.html}`);
  for (const s of report.scenarios.filter((x) => x.result === 'failed')) {
    log(
      `FAILED ${s.id}: ${s.error?.message ?? ''}${s.consoleLog ? ` (console: ${s.consoleLog})` : ''}`,
    );
  }
  const failed = report.scenarios.filter((s) => s.result === 'failed').length;
  const passed = report.scenarios.filter((s) => s.result === 'passed').length;
  const skipped = report.scenarios.filter((s) => s.result === 'skipped').length;
  log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  if (failed === 0 && run.exitCode !== 0 && vitest.success === false) return 1;
  return failed > 0 ? 1 : 0;
}
