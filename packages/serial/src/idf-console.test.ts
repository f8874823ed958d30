import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BootLogParser,
  type ConsoleEvent,
  type EventOf,
  parseBacktrace,
  parseBootLog,
  parseLogLine,
  parsePanicLine,
  parsePartitionEntry,
  parseResetLine,
} from './idf-console.ts';

// Console captures shaped byte for byte like ESP-IDF's default output: colour codes from
// CONFIG_LOG_COLORS around each ESP_LOG line, \r\n line ends, ROM and panic lines uncoloured.
const fixture = (name: string) =>
  readFileSync(new URL(`./fixtures/${name}.console`, import.meta.url), 'latin1');

function ofKind<K extends ConsoleEvent['kind']>(events: ConsoleEvent[], kind: K): EventOf<K>[] {
  return events.filter((e): e is EventOf<K> => e.kind === kind);
}

describe('parseLogLine', () => {
  it('reads a coloured CRLF ESP_LOG line', () => {
    expect(
      parseLogLine(
        '\x1b[0;32mI (411) boot: Loaded app from partition at offset 0x10000\x1b[0m\r\n',
      ),
    ).toEqual({
      level: 'I',
      timestampMs: 411,
      tag: 'boot',
      message: 'Loaded app from partition at offset 0x10000',
    });
  });

  it('reads error, warning and debug lines, and tags with dots', () => {
    expect(
      parseLogLine(
        '\x1b[0;31mE (246) esp_image: Checksum failed. Calculated 0xc7 read 0x43\x1b[0m',
      ),
    ).toMatchObject({
      level: 'E',
      tag: 'esp_image',
      message: 'Checksum failed. Calculated 0xc7 read 0x43',
    });
    expect(parseLogLine('\x1b[0;33mW (5420) ble_ota: slow\x1b[0m')?.level).toBe('W');
    expect(parseLogLine('D (117) boot: otadata[1] is marking as ABORTED\x1b[0m')).toMatchObject({
      level: 'D',
      message: 'otadata[1] is marking as ABORTED',
    });
    expect(parseLogLine('I (34) boot.esp32c3: SPI Speed      : 80MHz')).toMatchObject({
      tag: 'boot.esp32c3',
      message: 'SPI Speed      : 80MHz',
    });
  });

  it('reads the blob-style "tag:message" without a space and the system-time timestamp', () => {
    expect(parseLogLine('I (592) wifi:wifi driver task: 3fcab44c, prio:23')).toMatchObject({
      tag: 'wifi',
      message: 'wifi driver task: 3fcab44c, prio:23',
    });
    expect(parseLogLine('I (01:02:03.456) app: hi')?.timestampMs).toBe(3_723_456);
  });

  it('rejects lines that are not ESP_LOG lines', () => {
    expect(parseLogLine('rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)')).toBeUndefined();
    expect(parseLogLine('load:0x3fff0030,len:6708')).toBeUndefined();
    expect(parseLogLine('Hello world!')).toBeUndefined();
  });
});

describe('parseResetLine', () => {
  it('reads the ESP32 ROM forms', () => {
    expect(
      parseResetLine('rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r'),
    ).toMatchObject({
      code: 1,
      reason: 'POWERON_RESET',
      category: 'powerOn',
      bootStrapping: 0x13,
      bootMode: 'SPI_FAST_FLASH_BOOT',
    });
    expect(parseResetLine('rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)')).toMatchObject({
      code: 12,
      reason: 'SW_CPU_RESET',
      category: 'software',
    });
    expect(
      parseResetLine('rst:0x7 (TG0WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)')?.category,
    ).toBe('watchdog');
    expect(
      parseResetLine('rst:0x5 (DEEPSLEEP_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)')?.category,
    ).toBe('deepSleep');
  });

  it('reads the newer chips’ names, a download-mode boot and a line without boot:', () => {
    expect(
      parseResetLine('rst:0xc (RTC_SW_CPU_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)')?.category,
    ).toBe('software');
    expect(parseResetLine('rst:0x3 (LP_SW_HPSYS),boot:0xc (SPI_FAST_FLASH_BOOT)')?.category).toBe(
      'software',
    );
    expect(
      parseResetLine('rst:0x15 (USB_UART_CHIP_RESET),boot:0x8 (SPI_FAST_FLASH_BOOT)')?.category,
    ).toBe('usb');
    expect(parseResetLine('rst:0x1 (POWERON),boot:0x3 (DOWNLOAD(USB/UART0))')).toMatchObject({
      category: 'powerOn',
      bootStrapping: 3,
    });
    const bare = parseResetLine('rst:0x10 (RTCWDT_RTC_RESET)');
    expect(bare).toMatchObject({ code: 16, category: 'watchdog' });
    expect(bare?.bootMode).toBeUndefined();
  });
});

