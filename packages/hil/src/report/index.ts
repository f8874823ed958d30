import type { HilReport } from '../model.ts';
import { writeHtmlReport } from './html.ts';
import { writeJsonReport } from './json.ts';
import { type JUnitOptions, writeJUnitReport } from './junit.ts';

export * from './html.ts';
export * from './json.ts';
export * from './junit.ts';
export * from './summary.ts';

export interface WrittenReports {
  json: string;
  junit: string;
  html: string;
}

/**
 * report.json first: it validates the report, so a malformed one stops here before the
 * JUnit and HTML files describe it.
 */
export async function writeReports(
  resultsDir: string,
  report: HilReport,
  junit: JUnitOptions = {},
): Promise<WrittenReports> {
  const json = await writeJsonReport(resultsDir, report);
  const junitFile = await writeJUnitReport(resultsDir, report, junit);
  const html = await writeHtmlReport(resultsDir, report);
  return { json, junit: junitFile, html };
}
