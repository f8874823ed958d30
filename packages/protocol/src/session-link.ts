/**
 * What the baseline and the v2 upload sessions do alike on their connection: notice the link
 * dropping, tell that drop apart from the restart the device makes after its final answer, run
 * each step under its timeout, the caller's AbortSignal and the link-loss watch, and report
 * phases with their timings.
 *
 * The words and classes of the errors stay with each session (the baseline cannot resume, a v2
 * link loss carries the committed offset): it passes them in, and each step brings its texts.
 */

import { AbortError, BadImageError, TimeoutError } from './errors.ts';
import { type Clock, clockSetTimeout, ProgressTracker } from './progress.ts';
import type { RestartObservation } from './session.ts';
import type { DisconnectInfo, NotificationListener, Transport } from './transport.ts';

export interface LinkStep {
  timeoutMs: number;
  /**
   * Completes "timed out after N ms ...". A function when the text depends on how far the step
   * got by the time it fires (e.g. whether the Write Response came already).
   */
  waitingFor: string | (() => string);
  /** Completes "upload aborted ..." (and the session's "link lost ..."). */
  during: string | (() => string);
}

export function stepText(part: string | (() => string)): string {
  return typeof part === 'string' ? part : part();
}

export interface SessionLinkOptions<S extends LinkStep> {
  transport: Transport;
  clock: Clock;
  /** The upload's signal (the uploader's and the call's combined). */
  signal: AbortSignal | undefined;
  /** The session's error for the link dropping during `step` before any restart was due. */
  linkLost(step: S, info: DisconnectInfo): Error;
  /** What the step fails with when its body rejects with `error`. */
  explain(step: S, error: unknown): Error;
}

/** Guard for many short operations of one kind: see {@link SessionLink.watch}. */
export interface StepWatch {
  run<T>(body: (signal: AbortSignal) => Promise<T>): Promise<T>;
  dispose(): void;
}

/** The link state of one upload run; `attach()` before the first step, `detach()` when done. */
export class SessionLink<S extends LinkStep> {
  readonly #t: Transport;
  readonly #clock: Clock;
  readonly #signal: AbortSignal | undefined;
  readonly #linkLost: (step: S, info: DisconnectInfo) => Error;
  readonly #explain: (step: S, error: unknown) => Error;
  /** Set once the link dropped; every current and later step fails with it. */
  #lost: DisconnectInfo | undefined;
  readonly #lostListeners = new Set<(info: DisconnectInfo) => void>();
  /** Clock time of the device's final answer; from then on a disconnect is the restart. */
  #restartDueSince: number | undefined;
  #restart: { info: DisconnectInfo; at: number } | undefined;
  #restartWaiter: (() => void) | undefined;

