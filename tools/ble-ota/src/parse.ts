import { InvalidArgumentError } from 'commander';

/** The longest delay a Node.js timer takes (2^31-1 ms, 24.8 days); a longer one fires at once. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** "10", "10s", "1.5s", "500ms", "2m" -> milliseconds. A bare number is seconds. */
export function parseDuration(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (match === null) {
    throw new InvalidArgumentError(`"${value}" is not a duration; use e.g. 10, 10s, 500ms or 2m`);
  }
  const n = Number(match[1]);
  const unit = match[2] ?? 's';
  const ms = unit === 'ms' ? n : unit === 'm' ? n * 60_000 : n * 1000;
  if (!(ms > 0)) throw new InvalidArgumentError(`"${value}" must be longer than zero`);
  if (Math.round(ms) > MAX_DURATION_MS) {
    throw new InvalidArgumentError(
      `"${value}" is longer than the longest wait this tool can time (${MAX_DURATION_MS} ms, about 24.8 days); use a shorter duration`,
    );
  }
  return Math.max(1, Math.round(ms));
}

/** "1048576", "0x100000", "1M", "1536K" -> bytes. */
export function parseSize(value: string): number {
  const match = /^(0x[0-9a-f]+|\d+)([kKmM])?$/.exec(value.trim());
  if (match === null) {
    throw new InvalidArgumentError(
      `"${value}" is not a size; use bytes (1048576, 0x100000) or 1024K, 1M`,
    );
  }
  const base = Number(match[1]);
  const unit = match[2]?.toLowerCase();
  const bytes = unit === 'k' ? base * 1024 : unit === 'm' ? base * 1024 * 1024 : base;
  if (!(bytes > 0)) throw new InvalidArgumentError(`"${value}" must be larger than zero`);
  return bytes;
}

export function parseBaud(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 300 || n > 10_000_000) {
    throw new InvalidArgumentError(`"${value}" is not a baud rate; use e.g. 115200`);
  }
  return n;
}

/** Bluetooth address: six hex pairs, colons or dashes optional. */
export function parseAddress(value: string): string {
  const hex = value.toLowerCase().replace(/[:-]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) {
    throw new InvalidArgumentError(
      `"${value}" is not a Bluetooth address; use e.g. 24:0a:c4:12:34:56`,
    );
  }
  return hex.match(/../g)?.join(':') ?? hex;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(2)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return `${m} min ${s} s`;
}

/** A count of 0 or more ("3"), for retries and the like. */
export function parseCount(value: string): number {
  const n = Number(value.trim());
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(`"${value}" is not a count; use a whole number such as 0 or 3`);
  }
  return n;
}

/** A TCP port: 1 to 65535, or 0 for any free one. */
export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 65_535) {
    throw new InvalidArgumentError(
      `"${value}" is not a TCP port; use 1 to 65535, or 0 for any free one`,
    );
  }
  return n;
}
