/**
 * Errors raised by transports and upload sessions.
 *
 * Every error carries a stable `code` so that a command-line tool can map failures to exit
 * codes without parsing messages; messages are for humans and name the step that failed.
 */

/** Stable, machine-readable failure classes. */
export type OtaErrorCode =
  /** The device answered with a NAK (REQUEST_NAK, DONE_NAK, or a v2 refusal). */
  | 'REFUSED'
  /** The BLE link dropped while something was still expected from it. */
  | 'LINK_LOST'
  /** A wait exceeded its time limit. */
  | 'TIMEOUT'
  /** The caller aborted through an AbortSignal. */
  | 'ABORTED'
  /** The image cannot be sent (empty, malformed, wrong chip...). */
  | 'BAD_IMAGE'
  /** An operation needs a connection and there is none (never connected, or closed). */
  | 'NOT_CONNECTED'
  /** The ATT bearer already has a request outstanding (one at a time, Core spec Vol 3 Part F 3.3.2). */
  | 'BUSY'
  /** The peer answered an ATT request with an error response. */
  | 'ATT_ERROR'
  /** The device has no characteristic with that UUID. */
  | 'UNKNOWN_CHARACTERISTIC'
  /** A value does not fit in one ATT PDU at the negotiated MTU. */
  | 'PAYLOAD_TOO_LARGE'
  /** The device sent something the protocol does not allow at that point. */
  | 'PROTOCOL'
  /** A caller passed an argument outside its valid range. */
  | 'BAD_ARGUMENT'
  /** The device needs a more secure link than this central could set up (pairing). */
  | 'INSECURE_LINK';

export interface OtaErrorOptions {
  cause?: unknown;
}

/** Base class: `instanceof OtaError` plus `code` identifies every failure of this package. */
export class OtaError extends Error {
  readonly code: OtaErrorCode;

  constructor(code: OtaErrorCode, message: string, options?: OtaErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = 'OtaError';
  }
}

export function isOtaError(value: unknown): value is OtaError {
  return value instanceof OtaError;
}

/** The link dropped. Pending transport operations reject with this when it happens. */
export class LinkLostError extends OtaError {
  /** HCI disconnect reason (e.g. 0x08 supervision timeout, 0x13 remote user terminated) if known. */
  readonly reason: number | undefined;

  constructor(message: string, options?: OtaErrorOptions & { reason?: number }) {
    super('LINK_LOST', message, options);
    this.name = 'LinkLostError';
    this.reason = options?.reason;
  }
}

export class TimeoutError extends OtaError {
  readonly timeoutMs: number;

  constructor(message: string, timeoutMs: number, options?: OtaErrorOptions) {
    super('TIMEOUT', message, options);
    this.name = 'TimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/**
 * Cancellation requested through an AbortSignal. `name` is 'AbortError' like the DOMException
 * that fetch() and timers/promises use, so generic `err.name === 'AbortError'` checks work.
 */
export class AbortError extends OtaError {
  constructor(message: string, options?: OtaErrorOptions) {
    super('ABORTED', message, options);
    this.name = 'AbortError';
  }
}

/** Which exchange step the device refused. */
export type RefusedStep = 'REQUEST' | 'DATA' | 'DONE';

export class DeviceRefusedError extends OtaError {
  readonly step: RefusedStep;

  constructor(step: RefusedStep, message: string, options?: OtaErrorOptions) {
    super('REFUSED', message, options);
    this.name = 'DeviceRefusedError';
    this.step = step;
  }
}

export class BadImageError extends OtaError {
  constructor(message: string, options?: OtaErrorOptions) {
    super('BAD_IMAGE', message, options);
    this.name = 'BadImageError';
  }
}

export class NotConnectedError extends OtaError {
  constructor(message: string, options?: OtaErrorOptions) {
    super('NOT_CONNECTED', message, options);
    this.name = 'NotConnectedError';
  }
}

export class TransportBusyError extends OtaError {
  constructor(message: string, options?: OtaErrorOptions) {
    super('BUSY', message, options);
    this.name = 'TransportBusyError';
  }
}

/** ATT Error Response codes (Core spec Vol 3 Part F 3.4.1.1) that matter to OTA. */
export const AttStatus = {
  SUCCESS: 0x00,
  INVALID_HANDLE: 0x01,
  READ_NOT_PERMITTED: 0x02,
  WRITE_NOT_PERMITTED: 0x03,
  REQUEST_NOT_SUPPORTED: 0x06,
  INVALID_OFFSET: 0x07,
  ATTRIBUTE_NOT_LONG: 0x0b,
  INVALID_ATTRIBUTE_VALUE_LENGTH: 0x0d,
  UNLIKELY_ERROR: 0x0e,
  INSUFFICIENT_RESOURCES: 0x11,
  /**
   * This firmware's application error (0x80-0x9F are the application's): baseline image data
   * past the end of the update slot. A baseline device answers UNLIKELY_ERROR instead.
   */
  IMAGE_TOO_LARGE: 0x80,
  /**
   * This firmware's application error: it refused the image (anti-rollback, an older version,
   * the signature, not an ESP app image) and answers all further baseline image data with this;
   * DONE then gets DONE_NAK. Its console names the reason. A baseline device answers
   * UNLIKELY_ERROR instead.
   */
  IMAGE_REFUSED: 0x81,
} as const;

const ATT_STATUS_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(AttStatus).map(([name, value]) => [value, name]),
);

export function attStatusName(status: number): string {
  const hex = `0x${status.toString(16).padStart(2, '0')}`;
  const name = ATT_STATUS_NAMES[status];
  return name === undefined ? hex : `${name} (${hex})`;
}

export class AttError extends OtaError {
  readonly status: number;
  readonly characteristic: string;

