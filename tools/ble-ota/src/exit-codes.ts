/**
 * Exit codes of ble-ota, one table for the help text, the code and the tests. Scripts (and the
 * HIL runner) branch on these, so a value never changes meaning once released.
 */
export const ExitCode = {
  OK: 0,
  /** Something unexpected; the message says what. */
  ERROR: 1,
  /**
   * Bad command line: unknown option, missing argument, or a path that names no file or the
   * wrong kind (a directory or FIFO for an image or key, a file for a serial port, an encrypted key).
   */
  USAGE: 2,
  /** The file is not an ESP app image (or too large to be one), or its checksum or SHA-256 is wrong. */
  IMAGE_INVALID: 3,
  /** No device matching --name/--address (or offering the OTA service) answered the scan. */
  DEVICE_NOT_FOUND: 4,
  /** The device answered with a NAK (REQUEST_NAK, DONE_NAK), a v2 refusal or an ATT error. */
  DEVICE_REFUSED: 5,
  /** The BLE link dropped before the update finished. */
  LINK_LOST: 6,
  /** A step did not finish in time (connect, a write, an acknowledgement, the restart). */
  TIMEOUT: 7,
  /** No usable Bluetooth adapter (missing, powered off, or no permission to open it). */
  NO_ADAPTER: 8,
  /** The image does not fit the device: built for another chip, or larger than its OTA slot. */
  IMAGE_MISMATCH: 9,
  /** The upload finished but the device did not come back running the new version. */
  VERIFY_FAILED: 10,
  /** Interrupted (Ctrl-C). */
  INTERRUPTED: 130,
} as const;

export type ExitCodeName = keyof typeof ExitCode;
export type ExitCodeValue = (typeof ExitCode)[ExitCodeName];

export const EXIT_CODE_HELP: readonly [code: number, meaning: string][] = [
  [ExitCode.OK, 'success'],
  [ExitCode.ERROR, 'unexpected error'],
  [
    ExitCode.USAGE,
    'usage error (bad option or argument; an image, key or port path that names no file or the wrong kind; an encrypted key)',
  ],
  [
    ExitCode.IMAGE_INVALID,
    'image invalid (not an ESP app image or larger than one can be, bad checksum or SHA-256)',
  ],
  [ExitCode.DEVICE_NOT_FOUND, 'device not found'],
  [
    ExitCode.DEVICE_REFUSED,
    'device refused (REQUEST_NAK, DONE_NAK, a v2 status, ATT error, a pairing it needs and this client cannot make)',
  ],
  [ExitCode.LINK_LOST, 'link lost'],
  [ExitCode.TIMEOUT, 'timeout'],
  [ExitCode.NO_ADAPTER, 'no usable Bluetooth adapter'],
  [ExitCode.IMAGE_MISMATCH, 'image does not fit the device (other chip, larger than the OTA slot)'],
  [
    ExitCode.VERIFY_FAILED,
    'device did not come back with the new version (rejected or rolled back)',
  ],
  [ExitCode.INTERRUPTED, 'interrupted'],
];

export function exitCodeHelp(): string {
  const lines = EXIT_CODE_HELP.map(
    ([code, meaning]) => `  ${String(code).padStart(3)}  ${meaning}`,
  );
  return `Exit codes:\n${lines.join('\n')}`;
}