  readonly #onDisconnect = (info: DisconnectInfo) => {
    if (this.#restartDueSince !== undefined) {
      this.#restart ??= { info, at: this.#clock.now() };
      this.#restartWaiter?.();
      return;
    }
    this.#lost ??= info;
    for (const listener of [...this.#lostListeners]) listener(info);
  };

  constructor(options: SessionLinkOptions<S>) {
    this.#t = options.transport;
    this.#clock = options.clock;
    this.#signal = options.signal;
    this.#linkLost = options.linkLost;
    this.#explain = options.explain;
  }

  /** The disconnect that ended the link, unless it was the expected restart. */
  get lost(): DisconnectInfo | undefined {
    return this.#lost;
  }

  attach(): void {
    this.#t.on('disconnect', this.#onDisconnect);
  }

  detach(): void {
    this.#t.off('disconnect', this.#onDisconnect);
  }

  /**
   * The device gave its final answer: a disconnect from now on is its restart, not a lost link.
   * Call it synchronously from the notification listener, as the disconnect may follow right
   * behind the answer.
   */
  restartDue(): void {
    this.#restartDueSince = this.#clock.now();
  }

  throwIfAborted(): void {
    if (this.#signal?.aborted) {
      throw new AbortError('upload aborted before it started', { cause: this.#signal.reason });
    }
  }

  /**
   * Run one step under its timeout, the caller's AbortSignal and link-loss watch. `body` gets a
   * signal that fires when the step is given up, so the transport stops waiting too.
   */
  step<T>(step: S, body: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return this.#watch(step, true).run(body);
  }

  /**
   * A reusable guard for many short operations of one kind (the v2 DATA writes): abort and
   * link-loss listeners are registered once; each `run` gets its own timer. Dispose it after.
   */
  watch(step: S): StepWatch {
    return this.#watch(step, false);
  }

  #watch(step: S, once: boolean): StepWatch {
    let current: ((error: Error) => void) | undefined;
    let fatal: Error | undefined;
    const onAbort = () => {
      fatal ??= new AbortError(`upload aborted ${stepText(step.during)}`, {
        cause: this.#signal?.reason,
      });
      current?.(fatal);
    };
    const onLost = (info: DisconnectInfo) => {
      fatal ??= this.#linkLost(step, info);
      current?.(fatal);
    };
    const dispose = () => {
      this.#signal?.removeEventListener('abort', onAbort);
      this.#lostListeners.delete(onLost);
    };
    this.#signal?.addEventListener('abort', onAbort, { once: true });
    this.#lostListeners.add(onLost);
    if (this.#signal?.aborted) onAbort();
    else if (this.#lost !== undefined) onLost(this.#lost);
    const run = <T>(body: (signal: AbortSignal) => Promise<T>): Promise<T> => {
      if (fatal !== undefined) {
        if (once) dispose();
        return Promise.reject(fatal);
      }
      const controller = new AbortController();
      return new Promise<T>((resolve, reject) => {
        let settled = false;
        const finish = (settle: () => void) => {
          if (settled) return;
          settled = true;
          cancelTimer();
          current = undefined;
          if (once) dispose();
          settle();
        };
        const fail = (error: Error) =>
          finish(() => {
            controller.abort(error);
            reject(error);
          });
        current = fail;
        const cancelTimer = clockSetTimeout(
          this.#clock,
          () =>
            fail(
              new TimeoutError(
                `timed out after ${step.timeoutMs} ms ${stepText(step.waitingFor)}`,
                step.timeoutMs,
              ),
            ),
          step.timeoutMs,
        );
        body(controller.signal).then(
          (value) => finish(() => resolve(value)),
          (error: unknown) => fail(this.#explain(step, error)),
        );
      });
    };
    return { run, dispose };
  }

  /**
   * After the final answer: wait up to the step's timeout for the link to drop as the device
   * restarts. A device that stays up is not an upload failure: the image is accepted and the
   * boot slot set, and watching the console is the runner's business.
   */
  async awaitRestart(step: S, wait: boolean): Promise<RestartObservation> {
    if (!wait) return { observed: false, reason: 'not-waited' };
    const ackAt = this.#restartDueSince ?? this.#clock.now();
    const observed = (): RestartObservation => {
      const restart = this.#restart as { info: DisconnectInfo; at: number };
      return { observed: true, afterMs: restart.at - ackAt, disconnect: restart.info };
    };
    if (this.#restart !== undefined) return observed();
    try {
      await this.step(
        step,
        () =>
          new Promise<void>((resolve) => {
            this.#restartWaiter = resolve;
          }),
      );
      return observed();
    } catch (error) {
      if (error instanceof TimeoutError) return { observed: false, reason: 'timeout' };
      throw error;
    } finally {
      this.#restartWaiter = undefined;
    }
  }

  /**
   * Drop the session's notification listener, if the link is still up. Cleanup must neither
   * mask the real outcome nor hang on a device that stopped answering; the transport drops the
   * listener at once in any case.
   */
  async unsubscribeQuietly(
    characteristic: string,
    listener: NotificationListener,
    timeoutMs: number,
  ): Promise<void> {
    if (!this.#t.connected) return;
    const giveUp = new AbortController();
    const cancel = clockSetTimeout(this.#clock, () => giveUp.abort(), timeoutMs);
    await this.#t.unsubscribe(characteristic, listener, { signal: giveUp.signal }).catch(() => {});
    cancel();
  }
}

/** One phase's timing, as the upload results list them. */
export interface SessionPhaseTiming<P extends string> {
  phase: P;
  startedAt: number;
  endedAt: number;
  durationMs: number;
}

/** The 'phase' event of either session. */
export interface SessionPhaseEvent<P extends string> {
  phase: P;
  state: 'start' | 'end' | 'fail';
  at: number;
  durationMs?: number;
  error?: Error;
}

/** Runs the phases of one upload: a 'start' event, then 'end' with its timing, or 'fail'. */
export class PhaseRecorder<P extends string> {
  /** The finished phases in order, handed out as the result's `phases`. */
  readonly timings: SessionPhaseTiming<P>[] = [];
  readonly #clock: Clock;
  readonly #emit: (event: SessionPhaseEvent<P>) => void;

  constructor(clock: Clock, emit: (event: SessionPhaseEvent<P>) => void) {
    this.#clock = clock;
    this.#emit = emit;
  }

  async run<T>(phase: P, body: () => Promise<T>): Promise<T> {
    const startedAt = this.#clock.now();
    this.#emit({ phase, state: 'start', at: startedAt });
    try {
      const value = await body();
      const endedAt = this.#clock.now();
      this.timings.push({ phase, startedAt, endedAt, durationMs: endedAt - startedAt });
      this.#emit({ phase, state: 'end', at: endedAt, durationMs: endedAt - startedAt });
      return value;
    } catch (error) {
      const at = this.#clock.now();
      this.#emit({ phase, state: 'fail', at, durationMs: at - startedAt, error: error as Error });
      throw error;
    }
  }
}

/** The checks both sessions make on the image before anything goes over the air. */
export function requireImageBytes(image: Uint8Array): void {
  if (!(image instanceof Uint8Array)) {
    throw new BadImageError('the image must be a Uint8Array (the bytes of the .bin file)');
  }
  if (image.length === 0) {
    throw new BadImageError('the image is empty; build the firmware first and pass its .bin');
  }
}

export function sessionProgressTracker(
  total: number,
  clock: Clock,
  smoothingMs: number | undefined,
): ProgressTracker {
  return new ProgressTracker({
    total,
    clock,
    ...(smoothingMs === undefined ? {} : { smoothingMs }),
  });
}
