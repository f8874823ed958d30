/**
 * hil-results/report.html: one self-contained page (inline CSS and SVG, no script, nothing
 * fetched) that opens from a CI artifact or a bench PC without network. Two charts: the phase
 * timings of each scenario as stacked bars, and throughput over the transfer as one line per
 * scenario, then the figures in a table.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type HilReport,
  PHASE_NAMES,
  type PhaseName,
  type ScenarioResult,
  type ThroughputSample,
} from '../model.ts';
import { baselineCell, formatKBps, formatMs, formatSeconds } from './summary.ts';

export const REPORT_HTML = 'report.html';

const PHASE_COLORS: Record<PhaseName, string> = {
  connect: '#4e79a7',
  transfer: '#f28e2b',
  finalize: '#59a14f',
  reboot: '#b07aa1',
};

const SERIES_COLORS = [
  '#4e79a7',
  '#e15759',
  '#59a14f',
  '#f28e2b',
  '#b07aa1',
  '#76b7b2',
  '#edc948',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** Axis ticks at 1, 2 or 5 times a power of ten, about `count` of them, covering `max`. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const ticks: number[] = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  if ((ticks[ticks.length - 1] ?? 0) < max)
    ticks.push(Number((ticks.length * step).toPrecision(12)));
  return ticks;
}

function tickLabel(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
}

export interface ThroughputPoint {
  tMs: number;
  kBps: number;
}

/**
 * kB/s over the transfer from cumulative byte samples: the rate over a window of 5% of the
 * transfer, so one late acknowledgement does not draw a spike. Bytes per ms equals kB/s.
 */
export function throughputSeries(samples: readonly ThroughputSample[]): ThroughputPoint[] {
  const sorted = [...samples].sort((a, b) => a.tMs - b.tMs);
  if (sorted.length < 2) return [];
  const first = sorted[0] as ThroughputSample;
  const last = sorted[sorted.length - 1] as ThroughputSample;
  const window = Math.max((last.tMs - first.tMs) * 0.05, Number.EPSILON);
  const points: ThroughputPoint[] = [];
  let j = 0;
  for (let i = 1; i < sorted.length; i++) {
    const cur = sorted[i] as ThroughputSample;
    while (j < i - 1 && (sorted[j + 1] as ThroughputSample).tMs <= cur.tMs - window) j++;
    const from = sorted[j] as ThroughputSample;
    const dt = cur.tMs - from.tMs;
    if (dt <= 0) continue;
    points.push({ tMs: cur.tMs, kBps: (cur.bytes - from.bytes) / dt });
  }
  return points;
}

type Basis = 'wallMs' | 'modeledMs';

function phaseMs(s: ScenarioResult, phase: PhaseName, basis: Basis): number | undefined {
  const t = s.phases[phase];
  if (t === undefined) return undefined;
  return basis === 'wallMs' ? t.wallMs : t.modeledMs;
}

const CHART_WIDTH = 960;
const LABEL_WIDTH = 230;
/** Characters of a scenario id that fit LABEL_WIDTH at 12 px; the whole id is in the tooltip. */
const LABEL_CHARS = 34;

function shortLabel(id: string): string {
  return id.length <= LABEL_CHARS ? id : `${id.slice(0, LABEL_CHARS - 1)}…`;
}
const PLOT_RIGHT = 30;