describe('small parsers', () => {
  it('reads partition table rows with multi-word usages', () => {
    expect(
      parsePartitionEntry(' 0 nvs              WiFi data        01 02 00009000 00004000'),
    ).toEqual({
      index: 0,
      label: 'nvs',
      usage: 'WiFi data',
      type: 1,
      subtype: 2,
      offset: 0x9000,
      size: 0x4000,
    });
    expect(
      parsePartitionEntry('10 factory          factory app      00 00 00010000 00100000'),
    ).toMatchObject({
      index: 10,
      usage: 'factory app',
      offset: 0x10000,
    });
    expect(
      parsePartitionEntry('## Label            Usage          Type ST Offset   Length'),
    ).toBeUndefined();
  });

  it('reads a row whatever its spacing, and the hex fields only as whole words', () => {
    const label = fc.stringMatching(/^[a-z_][a-z0-9_]{0,15}$/);
    const usage = fc
      .array(fc.stringMatching(/^[g-z]{1,8}$/), { minLength: 1, maxLength: 3 })
      .map((w) => w.join(' '));
    const gap = fc.integer({ min: 1, max: 20 }).map((n) => ' '.repeat(n));
    fc.assert(
      fc.property(
        fc.record({
          index: fc.nat(99),
          label,
          usage,
          type: fc.nat(0xff),
          subtype: fc.nat(0xff),
          offset: fc.nat(0xffffffff),
          size: fc.nat(0xffffffff),
        }),
        gap,
        gap,
        (row, g1, g2) => {
          const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
          const text = `${row.index} ${row.label}${g1}${row.usage}${g2}${hex(row.type, 2)} ${hex(row.subtype, 2)} ${hex(row.offset, 8)} ${hex(row.size, 8)}`;
          expect(parsePartitionEntry(text)).toEqual(row);
        },
      ),
      { numRuns: 200 },
    );
    // "abc" is the usage, not a usage "a" and a type "bc".
    expect(parsePartitionEntry('0 x abc 01 02 00009000 00006000')?.usage).toBe('abc');
  });

  it('refuses a garbled row of any length (no regex backtracking blow-up)', () => {
    // Long runs of blanks, as a baud-rate mismatch or a cut line gives: the old pattern took
    // 10 s for a 3 kB line, growing with the cube of its length, so this 30 kB one would hang
    // for hours and hit the suite's per-test limit. No wall-clock assertion: that limit is the
    // hang catcher, speed is not a test's to judge.
    const row = `0 a${' '.repeat(15000)}b${' '.repeat(15000)}x`;
    expect(parsePartitionEntry(row)).toBeUndefined();
    const { events } = parseBootLog(`I (1) boot: Partition Table:\nI (2) boot: ${row}\n`);
    expect(events.map((e) => e.kind)).toEqual(['log', 'log']);
  });

  it('reads backtraces, corrupted ones and the v4 form without a space', () => {
    const bt = parseBacktrace('Backtrace: 0x400e14ed:0x3ffb5030 0x400d0802:0x3ffb5050');
    expect(bt?.frames).toEqual([
      { pc: 0x400e14ed, sp: 0x3ffb5030 },
      { pc: 0x400d0802, sp: 0x3ffb5050 },
    ]);
    expect(bt?.corrupted).toBe(false);
    expect(
      parseBacktrace('Backtrace:0x4008e6c0:0x3ffc1780 0x400d2138:0x3ffc17c0 |<-CORRUPTED'),
    ).toMatchObject({
      corrupted: true,
      continues: false,
    });
    expect(parseBacktrace('Backtrace: 0x4008e6c0:0x3ffc1780 |<-CONTINUES')?.continues).toBe(true);
  });

  it('reads Guru Meditation, abort() and assert() lines', () => {
    expect(
      parsePanicLine("Guru Meditation Error: Core  1 panic'ed (Interrupt wdt timeout on CPU1). "),
    ).toMatchObject({ core: 1, reason: 'Interrupt wdt timeout on CPU1', description: '' });
    expect(parsePanicLine('abort() was called at PC 0x400d2138 on core 0')).toMatchObject({
      reason: 'abort',
      core: 0,
      pc: 0x400d2138,
    });
    expect(parsePanicLine('assert failed: app_main main.c:12 (ret == ESP_OK)')).toMatchObject({
      reason: 'assert',
      description: 'app_main main.c:12 (ret == ESP_OK)',
    });
  });
});

