import { AbortError, TimeoutError } from '@esp-ble-ota/protocol';

export interface DeadlineOptions {
  signal?: AbortSignal | undefined;
  /** No time limit when undefined or not finite. */
  timeoutMs?: number | undefined;
  /** What is being waited for, for the error messages ("connecting to esp32"). */
  what: string;
}

/**
 * Run `start` and race it against an AbortSignal and a timeout. `start` receives `settle`
 * callbacks and returns a cleanup function that runs exactly once, whichever way the wait ends,
 * so listeners registered on noble objects never outlive the operation.
 */
export function withDeadline<T>(
  options: DeadlineOptions,
  start: (
    resolve: (value: T) => void,
    reject: (error: unknown) => void,
  ) => (() => void) | undefined,
  onCancel?: (reason: 'timeout' | 'abort') => void,
): Promise<T> {
  const { signal, timeoutMs, what } = options;
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError(`${what}: aborted before it started`, { cause: signal.reason }));
      return;
    }
    let done = false;
    let cleanup: (() => void) | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = () => {
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      const c = cleanup;
      cleanup = undefined;
      c?.();
    };
    const onAbort = () => {
      if (done) return;
      finish();
      onCancel?.('abort');
      reject(new AbortError(`${what}: aborted`, { cause: signal?.reason }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
      timer = setTimeout(() => {
        if (done) return;
        finish();
        onCancel?.('timeout');
        reject(new TimeoutError(`${what}: no answer within ${timeoutMs} ms`, timeoutMs));
      }, timeoutMs);
    }
    try {
      cleanup = start(
        (value) => {
          if (done) return;
          finish();
          resolve(value);
        },
        (error) => {
          if (done) return;
          finish();
          reject(error);
        },
      );
      // start() may have settled synchronously; its cleanup must still run.
      if (done) {
        const c = cleanup;
        cleanup = undefined;
        c?.();
      }
    } catch (error) {
      finish();
      reject(error);
    }
  });
}
