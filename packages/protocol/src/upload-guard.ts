/**
 * What every uploader of this package does around one upload: only one at a time on the same
 * uploader, and the uploader's AbortSignal combined with the call's.
 */
import { BadArgumentError } from './errors.ts';

/**
 * Combine two optional signals without AbortSignal.any (Node 20.3+ only), and without leaving
 * listeners on a long-lived signal that the caller reuses for many uploads.
 */
export function anySignal(
  a: AbortSignal | undefined,
  b: AbortSignal | undefined,
): { signal: AbortSignal | undefined; dispose(): void } {
  if (a === undefined || b === undefined) return { signal: a ?? b, dispose: () => {} };
  const controller = new AbortController();
  const fromA = () => controller.abort(a.reason);
  const fromB = () => controller.abort(b.reason);
  if (a.aborted) fromA();
  else if (b.aborted) fromB();
  else {
    a.addEventListener('abort', fromA, { once: true });
    b.addEventListener('abort', fromB, { once: true });
  }
  return {
    signal: controller.signal,
    dispose() {
      a.removeEventListener('abort', fromA);
      b.removeEventListener('abort', fromB);
    },
  };
}

/** Runs one upload at a time; a second call while one runs is refused. */
export class UploadGuard {
  #busy = false;

  /**
   * Run `body` with the uploader's options, their signal replaced by the uploader's and the
   * call's combined.
   */
  async run<O extends { signal?: AbortSignal }, T>(
    options: O,
    callSignal: AbortSignal | undefined,
    body: (options: O) => Promise<T>,
  ): Promise<T> {
    if (this.#busy) {
      throw new BadArgumentError('an upload is already running on this uploader; await it first');
    }
    this.#busy = true;
    const signal = anySignal(options.signal, callSignal);
    try {
      return await body({
        ...options,
        ...(signal.signal === undefined ? {} : { signal: signal.signal }),
      });
    } finally {
      signal.dispose();
      this.#busy = false;
    }
  }
}

/** What the one-call forms use of an uploader. */
interface ListenableUploader<P, E, R> {
  on(event: 'progress', listener: (snapshot: P) => void): void;
  on(event: 'phase', listener: (event: E) => void): void;
  upload(image: Uint8Array): Promise<R>;
}

/** The one-call form of an uploader: the listeners the options name, then one upload. */
export function uploadOnce<P, E, R>(
  uploader: ListenableUploader<P, E, R>,
  image: Uint8Array,
  listeners: { onProgress?: (snapshot: P) => void; onPhase?: (event: E) => void },
): Promise<R> {
  if (listeners.onProgress) uploader.on('progress', listeners.onProgress);
  if (listeners.onPhase) uploader.on('phase', listeners.onPhase);
  return uploader.upload(image);
}