describe('BootLogParser on ESP-IDF v4.4 (ESP32, cpu_start) output: an OTA update', () => {
  const { events, boots } = parseBootLog(fixture('v44-esp32-ota'));

  it('splits the capture into the two boots and reads their reset reasons', () => {
    expect(boots).toHaveLength(2);
    expect(boots[0]?.rom?.banner).toBe('ets Jun  8 2016 00:22:57');
    expect(boots[0]?.rom?.chip).toBeUndefined();
    expect(boots[0]?.reset).toMatchObject({
      reason: 'POWERON_RESET',
      bootMode: 'SPI_FAST_FLASH_BOOT',
    });
    expect(boots[1]?.reset).toMatchObject({
      reason: 'SW_CPU_RESET',
      code: 0xc,
      category: 'software',
    });
    expect(boots.map((b) => b.bootloaderIdfVersion)).toEqual(['v4.4.8', 'v4.4.8']);
  });

  it('reads the partition table once per boot', () => {
    const tables = ofKind(events, 'partitionTable');
    expect(tables).toHaveLength(2);
    expect(tables[0]?.entries.map((e) => [e.label, e.usage, e.offset])).toEqual([
      ['nvs', 'WiFi data', 0x9000],
      ['otadata', 'OTA data', 0xd000],
      ['phy_init', 'RF data', 0xf000],
      ['ota_0', 'OTA app', 0x10000],
      ['ota_1', 'OTA app', 0x190000],
    ]);
    expect(tables[0]?.entries[4]).toMatchObject({ type: 0, subtype: 0x11, size: 0x180000 });
  });

  it('sees the slot change from ota_0 to ota_1 and the new version', () => {
    expect(ofKind(events, 'bootApp').map((e) => e.offset)).toEqual([0x10000, 0x190000]);
    expect(boots.map((b) => b.app?.partition?.label)).toEqual(['ota_0', 'ota_1']);
    expect(boots[0]?.appInfo).toEqual({
      project: 'ble_ota_demo',
      version: '1.0.0',
      compileTime: 'Nov 24 2026 10:12:30',
      elfSha256: '9f3c0e5b8a2d41c7',
      idfVersion: 'v4.4.8',
    });
    expect(boots[1]?.appInfo?.version).toBe('1.0.1-hil.20261124T221500Z');
    expect(ofKind(events, 'appStart')).toHaveLength(2);
  });

  it('keeps every ESP_LOG line as a log event, colour codes removed', () => {
    const logs = ofKind(events, 'log');
    expect(logs.find((l) => l.message.startsWith('self-test passed'))).toMatchObject({
      level: 'I',
      tag: 'ble_ota',
      timestampMs: 713,
      line: 'I (713) ble_ota: self-test passed, marking the app valid',
    });
    expect(logs.filter((l) => l.level === 'W').map((l) => l.tag)).toEqual(['ble_ota', 'ble_ota']);
    expect(events.every((e) => !e.line.includes('\x1b') && !e.line.includes('\r'))).toBe(true);
  });

  it('finds no failure in a clean update', () => {
    for (const b of boots) {
      expect(b.panics).toEqual([]);
      expect(b.notBootable).toEqual([]);
      expect(b.imageErrors).toEqual([]);
      expect(b.rollback).toBeUndefined();
    }
  });
});

