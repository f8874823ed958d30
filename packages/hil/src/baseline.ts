/**
 * hil-baseline.json: how long each scenario's transfer took on each link when someone last
 * decided that was right (`pnpm hil --update-baseline`). A run slower than that by more than
 * the threshold fails, so an OTA that quietly got slower is caught in review, not in the field.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  type Baseline,
  type BaselineComparison,
  type BaselineEntry,
  type BaselineVerdict,
  baselineSchema,
  formatIssues,
  type HilReport,
  type HilThresholds,
  type ScenarioResult,
} from './model.ts';

export function emptyBaseline(): Baseline {
  return { schemaVersion: 1, scenarios: {} };
}

/**
 * Baselines are per link: the same scenario on a 7.5 ms Linux link and on a 15 ms macOS link
 * are different numbers. The bench has one real link per target.
 */
export function baselineKey(
  report: Pick<HilReport, 'rig' | 'target' | 'linkProfile'>,
  scenario: Pick<ScenarioResult, 'linkProfile'>,
): string {
  if (report.rig === 'bench') return `bench-${report.target}`;
  return scenario.linkProfile ?? report.linkProfile ?? `sim-${report.target}`;
}

/** Reads the baseline; a missing file is an empty baseline (every scenario: "no baseline"). */
export async function readBaseline(file: string): Promise<Baseline> {
  if (!existsSync(file)) return emptyBaseline();
  const text = await readFile(file, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(
      `${file} is not valid JSON (${(err as Error).message}); fix it or rewrite it with pnpm hil --update-baseline`,
      { cause: err },
    );
  }
  const parsed = baselineSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(
      `${file} is not a valid HIL baseline:\n${formatIssues(parsed.error)}\n` +
        'Fix it or rewrite it with pnpm hil --update-baseline.',
    );
  }
  return parsed.data;
}

/** Sorted keys so that a baseline update shows up in review as a small, stable diff. */
function sortedBaseline(baseline: Baseline): Baseline {
  const scenarios: Baseline['scenarios'] = {};
  for (const id of Object.keys(baseline.scenarios).sort()) {
    const byKey = baseline.scenarios[id] ?? {};
    const sorted: Record<string, BaselineEntry> = {};
    for (const key of Object.keys(byKey).sort()) {
      sorted[key] = byKey[key] as BaselineEntry;
    }
    scenarios[id] = sorted;
  }
  return { schemaVersion: 1, scenarios };
}