function phaseChart(report: HilReport, basis: Basis, title: string, id: string): string {
  const rowHeight = 26;
  const top = 30;
  const plotWidth = CHART_WIDTH - LABEL_WIDTH - PLOT_RIGHT;
  const totals = report.scenarios.map((s) =>
    PHASE_NAMES.reduce((sum, p) => sum + (phaseMs(s, p, basis) ?? 0), 0),
  );
  const ticks = niceTicks(Math.max(...totals, 0) / 1000);
  const maxSeconds = ticks[ticks.length - 1] ?? 1;
  const x = (ms: number) => LABEL_WIDTH + (ms / 1000 / maxSeconds) * plotWidth;
  const height = top + report.scenarios.length * rowHeight + 40;
  const parts: string[] = [];

  for (const t of ticks) {
    parts.push(
      `<line x1="${x(t * 1000).toFixed(1)}" y1="${top - 6}" x2="${x(t * 1000).toFixed(1)}" y2="${height - 34}" stroke="#e3e3e3" stroke-width="1"/>`,
      `<text x="${x(t * 1000).toFixed(1)}" y="${height - 20}" font-size="11" fill="#666" text-anchor="middle">${tickLabel(t)}</text>`,
    );
  }
  parts.push(
    `<text x="${LABEL_WIDTH + plotWidth / 2}" y="${height - 4}" font-size="12" fill="#444" text-anchor="middle">seconds</text>`,
  );
  report.scenarios.forEach((s, row) => {
    const y = top + row * rowHeight;
    parts.push(
      `<g class="bar" data-scenario="${escapeHtml(s.id)}">`,
      `<text x="${LABEL_WIDTH - 8}" y="${y + rowHeight / 2 + 4}" font-size="12" fill="#222" text-anchor="end"><title>${escapeHtml(s.id)}</title>${escapeHtml(shortLabel(s.id))}</text>`,
    );
    let at = 0;
    for (const phase of PHASE_NAMES) {
      const ms = phaseMs(s, phase, basis);
      if (ms === undefined) continue;
      const w = Math.max(x(at + ms) - x(at), ms > 0 ? 0.5 : 0);
      parts.push(
        `<rect x="${x(at).toFixed(2)}" y="${y + 4}" width="${w.toFixed(2)}" height="${rowHeight - 8}" fill="${PHASE_COLORS[phase]}" data-phase="${phase}" data-ms="${ms}"><title>${escapeHtml(`${s.id} · ${phase}: ${formatMs(ms)}`)}</title></rect>`,
      );
      at += ms;
    }
    if (at === 0) {
      parts.push(
        `<text x="${LABEL_WIDTH + 6}" y="${y + rowHeight / 2 + 4}" font-size="11" fill="#666">${s.result === 'skipped' ? 'skipped' : 'no timings'}</text>`,
      );
    }
    parts.push('</g>');
  });

  const legend = PHASE_NAMES.map(
    (p) => `<span class="key"><i style="background:${PHASE_COLORS[p]}"></i>${p}</span>`,
  ).join('');
  return `<figure id="${id}" class="chart" data-basis="${basis}">
<figcaption>${escapeHtml(title)}</figcaption>
<div class="legend">${legend}</div>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${CHART_WIDTH} ${height}" width="100%" role="img" aria-label="${escapeHtml(title)}">
${parts.join('\n')}
</svg>
</figure>`;
}

