/**
 * hil-results/report.json: every phase and figure of a run. Checked against the schema before
 * it is written, so CI artifacts and the next run's tools can trust its shape.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatIssues, type HilReport, hilReportSchema } from '../model.ts';

export const REPORT_JSON = 'report.json';

export class InvalidReportError extends Error {
  override name = 'InvalidReportError';
}

/** The report as the schema reads it; throws with every wrong field named. */
export function validateReport(report: unknown, what = 'HIL report'): HilReport {
  const parsed = hilReportSchema.safeParse(report);
  if (!parsed.success) {
    throw new InvalidReportError(
      `${what} does not match its schema:\n${formatIssues(parsed.error)}`,
    );
  }
  return parsed.data;
}

/** Writes `<resultsDir>/report.json` and returns its path. */
export async function writeJsonReport(resultsDir: string, report: HilReport): Promise<string> {
  const checked = validateReport(report, 'the report about to be written');
  await mkdir(resultsDir, { recursive: true });
  const file = join(resultsDir, REPORT_JSON);
  // Write then rename, so a reader never sees half a report.
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(checked, null, 2)}\n`, 'utf8');
  await rename(tmp, file);
  return file;
}

export async function readJsonReport(file: string): Promise<HilReport> {
  const text = await readFile(file, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InvalidReportError(`${file} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return validateReport(json, file);
}