  constructor(characteristic: string, operation: 'write' | 'read', status: number) {
    super(
      'ATT_ERROR',
      `device answered the ${operation} of characteristic ${characteristic} with ATT error ${attStatusName(status)}`,
    );
    this.name = 'AttError';
    this.status = status;
    this.characteristic = characteristic;
  }
}

/** SMP Pairing Failed reasons (Core Vol 3 Part H 3.5.5). */
const SMP_REASONS: Record<number, string> = {
  1: 'passkey entry failed',
  2: 'OOB not available',
  3: 'authentication requirements',
  4: 'confirm value failed',
  5: 'pairing not supported',
  6: 'encryption key size',
  7: 'command not supported',
  8: 'unspecified reason',
  9: 'repeated attempts',
  10: 'invalid parameters',
  11: 'DHKey check failed',
  12: 'numeric comparison failed',
};

export function smpReasonName(reason: number): string {
  const hex = `0x${reason.toString(16).padStart(2, '0')}`;
  const name = SMP_REASONS[reason];
  return name === undefined ? hex : `${name} (${hex})`;
}

/**
 * The device refused the write for the link's security (ATT "Insufficient Authentication" or
 * "Insufficient Encryption") and the central could not make the link secure enough: the device
 * refused its pairing, the encryption failed, or the pairing it can do (noble: LE legacy, Just
 * Works) gives keys without the MITM protection the device needs.
 */
export class InsecureLinkError extends OtaError {
  readonly characteristic: string;
  /** The SMP Pairing Failed reason, when the device refused the pairing. */
  readonly smpReason: number | undefined;
  /** The HCI status of a failed Encryption Change. */
  readonly hciStatus: number | undefined;
  /** The ATT status of a write refused on a link that was already encrypted. */
  readonly attStatus: number | undefined;

  constructor(
    characteristic: string,
    failure: { smpReason?: number; hciStatus?: number; attStatus?: number },
  ) {
    const why =
      failure.smpReason !== undefined
        ? `the device refused to pair (SMP ${smpReasonName(failure.smpReason)}): it needs a pairing this central cannot do (noble pairs LE legacy Just Works only; a device built with CONFIG_BLE_OTA_LINK_SECURITY "authenticated" takes LE Secure Connections with a passkey)`
        : failure.hciStatus !== undefined
          ? `the link's encryption failed (HCI status 0x${failure.hciStatus.toString(16).padStart(2, '0')}); remove the device's bond on this computer and on the device, then try again`
          : `the link is encrypted but the device still answers ATT ${attStatusName(failure.attStatus ?? 0)}: it needs keys from a pairing with MITM protection (passkey), which noble cannot do`;
    super('INSECURE_LINK', `cannot write characteristic ${characteristic}: ${why}`);
    this.name = 'InsecureLinkError';
    this.characteristic = characteristic;
    this.smpReason = failure.smpReason;
    this.hciStatus = failure.hciStatus;
    this.attStatus = failure.attStatus;
  }
}

export class UnknownCharacteristicError extends OtaError {
  readonly characteristic: string;

  constructor(characteristic: string) {
    super(
      'UNKNOWN_CHARACTERISTIC',
      `device has no characteristic ${characteristic}; is it running firmware with the OTA service?`,
    );
    this.name = 'UnknownCharacteristicError';
    this.characteristic = characteristic;
  }
}

export class PayloadTooLargeError extends OtaError {
  constructor(length: number, mtu: number) {
    super(
      'PAYLOAD_TOO_LARGE',
      `a ${length}-byte value does not fit in one ATT PDU at MTU ${mtu} (at most ${mtu - 3} bytes); split it`,
    );
    this.name = 'PayloadTooLargeError';
  }
}

export class ProtocolError extends OtaError {
  constructor(message: string, options?: OtaErrorOptions) {
    super('PROTOCOL', message, options);
    this.name = 'ProtocolError';
  }
}

export class BadArgumentError extends OtaError {
  constructor(message: string, options?: OtaErrorOptions) {
    super('BAD_ARGUMENT', message, options);
    this.name = 'BadArgumentError';
  }
}
