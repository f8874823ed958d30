import type { ProgressSnapshot } from '@esp-ble-ota/protocol';
import cliProgress from 'cli-progress';
import { type CliIo, json, line } from './io.ts';
import { formatMs } from './parse.ts';

function rateText(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? '-- kB/s' : `${(bytesPerSecond / 1000).toFixed(1)} kB/s`;
}

function etaText(etaMs: number | undefined): string {
  return etaMs === undefined ? '--' : formatMs(etaMs);
}

/**
 * Upload progress: a bar on a terminal, a plain line every 10 % when piped (logs stay short),
 * or one JSON event per update with --json.
 */
export class ProgressView {
  readonly #io: CliIo;
  readonly #mode: 'tty' | 'plain' | 'json';
  #bar: cliProgress.SingleBar | undefined;
  #lastDecile = -1;
  #lastJsonAt = Number.NEGATIVE_INFINITY;
  #last: ProgressSnapshot | undefined;
  #started = false;
  /** Rate and ETA come from the link model's clock (--sim), so say so next to them. */
  readonly #suffix: string;

  constructor(io: CliIo, mode: 'tty' | 'plain' | 'json', modeled = false) {
    this.#io = io;
    this.#mode = mode;
    this.#suffix = modeled ? ' (modeled)' : '';
  }

  /** Whether start() was called (a resumed upload goes on with the same bar). */
  get started(): boolean {
    return this.#started;
  }

  start(total: number): void {
    this.#started = true;
    if (this.#mode !== 'tty') return;
    this.#bar = new cliProgress.SingleBar(
      {
        // cli-progress drives the terminal (cursor moves, line clears) on a real stream only.
        stream: this.#io.stdout as NodeJS.WriteStream,
        format: ` {bar} {percentage}% | {value}/{total} B | {rate} | ETA {etaText}${this.#suffix}`,
        hideCursor: true,
        barsize: 30,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    this.#bar.start(total, 0, { rate: rateText(undefined), etaText: '--' });
  }

  update(s: ProgressSnapshot): void {
    this.#last = s;
    if (this.#mode === 'tty') {
      this.#bar?.update(s.bytes, { rate: rateText(s.bytesPerSecond), etaText: etaText(s.etaMs) });
      return;
    }
    if (this.#mode === 'json') {
      // At most ~10 events a second, plus the last one, so a log is not flooded at high rates.
      const done = s.bytes === s.total;
      if (!done && s.elapsedMs - this.#lastJsonAt < 100) return;
      this.#lastJsonAt = s.elapsedMs;
      json(this.#io.stdout, {
        event: 'progress',
        bytes: s.bytes,
        total: s.total,
        percent: Number(s.percent.toFixed(2)),
        bytesPerSecond: s.bytesPerSecond === undefined ? null : Math.round(s.bytesPerSecond),
        etaMs: s.etaMs === undefined ? null : Math.round(s.etaMs),
        ...(this.#suffix === '' ? {} : { clock: 'modeled' }),
      });
      return;
    }
    const decile = Math.floor(s.percent / 10);
    if (decile === this.#lastDecile) return;
    this.#lastDecile = decile;
    line(
      this.#io.stdout,
      `progress ${s.percent.toFixed(0).padStart(3)}% ${s.bytes}/${s.total} bytes ${rateText(s.bytesPerSecond)} ETA ${etaText(s.etaMs)}${this.#suffix}`,
    );
  }

  stop(): void {
    if (this.#bar !== undefined) {
      const s = this.#last;
      if (s !== undefined) {
        this.#bar.update(s.bytes, {
          rate: rateText(s.averageBytesPerSecond),
          etaText: etaText(s.etaMs),
        });
      }
      this.#bar.stop();
      this.#bar = undefined;
    }
  }
}