export async function writeBaseline(file: string, baseline: Baseline): Promise<void> {
  const checked = baselineSchema.parse(sortedBaseline(baseline));
  await mkdir(dirname(file), { recursive: true });
  // Write then rename: an interrupted run must not leave half a baseline behind.
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(checked, null, 2)}\n`, 'utf8');
  await rename(tmp, file);
}

/**
 * Seconds with two significant digits at least (0.41 s, not 0.4 s), and more decimals while
 * they are needed to tell `a` from `b` (at most 4).
 */
function secondsPair(a: number, b: number): [string, string] {
  const smallest = Math.min(Math.abs(a), Math.abs(b));
  const first = smallest > 0 ? Math.max(1, Math.ceil(-Math.log10(smallest)) + 1) : 1;
  for (let digits = Math.min(first, 4); digits < 4; digits++) {
    const fa = a.toFixed(digits);
    const fb = b.toFixed(digits);
    if (fa !== fb || a === b) return [fa, fb];
  }
  return [a.toFixed(4), b.toFixed(4)];
}

/**
 * A percentage rounded to whole percent, unless rounding would hide which side of the limit it
 * is on, or make a small difference read as none.
 */
function pct(value: number, limit?: number): string {
  const whole = Math.round(value);
  const hidesLimit = limit !== undefined && whole === Math.round(limit) && value !== limit;
  if (hidesLimit || (whole === 0 && value !== 0)) {
    return value.toFixed(1);
  }
  return String(whole);
}

function compareScenario(
  report: Pick<HilReport, 'rig' | 'target' | 'linkProfile'>,
  scenario: ScenarioResult,
  baseline: Baseline,
  thresholds: HilThresholds,
): BaselineVerdict {
  const key = baselineKey(report, scenario);
  const base = { scenarioId: scenario.id, key };
  if (scenario.result !== 'passed' || scenario.transferSeconds === undefined) {
    const why =
      scenario.result !== 'passed' ? `scenario ${scenario.result}` : 'no transfer measured';
    return { ...base, status: 'not-measured', ok: true, message: `not compared (${why})` };
  }
  const current = scenario.transferSeconds;
  const kBps = scenario.kBps;
  const entry = baseline.scenarios[scenario.id]?.[key];
  if (entry === undefined) {
    const [cur] = secondsPair(current, current);
    return {
      ...base,
      status: 'no-baseline',
      ok: true,
      message: `no baseline for ${scenario.id} on ${key} (transfer ${cur} s); record one with pnpm hil --update-baseline`,
      transferSeconds: current,
      ...(kBps !== undefined ? { kBps } : {}),
    };
  }
  // A firmware that grew or shrank takes longer or shorter at the same speed: judge the OTA,
  // not the image, by scaling the baseline's time to this image's size.
  const scaled =
    entry.imageBytes !== undefined &&
    scenario.imageBytes !== undefined &&
    entry.imageBytes > 0 &&
    entry.imageBytes !== scenario.imageBytes;
  const expected = scaled
    ? (entry.transferSeconds * (scenario.imageBytes as number)) / (entry.imageBytes as number)
    : entry.transferSeconds;
  const deltaPct = ((current - expected) / expected) * 100;
  const [cur, old] = secondsPair(current, expected);
  const figures = {
    transferSeconds: current,
    baselineSeconds: expected,
    deltaPct,
    ...(kBps !== undefined ? { kBps } : {}),
    baselineKBps: entry.kBps,
  };
  const sizeNote =
    entry.imageBytes !== undefined &&
    scenario.imageBytes !== undefined &&
    entry.imageBytes !== scenario.imageBytes
      ? `; the baseline's ${entry.transferSeconds.toFixed(1)} s for ${entry.imageBytes} bytes scaled to this image's ${scenario.imageBytes}`
      : '';

  const limit = thresholds.transferSlowerPct;
  if (deltaPct > limit) {
    return {
      ...base,
      ...figures,
      status: 'slower',
      ok: false,
      message: `transfer ${cur} s is ${pct(deltaPct, limit)}% slower than the baseline ${old} s (threshold ${limit}%)${sizeNote}`,
    };
  }
  if (thresholds.kBpsLowerPct !== undefined && kBps !== undefined) {
    const lowerPct = ((entry.kBps - kBps) / entry.kBps) * 100;
    if (lowerPct > thresholds.kBpsLowerPct) {
      return {
        ...base,
        ...figures,
        status: 'slower',
        ok: false,
        message: `throughput ${kBps.toFixed(1)} kB/s is ${pct(lowerPct, thresholds.kBpsLowerPct)}% lower than the baseline ${entry.kBps.toFixed(1)} kB/s (threshold ${thresholds.kBpsLowerPct}%)${sizeNote}`,
      };
    }
  }
  if (deltaPct < 0) {
    const faster = -deltaPct;
    return {
      ...base,
      ...figures,
      status: 'faster',
      ok: true,
      message: `transfer ${cur} s vs baseline ${old} s: faster by ${pct(faster)}%${faster > limit ? '; consider pnpm hil --update-baseline' : ''}`,
    };
  }
  return {
    ...base,
    ...figures,
    status: 'within',
    ok: true,
    message:
      deltaPct === 0
        ? `transfer ${cur} s equals the baseline`
        : `transfer ${cur} s is ${pct(deltaPct, limit)}% slower than the baseline ${old} s (within ${limit}%)`,
  };
}

/** One verdict per scenario of the report, in report order. */
export function compareToBaseline(
  report: Pick<HilReport, 'rig' | 'target' | 'linkProfile' | 'scenarios'>,
  baseline: Baseline,
  thresholds: HilThresholds,
  file = 'hil-baseline.json',
): BaselineComparison {
  const verdicts = report.scenarios.map((s) => compareScenario(report, s, baseline, thresholds));
  return { file, thresholds: { ...thresholds }, verdicts, ok: verdicts.every((v) => v.ok) };
}

/**
 * The report with the comparison attached and every scenario that regressed marked failed,
 * its error the verdict's message, so JUnit, the summary and the exit code all agree.
 */
export function applyBaselineVerdicts(
  report: HilReport,
  comparison: BaselineComparison,
): HilReport {
  const failedBy = new Map(
    comparison.verdicts.filter((v) => !v.ok).map((v) => [v.scenarioId, v.message]),
  );
  return {
    ...report,
    baseline: comparison,
    scenarios: report.scenarios.map((s) => {
      const message = failedBy.get(s.id);
      if (message === undefined) return s;
      return { ...s, result: 'failed', error: { message: `baseline: ${message}` } };
    }),
  };
}

export interface BaselineUpdate {
  baseline: Baseline;
  /** `scenario id @ key` of every entry written. */
  updated: string[];
  /** Scenarios that ran but were not recorded, with why. */
  skipped: { scenarioId: string; reason: string }[];
}

/**
 * `--update-baseline`: records every passed scenario with a measured transfer. Entries of
 * scenarios that did not run here (another shard, a filtered run) are kept; a failed scenario
 * never becomes the new normal.
 */
export function updateBaseline(
  baseline: Baseline,
  report: Pick<HilReport, 'rig' | 'target' | 'linkProfile' | 'scenarios' | 'firmware'>,
  recordedAt: Date = new Date(),
): BaselineUpdate {
  const next: Baseline = {
    schemaVersion: 1,
    scenarios: Object.fromEntries(
      Object.entries(baseline.scenarios).map(([id, byKey]) => [id, { ...byKey }]),
    ),
  };
  const updated: string[] = [];
  const skipped: BaselineUpdate['skipped'] = [];
  for (const s of report.scenarios) {
    if (s.result !== 'passed') {
      skipped.push({ scenarioId: s.id, reason: `scenario ${s.result}` });
      continue;
    }
    if (s.transferSeconds === undefined || s.transferSeconds <= 0) {
      skipped.push({ scenarioId: s.id, reason: 'no transfer measured' });
      continue;
    }
    const key = baselineKey(report, s);
    const kBps =
      s.kBps ?? (s.imageBytes !== undefined ? s.imageBytes / 1000 / s.transferSeconds : undefined);
    if (kBps === undefined || kBps <= 0) {
      skipped.push({ scenarioId: s.id, reason: 'no throughput measured' });
      continue;
    }
    const entry: BaselineEntry = {
      transferSeconds: s.transferSeconds,
      kBps,
      ...(s.imageBytes !== undefined ? { imageBytes: s.imageBytes } : {}),
      recordedAt: recordedAt.toISOString(),
      ...(s.toVersion !== undefined || report.firmware !== undefined
        ? { firmwareVersion: s.toVersion ?? report.firmware?.version }
        : {}),
    };
    next.scenarios[s.id] = { ...next.scenarios[s.id], [key]: entry };
    updated.push(`${s.id} @ ${key}`);
  }
  return { baseline: sortedBaseline(next), updated, skipped };
}
