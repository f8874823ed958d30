/**
 * Transfer progress: bytes, percent, a smoothed rate and an ETA, on an injectable clock so that
 * tests and the virtual rig's modeled time drive the figures instead of the wall clock.
 */

import { BadArgumentError } from './errors.ts';

/**
 * Time source in milliseconds. Only differences matter. The timer functions are optional:
 * without them sessions use the global setTimeout/clearTimeout (looked up at call time, so
 * test fake timers apply).
 */
export interface Clock {
  now(): number;
  setTimeout?(callback: () => void, ms: number): unknown;
  clearTimeout?(handle: unknown): void;
}

export const systemClock: Clock = { now: () => performance.now() };

export function clockSetTimeout(clock: Clock, callback: () => void, ms: number): () => void {
  if (clock.setTimeout !== undefined) {
    const handle = clock.setTimeout(callback, ms);
    return () => clock.clearTimeout?.(handle);
  }
  const handle = globalThis.setTimeout(callback, ms);
  return () => globalThis.clearTimeout(handle);
}

export interface ProgressSnapshot {
  /** Bytes the device has acknowledged so far. */
  bytes: number;
  total: number;
  /** 0 to 100; exactly 100 once bytes === total (also for an empty transfer). */
  percent: number;
  /** Exponentially smoothed rate in bytes per second; undefined until time has passed. */
  bytesPerSecond: number | undefined;
  /** bytes / elapsed since start, in bytes per second; undefined until time has passed. */
  averageBytesPerSecond: number | undefined;
  /** Milliseconds left at the smoothed rate; 0 when done, undefined while the rate is unknown. */
  etaMs: number | undefined;
  /** Milliseconds since the tracker started. */
  elapsedMs: number;
}

export interface ProgressTrackerOptions {
  total: number;
  clock?: Clock;
  /**
   * Time constant of the rate's exponential smoothing in ms. Smoothing over time rather than
   * over samples keeps the rate steady whether packets are 20 or 512 bytes.
   */
  smoothingMs?: number;
}

export class ProgressTracker {
  readonly total: number;
  readonly #clock: Clock;
  readonly #tau: number;
  readonly #startedAt: number;
  #bytes = 0;
  #lastAt: number;
  #lastBytes = 0;
  #rate: number | undefined;

  constructor(options: ProgressTrackerOptions) {
    const { total, clock = systemClock, smoothingMs = 2000 } = options;
    if (!Number.isInteger(total) || total < 0) {
      throw new BadArgumentError(`total must be a non-negative integer, got ${total}`);
    }
    if (!(smoothingMs > 0)) {
      throw new BadArgumentError(`smoothingMs must be positive, got ${smoothingMs}`);
    }
    this.total = total;
    this.#clock = clock;
    this.#tau = smoothingMs;
    this.#startedAt = clock.now();
    this.#lastAt = this.#startedAt;
  }

  /** Record that `bytes` (cumulative) are done and return the new snapshot. */
  update(bytes: number): ProgressSnapshot {
    if (!Number.isInteger(bytes) || bytes < this.#bytes || bytes > this.total) {
      throw new BadArgumentError(
        `progress must be an integer from ${this.#bytes} (last value) to ${this.total}, got ${bytes}`,
      );
    }
    this.#bytes = bytes;
    const now = this.#clock.now();
    const dt = now - this.#lastAt;
    // Bytes reported at the same instant are folded into the next interval that has a duration.
    if (dt > 0) {
      const instant = ((bytes - this.#lastBytes) * 1000) / dt;
      const alpha = 1 - Math.exp(-dt / this.#tau);
      this.#rate = this.#rate === undefined ? instant : this.#rate + alpha * (instant - this.#rate);
      this.#lastAt = now;
      this.#lastBytes = bytes;
    }
    return this.snapshot();
  }

  snapshot(): ProgressSnapshot {
    const elapsedMs = this.#clock.now() - this.#startedAt;
    const done = this.#bytes === this.total;
    const rate = this.#rate;
    let etaMs: number | undefined;
    if (done) etaMs = 0;
    else if (rate !== undefined && rate > 0) etaMs = ((this.total - this.#bytes) * 1000) / rate;
    return {
      bytes: this.#bytes,
      total: this.total,
      percent: this.total === 0 ? 100 : (this.#bytes * 100) / this.total,
      bytesPerSecond: rate,
      averageBytesPerSecond: elapsedMs > 0 ? (this.#bytes * 1000) / elapsedMs : undefined,
      etaMs,
      elapsedMs,
    };
  }
}