describe('BootLogParser on ESP-IDF v5.3 (ESP32-S3, app_init) output: a panic, a core dump, a rollback', () => {
  const { events, boots } = parseBootLog(fixture('v53-esp32s3-panic'));

  it('reads the ESP-ROM banner and the newer reset names', () => {
    expect(boots).toHaveLength(2);
    expect(boots[0]?.rom).toMatchObject({ banner: 'ESP-ROM:esp32s3-20210327', chip: 'esp32s3' });
    expect(boots[0]?.reset).toMatchObject({ reason: 'POWERON', bootStrapping: 8 });
    expect(boots[1]?.reset).toMatchObject({ reason: 'RTC_SW_CPU_RST', category: 'software' });
  });

  it('reads the app_init banner of v5.3', () => {
    expect(boots[0]?.appInfo).toEqual({
      project: 'ble_ota_demo',
      version: '2.0.0-hil.20261124T221012Z',
      compileTime: 'Nov 24 2026 22:10:01',
      elfSha256: '61c5d1f0e84b2a93',
      idfVersion: 'v5.3.1',
    });
    expect(ofKind(events, 'appMain')).toHaveLength(2);
  });

  it('reads the panic, its backtrace, the core dump to flash and the reboot', () => {
    const [first] = boots;
    expect(first?.panics).toHaveLength(1);
    expect(first?.panics[0]).toMatchObject({
      core: 0,
      reason: 'LoadProhibited',
      description: 'Exception was unhandled.',
    });
    expect(first?.backtraces[0]?.frames).toHaveLength(4);
    expect(first?.backtraces[0]?.frames[0]).toEqual({ pc: 0x42009a2b, sp: 0x3fcab6b0 });
    expect(first?.coreDump.map((c) => [c.phase, c.target])).toEqual([
      ['saving', 'flash'],
      ['saved', 'flash'],
    ]);
    expect(first?.rebooting).toBe(true);
    // The panic came after the app started: the register dump lines are not log lines.
    const kinds = first?.events.map((e) => e.kind) ?? [];
    expect(kinds.indexOf('panic')).toBeGreaterThan(kinds.indexOf('appMain'));
  });

  it('shows the bootloader going back to ota_0 and the old version after the unconfirmed image crashed', () => {
    expect(boots.map((b) => b.app?.partition?.label)).toEqual(['ota_1', 'ota_0']);
    expect(boots[1]?.appInfo?.version).toBe('1.9.0');
    expect(boots[1]?.panics).toEqual([]);
  });
});

describe('BootLogParser on ESP-IDF v5.1 (ESP32-C3, cpu_start) output: rollback and a corrupt image', () => {
  const { events, boots } = parseBootLog(fixture('v51-esp32c3-rollback'));

  it('reads the app-requested rollback', () => {
    expect(boots).toHaveLength(3);
    expect(boots[0]?.appInfo?.version).toBe('1.1.0-selftest-broken');
    expect(boots[0]?.rollback).toMatchObject({
      possible: true,
      message: 'Rollback to previously worked partition. Restart.',
    });
    expect(boots[1]?.reset?.reason).toBe('RTC_SW_CPU_RST');
    expect(boots.map((b) => b.app?.offset)).toEqual([0x110000, 0x10000, 0x10000]);
    expect(boots[1]?.appInfo?.version).toBe('1.0.0');
  });

  it('reads the bootloader refusing a corrupt slot and falling back', () => {
    const third = boots[2];
    expect(third?.reset?.category).toBe('powerOn');
    expect(third?.imageErrors).toEqual(['Checksum failed. Calculated 0xc7 read 0x43']);
    expect(third?.notBootable).toEqual([1]);
    expect(third?.app?.partition?.label).toBe('ota_0');
    expect(ofKind(events, 'imageInvalid')).toHaveLength(1);
  });

  it('ends the application-information block at the first line that is not a field', () => {
    // v5.1 prints "Min chip rev" under the same cpu_start tag right after ESP-IDF.
    expect(ofKind(events, 'appInfo')).toHaveLength(3);
    expect(boots[2]?.appInfo?.elfSha256).toBe('77c1e02b9d4a8f13');
  });
});