function throughputChart(report: HilReport): string {
  const top = 20;
  const plotHeight = 260;
  const left = 70;
  const plotWidth = CHART_WIDTH - left - PLOT_RIGHT;
  const series = report.scenarios.map((s) => ({
    scenario: s,
    points: throughputSeries(s.throughput ?? []),
  }));
  const maxT = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.tMs))) / 1000;
  const maxRate = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.kBps)));
  const xTicks = niceTicks(maxT);
  const yTicks = niceTicks(maxRate);
  const xMax = xTicks[xTicks.length - 1] ?? 1;
  const yMax = yTicks[yTicks.length - 1] ?? 1;
  const x = (tMs: number) => left + (tMs / 1000 / xMax) * plotWidth;
  const y = (kBps: number) => top + plotHeight - (kBps / yMax) * plotHeight;
  const height = top + plotHeight + 44;
  const parts: string[] = [];
  for (const t of xTicks) {
    const px = x(t * 1000).toFixed(1);
    parts.push(
      `<line x1="${px}" y1="${top}" x2="${px}" y2="${top + plotHeight}" stroke="#e3e3e3" stroke-width="1"/>`,
      `<text x="${px}" y="${top + plotHeight + 16}" font-size="11" fill="#666" text-anchor="middle">${tickLabel(t)}</text>`,
    );
  }
  for (const v of yTicks) {
    const py = y(v).toFixed(1);
    parts.push(
      `<line x1="${left}" y1="${py}" x2="${left + plotWidth}" y2="${py}" stroke="#e3e3e3" stroke-width="1"/>`,
      `<text x="${left - 6}" y="${py}" dy="4" font-size="11" fill="#666" text-anchor="end">${tickLabel(v)}</text>`,
    );
  }
  parts.push(
    `<text x="${left + plotWidth / 2}" y="${height - 6}" font-size="12" fill="#444" text-anchor="middle">seconds since the transfer started</text>`,
    `<text x="14" y="${top + plotHeight / 2}" font-size="12" fill="#444" text-anchor="middle" transform="rotate(-90 14 ${top + plotHeight / 2})">kB/s</text>`,
  );
  const legend: string[] = [];
  series.forEach(({ scenario, points }, i) => {
    const color = SERIES_COLORS[i % SERIES_COLORS.length] as string;
    const id = escapeHtml(scenario.id);
    if (points.length === 0) {
      legend.push(`<span class="key muted" data-scenario="${id}">${id}: no samples</span>`);
      return;
    }
    const d = points.map((p) => `${x(p.tMs).toFixed(1)},${y(p.kBps).toFixed(1)}`).join(' ');
    const mean = scenario.kBps !== undefined ? `, mean ${formatKBps(scenario.kBps)} kB/s` : '';
    parts.push(
      `<polyline class="series" data-scenario="${id}" data-points="${points.length}" points="${d}" fill="none" stroke="${color}" stroke-width="2"><title>${escapeHtml(`${scenario.id}${mean}`)}</title></polyline>`,
    );
    legend.push(
      `<span class="key" data-scenario="${id}"><i style="background:${color}"></i>${id}</span>`,
    );
  });
  return `<figure id="throughput-chart" class="chart">
<figcaption>Throughput over the transfer</figcaption>
<div class="legend">${legend.join('')}</div>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${CHART_WIDTH} ${height}" width="100%" role="img" aria-label="Throughput over the transfer">
${parts.join('\n')}
</svg>
</figure>`;
}

export interface HtmlOptions {
  /** Where report.html goes: console log links are made relative to it. */
  resultsDir?: string;
}

function logHref(path: string, resultsDir: string | undefined): string {
  const abs = resolve(resultsDir ?? '.', path);
  if (resultsDir !== undefined) {
    const rel = relative(resultsDir, abs);
    if (!rel.startsWith('..') && !isAbsolute(rel))
      return rel.split(sep).map(encodeURIComponent).join('/');
  }
  return pathToFileURL(abs).href;
}

