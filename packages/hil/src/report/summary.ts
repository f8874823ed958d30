/**
 * The table `pnpm hil` prints at the end: one row per scenario with its result, transfer time,
 * throughput and how it compares with the baseline, then why each failure failed.
 */
import Table from 'cli-table3';
import type { BaselineVerdict, HilReport, ScenarioResult } from '../model.ts';

export function formatSeconds(seconds: number): string {
  if (seconds >= 100) return `${seconds.toFixed(0)} s`;
  if (seconds >= 1) return `${seconds.toFixed(1)} s`;
  return `${seconds.toFixed(2)} s`;
}

export function formatKBps(kBps: number): string {
  return kBps >= 100 ? kBps.toFixed(0) : kBps.toFixed(1);
}

export function formatMs(ms: number): string {
  return ms >= 1000 ? formatSeconds(ms / 1000) : `${ms.toFixed(0)} ms`;
}

/** The short "vs baseline" cell: signed percent and the baseline figure. */
export function baselineCell(v: BaselineVerdict | undefined): string {
  if (v === undefined || v.status === 'not-measured') return '-';
  if (v.status === 'no-baseline') return 'no baseline';
  const delta = v.deltaPct ?? 0;
  const sign = delta > 0 ? '+' : delta < 0 ? '-' : '±';
  const magnitude = Math.abs(delta);
  const shown = magnitude < 1 && magnitude > 0 ? magnitude.toFixed(1) : magnitude.toFixed(0);
  const base = v.baselineSeconds !== undefined ? ` vs ${formatSeconds(v.baselineSeconds)}` : '';
  return `${sign}${shown}%${base}${v.ok ? '' : ' REGRESSION'}`;
}

const RESULT_TEXT: Record<ScenarioResult['result'], string> = {
  passed: 'passed',
  failed: 'FAILED',
  skipped: 'skipped',
};

export interface SummaryOptions {
  /** ANSI colours for a terminal; off for logs and files. */
  color?: boolean;
  /**
   * Box-drawing borders for a terminal. Off (the default) the table is plain ASCII, so a log
   * viewer or a tool that cuts long lines at a byte count never splits a character.
   */
  unicode?: boolean;
}

/** cli-table3's borders in ASCII. */
const ASCII_BORDERS = {
  top: '-',
  'top-mid': '+',
  'top-left': '+',
  'top-right': '+',
  bottom: '-',
  'bottom-mid': '+',
  'bottom-left': '+',
  'bottom-right': '+',
  left: '|',
  'left-mid': '+',
  mid: '-',
  'mid-mid': '+',
  right: '|',
  'right-mid': '+',
  middle: '|',
};

function paint(text: string, code: number, color: boolean): string {
  return color ? `\u001b[${code}m${text}\u001b[0m` : text;
}

export function formatSummary(report: HilReport, options: SummaryOptions = {}): string {
  const color = options.color ?? false;
  const unicode = options.unicode ?? false;
  const verdicts = new Map(report.baseline?.verdicts.map((v) => [v.scenarioId, v]) ?? []);
  const table = new Table({
    head: ['Scenario', 'Result', 'Transfer', 'kB/s', 'vs baseline'],
    colAligns: ['left', 'left', 'right', 'right', 'left'],
    // cli-table3 colours the header red by default; colour only when asked.
    style: { head: color ? ['bold'] : [], border: [], compact: true },
    // Every column as wide as its widest cell: a scenario id is never cut.
    wordWrap: false,
    ...(unicode ? {} : { chars: ASCII_BORDERS }),
  });
  for (const s of report.scenarios) {
    const resultColor = s.result === 'passed' ? 32 : s.result === 'failed' ? 31 : 33;
    table.push([
      s.id,
      paint(RESULT_TEXT[s.result], resultColor, color),
      s.transferSeconds !== undefined ? formatSeconds(s.transferSeconds) : '-',
      s.kBps !== undefined ? formatKBps(s.kBps) : '-',
      baselineCell(verdicts.get(s.id)),
    ]);
  }

  const n = (r: ScenarioResult['result']) => report.scenarios.filter((s) => s.result === r).length;
  const elapsed = (Date.parse(report.finishedAt) - Date.parse(report.startedAt)) / 1000;
  const where = [report.rig, report.target, report.linkProfile].filter(Boolean).join(', ');
  const lines = [
    `HIL run on ${where}${report.firmware ? `, firmware ${report.firmware.version}${report.firmware.built ? '' : ' (build cached)'}` : ''}`,
    table.toString(),
    `${n('passed')} passed, ${n('failed')} failed, ${n('skipped')} skipped in ${formatSeconds(Math.max(0, elapsed))}`,
  ];
  if (
    report.rig === 'sim' &&
    report.scenarios.some((s) => s.phases.transfer?.modeledMs !== undefined)
  ) {
    lines.push('Transfer times on the virtual rig are modeled link time.');
  }
  const failed = report.scenarios.filter((s) => s.result === 'failed');
  if (failed.length > 0) {
    lines.push('', paint('Failures:', 31, color));
    for (const s of failed) {
      const message = (s.error?.message ?? 'failed').replace(/\n/g, '\n    ');
      lines.push(`  ${s.id}: ${message}`);
      if (s.consoleLog !== undefined) lines.push(`    console log: ${s.consoleLog}`);
    }
  }
  const skipped = report.scenarios.filter((s) => s.result === 'skipped');
  if (skipped.length > 0) {
    lines.push('', 'Skipped:');
    for (const s of skipped) lines.push(`  ${s.id}: ${s.skipReason ?? ''}`);
  }
  return lines.join('\n');
}
