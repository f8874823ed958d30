// Parser for the console output of an ESP32 running an ESP-IDF application: the ROM loader,
// the second-stage bootloader, the app's startup banner, ESP_LOG lines, the panic handler
// and the core dump writer. The formats come from ESP-IDF v4.4 and v5.x sources
// (bootloader_utility.c, esp_image_format.c, startup.c / esp_app_desc.c, panic.c,
// debug_helpers.c, abort.c, espcoredump) and the mask ROM's own lines.

import { stripAnsi } from './text.ts';

/** ESP_LOG level letter as printed: E, W, I, D, V. */
export type LogLevel = 'E' | 'W' | 'I' | 'D' | 'V';

export interface LogLine {
  level: LogLevel;
  /**
   * Milliseconds: since boot for the default `(1234)` form; since midnight for the
   * `(12:34:56.789)` form of CONFIG_LOG_TIMESTAMP_SOURCE_SYSTEM.
   */
  timestampMs: number;
  tag: string;
  message: string;
}

/** What caused the last reset, grouped from the ROM's chip-specific reason names. */
export type ResetCategory =
  | 'powerOn'
  | 'software'
  | 'watchdog'
  | 'deepSleep'
  | 'brownout'
  | 'usb'
  | 'other';

export interface PartitionEntry {
  index: number;
  label: string;
  /** The bootloader's own description: "OTA app", "factory app", "OTA data", "WiFi data", ... */
  usage: string;
  type: number;
  subtype: number;
  offset: number;
  size: number;
}

export interface AppInfo {
  project?: string;
  version?: string;
  compileTime?: string;
  /** Only the prefix the app prints (16 hex digits by default; CONFIG_APP_RETRIEVE_LEN_ELF_SHA). */
  elfSha256: string;
  idfVersion: string;
  secureVersion?: number;
}

export interface BacktraceFrame {
  pc: number;
  sp: number;
}

export type CoreDumpPhase = 'saving' | 'saved' | 'dataStart' | 'dataEnd' | 'found' | 'error';

/** Every event carries the console line that completed it, colour codes and a monitor's timestamp removed. */
export type ConsoleEvent = { line: string } & (
  | ({ kind: 'log' } & LogLine)
  | {
      /** First ROM line: `ets Jun  8 2016 00:22:57` (ESP32) or `ESP-ROM:esp32s3-20210327`. */
      kind: 'rom';
      banner: string;
      /** From `ESP-ROM:<chip>-<date>`; the ESP32's `ets` banner names no chip. */
      chip?: string;
    }
  | {
      kind: 'reset';
      /** Reset cause number as the ROM prints it (`rst:0xc`). */
      code: number;
      /** Chip-specific name: POWERON_RESET, SW_CPU_RESET, RTC_SW_CPU_RST, TG0WDT_SYS_RESET, ... */
      reason: string;
      category: ResetCategory;
      /** Strapping value (`boot:0x13`), when printed. */
      bootStrapping?: number;
      /** SPI_FAST_FLASH_BOOT for a normal boot; DOWNLOAD(...) when IO0 was held low. */
      bootMode?: string;
    }
  | { kind: 'bootloader'; idfVersion: string }
  | { kind: 'partitionTable'; entries: PartitionEntry[] }
  | { kind: 'bootApp'; offset: number; fast: boolean }
  | { kind: 'appNotBootable'; slot: number | 'factory' | 'test' }
  | { kind: 'imageInvalid'; message: string; offset?: number }
  | { kind: 'otadataInvalid'; message: string }
  | { kind: 'otadataState'; index: number; state: 'ABORTED' | 'PENDING_VERIFY' }
  | { kind: 'noBootableApp' }
  | ({ kind: 'appInfo' } & AppInfo)
  | { kind: 'appStart' }
  | { kind: 'appMain' }
  | {
      /** esp_ota_ops' own rollback: `esp_ota_mark_app_invalid_rollback_and_reboot()`. */
      kind: 'rollback';
      possible: boolean;
      message: string;
    }
  | { kind: 'otaError'; message: string }
  | {
      /**
       * An update reported as written and about to boot: ESP-IDF's simple_ota_example
       * ("OTA Succeed, Rebooting..."), advanced_https_ota_example ("ESP_HTTPS_OTA upgrade
       * successful"), this firmware's ble_ota ("OTA done: ...", "v2 OTA done: ...").
       */
      kind: 'otaSuccess';
      tag: string;
      message: string;
    }
  | {
      kind: 'panic';
      /** Exception name (`LoadProhibited`, `Interrupt wdt timeout on CPU0`), or `abort`, `assert`. */
      reason: string;
      core?: number;
      description: string;
      /** For abort(): where it was called. */
      pc?: number;
    }
  | { kind: 'backtrace'; frames: BacktraceFrame[]; corrupted: boolean; continues: boolean }
  | {
      kind: 'coreDump';
      phase: CoreDumpPhase;
      target?: 'flash' | 'uart';
      message: string;
      /** dataEnd: the base64 text printed between the START and END markers. */
      data?: string;
      /** found: size and flash address of a stored core dump. */
      size?: number;
      offset?: number;
    }
  | { kind: 'taskWatchdog'; message: string }
  | { kind: 'brownout' }
  | { kind: 'rebooting' }
  | { kind: 'halted' }
);