function scenarioRow(s: ScenarioResult, report: HilReport, options: HtmlOptions): string {
  const verdict = report.baseline?.verdicts.find((v) => v.scenarioId === s.id);
  const phases = PHASE_NAMES.map((p) => {
    const t = s.phases[p];
    if (t === undefined) return '<td>-</td>';
    const modeled =
      t.modeledMs !== undefined ? `<br><small>modeled ${formatMs(t.modeledMs)}</small>` : '';
    return `<td>${formatMs(t.wallMs)}${modeled}</td>`;
  }).join('');
  const detail = [
    s.error ? `<pre class="error">${escapeHtml(s.error.message)}</pre>` : '',
    s.skipReason ? `<p>${escapeHtml(s.skipReason)}</p>` : '',
    verdict ? `<p class="baseline">${escapeHtml(verdict.message)}</p>` : '',
    s.faults?.length ? `<p>faults: ${escapeHtml(s.faults.join(', '))}</p>` : '',
    s.fromVersion || s.toVersion
      ? `<p>${escapeHtml(`${s.fromVersion ?? '?'} → ${s.toVersion ?? '?'}`)}</p>`
      : '',
    s.checks?.length
      ? `<ul>${s.checks.map((c) => `<li class="${c.ok ? 'ok' : 'bad'}">${escapeHtml(c.name)}${c.detail ? `: ${escapeHtml(c.detail)}` : ''}</li>`).join('')}</ul>`
      : '',
    s.consoleLog
      ? `<a href="${escapeHtml(logHref(s.consoleLog, options.resultsDir))}">console log</a>`
      : '',
  ].join('');
  return `<tr data-scenario="${escapeHtml(s.id)}" class="${s.result}">
<td><b>${escapeHtml(s.id)}</b><br><small>${escapeHtml(s.title)}</small></td>
<td>${s.result}</td>
<td>${s.transferSeconds !== undefined ? formatSeconds(s.transferSeconds) : '-'}</td>
<td>${s.kBps !== undefined ? formatKBps(s.kBps) : '-'}</td>
<td>${escapeHtml(baselineCell(verdict))}</td>
${phases}
<td>${detail}</td>
</tr>`;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #555; margin-bottom: 16px; }
.counts span { margin-right: 12px; font-weight: 600; }
.chart { margin: 24px 0; max-width: 1000px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.legend { margin-bottom: 4px; }
.key { display: inline-block; margin-right: 14px; font-size: 12px; }
.key i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.muted { color: #888; }
svg text { font-family: system-ui, sans-serif; }
table { border-collapse: collapse; margin-top: 16px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f4f4f4; }
tr.failed td:nth-child(2) { color: #c0392b; font-weight: 600; }
tr.passed td:nth-child(2) { color: #27ae60; }
tr.skipped td:nth-child(2) { color: #b7950b; }
pre.error { white-space: pre-wrap; color: #c0392b; margin: 0; }
li.ok { color: #27ae60; } li.bad { color: #c0392b; }
`;

export function renderHtmlReport(report: HilReport, options: HtmlOptions = {}): string {
  const n = (r: ScenarioResult['result']) => report.scenarios.filter((s) => s.result === r).length;
  const meta = [
    `rig ${report.rig}`,
    `target ${report.target}`,
    report.linkProfile ? `link profile ${report.linkProfile}` : '',
    report.firmware
      ? `firmware ${report.firmware.version} (${report.firmware.size} bytes${report.firmware.built ? '' : ', build cached'})`
      : '',
    report.firmware?.buildMs !== undefined
      ? `${report.firmware.built ? 'build' : 'build cache check'} ${formatMs(report.firmware.buildMs)}, once for all scenarios (not in their bars)`
      : '',
    report.shard ? `shard ${report.shard.index}/${report.shard.total}` : '',
    `${report.startedAt} – ${report.finishedAt}`,
  ]
    .filter(Boolean)
    .map(escapeHtml)
    .join(' · ');
  const anyModeled = report.scenarios.some((s) =>
    PHASE_NAMES.some((p) => s.phases[p]?.modeledMs !== undefined),
  );
  const charts = [
    phaseChart(report, 'wallMs', 'Phase timings (wall clock)', 'phase-chart'),
    anyModeled
      ? phaseChart(
          report,
          'modeledMs',
          'Phase timings (modeled link time of the virtual rig)',
          'phase-chart-modeled',
        )
      : '',
    throughputChart(report),
  ].join('\n');
  const baselineNote = report.baseline
    ? `<p>Baseline: ${escapeHtml(report.baseline.file)}, transfer threshold ${report.baseline.thresholds.transferSlowerPct}% — ${report.baseline.ok ? 'no regression' : '<b>regression</b>'}</p>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>HIL report: ${escapeHtml(`${report.rig} ${report.target}`)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>HIL report</h1>
<div class="meta">${meta}</div>
<div class="counts"><span>${n('passed')} passed</span><span>${n('failed')} failed</span><span>${n('skipped')} skipped</span></div>
${baselineNote}
${charts}
<table>
<thead><tr><th>Scenario</th><th>Result</th><th>Transfer</th><th>kB/s</th><th>vs baseline</th>${PHASE_NAMES.map((p) => `<th>${p}</th>`).join('')}<th>Details</th></tr></thead>
<tbody>
${report.scenarios.map((s) => scenarioRow(s, report, options)).join('\n')}
</tbody>
</table>
</body>
</html>
`;
}

/** Writes `<resultsDir>/report.html` and returns its path. */
export async function writeHtmlReport(resultsDir: string, report: HilReport): Promise<string> {
  await mkdir(resultsDir, { recursive: true });
  const file = join(resultsDir, REPORT_HTML);
  await writeFile(file, renderHtmlReport(report, { resultsDir }), 'utf8');
  return file;
}
