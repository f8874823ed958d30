/**
 * What one `pnpm hil` run produces, and the zod schemas that guard report.json and
 * hil-baseline.json: both files are read back later (the HTML page, CI artifacts, the next run's
 * baseline comparison), so a file that does not match is refused with the field that is wrong.
 */
import { z } from 'zod';

/**
 * A scenario's own phases. The firmware build is not one: it runs once for the whole run
 * (FirmwareInfo.buildMs), and counting it in every scenario would show it N times over.
 */
export const PHASE_NAMES = ['connect', 'transfer', 'finalize', 'reboot'] as const;
export type PhaseName = (typeof PHASE_NAMES)[number];

export const RIG_NAMES = ['sim', 'bench'] as const;
export type RigName = (typeof RIG_NAMES)[number];

export interface PhaseTiming {
  wallMs: number;
  /** The virtual rig's link-model time; absent on the bench. */
  modeledMs?: number;
}

/** Cumulative bytes acknowledged `tMs` after the transfer phase started. */
export interface ThroughputSample {
  tMs: number;
  bytes: number;
}

/** One thing the verdict looked at, e.g. "booted from ota_1 at 0x1d0000". */
export interface VerdictCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

export type ScenarioOutcome = 'passed' | 'failed' | 'skipped';

export interface ScenarioResult {
  id: string;
  title: string;
  suite: string;
  result: ScenarioOutcome;
  error?: { message: string; stack?: string };
  skipReason?: string;
  phases: Partial<Record<PhaseName, PhaseTiming>>;
  /** Modeled on the virtual rig when available, else wall time. */
  transferSeconds?: number;
  /** kB = 1000 bytes. */
  kBps?: number;
  imageBytes?: number;
  throughput?: ThroughputSample[];
  /** This scenario's console log: absolute, or relative to the results directory. */
  consoleLog?: string;
  linkProfile?: string;
  /** Names of injected faults. */
  faults?: string[];
  fromVersion?: string;
  toVersion?: string;
  /** The OTA protocol the upload used. */
  protocol?: 'baseline' | 'v2';
  /** Bytes sent on the air for the image (less than the image after a resume or with deflate). */
  sentBytes?: number;
  checks?: VerdictCheck[];
}

export interface FirmwareInfo {
  version: string;
  image: string;
  size: number;
  sha256: string;
  /** false: the build cache was hit and nothing was rebuilt. */
  built: boolean;
  /** Wall time of the one build (or cache check) that every scenario of the run shares. */
  buildMs?: number;
}

/** How a run compares with hil-baseline.json, thresholds included. */
export interface HilThresholds {
  /** A transfer slower than the baseline by more than this many percent fails. */
  transferSlowerPct: number;
  /**
   * A throughput lower than the baseline's by more than this many percent fails. Off when
   * absent: transfer time already catches it unless the image size changed.
   */
  kBpsLowerPct?: number;
}

export type BaselineStatus = 'slower' | 'within' | 'faster' | 'no-baseline' | 'not-measured';

export interface BaselineVerdict {
  scenarioId: string;
  /** Link profile (sim) or `bench-<target>`: baselines of different links are not comparable. */
  key: string;
  status: BaselineStatus;
  /** false only for a regression beyond a threshold. */
  ok: boolean;
  message: string;
  transferSeconds?: number;
  baselineSeconds?: number;
  /** Positive: slower than the baseline. */
  deltaPct?: number;
  kBps?: number;
  baselineKBps?: number;
}

export interface BaselineComparison {
  file: string;
  thresholds: HilThresholds;
  verdicts: BaselineVerdict[];
  ok: boolean;
}

export interface HilReport {
  rig: RigName;
  target: string;
  linkProfile?: string;
  startedAt: string;
  finishedAt: string;
  firmware?: FirmwareInfo;
  /** This host's part of a split run (`--shard index/total`, 1-based). */
  shard?: { index: number; total: number };
  scenarios: ScenarioResult[];
  baseline?: BaselineComparison;
}

const finite = z.number().finite();
const nonNegative = finite.nonnegative();
const isoDate = z.iso.datetime({ offset: true });

export const phaseTimingSchema = z.strictObject({
  wallMs: nonNegative,
  modeledMs: nonNegative.optional(),
});

export const throughputSampleSchema = z.strictObject({
  tMs: nonNegative,
  bytes: z.number().int().nonnegative(),
});

export const verdictCheckSchema = z.strictObject({
  name: z.string().min(1),
  ok: z.boolean(),
  detail: z.string().optional(),
});

