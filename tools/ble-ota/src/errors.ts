import { ExitCode, type ExitCodeValue } from './exit-codes.ts';

/** A failure with the exit code it maps to; the message is what the user reads. */
export class CliError extends Error {
  readonly exitCode: ExitCodeValue;

  constructor(exitCode: ExitCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = exitCode;
    this.name = 'CliError';
  }
}

/** Exit code for any error the commands can meet, by its stable `code`, never by its message. */
export function exitCodeFor(error: unknown): ExitCodeValue {
  if (error instanceof CliError) return error.exitCode;
  const code = (error as { code?: unknown } | undefined)?.code;
  const name = (error as { name?: unknown } | undefined)?.name;
  if (name === 'ImageFormatError') return ExitCode.IMAGE_INVALID;
  switch (code) {
    case 'BAD_IMAGE':
      return ExitCode.IMAGE_INVALID;
    case 'DEVICE_NOT_FOUND':
      return ExitCode.DEVICE_NOT_FOUND;
    case 'REFUSED':
    case 'ATT_ERROR':
    case 'INSECURE_LINK':
    case 'UNKNOWN_CHARACTERISTIC':
      return ExitCode.DEVICE_REFUSED;
    case 'LINK_LOST':
    case 'NOT_CONNECTED':
      return ExitCode.LINK_LOST;
    case 'TIMEOUT':
      return ExitCode.TIMEOUT;
    case 'VERIFY_FAILED':
      return ExitCode.VERIFY_FAILED;
    case 'NO_ADAPTER':
      return ExitCode.NO_ADAPTER;
    case 'ABORTED':
      return ExitCode.INTERRUPTED;
    default:
      return ExitCode.ERROR;
  }
}
