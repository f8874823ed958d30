import type { Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { CliError } from './errors.ts';
import { ExitCode } from './exit-codes.ts';
import { formatBytes } from './parse.ts';

/** What a path names, for messages: "a directory", "a FIFO (named pipe)". */
export function fileKind(stats: Stats): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return 'a special file';
}

/** How {@link readInputFile} names a file in its refusals. */
export interface InputFile {
  /** "image file", "key file". */
  noun: string;
  /** What to pass instead, e.g. "pass the app image that ESP-IDF builds (build/<project>.bin)". */
  hint: string;
  /** What to do when the path names nothing; default {@link hint}. */
  missingHint?: string;
  /** Larger files are refused before a byte is read. */
  maxBytes: number;
  /** The refusal of a file larger than `maxBytes`, `size` already formatted ("3.00 GiB"). */
  tooLarge(size: string): { exitCode: CliError['exitCode']; message: string };
}

/**
 * Reads a file the user named, which must be a regular file of at most `file.maxBytes`. The kind
 * and size are checked before anything is opened: an open() of a FIFO blocks until someone
 * writes to it, and Node refuses to read files over 2 GiB with a bare ERR_FS_FILE_TOO_LARGE.
 * Every refusal is a {@link CliError} that says what the path is and what to pass instead.
 */
export async function readInputFile(path: string, file: InputFile): Promise<Uint8Array> {
  const stats = await stat(path).catch((error: unknown) => {
    throw accessError(path, error, file);
  });
  if (stats.isDirectory()) {
    throw new CliError(
      ExitCode.USAGE,
      `${path} is a directory, not ${/^[aeiou]/.test(file.noun) ? 'an' : 'a'} ${file.noun}; ${file.hint}`,
    );
  }
  if (!stats.isFile()) {
    throw new CliError(
      ExitCode.USAGE,
      `${path} is ${fileKind(stats)}, not a regular file; ${file.hint}`,
    );
  }
  if (stats.size > file.maxBytes) {
    const { exitCode, message } = file.tooLarge(formatBytes(stats.size));
    throw new CliError(exitCode, message);
  }
  try {
    return new Uint8Array(await readFile(path));
  } catch (error) {
    throw accessError(path, error, file);
  }
}

function accessError(path: string, error: unknown, file: InputFile): CliError {
  const code = (error as { code?: unknown }).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new CliError(
      ExitCode.USAGE,
      `${file.noun} not found: ${path}; ${file.missingHint ?? file.hint}`,
      { cause: error },
    );
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new CliError(ExitCode.USAGE, `cannot read ${path}: permission denied`, {
      cause: error,
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new CliError(ExitCode.USAGE, `cannot read ${file.noun} ${path}: ${message}`, {
    cause: error,
  });
}

/**
 * Refuses an output path that exists and is no regular file, before writing: a FIFO would block
 * the write until someone reads it, and a directory fails with a bare EISDIR. `what` names the
 * file to give instead ("the signed image file"); `example` is a path that would do.
 */
export async function checkOutputPath(path: string, what: string, example: string): Promise<void> {
  let stats: Stats;
  try {
    stats = await stat(path);
  } catch {
    return; // nothing there yet (or nothing stat can see): the write says what is wrong
  }
  if (stats.isDirectory()) {
    throw new CliError(
      ExitCode.USAGE,
      `${path} is a directory; give the path of ${what}, e.g. ${example}`,
    );
  }
  if (!stats.isFile()) {
    throw new CliError(
      ExitCode.USAGE,
      `${path} is ${fileKind(stats)}, not a regular file; give the path of ${what}`,
    );
  }
}