export type ConsoleEventKind = ConsoleEvent['kind'];
export type EventOf<K extends ConsoleEventKind> = Extract<ConsoleEvent, { kind: K }>;

const LOG_LINE = /^([EWIDV]) \((\d+|\d{1,2}:\d{2}:\d{2}\.\d{3})\) ([^:]*?): ?(.*)$/;

// What serial monitors put in front of each line they show: PlatformIO's `time` filter
// (`19:37:58.731 > `), bracketed times of other terminals (`[14:30:36]`, `[14:30:36.123] `), and
// idf_monitor's --timestamps or ISO dates (`2026-12-03 11:42:02 `, `[2026-12-03T11:42:02.123] `).
const MONITOR_PREFIX =
  /^(?:\d{1,2}:\d{2}:\d{2}(?:[.,]\d{1,6})? > |\[\d{1,2}:\d{2}:\d{2}(?:[.,]\d{1,6})?\] ?|\[?\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,6})?\]? )/;

/** The line as the device printed it: without a serial monitor's timestamp prefix, if any. */
export function stripMonitorPrefix(line: string): string {
  return line.replace(MONITOR_PREFIX, '');
}

/**
 * A serial monitor's own line, not the device's: idf_monitor and PlatformIO print theirs behind
 * `--- ` (`--- idf_monitor on /dev/ttyUSB0 115200 ---`, `--- 0x400d1c5a: app_main at main.c:12`).
 */
export function isMonitorLine(line: string): boolean {
  return line.startsWith('--- ');
}

const OTA_SUCCESS = [
  /^OTA Succeed, Rebooting/,
  /^ESP_HTTPS_OTA upgrade successful/,
  /^(?:v2 )?OTA done: /,
] as const;

/**
 * Parses one ESP_LOG line (`I (1234) tag: message`), with or without colour codes or a serial
 * monitor's timestamp in front.
 */
export function parseLogLine(line: string): LogLine | undefined {
  return matchLogLine(stripMonitorPrefix(stripAnsi(line).replace(/[\r\n]+$/, '')));
}

/** parseLogLine for a line already without colour codes, line end and monitor prefix. */
function matchLogLine(clean: string): LogLine | undefined {
  const m = LOG_LINE.exec(clean);
  if (!m) return undefined;
  const [, level, stamp, tag, message] = m as unknown as [string, LogLevel, string, string, string];
  return { level, timestampMs: parseTimestamp(stamp), tag, message };
}

function parseTimestamp(stamp: string): number {
  if (!stamp.includes(':')) return Number(stamp);
  const [h, m, s] = stamp.split(':').map(Number) as [number, number, number];
  return Math.round(((h * 60 + m) * 60 + s) * 1000);
}

const RESET_LINE = /rst:0x([0-9a-f]+) \(([^)]*)\)(?:,\s*boot:0x([0-9a-f]+) \(([^)]*)\))?/i;