describe('BootLogParser fed incrementally', () => {
  it('gives the same events for a capture cut into arbitrary chunks', () => {
    const text = fixture('v51-esp32c3-rollback');
    const whole = parseBootLog(text).events;
    const parser = new BootLogParser();
    for (let i = 0; i < text.length; i += 37) parser.pushText(text.slice(i, i + 37));
    parser.end();
    expect(parser.events).toEqual(whole);
  });

  it('emits a partial application-information block when the app prints fewer fields', () => {
    const parser = new BootLogParser();
    parser.pushLine('I (272) app_init: Application information:');
    parser.pushLine('I (292) app_init: ELF file SHA256:  61c5d1f0e84b2a93...');
    const events = parser.pushLine('I (298) app_init: ESP-IDF:          v5.3.1');
    expect(ofKind(events, 'appInfo')).toEqual([
      {
        kind: 'appInfo',
        line: 'I (298) app_init: ESP-IDF:          v5.3.1',
        elfSha256: '61c5d1f0e84b2a93',
        idfVersion: 'v5.3.1',
      },
    ]);
  });

  it('reads the debug-level otadata transitions, a refused rollback and OTA errors', () => {
    const parser = new BootLogParser();
    const e = [
      'D (117) boot: otadata[1] is marking as ABORTED\x1b[0m',
      'D (118) boot: otadata[0] is selected as new and marked PENDING_VERIFY state\x1b[0m',
      '\x1b[0;31mE (2402) esp_ota_ops: Rollback is not possible, do not have any suitable apps in slots\x1b[0m',
      '\x1b[0;31mE (3000) esp_ota_ops: OTA image has invalid magic byte (expected 0xE9, saw 0x00)\x1b[0m',
      '\x1b[0;31mE (40) boot: ota data partition invalid, falling back to factory\x1b[0m',
      '\x1b[0;31mE (41) esp_image: image at 0x110000 has invalid magic byte (nothing flashed here?)\x1b[0m',
      '\x1b[0;31mE (42) boot: Factory app partition is not bootable\x1b[0m',
      '\x1b[0;31mE (43) boot: No bootable app partitions in the partition table\x1b[0m',
    ].flatMap((l) => parser.pushLine(l).filter((x) => x.kind !== 'log'));
    expect(e.map((x) => x.kind)).toEqual([
      'otadataState',
      'otadataState',
      'rollback',
      'otaError',
      'otadataInvalid',
      'imageInvalid',
      'appNotBootable',
      'noBootableApp',
    ]);
    expect(e[0]).toMatchObject({ index: 1, state: 'ABORTED' });
    expect(e[1]).toMatchObject({ index: 0, state: 'PENDING_VERIFY' });
    expect(e[2]).toMatchObject({ possible: false });
    expect(e[5]).toMatchObject({ offset: 0x110000 });
    expect(e[6]).toMatchObject({ slot: 'factory' });
  });

  it('reads a UART core dump with its base64 body, a task watchdog and CPU halted', () => {
    const parser = new BootLogParser();
    const e = [
      "Guru Meditation Error: Core  0 panic'ed (IllegalInstruction). Exception was unhandled.",
      '\x1b[0;32mI (3141) esp_core_dump_uart: Print core dump to uart...\x1b[0m',
      '================= CORE DUMP START =================',
      'gDoAAAQAAAAMAAAAZAEAAA==',
      'AAAAAAAAAAAAAAAAAAAAAA==',
      '================= CORE DUMP END =================',
      '\x1b[0;32mI (3160) esp_core_dump_uart: Core dump has been written to uart.\x1b[0m',
      '\x1b[0;32mI (12) esp_core_dump_flash: Found core dump 10788 bytes in flash @ 0x310000\x1b[0m',
      '\x1b[0;31mE (5312) task_wdt: Task watchdog got triggered. The following tasks did not reset the watchdog in time:\x1b[0m',
      'CPU halted.',
    ].flatMap((l) => parser.pushLine(`${l}\r\n`).filter((x) => x.kind !== 'log'));
    expect(e.map((x) => (x.kind === 'coreDump' ? `coreDump:${x.phase}` : x.kind))).toEqual([
      'panic',
      'coreDump:saving',
      'coreDump:dataStart',
      'coreDump:dataEnd',
      'coreDump:saved',
      'coreDump:found',
      'taskWatchdog',
      'halted',
    ]);
    expect(e[3]).toMatchObject({
      data: 'gDoAAAQAAAAMAAAAZAEAAA==AAAAAAAAAAAAAAAAAAAAAA==',
      target: 'uart',
    });
    expect(e[5]).toMatchObject({ size: 10788, offset: 0x310000, target: 'flash' });
  });

  it('finds the ROM banner and reset line behind the garbage a reset leaves on the line', () => {
    const { boots } = parseBootLog(
      '\x00\xff\xfeets Jun  8 2016 00:22:57\r\n\r\n\xffrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n' +
        '\x00ESP-ROM:esp32c3-api1-20210207\r\nrst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)\r\n',
    );
    expect(boots.map((b) => [b.rom?.banner, b.rom?.chip, b.reset?.reason])).toEqual([
      ['ets Jun  8 2016 00:22:57', undefined, 'POWERON_RESET'],
      ['ESP-ROM:esp32c3-api1-20210207', 'esp32c3', 'POWERON'],
    ]);
  });

  it('counts a reset line that follows app output as a new boot even without a ROM banner', () => {
    const { boots } = parseBootLog(
      [
        'I (100) app: running',
        'rst:0x7 (TG0WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)',
        'I (29) boot: ESP-IDF v4.4.8 2nd stage bootloader',
      ].join('\r\n'),
    );
    expect(boots).toHaveLength(2);
    expect(boots[1]?.reset?.category).toBe('watchdog');
    expect(boots[1]?.bootloaderIdfVersion).toBe('v4.4.8');
  });
});

