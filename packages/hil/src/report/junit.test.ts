import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildJUnitXml, MAX_SYSTEM_OUT_CHARS, stripAnsi, writeJUnitReport } from './junit.ts';
import { HAPPY_LOG, ROLLBACK_LOG, sampleReport } from './sample.test-data.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hil-junit-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Node = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  // Lists even when a suite has one case, so the assertions index them the same way.
  isArray: (name) => ['testsuite', 'testcase', 'property'].includes(name),
  parseAttributeValue: false,
  trimValues: false,
});

function parse(xml: string): Node {
  expect(XMLValidator.validate(xml)).toBe(true);
  return parser.parse(xml) as Node;
}

function suites(doc: Node): Node[] {
  return (doc.testsuites as Node).testsuite as Node[];
}

function cases(suite: Node | undefined): Node[] {
  return (suite?.testcase ?? []) as Node[];
}

function prop(node: Node, name: string): string | undefined {
  const props = ((node.properties as Node | undefined)?.property ?? []) as Node[];
  return props.find((p) => p['@name'] === name)?.['@value'] as string | undefined;
}

describe('junit.xml', () => {
  it('has one testsuite per suite and one testcase per scenario, with counts', async () => {
    const report = sampleReport(dir);
    const doc = parse(await buildJUnitXml(report, { hostname: 'bench-1' }));
    const root = doc.testsuites as Node;
    expect(root['@tests']).toBe('4');
    expect(root['@failures']).toBe('2');
    expect(root['@skipped']).toBe('1');
    expect(suites(doc).map((s) => s['@name'])).toEqual(['ota', 'faults', 'compat']);
    const [ota, faults, compat] = suites(doc);
    expect(ota).toMatchObject({ '@tests': '1', '@failures': '0', '@hostname': 'bench-1' });
    expect(faults).toMatchObject({ '@tests': '2', '@failures': '2', '@skipped': '0' });
    expect(compat).toMatchObject({ '@tests': '1', '@skipped': '1' });
    expect(cases(faults).map((c) => c['@name'])).toEqual(['link-loss-retry', 'self-test-rollback']);
    expect(cases(ota)[0]).toMatchObject({
      '@classname': 'hil.ota',
      '@name': 'happy-path',
      // connect + transfer + finalize + reboot wall time; the shared build is no scenario's.
      '@time': '1.405',
    });
    expect(prop(ota as Node, 'firmware.version')).toBe('0.1.0-hil.42');
    expect(prop(cases(ota)[0] as Node, 'kBps')).toBe('20.41');
    expect(prop(cases(ota)[0] as Node, 'phase.transfer.modeledMs')).toBe('9800');
  });

  it('carries failures with their message and skips with their reason', async () => {
    const report = sampleReport(dir);
    const [, faults, compat] = suites(parse(await buildJUnitXml(report)));
    const [linkLoss, rollback] = cases(faults);
    const baselineFailure = linkLoss?.failure as Node;
    expect(baselineFailure['@message']).toBe(
      'baseline: transfer 12.4 s is 55% slower than the baseline 8.0 s (threshold 15%)',
    );
    const failure = rollback?.failure as Node;
    // The attribute holds the first line; the body holds the whole stack.
    expect(failure['@message']).toBe(
      'expected "Loaded app from partition at offset 0x110000" within 10 s',
    );
    expect(failure['#text']).toContain('at verify (runner.ts:120:11)');
    const skipped = cases(compat)[0]?.skipped as Node;
    expect(skipped['@message']).toBe(
      'bench rig: no BLE adapter configured (set HIL_BLE_NAME or bench.bleName)',
    );
    expect(cases(compat)[0]?.failure).toBeUndefined();
  });

  it('puts the console log, without colour codes, and an attachment line in system-out', async () => {
    const report = sampleReport(dir);
    const xml = await buildJUnitXml(report, { attachmentRoot: dir });
    expect(xml).not.toContain('\u001b');
    const [ota, faults] = suites(parse(xml));
    const out = cases(ota)[0]?.['system-out'] as string;
    expect(out).toBe(`${stripAnsi(HAPPY_LOG)}[[ATTACHMENT|logs/happy-path.log]]\n`);
    expect(out).toContain('I (73) boot: Loaded app from partition at offset 0x110000');
    const rollbackOut = cases(faults)[1]?.['system-out'] as string;
    expect(rollbackOut).toContain(stripAnsi(ROLLBACK_LOG));
    expect(rollbackOut).toContain('[[ATTACHMENT|logs/self-test-rollback.log]]');
    // No console log, no system-out.
    expect(cases(faults)[0]?.['system-out']).toBeUndefined();

    const absolute = parse(await buildJUnitXml(report));
    expect(cases(suites(absolute)[0])[0]?.['system-out']).toContain(
      `[[ATTACHMENT|${join(dir, 'logs', 'happy-path.log')}]]`,
    );
  });

  it('keeps the tail of a huge log and survives bytes XML cannot hold', async () => {
    const report = sampleReport(dir);
    const big = join(dir, 'big.log');
    const tail = 'I (99999) ble_ota: the line that explains the failure\n';
    writeFileSync(big, `${'x'.repeat(MAX_SYSTEM_OUT_CHARS)}\u0000\u0007${tail}`);
    const first = report.scenarios[0];
    if (first === undefined) throw new Error('sample report has no scenarios');
    const doc = parse(
      await buildJUnitXml({ ...report, scenarios: [{ ...first, consoleLog: big }] }),
    );
    const out = cases(suites(doc)[0])[0]?.['system-out'] as string;
    expect(out).toMatch(/^\(first \d+ characters omitted; see the attached log\)\n/);
    expect(out).toContain(tail);
    expect(out.length).toBeLessThan(MAX_SYSTEM_OUT_CHARS + 200);
  });

  it('says so in system-out when a console log is missing', async () => {
    const report = sampleReport(dir);
    const first = report.scenarios[0];
    if (first === undefined) throw new Error('sample report has no scenarios');
    const missing = join(dir, 'gone.log');
    const doc = parse(
      await buildJUnitXml({ ...report, scenarios: [{ ...first, consoleLog: missing }] }),
    );
    expect(cases(suites(doc)[0])[0]?.['system-out']).toMatch(
      new RegExp(`^\\(console log ${missing} could not be read: ENOENT`),
    );
  });

  it('reads relative console log paths from the results directory', async () => {
    const report = sampleReport(dir);
    const first = report.scenarios[0];
    if (first === undefined) throw new Error('sample report has no scenarios');
    const relativeLog = { ...report, scenarios: [{ ...first, consoleLog: 'logs/happy-path.log' }] };
    const file = await writeJUnitReport(dir, relativeLog, { attachmentRoot: dir });
    const out = cases(suites(parse(readFileSync(file, 'utf8')))[0])[0]?.['system-out'];
    expect(out).toBe(`${stripAnsi(HAPPY_LOG)}[[ATTACHMENT|logs/happy-path.log]]\n`);
  });

  it('writes hil-results/junit.xml', async () => {
    const file = await writeJUnitReport(join(dir, 'hil-results'), sampleReport(dir));
    expect(file).toBe(join(dir, 'hil-results', 'junit.xml'));
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('<?xml version="1.0" encoding="UTF-8"?>')).toBe(true);
    expect(suites(parse(text))).toHaveLength(3);
  });
});
