/**
 * Pick the protocol by what the device offers: v2 when its characteristics are there and the
 * link's MTU carries BEGIN, else the baseline, which every OTA device of this family speaks.
 */

import { AbortError, TimeoutError } from '../errors.ts';
import { type Clock, clockSetTimeout, type ProgressSnapshot, systemClock } from '../progress.ts';
import {
  type BaselineUploadOptions,
  type BaselineUploadResult,
  type PhaseEvent,
  uploadBaseline,
} from '../session.ts';
import type { Transport } from '../transport.ts';
import {
  hasV2,
  uploadV2,
  V2_MIN_MTU,
  type V2PhaseEvent,
  type V2ProgressSnapshot,
  type V2UploadOptions,
  type V2UploadResult,
} from './uploader.ts';

export type UploadProtocol = 'v2' | 'baseline';

/** Why a protocol was chosen. */
export type ProtocolChoice = 'forced' | 'v2-offered' | 'no-v2-characteristics' | 'mtu-too-small';

export type AutoPhaseEvent =
  | ({ protocol: 'v2' } & V2PhaseEvent)
  | ({ protocol: 'baseline' } & PhaseEvent)
  /** Connecting and discovering, before the protocol is known. */
  | ({ protocol: 'discovery' } & Omit<PhaseEvent, 'phase'> & { phase: 'connect' });

export type AutoProgressSnapshot =
  | ({ protocol: 'v2' } & V2ProgressSnapshot)
  | ({ protocol: 'baseline' } & ProgressSnapshot);

export interface UploadAutoOptions {
  /** 'auto' (default) picks; 'v2' and 'baseline' force one. */
  protocol?: 'auto' | UploadProtocol;
  v2?: Omit<V2UploadOptions, 'signal' | 'clock'>;
  baseline?: Omit<BaselineUploadOptions, 'signal' | 'clock'>;
  signal?: AbortSignal;
  clock?: Clock;
  /** connect() including discovery, when the transport is not connected yet. */
  connectTimeoutMs?: number;
  onProgress?: (snapshot: AutoProgressSnapshot) => void;
  onPhase?: (event: AutoPhaseEvent) => void;
}

export type UploadAutoResult =
  | { protocol: 'v2'; choice: ProtocolChoice; result: V2UploadResult }
  | { protocol: 'baseline'; choice: ProtocolChoice; result: BaselineUploadResult };

/** Decide the protocol for a connected transport. */
export function chooseProtocol(
  transport: Transport,
  forced: 'auto' | UploadProtocol = 'auto',
): { protocol: UploadProtocol; choice: ProtocolChoice } {
  if (forced !== 'auto') return { protocol: forced, choice: 'forced' };
  if (!hasV2(transport)) return { protocol: 'baseline', choice: 'no-v2-characteristics' };
  if (transport.mtu < V2_MIN_MTU) return { protocol: 'baseline', choice: 'mtu-too-small' };
  return { protocol: 'v2', choice: 'v2-offered' };
}

export async function uploadAuto(
  transport: Transport,
  image: Uint8Array,
  options: UploadAutoOptions = {},
): Promise<UploadAutoResult> {
  const clock = options.clock ?? systemClock;
  const { signal, onPhase, onProgress } = options;
  if (signal?.aborted) {
    throw new AbortError('upload aborted before it started', { cause: signal.reason });
  }
  if (!transport.connected) await connect(transport, clock, options);
  const { protocol, choice } = chooseProtocol(transport, options.protocol);
  const shared = { clock, ...(signal === undefined ? {} : { signal }) };
  if (protocol === 'v2') {
    const result = await uploadV2(transport, image, {
      ...options.v2,
      ...shared,
      ...(onPhase === undefined ? {} : { onPhase: (e) => onPhase({ protocol: 'v2', ...e }) }),
      ...(onProgress === undefined
        ? {}
        : { onProgress: (p) => onProgress({ protocol: 'v2', ...p }) }),
    });
    return { protocol, choice, result };
  }
  const result = await uploadBaseline(transport, image, {
    ...options.baseline,
    ...shared,
    ...(onPhase === undefined ? {} : { onPhase: (e) => onPhase({ protocol: 'baseline', ...e }) }),
    ...(onProgress === undefined
      ? {}
      : { onProgress: (p) => onProgress({ protocol: 'baseline', ...p }) }),
  });
  return { protocol, choice, result };
}

async function connect(transport: Transport, clock: Clock, options: UploadAutoOptions) {
  const timeoutMs = options.connectTimeoutMs ?? 15_000;
  const startedAt = clock.now();
  options.onPhase?.({ protocol: 'discovery', phase: 'connect', state: 'start', at: startedAt });
  const controller = new AbortController();
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const cancel = clockSetTimeout(
    clock,
    () => {
      timedOut = true;
      controller.abort();
    },
    timeoutMs,
  );
  try {
    await transport.connect({ signal: controller.signal });
    const at = clock.now();
    options.onPhase?.({
      protocol: 'discovery',
      phase: 'connect',
      state: 'end',
      at,
      durationMs: at - startedAt,
    });
  } catch (caught) {
    const error = timedOut
      ? new TimeoutError(
          `timed out after ${timeoutMs} ms waiting for the connection (link setup, MTU exchange and discovery)`,
          timeoutMs,
          { cause: caught },
        )
      : (caught as Error);
    const at = clock.now();
    options.onPhase?.({
      protocol: 'discovery',
      phase: 'connect',
      state: 'fail',
      at,
      durationMs: at - startedAt,
      error,
    });
    throw error;
  } finally {
    cancel();
    options.signal?.removeEventListener('abort', onAbort);
  }
}
