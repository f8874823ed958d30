import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  escapeHtml,
  niceTicks,
  renderHtmlReport,
  throughputSeries,
  writeHtmlReport,
} from './html.ts';
import { sampleReport } from './sample.test-data.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hil-html-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Node = Record<string, unknown>;
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  isArray: (name) => ['g', 'rect', 'polyline', 'text', 'line', 'figure'].includes(name),
});

/** The <figure id=...> block of the page, its SVG parsed as XML (SVG must be well-formed). */
function figure(html: string, id: string): { html: string; svg: Node } {
  const match = html.match(new RegExp(`<figure id="${id}"[\\s\\S]*?</figure>`));
  if (match === null) throw new Error(`no figure ${id} in the page`);
  const svgText = match[0].match(/<svg[\s\S]*<\/svg>/)?.[0] ?? '';
  expect(XMLValidator.validate(svgText)).toBe(true);
  return { html: match[0], svg: (parser.parse(svgText) as Node).svg as Node };
}

describe('report.html', () => {
  it('is self-contained: no script, stylesheet link, or remote resource', () => {
    const html = renderHtmlReport(sampleReport(dir));
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link|src="|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  });

  it('charts the phase timings of every scenario as stacked bars', () => {
    const report = sampleReport(dir);
    const { svg } = figure(renderHtmlReport(report), 'phase-chart');
    const bars = svg.g as Node[];
    expect(bars.map((g) => g['@data-scenario'])).toEqual(report.scenarios.map((s) => s.id));
    const happy = bars[0] as Node;
    const rects = happy.rect as Node[];
    // The one firmware build of the run is not any scenario's phase.
    expect(rects.map((r) => r['@data-phase'])).toEqual([
      'connect',
      'transfer',
      'finalize',
      'reboot',
    ]);
    expect(rects.map((r) => Number(r['@data-ms']))).toEqual([45, 820, 30, 510]);
    // Stacked: each segment starts where the previous one ended.
    for (let i = 1; i < rects.length; i++) {
      const prev = rects[i - 1] as Node;
      expect(Number((rects[i] as Node)['@x'])).toBeCloseTo(
        Number(prev['@x']) + Number(prev['@width']),
        1,
      );
    }
    // Widths are proportional to the durations.
    const width = (phase: string) =>
      Number(rects.find((r) => r['@data-phase'] === phase)?.['@width']);
    expect(width('transfer') / width('reboot')).toBeCloseTo(820 / 510, 1);
    // The skipped scenario has a row that says so, not a missing row.
    const skipped = bars[3] as Node;
    expect(skipped.rect).toBeUndefined();
    expect(JSON.stringify(skipped.text)).toContain('skipped');
  });

  it('shows the one shared firmware build once, in the header, not in every bar', () => {
    const html = renderHtmlReport(sampleReport(dir));
    expect(html).toContain('build cache check 18.9 s, once for all scenarios (not in their bars)');
    expect(html).not.toContain('data-phase="build"');
    expect(html).not.toContain('<th>build</th>');
  });

  it('adds a modeled-time chart when the virtual rig reported modeled time', () => {
    const report = sampleReport(dir);
    const { html, svg } = figure(renderHtmlReport(report), 'phase-chart-modeled');
    expect(html).toContain('modeled link time');
    const happy = (svg.g as Node[])[0] as Node;
    expect((happy.rect as Node[]).map((r) => Number(r['@data-ms']))).toEqual([
      310, 9_800, 420, 1_300,
    ]);
    const bench = {
      ...report,
      rig: 'bench' as const,
      scenarios: report.scenarios.map((s) => ({
        ...s,
        phases: Object.fromEntries(
          Object.entries(s.phases).map(([k, v]) => [k, { wallMs: v.wallMs }]),
        ),
      })),
    };
    expect(renderHtmlReport(bench)).not.toContain('id="phase-chart-modeled"');
  });

  it('draws throughput over the transfer as one line per scenario', () => {
    const report = sampleReport(dir);
    const { html, svg } = figure(renderHtmlReport(report), 'throughput-chart');
    const lines = svg.polyline as Node[];
    expect(lines.map((l) => l['@data-scenario'])).toEqual(['happy-path', 'link-loss-retry']);
    for (const line of lines) {
      const points = String(line['@points']).trim().split(/\s+/);
      expect(points.length).toBe(Number(line['@data-points']));
      expect(points.length).toBeGreaterThan(30);
      for (const p of points) expect(p).toMatch(/^\d+(\.\d+)?,\d+(\.\d+)?$/);
    }
    // Scenarios without samples are named in the legend, not silently dropped.
    expect(html).toContain('self-test-rollback: no samples');
    expect(html).toContain('baseline-client: no samples');
    expect(html).toContain('>kB/s</text>');
  });

  it('lists every scenario with its figures, baseline verdict, error and log link', async () => {
    const report = sampleReport(dir);
    const file = await writeHtmlReport(dir, report);
    expect(file).toBe(join(dir, 'report.html'));
    const html = readFileSync(file, 'utf8');
    for (const s of report.scenarios) expect(html).toContain(`<tr data-scenario="${s.id}"`);
    expect(html).toContain('transfer 12.4 s is 55% slower than the baseline 8.0 s (threshold 15%)');
    expect(html).toContain('+55% vs 8.0 s REGRESSION');
    // Text from the report is escaped, never interpreted.
    expect(html).toContain('new firmware fails its self-test &amp; the bootloader rolls back');
    expect(html).toContain('last lines: &lt;boot&gt;');
    // Logs inside the results directory are linked relatively, so the artifact can move.
    expect(html).toContain('<a href="logs/happy-path.log">console log</a>');
    expect(html).toContain('1 passed</span><span>2 failed</span><span>1 skipped');
  });
});

describe('chart helpers', () => {
  it('derives kB/s from cumulative bytes (bytes per ms is kB/s)', () => {
    const series = throughputSeries([
      { tMs: 0, bytes: 0 },
      { tMs: 1000, bytes: 20_000 },
      { tMs: 2000, bytes: 40_000 },
      { tMs: 3000, bytes: 50_000 },
    ]);
    expect(series).toEqual([
      { tMs: 1000, kBps: 20 },
      { tMs: 2000, kBps: 20 },
      { tMs: 3000, kBps: 10 },
    ]);
    expect(throughputSeries([{ tMs: 0, bytes: 0 }])).toEqual([]);
  });

  it('picks round axis ticks that cover the data', () => {
    expect(niceTicks(9.5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(12.4)).toEqual([0, 5, 10, 15]);
    expect(niceTicks(0.42)).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5]);
    expect(niceTicks(0)).toEqual([0, 1]);
  });

  it('escapes HTML', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe(
      '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;',
    );
  });
});
