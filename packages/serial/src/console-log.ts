import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { ConsoleTextNormalizer } from './text.ts';

/** Where one test's console log goes. */
export interface ConsoleLogPaths {
  /** Every byte received, unchanged (colour codes included): `cat` it in a terminal. */
  raw: string;
  /** The same text with colour codes and `\r` removed: for reports, junit, grep. */
  text: string;
}

/** `logs/happy-path.log` -> raw `logs/happy-path.log`, text `logs/happy-path.txt`. */
export function consoleLogPaths(path: string): ConsoleLogPaths {
  const text = /\.log$/.test(path) ? path.replace(/\.log$/, '.txt') : `${path}.txt`;
  return { raw: path, text };
}

/**
 * Writes the console of one test to two files: the raw bytes (what was on the wire, for
 * evidence) and a plain-text copy (what a person or a report wants to read).
 */
export class ConsoleLog {
  readonly paths: ConsoleLogPaths;
  private readonly raw: WriteStream;
  private readonly text: WriteStream;
  private readonly normalizer = new ConsoleTextNormalizer();
  private readonly decoder = new TextDecoder('utf-8');
  private closed = false;
  private atLineStart = true;
  // A full disk must not crash the run in the middle of a test: the error is reported by close().
  private failure: Error | undefined;

  constructor(path: string) {
    this.paths = consoleLogPaths(path);
    mkdirSync(dirname(this.paths.raw), { recursive: true });
    mkdirSync(dirname(this.paths.text), { recursive: true });
    this.raw = createWriteStream(this.paths.raw);
    this.text = createWriteStream(this.paths.text);
    for (const stream of [this.raw, this.text]) {
      stream.on('error', (err) => {
        this.failure ??= err;
      });
    }
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.raw.write(bytes);
    this.writeText(this.normalizer.push(this.decoder.decode(bytes, { stream: true })));
  }

  /** A note from the test side (reset, reopen), marked so it cannot pass for device output. */
  note(message: string): void {
    if (this.closed) return;
    this.writeText(`${this.atLineStart ? '' : '\n'}--- ${message} ---\n`);
  }

  private writeText(text: string): void {
    if (text === '') return;
    this.text.write(text);
    this.atLineStart = text.endsWith('\n');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.writeText(this.normalizer.push(this.decoder.decode()) + this.normalizer.end());
    await Promise.all([
      new Promise<void>((resolve, reject) =>
        this.raw.end((err?: Error | null) => (err ? reject(err) : resolve())),
      ),
      new Promise<void>((resolve, reject) =>
        this.text.end((err?: Error | null) => (err ? reject(err) : resolve())),
      ),
    ]).catch((err: Error) => {
      this.failure ??= err;
    });
    if (this.failure) {
      throw new Error(
        `the console log ${this.paths.raw} could not be written (${this.failure.message}): check the disk and the directory's permissions`,
        { cause: this.failure },
      );
    }
  }
}