export const scenarioResultSchema = z
  .strictObject({
    id: z.string().min(1),
    title: z.string(),
    suite: z.string().min(1),
    result: z.enum(['passed', 'failed', 'skipped']),
    error: z.strictObject({ message: z.string(), stack: z.string().optional() }).optional(),
    skipReason: z.string().optional(),
    phases: z.partialRecord(z.enum(PHASE_NAMES), phaseTimingSchema),
    transferSeconds: nonNegative.optional(),
    kBps: nonNegative.optional(),
    imageBytes: z.number().int().nonnegative().optional(),
    throughput: z.array(throughputSampleSchema).optional(),
    consoleLog: z.string().optional(),
    linkProfile: z.string().optional(),
    faults: z.array(z.string()).optional(),
    fromVersion: z.string().optional(),
    toVersion: z.string().optional(),
    protocol: z.enum(['baseline', 'v2']).optional(),
    sentBytes: z.number().int().nonnegative().optional(),
    checks: z.array(verdictCheckSchema).optional(),
  })
  .refine((s) => s.result !== 'failed' || s.error !== undefined, {
    message: 'a failed scenario needs error.message saying why it failed',
    path: ['error'],
  })
  .refine((s) => s.result !== 'skipped' || (s.skipReason ?? '') !== '', {
    message: 'a skipped scenario needs skipReason saying what is missing',
    path: ['skipReason'],
  });

export const thresholdsSchema = z.strictObject({
  transferSlowerPct: nonNegative,
  kBpsLowerPct: nonNegative.optional(),
});

export const baselineVerdictSchema = z.strictObject({
  scenarioId: z.string(),
  key: z.string(),
  status: z.enum(['slower', 'within', 'faster', 'no-baseline', 'not-measured']),
  ok: z.boolean(),
  message: z.string(),
  transferSeconds: nonNegative.optional(),
  baselineSeconds: nonNegative.optional(),
  deltaPct: finite.optional(),
  kBps: nonNegative.optional(),
  baselineKBps: nonNegative.optional(),
});

export const baselineComparisonSchema = z.strictObject({
  file: z.string(),
  thresholds: thresholdsSchema,
  verdicts: z.array(baselineVerdictSchema),
  ok: z.boolean(),
});

export const firmwareInfoSchema = z.strictObject({
  version: z.string().min(1),
  image: z.string().min(1),
  size: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits'),
  built: z.boolean(),
  buildMs: nonNegative.optional(),
});

export const hilReportSchema = z
  .strictObject({
    rig: z.enum(RIG_NAMES),
    target: z.string().min(1),
    linkProfile: z.string().optional(),
    startedAt: isoDate,
    finishedAt: isoDate,
    firmware: firmwareInfoSchema.optional(),
    shard: z
      .strictObject({ index: z.number().int().positive(), total: z.number().int().positive() })
      .refine((s) => s.index <= s.total, 'shard index must be between 1 and total')
      .optional(),
    scenarios: z.array(scenarioResultSchema),
    baseline: baselineComparisonSchema.optional(),
  })
  .superRefine((report, ctx) => {
    const seen = new Set<string>();
    report.scenarios.forEach((s, i) => {
      if (seen.has(s.id)) {
        ctx.addIssue({
          code: 'custom',
          message: `scenario id '${s.id}' appears twice; ids must be unique`,
          path: ['scenarios', i, 'id'],
        });
      }
      seen.add(s.id);
    });
  });

/** One stored measurement: what a passing run of a scenario took on one link. */
export interface BaselineEntry {
  transferSeconds: number;
  kBps: number;
  imageBytes?: number;
  recordedAt: string;
  firmwareVersion?: string;
}

export interface Baseline {
  schemaVersion: 1;
  /** scenario id -> baseline key (link profile or `bench-<target>`) -> entry */
  scenarios: Record<string, Record<string, BaselineEntry>>;
}

export const baselineEntrySchema = z.strictObject({
  transferSeconds: z.number().finite().positive(),
  kBps: z.number().finite().positive(),
  imageBytes: z.number().int().positive().optional(),
  recordedAt: isoDate,
  firmwareVersion: z.string().optional(),
});

export const baselineSchema = z.strictObject({
  schemaVersion: z.literal(1),
  scenarios: z.record(z.string(), z.record(z.string(), baselineEntrySchema)),
});

// The interfaces above are what callers read; the schemas are what files are checked against.
// These assignments fail to compile the moment the two drift apart, optional fields included.
type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const schemasMatchTypes: [
  Equal<z.output<typeof hilReportSchema>, HilReport>,
  Equal<z.output<typeof scenarioResultSchema>, ScenarioResult>,
  Equal<z.output<typeof baselineSchema>, Baseline>,
  Equal<z.output<typeof baselineComparisonSchema>, BaselineComparison>,
] = [true, true, true, true];
void schemasMatchTypes;

/** Issues of a zod error as `path: message` lines, e.g. `scenarios.0.kBps: Invalid input`. */
export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.map(String).join('.');
      return path === '' ? issue.message : `${path}: ${issue.message}`;
    })
    .join('\n');
}
