/**
 * hil-results/junit.xml: one <testsuite> per suite, one <testcase> per scenario, so Jenkins,
 * GitLab and GitHub test reporters show HIL runs like unit tests. The console log goes in
 * <system-out>, followed by a `[[ATTACHMENT|path]]` line, which is how Jenkins' attachments
 * plugin and GitLab find files that belong to a test case.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { create } from 'xmlbuilder2';
import type { HilReport, PhaseName, ScenarioResult } from '../model.ts';
import { PHASE_NAMES } from '../model.ts';

export const JUNIT_XML = 'junit.xml';

/** Larger logs keep their tail: a failure is usually explained by the last lines. */
export const MAX_SYSTEM_OUT_CHARS = 512 * 1024;

/** ESP-IDF colours its logs; escape sequences are not allowed in XML 1.0 and unreadable in CI. */
export function stripAnsi(text: string): string {
  return stripVTControlCharacters(text);
}

export interface JUnitOptions {
  /**
   * Directory the attachment paths are written relative to: the CI workspace (Jenkins) or the
   * project directory (GitLab). Absolute paths when absent.
   */
  attachmentRoot?: string;
  /** The results directory, which relative `consoleLog` paths are relative to. */
  resultsDir?: string;
  hostname?: string;
}

function scenarioSeconds(s: ScenarioResult): number {
  let ms = 0;
  for (const phase of PHASE_NAMES) ms += s.phases[phase]?.wallMs ?? 0;
  return ms / 1000;
}

async function consoleText(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return `(console log ${path} could not be read: ${(err as Error).message})`;
  }
  text = stripAnsi(text);
  if (text.length > MAX_SYSTEM_OUT_CHARS) {
    const omitted = text.length - MAX_SYSTEM_OUT_CHARS;
    text = `(first ${omitted} characters omitted; see the attached log)\n${text.slice(omitted)}`;
  }
  return text;
}

function properties(
  parent: ReturnType<typeof create>,
  entries: [string, string | number | undefined][],
): void {
  const set = entries.filter((e): e is [string, string | number] => e[1] !== undefined);
  if (set.length === 0) return;
  const props = parent.ele('properties');
  for (const [name, value] of set) props.ele('property', { name, value: String(value) });
}

/** The junit.xml text for `report`; reads the console logs the scenarios name. */
export async function buildJUnitXml(
  report: HilReport,
  options: JUnitOptions = {},
): Promise<string> {
  const baseDir = options.resultsDir ?? process.cwd();
  const host = options.hostname ?? hostname();
  const suites = new Map<string, ScenarioResult[]>();
  for (const s of report.scenarios) {
    suites.set(s.suite, [...(suites.get(s.suite) ?? []), s]);
  }
  const count = (list: ScenarioResult[], r: ScenarioResult['result']) =>
    list.filter((s) => s.result === r).length;
  const totalSeconds = (list: ScenarioResult[]) =>
    list.reduce((sum, s) => sum + scenarioSeconds(s), 0);

  // Console logs can carry control bytes XML cannot hold; drop them rather than fail the report.
  const doc = create({ version: '1.0', encoding: 'UTF-8', invalidCharReplacement: '' });
  const root = doc.ele('testsuites', {
    name: `hil ${report.rig} ${report.target}`,
    tests: String(report.scenarios.length),
    failures: String(count(report.scenarios, 'failed')),
    errors: '0',
    skipped: String(count(report.scenarios, 'skipped')),
    time: totalSeconds(report.scenarios).toFixed(3),
    timestamp: report.startedAt,
  });
  const verdicts = new Map(report.baseline?.verdicts.map((v) => [v.scenarioId, v]) ?? []);

  for (const [suite, list] of suites) {
    const suiteEl = root.ele('testsuite', {
      name: suite,
      tests: String(list.length),
      failures: String(count(list, 'failed')),
      errors: '0',
      skipped: String(count(list, 'skipped')),
      time: totalSeconds(list).toFixed(3),
      timestamp: report.startedAt,
      hostname: host,
    });
    properties(suiteEl, [
      ['rig', report.rig],
      ['target', report.target],
      ['linkProfile', report.linkProfile],
      ['firmware.version', report.firmware?.version],
      ['firmware.sha256', report.firmware?.sha256],
      ['firmware.built', report.firmware === undefined ? undefined : String(report.firmware.built)],
    ]);

    for (const s of list) {
      const caseEl = suiteEl.ele('testcase', {
        classname: `hil.${suite}`,
        name: s.id,
        time: scenarioSeconds(s).toFixed(3),
      });
      const phaseProps: [string, number | undefined][] = PHASE_NAMES.flatMap((p: PhaseName) => [
        [`phase.${p}.wallMs`, s.phases[p]?.wallMs],
        [`phase.${p}.modeledMs`, s.phases[p]?.modeledMs],
      ]);
      properties(caseEl, [
        ['title', s.title],
        ['transferSeconds', s.transferSeconds],
        ['kBps', s.kBps],
        ['imageBytes', s.imageBytes],
        ['linkProfile', s.linkProfile],
        ['faults', s.faults?.join(',')],
        ['fromVersion', s.fromVersion],
        ['toVersion', s.toVersion],
        ['baseline', verdicts.get(s.id)?.message],
        ...phaseProps,
      ]);
      if (s.result === 'failed') {
        const message = s.error?.message ?? 'failed';
        caseEl
          .ele('failure', { message: message.split('\n')[0] ?? message, type: 'HilFailure' })
          .txt(stripAnsi(s.error?.stack ?? message));
      } else if (s.result === 'skipped') {
        caseEl.ele('skipped', { message: s.skipReason ?? 'skipped' });
      }
      if (s.consoleLog !== undefined) {
        const logPath = isAbsolute(s.consoleLog) ? s.consoleLog : resolve(baseDir, s.consoleLog);
        const shown =
          options.attachmentRoot !== undefined
            ? relative(options.attachmentRoot, logPath)
            : logPath;
        const text = await consoleText(logPath);
        const sep = text.endsWith('\n') || text === '' ? '' : '\n';
        caseEl.ele('system-out').txt(`${text}${sep}[[ATTACHMENT|${shown}]]\n`);
      }
    }
  }
  return doc.end({ prettyPrint: true });
}

/** Writes `<resultsDir>/junit.xml` and returns its path. */
export async function writeJUnitReport(
  resultsDir: string,
  report: HilReport,
  options: JUnitOptions = {},
): Promise<string> {
  const xml = await buildJUnitXml(report, { resultsDir, ...options });
  await mkdir(resultsDir, { recursive: true });
  const file = join(resultsDir, JUNIT_XML);
  await writeFile(file, xml, 'utf8');
  return file;
}
