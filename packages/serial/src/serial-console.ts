import { SerialPortStream } from '@serialport/stream';
import { ConsoleLog, type ConsoleLogPaths } from './console-log.ts';
import {
  BootLogParser,
  type ConsoleEvent,
  type ConsoleEventKind,
  type EventOf,
} from './idf-console.ts';
import {
  classicResetSequence,
  hardResetSequence,
  LINES_AFTER_OPEN,
  type LineState,
  type ResetStep,
  runResetSequence,
  usbJtagSerialResetSequence,
} from './reset.ts';
import { ConsoleTextNormalizer } from './text.ts';

/** A serialport binding (the backend that talks to the OS, or a mock). */
export type SerialBinding = ConstructorParameters<typeof SerialPortStream>[0]['binding'];

export interface SerialConsoleOptions {
  /** 115200 unless given: what ESP-IDF apps and the second-stage bootloader use. */
  baudRate?: number;
  /** Hard-reset the board (EN pulse through RTS) right after opening, to capture a whole boot. */
  resetOnOpen?: boolean;
  /**
   * Discard what the OS buffered before we opened (default true): a USB bridge or a pty
   * holds output from before the test, which must not satisfy its expect() calls.
   */
  flushOnOpen?: boolean;
  /**
   * Per-test console log: raw bytes to this path, a plain-text copy (colour codes and `\r`
   * removed) beside it with `.txt` in place of `.log`.
   */
  logPath?: string;
  /** The serialport binding; serialport's own auto-detected one unless given (tests pass a mock). */
  binding?: SerialBinding;
  /** The board is on Espressif's USB-Serial/JTAG (VID 0x303a): its reset needs other timing. */
  usbSerialJtag?: boolean;
  /** Timeout of expect()/expectEvent() when the call gives none (default 10 s). */
  defaultTimeoutMs?: number;
  /** How many of the last lines a timeout error shows (default 20). */
  historyLines?: number;
  /** Unconsumed text kept for expect() (default 1 MiB); the oldest is dropped beyond it. */
  maxBufferChars?: number;
}

export type Pattern = RegExp | string;

export interface ExpectResult {
  /** The matched text. */
  match: string;
  /** Capture groups, by position ($1 is groups[0]). Empty for a string pattern. */
  groups: Array<string | undefined>;
  /** Named capture groups. */
  named: Record<string, string | undefined>;
  /** The text that was skipped before the match (consumed along with it). */
  before: string;
}

export interface ExpectOptions {
  timeout?: number;
}

export interface ResetOptions {
  /** Keep the unconsumed text and events from before the reset (default: discard them). */
  keepOutput?: boolean;
}

/** expect() or expectEvent() did not see what it waited for in time. */
export class ExpectTimeoutError extends Error {
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly path: string,
    readonly lastLines: string[],
    readonly partialLine: string,
  ) {
    const shown = lastLines.length
      ? lastLines.map((l) => `  | ${l}`).join('\n')
      : '  (nothing: check the port, the baud rate, and that the board is powered)';
    const partial = partialLine ? `\nUnfinished line: ${JSON.stringify(partialLine)}` : '';
    super(
      `${what} saw no match within ${timeoutMs} ms on ${path}.\n` +
        `Last ${lastLines.length} lines received:\n${shown}${partial}`,
    );
    this.name = 'ExpectTimeoutError';
  }
}

/** A line registered with notExpect() appeared. */
export class UnexpectedOutputError extends Error {
  constructor(
    readonly pattern: Pattern,
    readonly offendingLine: string,
    readonly path: string,
    readonly context: string[],
  ) {
    super(
      `the console of ${path} printed a line that must not appear (${describePattern(pattern)}):\n` +
        `  > ${offendingLine}\nLines before it:\n${context.map((l) => `  | ${l}`).join('\n')}`,
    );
    this.name = 'UnexpectedOutputError';
  }
}

/** The port closed (unplugged, or close() called) while something waited for output. */
export class ConsoleClosedError extends Error {
  constructor(what: string, path: string, cause?: Error) {
    super(
      cause
        ? `${what} failed: the serial port ${path} closed (${cause.message}); ` +
            'a USB port that vanishes means the board was unplugged, or reset while on its own USB (USB-Serial/JTAG).'
        : `${what} failed: the console on ${path} was closed while it waited.`,
      cause ? { cause } : undefined,
    );
    this.name = 'ConsoleClosedError';
  }
}

