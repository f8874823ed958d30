// The boot-log parser on arbitrary console text: whatever a serial line delivers (noise, cut
// lines, lines of real boots in any order), it never throws, every event lands in exactly one
// boot, and feeding the text in pieces gives what feeding it whole gives.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BootLogParser, parseBootLog, parseLogLine } from './idf-console.ts';

const fixtureLines = ['v44-esp32-ota', 'v51-esp32c3-rollback', 'v53-esp32s3-panic'].flatMap(
  (name) =>
    readFileSync(new URL(`./fixtures/${name}.console`, import.meta.url), 'latin1')
      .split('\r\n')
      .filter((l) => l !== ''),
);

/** Lines of real boots, their pieces, and what monitors and noise put around them. */
const lineArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...fixtureLines) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(...fixtureLines), fc.nat(), fc.nat())
      .map(([l, a, b]) => l.slice(Math.min(a, b) % (l.length + 1), Math.max(a, b))),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '--- idf_monitor on /dev/ttyUSB0 115200 ---',
      'ELF file not found: build/app.elf',
      '19:37:58.731 > ',
      '[14:30:36]',
      '\x1b[0;32m',
      '\x1b[0m',
      '================= CORE DUMP START =================',
      '================= CORE DUMP END =================',
      'I (1) boot: Partition Table:',
      'I (2) app_init: Application information:',
      'I (3) app_init: ESP-IDF:          v5.3.1',
      'Backtrace: 0x4008:0x3ffb 0x',
      'rst:0x',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
);
const textArb = fc
  .array(fc.tuple(lineArb, fc.constantFrom('\r\n', '\n', '\r', '')), { maxLength: 60 })
  .map((parts) => parts.map(([l, end]) => l + end).join(''));

describe('BootLogParser on arbitrary console text (property)', () => {
  it('never throws, and puts every event in exactly one boot, in order', () => {
    fc.assert(
      fc.property(textArb, (text) => {
        const { events, boots } = parseBootLog(text);
        expect(boots.flatMap((b) => b.events)).toEqual(events);
        for (const e of events) expect(e.line).not.toMatch(/[\r\n]/);
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same events whether the text comes whole or in pieces', () => {
    fc.assert(
      fc.property(textArb, fc.array(fc.nat(), { maxLength: 12 }), (text, cuts) => {
        const parser = new BootLogParser();
        let from = 0;
        for (const cut of [...cuts.map((c) => c % (text.length + 1))].sort((a, b) => a - b)) {
          parser.pushText(text.slice(from, cut));
          from = cut;
        }
        parser.pushText(text.slice(from));
        parser.end();
        expect(parser.events).toEqual(parseBootLog(text).events);
      }),
      { numRuns: 300 },
    );
  });

  it('parseLogLine returns a line or undefined for any string', () => {
    fc.assert(
      fc.property(fc.oneof(lineArb, fc.string({ unit: 'binary', maxLength: 200 })), (line) => {
        const log = parseLogLine(line);
        if (log !== undefined) {
          expect('EWIDV').toContain(log.level);
          expect(Number.isFinite(log.timestampMs)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});
