/** Errors specific to protocol v2; all are {@link OtaError}s with the package's stable codes. */

import { LinkLostError, OtaError, type OtaErrorOptions } from '../errors.ts';
import { v2StatusHint, v2StatusMessage, v2StatusName } from './codec.ts';

export type V2Step = 'BEGIN' | 'DATA' | 'END' | 'ABORT';

/** The device answered with a refusal status (code 'REFUSED'). */
export class V2RefusedError extends OtaError {
  readonly step: V2Step;
  readonly status: number;
  /** 'WRONG_CHIP', 'TOO_LARGE', ... or the hex value of an unknown status. */
  readonly statusName: string;
  /** The readable part without the hint, e.g. `device refused the update: ... (WRONG_CHIP)`. */
  readonly reason: string;

  /** The client refused before sending anything, from what the device's INFO says it enforces. */
  readonly preflight: boolean;

  constructor(
    step: V2Step,
    status: number,
    options?: OtaErrorOptions & { preflight?: { detail: string } },
  ) {
    const preflight = options?.preflight;
    const reason =
      preflight === undefined
        ? v2StatusMessage(status)
        : `${v2StatusMessage(status).replace('device refused the update', 'the device would refuse the update')}: ${preflight.detail}; nothing was sent`;
    const hint = v2StatusHint(status);
    super(
      'REFUSED',
      `${reason}${preflight === undefined ? ` at ${step}` : ''}${hint === undefined ? '' : `; ${hint}`}`,
      options,
    );
    this.preflight = preflight !== undefined;
    this.name = 'V2RefusedError';
    this.step = step;
    this.status = status;
    this.statusName = v2StatusName(status);
    this.reason = reason;
  }
}

/**
 * The link dropped during a v2 upload (code 'LINK_LOST'). `committed` is the stream offset the
 * device last confirmed; when `resumable`, connecting again and calling `uploadV2` with the
 * same image continues from there.
 */
export class V2LinkLostError extends LinkLostError {
  readonly committed: number;
  readonly streamSize: number;
  readonly resumable: boolean;
  /** DATA payload bytes the failed call wrote before the link dropped, resends included. */
  readonly sentBytes: number;

  constructor(
    message: string,
    details: {
      committed: number;
      streamSize: number;
      resumable: boolean;
      sentBytes: number;
      reason?: number;
    },
    options?: OtaErrorOptions,
  ) {
    super(message, {
      ...options,
      ...(details.reason === undefined ? {} : { reason: details.reason }),
    });
    this.name = 'V2LinkLostError';
    this.committed = details.committed;
    this.streamSize = details.streamSize;
    this.resumable = details.resumable;
    this.sentBytes = details.sentBytes;
  }
}