/** Parses the ROM's `rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)` line. */
export function parseResetLine(line: string): EventOf<'reset'> | undefined {
  const clean = stripAnsi(line).trimEnd();
  const m = RESET_LINE.exec(clean);
  if (!m) return undefined;
  const reason = m[2] ?? '';
  const event: EventOf<'reset'> = {
    kind: 'reset',
    line: clean,
    code: Number.parseInt(m[1] ?? '0', 16),
    reason,
    category: resetCategory(reason),
  };
  if (m[3] !== undefined) event.bootStrapping = Number.parseInt(m[3], 16);
  if (m[4] !== undefined) event.bootMode = m[4];
  return event;
}

/** Groups the ROM's reset reason names, which differ between chips, by cause. */
export function resetCategory(reason: string): ResetCategory {
  const r = reason.toUpperCase();
  if (r.startsWith('POWERON') || r === 'POWER_ON') return 'powerOn';
  if (r.includes('BROWN') || r.includes('BOD')) return 'brownout';
  if (r.includes('WDT') || r.includes('WATCHDOG')) return 'watchdog';
  if (r.includes('SLEEP')) return 'deepSleep';
  if (r.includes('USB')) return 'usb';
  if (r.includes('SW')) return 'software';
  return 'other';
}

// A row is `index label usage type subtype offset length`, the usage several words. One pattern
// for the whole row (`\s+(.+?)\s+` between label and type) backtracks in time cubic in the
// length of a blank run, seconds for a garbled 3 kB line; the fixed-width tail and the head are
// matched apart, each in linear time.
const PARTITION_TAIL = /(?<=\s)([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{8}) ([0-9a-f]{8})\s*$/i;
const PARTITION_HEAD = /^\s*(\d+) (\S+)\s+(\S.*)$/;

/** Parses one row of the bootloader's partition table listing (the message after `boot: `). */
export function parsePartitionEntry(message: string): PartitionEntry | undefined {
  const tail = PARTITION_TAIL.exec(message);
  if (!tail) return undefined;
  const head = PARTITION_HEAD.exec(message.slice(0, tail.index).trimEnd());
  if (!head) return undefined;
  return {
    index: Number(head[1]),
    label: head[2] ?? '',
    usage: head[3] ?? '',
    type: Number.parseInt(tail[1] ?? '', 16),
    subtype: Number.parseInt(tail[2] ?? '', 16),
    offset: Number.parseInt(tail[3] ?? '', 16),
    size: Number.parseInt(tail[4] ?? '', 16),
  };
}

const BACKTRACE = /Backtrace:\s*((?:0x[0-9a-f]+:0x[0-9a-f]+\s*)*)(\|<-CORRUPTED|\|<-CONTINUES)?/i;

/** Parses the panic handler's `Backtrace: 0xPC:0xSP ...` line. */
export function parseBacktrace(line: string): EventOf<'backtrace'> | undefined {
  const clean = stripAnsi(line).trimEnd();
  const m = BACKTRACE.exec(clean);
  if (!m) return undefined;
  const frames = [...(m[1] ?? '').matchAll(/0x([0-9a-f]+):0x([0-9a-f]+)/gi)].map((f) => ({
    pc: Number.parseInt(f[1] ?? '', 16),
    sp: Number.parseInt(f[2] ?? '', 16),
  }));
  return {
    kind: 'backtrace',
    line: clean,
    frames,
    corrupted: m[2] === '|<-CORRUPTED',
    continues: m[2] === '|<-CONTINUES',
  };
}

const GURU = /Guru Meditation Error: Core\s+(\d+) panic'ed \(([^)]*)\)\.?\s*(.*)$/;
const ABORT = /abort\(\) was called at PC 0x([0-9a-f]+) on core (\d+)/i;
const ASSERT = /^assert failed: (.*)$/;

/** Parses the panic handler's first line, abort() and assert() messages. */
export function parsePanicLine(line: string): EventOf<'panic'> | undefined {
  const clean = stripAnsi(line).trimEnd();
  let m = GURU.exec(clean);
  if (m) {
    return {
      kind: 'panic',
      line: clean,
      core: Number(m[1]),
      reason: m[2] ?? '',
      description: (m[3] ?? '').trim(),
    };
  }
  m = ABORT.exec(clean);
  if (m) {
    return {
      kind: 'panic',
      line: clean,
      reason: 'abort',
      core: Number(m[2]),
      pc: Number.parseInt(m[1] ?? '', 16),
      description: clean.slice(m.index).trim(),
    };
  }
  m = ASSERT.exec(clean);
  if (m) return { kind: 'panic', line: clean, reason: 'assert', description: (m[1] ?? '').trim() };
  return undefined;
}

const APP_INFO_TAGS = new Set(['cpu_start', 'app_init']);
const APP_INFO_FIELD =
  /^(Project name|App version|Secure version|Compile time|ELF file SHA256|ESP-IDF):\s*(.*?)\s*$/;
const CORE_DUMP_MARKER = /^=+ CORE DUMP (START|END) =+$/;

/** Boot-by-boot summary of what the console showed, built by {@link BootLogParser}. */
export interface BootRecord {
  rom?: EventOf<'rom'>;
  reset?: EventOf<'reset'>;
  bootloaderIdfVersion?: string;
  partitionTable?: PartitionEntry[];
  /** The app the bootloader started, with its partition when the table was seen. */
  app?: { offset: number; partition?: PartitionEntry };
  appInfo?: AppInfo;
  notBootable: Array<number | 'factory' | 'test'>;
  imageErrors: string[];
  rollback?: EventOf<'rollback'>;
  /**
   * The chip, as the bootloader's `boot.<chip>` tag names it (`esp32`, `esp32c3`), else the
   * ESP-ROM banner (`ESP-ROM:esp32s3-...`; the classic ESP32's `ets` banner names none).
   */
  chip?: string;
  /** The app said it wrote an update and is about to restart into it. */
  otaSuccess?: EventOf<'otaSuccess'>;
  panics: EventOf<'panic'>[];
  backtraces: EventOf<'backtrace'>[];
  coreDump: EventOf<'coreDump'>[];
  rebooting: boolean;
  /** Every event of this boot, in order. */
  events: ConsoleEvent[];
}

function newBoot(): BootRecord {
  return {
    notBootable: [],
    imageErrors: [],
    panics: [],
    backtraces: [],
    coreDump: [],
    rebooting: false,
    events: [],
  };
}

/**
 * Incremental parser: feed it console lines (or raw text with {@link pushText}) as they
 * arrive; each call returns the events that line completed. Multi-line blocks (partition
 * table, application information, UART core dump) become one event when they end.
 */
export class BootLogParser {
  readonly events: ConsoleEvent[] = [];
  readonly boots: BootRecord[] = [];
  private partial = '';
  private table: PartitionEntry[] | undefined;
  private appInfo: Partial<AppInfo> | undefined;
  private appInfoLine = '';
  private coreDumpData: string[] | undefined;
  private lastTable: PartitionEntry[] | undefined;

  /** The boot in progress (the last one seen); undefined before the first event. */
  get currentBoot(): BootRecord | undefined {
    return this.boots.at(-1);
  }

  /** Feeds raw console text; keeps an unfinished last line for the next call. */
  pushText(text: string): ConsoleEvent[] {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    return lines.flatMap((l) => this.pushLine(l));
  }

  /** Feeds one complete line (line ending optional; colour codes allowed). */
  pushLine(rawLine: string): ConsoleEvent[] {
    const line = stripMonitorPrefix(
      stripAnsi(rawLine)
        .replace(/[\r\n]+$/, '')
        .replace(/\r/g, ''),
    );
    // The monitor's own lines say nothing about the device and end no block.
    if (isMonitorLine(line)) return [];
    const out: ConsoleEvent[] = [];
    const emit = (e: ConsoleEvent) => out.push(e);
    const log = matchLogLine(line);
    // A line of the application-information tag that is not the next field ends the block,
    // even if the app was built to print fewer fields than usual.
    if (this.appInfo && log && APP_INFO_TAGS.has(log.tag) && !APP_INFO_FIELD.test(log.message)) {
      this.finishAppInfo(emit);
    }
    const events = this.lineEvents(line, log);
    // Lines from elsewhere (a monitor's warning without its `--- `, another task's ESP_LOG line,
    // noise) fall between the fields without ending the block; a line that moves the boot on
    // (a reset, the bootloader, a panic) ends it, before its own events, so the block stays in
    // the boot that printed it.
    if (this.appInfo && events.some((e) => e.kind !== 'log' && e.kind !== 'appInfo')) {
      this.finishAppInfo(emit);
    }
    out.push(...events);
    return this.record(out);
  }

  /** The events of one line, not yet recorded; the application-information block is the caller's. */
  private lineEvents(line: string, log: LogLine | undefined): ConsoleEvent[] {
    const out: ConsoleEvent[] = [];
    const emit = (e: ConsoleEvent) => out.push(e);
    if (this.coreDumpData && !CORE_DUMP_MARKER.test(line.trim())) {
      if (line.trim() !== '') this.coreDumpData.push(line.trim());
      return out;
    }

    if (log) {
      emit({ kind: 'log', line, ...log });
      this.onLog(log, line, emit);
      return out;
    }

    const trimmed = line.trim();
    const reset = parseResetLine(line);
    if (reset) {
      emit(reset);
      return out;
    }
    // Unanchored: a board that was just reset often prints a few garbage bytes first.
    const ets = /ets \w{3} [ \d]\d \d{4} \d\d:\d\d:\d\d/.exec(trimmed);
    if (ets) {
      emit({ kind: 'rom', line, banner: ets[0] });
      return out;
    }
    const rom = /ESP-ROM:(\S+)/.exec(trimmed);
    if (rom) {
      const event: EventOf<'rom'> = { kind: 'rom', line, banner: rom[0] };
      const chip = /^(esp[0-9a-z]+)-/i.exec(rom[1] ?? '');
      if (chip?.[1]) event.chip = chip[1];
      emit(event);
      return out;
    }
    const panic = parsePanicLine(line);
    if (panic) {
      emit(panic);
      return out;
    }
    const bt = parseBacktrace(line);
    if (bt) {
      emit(bt);
      return out;
    }
    const marker = CORE_DUMP_MARKER.exec(trimmed);
    if (marker) {
      if (marker[1] === 'START') {
        this.coreDumpData = [];
        emit({ kind: 'coreDump', line, phase: 'dataStart', target: 'uart', message: trimmed });
      } else {
        const data = (this.coreDumpData ?? []).join('');
        this.coreDumpData = undefined;
        emit({ kind: 'coreDump', line, phase: 'dataEnd', target: 'uart', message: trimmed, data });
      }
      return out;
    }
    if (trimmed === 'Rebooting...') emit({ kind: 'rebooting', line });
    else if (trimmed === 'CPU halted.') emit({ kind: 'halted', line });
    else if (trimmed === 'Brownout detector was triggered') emit({ kind: 'brownout', line });
    return out;
  }

  /** Completes blocks cut short by the end of the input (a partial line is parsed as is). */
  end(): ConsoleEvent[] {
    const out: ConsoleEvent[] = [];
    if (this.partial !== '') {
      const rest = this.partial;
      this.partial = '';
      out.push(...this.pushLine(rest));
    }
    if (this.appInfo) {
      const tail: ConsoleEvent[] = [];
      this.finishAppInfo((e) => tail.push(e));
      out.push(...this.record(tail));
    }
    return out;
  }

  private onLog(log: LogLine, line: string, emit: (e: ConsoleEvent) => void): void {
    const { tag, message, level } = log;
    if (tag === 'boot' || tag.startsWith('boot.')) {
      this.onBootloaderLog(log, line, emit);
      return;
    }
    if (APP_INFO_TAGS.has(tag)) {
      if (message === 'Application information:') {
        this.appInfo = {};
        return;
      }
      const field = APP_INFO_FIELD.exec(message);
      if (field) {
        this.appInfo ??= {};
        this.appInfoLine = line;
        this.setAppInfoField(field[1] ?? '', field[2] ?? '');
        if (field[1] === 'ESP-IDF') this.finishAppInfo(emit);
        return;
      }
      if (message === 'Pro cpu start user code') emit({ kind: 'appStart', line });
      return;
    }
    if (tag === 'main_task' && message === 'Calling app_main()') {
      emit({ kind: 'appMain', line });
      return;
    }
    if (tag === 'esp_image' && level === 'E') {
      const at = /image at 0x([0-9a-f]+)/i.exec(message);
      const event: EventOf<'imageInvalid'> = { kind: 'imageInvalid', line, message };
      if (at?.[1]) event.offset = Number.parseInt(at[1], 16);
      emit(event);
      return;
    }
    if (tag === 'esp_ota_ops') {
      if (message.startsWith('Rollback to previously worked partition')) {
        emit({ kind: 'rollback', line, possible: true, message });
      } else if (message.startsWith('Rollback is not possible')) {
        emit({ kind: 'rollback', line, possible: false, message });
      } else if (level === 'E') {
        emit({ kind: 'otaError', line, message });
      }
      return;
    }
    if (tag.startsWith('esp_core_dump')) {
      this.onCoreDumpLog(log, line, emit);
      return;
    }
    if (level === 'I' && OTA_SUCCESS.some((re) => re.test(message))) {
      emit({ kind: 'otaSuccess', line, tag, message });
      return;
    }
    if (message.startsWith('Task watchdog got triggered')) {
      emit({ kind: 'taskWatchdog', line, message });
    } else if (message.startsWith('Brownout detector was triggered')) {
      emit({ kind: 'brownout', line });
    }
  }

  private onBootloaderLog(log: LogLine, line: string, emit: (e: ConsoleEvent) => void): void {
    const { message } = log;
    if (message === 'Partition Table:') {
      this.table = [];
      return;
    }
    if (this.table) {
      if (message.startsWith('## Label')) return;
      if (message === 'End of partition table') {
        const entries = this.table;
        this.table = undefined;
        this.lastTable = entries;
        emit({ kind: 'partitionTable', line, entries });
        return;
      }
      const entry = parsePartitionEntry(message);
      if (entry) {
        this.table.push(entry);
        return;
      }
      this.table = undefined;
    }
    let m = /^ESP-IDF (\S+) 2nd stage bootloader/.exec(message);
    if (m) {
      emit({ kind: 'bootloader', line, idfVersion: m[1] ?? '' });
      return;
    }
    m = /^(Fast booting|Loaded) app from partition at offset 0x([0-9a-f]+)/i.exec(message);
    if (m) {
      emit({
        kind: 'bootApp',
        line,
        offset: Number.parseInt(m[2] ?? '', 16),
        fast: m[1] === 'Fast booting',
      });
      return;
    }
    m =
      /^(Factory app partition|Factory test app partition|OTA app partition slot (\d+)) is not bootable/.exec(
        message,
      );
    if (m) {
      const slot =
        m[2] !== undefined ? Number(m[2]) : m[1] === 'Factory app partition' ? 'factory' : 'test';
      emit({ kind: 'appNotBootable', line, slot });
      return;
    }
    m =
      /^otadata\[(\d+)\] is (?:marking as (ABORTED)|selected as new and marked (PENDING_VERIFY))/.exec(
        message,
      );
    if (m) {
      emit({
        kind: 'otadataState',
        line,
        index: Number(m[1]),
        state: m[2] ? 'ABORTED' : 'PENDING_VERIFY',
      });
      return;
    }
    if (message.startsWith('ota data partition invalid')) {
      emit({ kind: 'otadataInvalid', line, message });
    } else if (message.startsWith('No bootable app partitions')) {
      emit({ kind: 'noBootableApp', line });
    }
  }

  private onCoreDumpLog(log: LogLine, line: string, emit: (e: ConsoleEvent) => void): void {
    const { message, level, tag } = log;
    const target = tag.endsWith('_flash') ? 'flash' : tag.endsWith('_uart') ? 'uart' : undefined;
    const base = (phase: CoreDumpPhase): EventOf<'coreDump'> => {
      const e: EventOf<'coreDump'> = { kind: 'coreDump', line, phase, message };
      if (target) e.target = target;
      return e;
    };
    if (/^(Save core dump to flash|Print core dump to uart)\.\.\./.test(message)) {
      emit(base('saving'));
    } else if (/^Core dump has been (saved to flash|written to uart)/.test(message)) {
      emit(base('saved'));
    } else {
      const found = /^Found core dump (\d+) bytes in flash @ 0x([0-9a-f]+)/i.exec(message);
      if (found) {
        const e = base('found');
        e.size = Number(found[1]);
        e.offset = Number.parseInt(found[2] ?? '', 16);
        emit(e);
      } else if (level === 'E') {
        emit(base('error'));
      }
    }
  }

  private setAppInfoField(name: string, value: string): void {
    const info = this.appInfo ?? {};
    switch (name) {
      case 'Project name':
        info.project = value;
        break;
      case 'App version':
        info.version = value;
        break;
      case 'Secure version':
        info.secureVersion = Number(value);
        break;
      case 'Compile time':
        info.compileTime = value;
        break;
      case 'ELF file SHA256':
        info.elfSha256 = value.replace(/\.+$/, '');
        break;
      case 'ESP-IDF':
        info.idfVersion = value;
        break;
    }
    this.appInfo = info;
  }

  private finishAppInfo(emit: (e: ConsoleEvent) => void): void {
    const info = this.appInfo;
    const line = this.appInfoLine;
    this.appInfo = undefined;
    if (!info || Object.keys(info).length === 0) return;
    const event: EventOf<'appInfo'> = {
      kind: 'appInfo',
      line,
      elfSha256: info.elfSha256 ?? '',
      idfVersion: info.idfVersion ?? '',
    };
    if (info.project !== undefined) event.project = info.project;
    if (info.version !== undefined) event.version = info.version;
    if (info.compileTime !== undefined) event.compileTime = info.compileTime;
    if (info.secureVersion !== undefined) event.secureVersion = info.secureVersion;
    emit(event);
  }

  private record(out: ConsoleEvent[]): ConsoleEvent[] {
    for (const e of out) {
      this.events.push(e);
      this.addToBoot(e);
    }
    return out;
  }

  private addToBoot(e: ConsoleEvent): void {
    let boot = this.currentBoot;
    const startsBoot =
      !boot ||
      e.kind === 'rom' ||
      (e.kind === 'reset' && (boot.reset !== undefined || boot.events.some(isPastRom))) ||
      (e.kind === 'bootloader' &&
        (boot.bootloaderIdfVersion !== undefined || boot.appInfo !== undefined));
    if (startsBoot || !boot) {
      boot = newBoot();
      this.boots.push(boot);
    }
    boot.events.push(e);
    switch (e.kind) {
      case 'rom':
        boot.rom = e;
        if (e.chip !== undefined) boot.chip ??= ROM_CHIP_NAMES[e.chip] ?? e.chip;
        break;
      case 'log': {
        const chip = /^boot\.(esp32\w*)$/.exec(e.tag)?.[1];
        if (chip !== undefined) boot.chip = chip;
        break;
      }
      case 'otaSuccess':
        boot.otaSuccess = e;
        break;
      case 'reset':
        boot.reset = e;
        break;
      case 'bootloader':
        boot.bootloaderIdfVersion = e.idfVersion;
        break;
      case 'partitionTable':
        boot.partitionTable = e.entries;
        break;
      case 'bootApp': {
        const table = boot.partitionTable ?? this.lastTable;
        const partition = table?.find((p) => p.offset === e.offset);
        boot.app = partition ? { offset: e.offset, partition } : { offset: e.offset };
        break;
      }
      case 'appInfo': {
        const { kind: _k, line: _l, ...info } = e;
        boot.appInfo = info;
        break;
      }
      case 'appNotBootable':
        boot.notBootable.push(e.slot);
        break;
      case 'imageInvalid':
        boot.imageErrors.push(e.message);
        break;
      case 'rollback':
        boot.rollback = e;
        break;
      case 'panic':
        boot.panics.push(e);
        break;
      case 'backtrace':
        boot.backtraces.push(e);
        break;
      case 'coreDump':
        boot.coreDump.push(e);
        break;
      case 'rebooting':
        boot.rebooting = true;
        break;
    }
  }
}

/** ROM banners that name a chip by its die rather than its target (ESP32-C2: `ESP-ROM:esp8684-...`). */
const ROM_CHIP_NAMES: Record<string, string> = { esp8684: 'esp32c2' };

/** Events that only happen after the ROM line of a boot: a reset line after them is a new boot. */
function isPastRom(e: ConsoleEvent): boolean {
  return e.kind !== 'rom' && e.kind !== 'reset';
}

/** Parses a whole captured console text at once. */
export function parseBootLog(text: string): { events: ConsoleEvent[]; boots: BootRecord[] } {
  const parser = new BootLogParser();
  parser.pushText(text);
  parser.end();
  return { events: parser.events, boots: parser.boots };
}
