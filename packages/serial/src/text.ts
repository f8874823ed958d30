// ANSI escape sequences as ESP-IDF and terminal programs emit them: CSI (ESC [ ... final byte)
// covers the colour codes that CONFIG_LOG_COLORS adds; the two-byte forms cover the rest.
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts every sequence we remove
const CSI = /\x1b\[[0-?]*[ -/]*[@-~]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts every sequence we remove
const TWO_BYTE_ESC = /\x1b[@-Z\\-_]/g;
// An escape sequence cut by a chunk boundary: held back until the rest arrives.
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts every sequence we remove
const UNFINISHED_ESC = /\x1b(?:\[[0-?]*[ -/]*)?$/;

/** Removes ANSI escape sequences (colour codes) from complete text. */
export function stripAnsi(text: string): string {
  return text.replace(CSI, '').replace(TWO_BYTE_ESC, '');
}

/**
 * Turns console output, chunk by chunk, into the text that expect() and the line parser see:
 * colour codes removed and every `\r` dropped, so lines end in `\n` whether the device sent
 * `\r\n`, `\n`, or `\r\r\n` (a terminal's ONLCR on top of the app's own CRLF).
 */
export class ConsoleTextNormalizer {
  private pending = '';

  push(chunk: string): string {
    let text = this.pending + chunk;
    this.pending = '';
    const tail = UNFINISHED_ESC.exec(text);
    // A lone ESC that stays unfinished for more than a few bytes is noise, not a sequence.
    if (tail && text.length - tail.index <= 32) {
      this.pending = text.slice(tail.index);
      text = text.slice(0, tail.index);
    }
    return stripAnsi(text).replace(/\r/g, '');
  }

  /** Returns whatever was held back (an escape sequence that never completed). */
  end(): string {
    const rest = this.pending;
    this.pending = '';
    return rest.replace(/\r/g, '');
  }
}