interface Waiter {
  what: string;
  /** Returns true once it has settled. */
  tryResolve: () => boolean;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface Forbidden {
  pattern: Pattern;
}

function describePattern(pattern: Pattern): string {
  return typeof pattern === 'string' ? JSON.stringify(pattern) : String(pattern);
}

/** A non-global, non-sticky copy, so exec() always searches from the start. */
function searchable(re: RegExp): RegExp {
  return new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
}

function lineMatches(pattern: Pattern, line: string): boolean {
  return typeof pattern === 'string' ? line.includes(pattern) : searchable(pattern).test(line);
}

/**
 * A board's serial console: a buffer of what was received and not yet consumed, expect()
 * for text and for parsed ESP-IDF events, forbidden lines, a per-test log and DTR/RTS reset.
 *
 * expect() sees the text with ANSI colour codes removed and line ends normalised to `\n`
 * (`\r` dropped), so `/offset 0x(\w+)\n/` works on coloured CRLF output; the raw bytes go
 * to the log file.
 */
export class SerialConsole {
  /** The ESP-IDF parser fed with every complete line; its `boots` summarise each boot. */
  readonly parser = new BootLogParser();
  private readonly normalizer = new ConsoleTextNormalizer();
  private readonly decoder = new TextDecoder('utf-8');
  private readonly history: string[] = [];
  private readonly forbidden = new Set<Forbidden>();
  private readonly lineListeners = new Set<(line: string) => void>();
  private readonly eventListeners = new Set<(event: ConsoleEvent) => void>();
  private readonly lineState: LineState = { ...LINES_AFTER_OPEN };
  private log: ConsoleLog | undefined;
  private buf = '';
  private partial = '';
  private eventCursor = 0;
  private waiter: Waiter | undefined;
  private closedBy: Error | undefined;
  private closing = false;
  /** Lines registered with notExpect() that appeared; each fails expect() and check(). */
  readonly violations: UnexpectedOutputError[] = [];

  private constructor(
    private readonly port: SerialPortStream,
    readonly path: string,
    private readonly opts: SerialConsoleOptions,
  ) {
    this.log = opts.logPath ? new ConsoleLog(opts.logPath) : undefined;
  }

  /** Opens `path` (e.g. /dev/ttyUSB0, or the virtual rig's /dev/pts/N). */
  static async open(path: string, opts: SerialConsoleOptions = {}): Promise<SerialConsole> {
    const port = new SerialPortStream({
      // Loaded on demand: the parser and the log must work where the native addon is absent.
      binding: opts.binding ?? (await import('serialport')).SerialPort.binding,
      path,
      baudRate: opts.baudRate ?? 115200,
      autoOpen: false,
    });
    await new Promise<void>((resolve, reject) =>
      port.open((err) =>
        err
          ? reject(
              new Error(
                `cannot open serial port ${path}: ${err.message}. Check the path (ls /dev/ttyUSB* /dev/ttyACM*), ` +
                  'that no monitor (idf.py monitor, screen) holds it, and that you are in the dialout group.',
                { cause: err },
              ),
            )
          : resolve(),
      ),
    );
    const con = new SerialConsole(port, path, opts);
    try {
      if (opts.flushOnOpen ?? true) {
        await new Promise<void>((resolve, reject) =>
          port.flush((err) => (err ? reject(err) : resolve())),
        );
      }
      con.listen();
      if (opts.resetOnOpen) await con.hardReset();
    } catch (err) {
      await con.close();
      throw err;
    }
    return con;
  }

  /** Where the per-test log is written, if a logPath was given. */
  get logPaths(): ConsoleLogPaths | undefined {
    return this.log?.paths;
  }

  /**
   * Sends the console to a new log from now on (closing the previous one), so one open port
   * can serve several tests, each with its own log. Returns the raw and text paths.
   */
  async startLog(path: string): Promise<ConsoleLogPaths> {
    const previous = this.log;
    this.log = new ConsoleLog(path);
    await previous?.close();
    return this.log.paths;
  }

  /** Closes the current log; nothing is logged until the next startLog(). */
  async stopLog(): Promise<void> {
    const previous = this.log;
    this.log = undefined;
    await previous?.close();
  }

  /** Text received and not yet consumed by expect(). */
  get buffer(): string {
    return this.buf;
  }

  /** The last complete lines received (colour codes removed), oldest first. */
  get lastLines(): string[] {
    return [...this.history];
  }

