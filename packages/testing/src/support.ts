/**
 * Helpers the protocol package's tests and these share (vitest only): the baseline fake rig,
 * the recorded traffic as one line per event, and pseudo-random ESP app images.
 */

import { createHash } from 'node:crypto';
import { afterEach, beforeEach, vi } from 'vitest';
import {
  FakeBaselineDevice,
  type FakeBaselineDeviceOptions,
  FakeDeviceRegistry,
  FakeTransport,
  type FakeTransportOptions,
} from './fake-transport.ts';

export const hex = (data: Uint8Array) => Buffer.from(data).toString('hex');
export const sha256Hex = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/**
 * A fresh device registry for every test of the calling file, fake timers undone after each,
 * and `setup()` for a baseline device (restarting 1 ms after DONE) with a transport to it.
 */
export function useBaselineRig() {
  let registry = new FakeDeviceRegistry();
  beforeEach(() => {
    registry = new FakeDeviceRegistry();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  return {
    get registry() {
      return registry;
    },
    setup(
      deviceOptions: FakeBaselineDeviceOptions = {},
      transportOptions: FakeTransportOptions = {},
    ) {
      const device = registry.add(new FakeBaselineDevice({ restartDelayMs: 1, ...deviceOptions }));
      const transport = new FakeTransport(device.address, { registry, ...transportOptions });
      return { device, transport };
    },
  };
}

/** What went over the fake link after connecting, one line an event, data in hex. */
export function trafficLines(transport: FakeTransport): string[] {
  return transport.recording
    .filter((r) => r.kind !== 'connect')
    .map((r) => {
      switch (r.kind) {
        case 'write':
          return `write${r.withResponse ? '' : '-cmd'} ${r.characteristic} ${hex(r.data)}`;
        case 'notification':
          return `notify ${r.characteristic} ${hex(r.data)}`;
        case 'disconnect':
          return `disconnect ${r.initiator} ${r.reason}`;
        default:
          return `${r.kind} ${r.characteristic}`;
      }
    });
}

/**
 * `length` pseudo-random bytes from `seed` (a 32-bit LCG, so a test can rebuild the same image)
 * that read as an ESP app image: 0xE9 magic and the chip id at bytes 12-13. `mask` limits each
 * byte's bits, so deflate has something to gain.
 */
export function randomAppImage(
  length: number,
  seed: number,
  options: { chipId?: number; mask?: number } = {},
): Uint8Array {
  const image = new Uint8Array(length);
  const mask = options.mask ?? 0xff;
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    image[i] = (x >>> 24) & mask;
  }
  image[0] = 0xe9;
  image[12] = (options.chipId ?? 0) & 0xff;
  image[13] = (options.chipId ?? 0) >> 8;
  return image;
}
