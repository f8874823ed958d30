/**
 * Discard the update session a v2 device holds (ABORT), e.g. before uploading another image
 * or when a user gives up on a resumable upload.
 */

import { AbortError, ProtocolError, TimeoutError } from '../errors.ts';
import { type Clock, clockSetTimeout, systemClock } from '../progress.ts';
import type { NotificationListener, Transport } from '../transport.ts';
import { decodeAnswer, encodeAbort, V2_CONTROL_UUID, V2Status } from './codec.ts';
import { V2RefusedError } from './errors.ts';

export interface AbortV2SessionOptions {
  signal?: AbortSignal;
  clock?: Clock;
  /** Subscription, ABORT write and ABORT_RSP together (default 5 s). */
  timeoutMs?: number;
}

/** Resolves once the device confirmed with ABORT_RSP OK; the transport must be connected. */
export async function abortV2Session(
  transport: Transport,
  options: AbortV2SessionOptions = {},
): Promise<void> {
  const clock = options.clock ?? systemClock;
  const timeoutMs = options.timeoutMs ?? 5000;
  const controller = new AbortController();
  let failure: Error | undefined;
  const fail = (error: Error) => {
    failure ??= error;
    controller.abort(error);
  };
  const onAbort = () =>
    fail(new AbortError('ABORT of the v2 session aborted', { cause: options.signal?.reason }));
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const cancel = clockSetTimeout(
    clock,
    () =>
      fail(
        new TimeoutError(
          `timed out after ${timeoutMs} ms waiting for the device to answer ABORT`,
          timeoutMs,
        ),
      ),
    timeoutMs,
  );
  let answered: (status: number) => void = () => {};
  const answer = new Promise<number>((resolve) => {
    answered = resolve;
  });
  const listener: NotificationListener = (data) => {
    try {
      const decoded = decodeAnswer(data);
      if (decoded.op === 'ABORT_RSP') answered(decoded.status);
    } catch {
      // Other values on v2 Control are not this exchange's business.
    }
  };
  const stopped = new Promise<never>((_, reject) => {
    controller.signal.addEventListener('abort', () => reject(failure), { once: true });
  });
  stopped.catch(() => {});
  let subscribed = false;
  try {
    const { signal } = controller;
    await Promise.race([transport.subscribe(V2_CONTROL_UUID, listener, { signal }), stopped]);
    subscribed = true;
    await Promise.race([
      transport.write(V2_CONTROL_UUID, encodeAbort(), { withResponse: true, signal }),
      stopped,
    ]);
    const status = await Promise.race([answer, stopped]);
    if (status !== V2Status.OK) throw new V2RefusedError('ABORT', status);
  } catch (error) {
    if (failure !== undefined && error === failure) throw failure;
    if (error instanceof Error) throw error;
    throw new ProtocolError(`ABORT failed: ${String(error)}`);
  } finally {
    cancel();
    options.signal?.removeEventListener('abort', onAbort);
    if (subscribed && transport.connected) {
      await transport.unsubscribe(V2_CONTROL_UUID, listener).catch(() => {});
    }
  }
}