  /** Calls `listener` with every complete line; returns a function that unsubscribes. */
  onLine(listener: (line: string) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  /** Calls `listener` with every parsed ESP-IDF console event; returns an unsubscribe function. */
  onEvent(listener: (event: ConsoleEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /**
   * Waits until the unconsumed text matches `pattern` (a substring, or a RegExp searched
   * across line boundaries), then consumes the text up to the end of the match.
   */
  expect(pattern: Pattern, opts: ExpectOptions = {}): Promise<ExpectResult> {
    const what = `expect(${describePattern(pattern)})`;
    return this.wait(what, opts, () => {
      const found = this.search(pattern);
      if (!found) return undefined;
      const { index, result } = found;
      this.buf = this.buf.slice(index + result.match.length);
      return result;
    });
  }

  /**
   * Waits until any of `patterns` matches and consumes up to the end of the earliest match
   * (on a tie, the first pattern in the list); `index` says which pattern it was.
   */
  expectAny(
    patterns: readonly Pattern[],
    opts: ExpectOptions = {},
  ): Promise<ExpectResult & { index: number }> {
    const what = `expectAny([${patterns.map(describePattern).join(', ')}])`;
    return this.wait(what, opts, () => {
      let best: { index: number; at: number; result: ExpectResult } | undefined;
      patterns.forEach((pattern, index) => {
        const found = this.search(pattern);
        if (found && (!best || found.index < best.at)) {
          best = { index, at: found.index, result: found.result };
        }
      });
      if (!best) return undefined;
      this.buf = this.buf.slice(best.at + best.result.match.length);
      return { ...best.result, index: best.index };
    });
  }

  /**
   * Waits for the next parsed console event of `kind` (and matching `where`) that no earlier
   * expectEvent() consumed; events skipped on the way are consumed too.
   */
  expectEvent<K extends ConsoleEventKind>(
    kind: K,
    opts: ExpectOptions & { where?: (event: EventOf<K>) => boolean } = {},
  ): Promise<EventOf<K>> {
    const what = `expectEvent(${JSON.stringify(kind)}${opts.where ? ', where' : ''})`;
    return this.wait(what, opts, () => {
      const events = this.parser.events;
      for (let i = this.eventCursor; i < events.length; i++) {
        const e = events[i] as ConsoleEvent;
        if (e.kind === kind && (!opts.where || opts.where(e as EventOf<K>))) {
          this.eventCursor = i + 1;
          return e as EventOf<K>;
        }
      }
      return undefined;
    });
  }

  /**
   * Registers a line that must not appear from now on (a substring or a RegExp tested
   * against each complete line). If it appears, the pending and every later expect() and
   * check() fail, until the returned function removes the pattern and its violations.
   */
  notExpect(pattern: Pattern): () => void {
    const entry: Forbidden = { pattern };
    this.forbidden.add(entry);
    return () => {
      this.forbidden.delete(entry);
      for (let i = this.violations.length - 1; i >= 0; i--) {
        if (this.violations[i]?.pattern === pattern) this.violations.splice(i, 1);
      }
    };
  }

  /** Throws the first notExpect() violation, if any. */
  check(): void {
    const v = this.violations[0];
    if (v) throw v;
  }

  /** Discards what the OS and this console hold and have not consumed. */
  async flush(): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.port.flush((err) => (err ? reject(err) : resolve())),
    );
    this.discardUnconsumed();
  }

  private discardUnconsumed(): void {
    this.buf = '';
    this.eventCursor = this.parser.events.length;
  }

  /** Sends bytes to the board (e.g. "\n" to start a UART core dump). */
  async write(data: string | Uint8Array): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.port.write(data, (err) => (err ? reject(err) : undefined));
      this.port.drain((err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Restarts the board's app: EN pulsed low through RTS with IO0 released (esptool's
   * HardReset). Unconsumed text and events from before the reset are discarded, so the next
   * expect() sees only the new boot, unless `keepOutput` is set.
   */
  async hardReset(opts: ResetOptions = {}): Promise<void> {
    this.log?.note('hard reset (RTS pulse on EN)');
    await this.resetWith(
      hardResetSequence({ usb: this.opts.usbSerialJtag ?? false, initial: this.lineState }),
      opts,
    );
  }

  /**
   * Restarts the board into the ROM's serial download mode (esptool's default reset);
   * discards earlier output like hardReset().
   */
  async resetIntoBootloader(opts: ResetOptions & { resetDelayMs?: number } = {}): Promise<void> {
    this.log?.note('reset into the ROM download mode (DTR on IO0, RTS on EN)');
    const initial = this.lineState;
    await this.resetWith(
      this.opts.usbSerialJtag
        ? usbJtagSerialResetSequence({ initial })
        : classicResetSequence(
            opts.resetDelayMs === undefined
              ? { initial }
              : { initial, resetDelayMs: opts.resetDelayMs },
          ),
      opts,
    );
  }

  /**
   * Plays any DTR/RTS sequence (see parseResetSequence for esptool's custom notation);
   * discards earlier output like hardReset().
   */
  async resetWith(steps: readonly ResetStep[], opts: ResetOptions = {}): Promise<void> {
    if (!opts.keepOutput) this.discardUnconsumed();
    await runResetSequence(
      {
        set: (lines, cb) =>
          this.port.set(lines, (err) => {
            if (!err) {
              this.lineState.dtr = lines.dtr;
              this.lineState.rts = lines.rts;
            }
            cb(err ?? null);
          }),
      },
      steps,
      this.path,
    );
  }

  /** Closes the port and the log; pending expect() calls fail. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.consumeText(this.normalizer.push(this.decoder.decode()) + this.normalizer.end());
    if (this.partial !== '') this.completeLine(this.partial);
    this.partial = '';
    this.parser.end();
    this.failWaiter(undefined);
    if (this.port.isOpen) {
      await new Promise<void>((resolve) => this.port.close(() => resolve()));
    }
    await this.log?.close();
  }

  private listen(): void {
    this.port.on('data', (chunk: Buffer) => this.onData(chunk));
    this.port.on('close', (err?: Error | null) => {
      if (this.closing) return;
      this.closedBy = err ?? new Error('the port closed');
      this.failWaiter(this.closedBy);
    });
    this.port.on('error', (err: Error) => {
      this.closedBy = err;
      this.failWaiter(err);
    });
  }

  private onData(chunk: Buffer): void {
    this.log?.write(chunk);
    this.consumeText(this.normalizer.push(this.decoder.decode(chunk, { stream: true })));
  }

  /**
   * Adds text line by line, so that a forbidden line and an expected match in the same chunk
   * are judged in the order they arrived.
   */
  private consumeText(text: string): void {
    let rest = text;
    while (rest !== '') {
      const nl = rest.indexOf('\n');
      const piece = nl < 0 ? rest : rest.slice(0, nl + 1);
      rest = nl < 0 ? '' : rest.slice(nl + 1);
      this.buf += piece;
      const max = this.opts.maxBufferChars ?? 1 << 20;
      if (this.buf.length > max) this.buf = this.buf.slice(this.buf.length - max);
      if (nl < 0) {
        this.partial += piece;
      } else {
        this.completeLine(this.partial + piece.slice(0, -1));
        this.partial = '';
      }
      this.settleWaiter();
    }
  }

  private completeLine(line: string): void {
    this.history.push(line);
    const keep = this.opts.historyLines ?? 20;
    if (this.history.length > keep) this.history.splice(0, this.history.length - keep);
    for (const f of this.forbidden) {
      if (lineMatches(f.pattern, line)) {
        this.violations.push(
          new UnexpectedOutputError(f.pattern, line, this.path, this.history.slice(0, -1)),
        );
      }
    }
    for (const l of this.lineListeners) l(line);
    const events = this.parser.pushLine(line);
    for (const e of events) for (const l of this.eventListeners) l(e);
  }

  private search(pattern: Pattern): { index: number; result: ExpectResult } | undefined {
    if (typeof pattern === 'string') {
      const index = this.buf.indexOf(pattern);
      if (index < 0) return undefined;
      return {
        index,
        result: { match: pattern, groups: [], named: {}, before: this.buf.slice(0, index) },
      };
    }
    const m = searchable(pattern).exec(this.buf);
    if (!m) return undefined;
    return {
      index: m.index,
      result: {
        match: m[0],
        groups: m.slice(1),
        named: { ...(m.groups ?? {}) },
        before: this.buf.slice(0, m.index),
      },
    };
  }

  private wait<T>(what: string, opts: ExpectOptions, attempt: () => T | undefined): Promise<T> {
    if (this.waiter) {
      return Promise.reject(
        new Error(
          `${what} called while ${this.waiter.what} is still waiting: await each expect() in turn`,
        ),
      );
    }
    const violation = this.violations[0];
    if (violation) return Promise.reject(violation);
    const now = attempt();
    if (now !== undefined) return Promise.resolve(now);
    if (this.closedBy || this.closing) {
      return Promise.reject(new ConsoleClosedError(what, this.path, this.closedBy));
    }
    const timeoutMs = opts.timeout ?? this.opts.defaultTimeoutMs ?? 10_000;
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        what,
        tryResolve: () => {
          const v = this.violations[0];
          if (v) {
            this.clearWaiter(waiter);
            reject(v);
            return true;
          }
          const got = attempt();
          if (got === undefined) return false;
          this.clearWaiter(waiter);
          resolve(got);
          return true;
        },
        reject: (err) => {
          this.clearWaiter(waiter);
          reject(err);
        },
        timer: setTimeout(() => {
          this.clearWaiter(waiter);
          reject(new ExpectTimeoutError(what, timeoutMs, this.path, this.lastLines, this.partial));
        }, timeoutMs),
      };
      this.waiter = waiter;
    });
  }

  private clearWaiter(w: Waiter): void {
    clearTimeout(w.timer);
    if (this.waiter === w) this.waiter = undefined;
  }

  private settleWaiter(): void {
    this.waiter?.tryResolve();
  }

  private failWaiter(cause: Error | undefined): void {
    const w = this.waiter;
    if (w) w.reject(new ConsoleClosedError(w.what, this.path, cause));
  }
}
