import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hilReportSchema } from '../model.ts';
import { InvalidReportError, readJsonReport, validateReport, writeJsonReport } from './json.ts';
import { sampleReport } from './sample.test-data.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hil-json-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('report.json', () => {
  it('writes a file that validates against the schema and reads back equal', async () => {
    const report = sampleReport(dir);
    const file = await writeJsonReport(join(dir, 'hil-results'), report);
    expect(file).toBe(join(dir, 'hil-results', 'report.json'));
    const json = JSON.parse(readFileSync(file, 'utf8'));
    expect(hilReportSchema.safeParse(json).success).toBe(true);
    // The minimum the issue asks for.
    expect(json.rig).toBe('sim');
    expect(json.scenarios[0]).toMatchObject({
      id: 'happy-path',
      result: 'passed',
      phases: { transfer: { wallMs: 820, modeledMs: 9800 } },
      transferSeconds: 9.8,
      kBps: 20.41,
    });
    expect(json.baseline.verdicts[1].status).toBe('slower');
    expect(await readJsonReport(file)).toEqual(report);
  });

  it('refuses to write a report that does not match, naming the fields', async () => {
    const report = sampleReport(dir);
    const bad = {
      ...report,
      scenarios: [
        { ...report.scenarios[0], kBps: -1 },
        { ...report.scenarios[2], error: undefined },
        { ...report.scenarios[3], skipReason: '' },
        report.scenarios[0],
      ],
    } as typeof report;
    const err = await writeJsonReport(join(dir, 'out'), bad).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(InvalidReportError);
    const message = err?.message ?? '';
    expect(message).toContain('the report about to be written does not match its schema');
    expect(message).toContain('scenarios.0.kBps: Too small: expected number to be >=0');
    expect(message).toContain('scenarios.1.error: a failed scenario needs error.message');
    expect(message).toContain('scenarios.2.skipReason: a skipped scenario needs skipReason');
    expect(message).toContain("scenarios.3.id: scenario id 'happy-path' appears twice");
  });

  it('checks dates, hashes and phase names', () => {
    const report = sampleReport(dir);
    expect(() =>
      validateReport({
        ...report,
        startedAt: 'yesterday',
        firmware: { ...report.firmware, sha256: 'abc' },
        scenarios: [{ ...report.scenarios[0], phases: { flash: { wallMs: 1 } } }],
      }),
    ).toThrow(
      /startedAt: Invalid ISO datetime[\s\S]*firmware\.sha256: expected 64 lowercase hex[\s\S]*scenarios\.0\.phases/,
    );
  });

  it('says which file is not JSON', async () => {
    const file = join(dir, 'report.json');
    writeFileSync(file, '{"rig":');
    await expect(readJsonReport(file)).rejects.toThrow(`${file} is not valid JSON`);
  });
});