// The same captures as a person sees them through a serial monitor: each line behind the
// monitor's timestamp, the monitor's own `--- ` lines in between.
const withPrefix = (text: string, prefix: (i: number) => string) =>
  text
    .split('\r\n')
    .map((l, i) => (l === '' ? l : `${prefix(i)}${l}`))
    .join('\r\n');
const clock = (i: number) => {
  const ms = 37_000 + i * 7;
  const s = Math.floor(ms / 1000);
  return `19:${String(37 + Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}.${String(ms % 1000).padStart(3, '0')}`;
};
const summary = (boots: ReturnType<typeof parseBootLog>['boots']) =>
  boots.map((b) => ({
    chip: b.chip,
    reset: b.reset?.reason,
    app: b.app?.partition?.label,
    version: b.appInfo?.version,
    rollback: b.rollback?.possible,
    panics: b.panics.map((p) => p.reason),
  }));

describe('BootLogParser behind a serial monitor', () => {
  it('reads a rollback behind PlatformIO\'s "time" filter (19:37:58.731 > I (...)) as without it', () => {
    const plain = parseBootLog(fixture('v51-esp32c3-rollback'));
    const pio = parseBootLog(withPrefix(fixture('v51-esp32c3-rollback'), (i) => `${clock(i)} > `));
    expect(summary(pio.boots)).toEqual(summary(plain.boots));
    expect(pio.boots.some((b) => b.rollback?.possible)).toBe(true);
    expect(pio.events.map((e) => e.kind)).toEqual(plain.events.map((e) => e.kind));
    expect(pio.events.map((e) => e.line)).toEqual(plain.events.map((e) => e.line));
  });

  it('reads a boot loop behind bracketed times ([14:30:36]E (...)): every boot, panic and reboot', () => {
    const plain = parseBootLog(fixture('v53-esp32s3-panic'));
    const loop = fixture('v53-esp32s3-panic').repeat(3);
    const bracketed = parseBootLog(
      withPrefix(
        loop,
        (i) =>
          `[14:${String(30 + Math.floor(i / 60)).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}]`,
      ),
    );
    expect(bracketed.boots).toHaveLength(plain.boots.length * 3);
    expect(summary(bracketed.boots)).toEqual([
      ...summary(plain.boots),
      ...summary(plain.boots),
      ...summary(plain.boots),
    ]);
    expect(bracketed.boots.flatMap((b) => b.panics)).toHaveLength(
      plain.boots.flatMap((b) => b.panics).length * 3,
    );
  });

  it("keeps the application-information block whole across idf_monitor's own lines", () => {
    const text = [
      '--- idf_monitor on /dev/ttyUSB0 115200 ---',
      '--- Quit: Ctrl+] | Menu: Ctrl+T | Help: Ctrl+T followed by Ctrl+H ---',
      '\x1b[0;32mI (267) cpu_start: Application information:\x1b[0m',
      '\x1b[0;32mI (270) cpu_start: Project name:     ble_ota_demo\x1b[0m',
      '\x1b[0;33m--- Warning: Writing to serial is timing out. Please make sure that your application supports an interactive console and that you have picked the correct console for serial communication.\x1b[0m',
      '\x1b[0;32mI (275) cpu_start: App version:      1.2.0\x1b[0m',
      '\x1b[0;32mI (281) cpu_start: Compile time:     Nov 24 2026 22:20:07\x1b[0m',
      '--- 0x400d1c5a: app_main at /work/firmware/main/main.c:42',
      '\x1b[0;32mI (287) cpu_start: ELF file SHA256:  3ab9e0c7d1f25468...\x1b[0m',
      '\x1b[0;32mI (293) cpu_start: ESP-IDF:          v5.1.4\x1b[0m',
      '\x1b[0;32mI (298) cpu_start: Min chip rev:     v0.3\x1b[0m',
    ].join('\r\n');
    const { events, boots } = parseBootLog(text);
    expect(ofKind(events, 'appInfo')).toEqual([
      expect.objectContaining({
        project: 'ble_ota_demo',
        version: '1.2.0',
        compileTime: 'Nov 24 2026 22:20:07',
        elfSha256: '3ab9e0c7d1f25468',
        idfVersion: 'v5.1.4',
      }),
    ]);
    expect(events.some((e) => e.line.startsWith('---'))).toBe(false);
    expect(boots[0]?.appInfo?.version).toBe('1.2.0');
  });

  it('keeps the application-information block whole across foreign lines: a monitor warning, another task', () => {
    // idf_monitor prints some warnings without its `--- ` prefix; another task can log under its
    // own tag between two ESP_LOG lines of app_init.
    const text = [
      'ESP-ROM:esp32s3-20210327',
      '\x1b[0;32mI (272) app_init: Application information:\x1b[0m',
      '\x1b[0;32mI (275) app_init: Project name:     ble-ota-app\x1b[0m',
      '\x1b[0;33mWarning: ELF file not found: build/ble-ota-app.elf; addresses will not be decoded\x1b[0m',
      '\x1b[0;32mI (280) app_init: App version:      2.0.0\x1b[0m',
      '\x1b[0;33mW (281) ble_ota: another task logs between the fields\x1b[0m',
      '\x1b[0;32mI (286) app_init: Compile time:     Nov 24 2026 22:10:01\x1b[0m',
      'some bytes a noisy line left',
      '\x1b[0;32mI (292) app_init: ELF file SHA256:  61c5d1f0e84b2a93...\x1b[0m',
      '\x1b[0;32mI (298) app_init: ESP-IDF:          v5.3.1\x1b[0m',
    ].join('\r\n');
    const { events, boots } = parseBootLog(text);
    expect(ofKind(events, 'appInfo')).toEqual([
      {
        kind: 'appInfo',
        line: 'I (298) app_init: ESP-IDF:          v5.3.1',
        project: 'ble-ota-app',
        version: '2.0.0',
        compileTime: 'Nov 24 2026 22:10:01',
        elfSha256: '61c5d1f0e84b2a93',
        idfVersion: 'v5.3.1',
      },
    ]);
    expect(boots).toHaveLength(1);
    expect(boots[0]?.appInfo).toMatchObject({ project: 'ble-ota-app', version: '2.0.0' });
    // The foreign ESP_LOG line is still an event of its own.
    expect(ofKind(events, 'log').map((e) => e.tag)).toContain('ble_ota');
  });

  it('ends a cut-short application-information block at the next boot, in the boot it belongs to', () => {
    const { events, boots } = parseBootLog(
      [
        'ESP-ROM:esp32s3-20210327',
        'I (272) app_init: Application information:',
        'I (275) app_init: Project name:     ble-ota-app',
        'I (280) app_init: App version:      2.0.0',
        'ELF file not found: build/ble-ota-app.elf',
        'ESP-ROM:esp32s3-20210327',
        'rst:0xc (RTC_SW_CPU_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)',
        'I (272) app_init: Application information:',
        'I (275) app_init: Project name:     ble-ota-app',
        'I (280) app_init: App version:      2.0.1',
        "Guru Meditation Error: Core  0 panic'ed (LoadProhibited). Exception was unhandled.",
      ].join('\r\n'),
    );
    expect(events.map((e) => e.kind).filter((k) => k !== 'log')).toEqual([
      'rom',
      'appInfo',
      'rom',
      'reset',
      'appInfo',
      'panic',
    ]);
    expect(boots.map((b) => b.appInfo?.version)).toEqual(['2.0.0', '2.0.1']);
  });

  it('names the chip of every boot, the classic ESP32 (whose ROM names none) from boot.esp32', () => {
    const chips = (name: string) => parseBootLog(fixture(name)).boots.map((b) => b.chip);
    expect(new Set(chips('v44-esp32-ota'))).toEqual(new Set(['esp32']));
    expect(new Set(chips('v51-esp32c3-rollback'))).toEqual(new Set(['esp32c3']));
    expect(new Set(chips('v53-esp32s3-panic'))).toEqual(new Set(['esp32s3']));
    // The ESP32-C2's ROM calls it by its die name; its bootloader by its target.
    const c2 = parseBootLog(
      'ESP-ROM:esp8684-api1-20211015\r\nrst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)\r\n',
    );
    expect(c2.boots[0]?.chip).toBe('esp32c2');
  });

  it('turns the OTA success lines of ESP-IDF examples and of this firmware into events', () => {
    const { events, boots } = parseBootLog(
      [
        '\x1b[0;32mI (8921) simple_ota_example: OTA Succeed, Rebooting...\x1b[0m',
        '12:00:01.002 > \x1b[0;32mI (9120) advanced_https_ota_example: ESP_HTTPS_OTA upgrade successful. Rebooting ...\x1b[0m',
        'I (84012) ble_ota: OTA done: 499936 bytes in 1976 packets, 84012 ms, boot slot ota_1',
        'I (3811) ble_ota: v2 OTA done: 1048576 bytes (412003 sent), 3811 ms, boot slot ota_0',
        'E (100) ble_ota: OTA done: nothing (not info level, not a success)',
      ].join('\r\n'),
    );
    expect(ofKind(events, 'otaSuccess').map((e) => [e.tag, e.message.slice(0, 22)])).toEqual([
      ['simple_ota_example', 'OTA Succeed, Rebooting'],
      ['advanced_https_ota_example', 'ESP_HTTPS_OTA upgrade '],
      ['ble_ota', 'OTA done: 499936 bytes'],
      ['ble_ota', 'v2 OTA done: 1048576 b'],
    ]);
    expect(boots.at(-1)?.otaSuccess?.message).toMatch(/^v2 OTA done/);
  });

  it('reads an ESP_LOG line behind each monitor prefix form', () => {
    for (const prefix of [
      '19:37:58.731 > ',
      '[14:30:36]',
      '[14:30:36.123] ',
      '2026-12-03 11:42:02 ',
      '[2026-12-03T11:42:02.123] ',
    ]) {
      expect(parseLogLine(`${prefix}\x1b[0;31mE (2392) ble_ota: self-test failed\x1b[0m`)).toEqual({
        level: 'E',
        timestampMs: 2392,
        tag: 'ble_ota',
        message: 'self-test failed',
      });
    }
  });
});
