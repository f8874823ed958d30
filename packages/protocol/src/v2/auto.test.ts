import {
  FakeBaselineDevice,
  FakeDeviceRegistry,
  FakeTransport,
  FakeV2Device,
} from '@esp-ble-ota/testing';
import { randomAppImage, sha256Hex } from '@esp-ble-ota/testing/support';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OTA_DATA_UUID } from '../baseline.ts';
import * as pkg from '../index.ts';
import { type AutoPhaseEvent, uploadAuto } from './auto.ts';
import { V2_DATA_UUID } from './codec.ts';

let registry: FakeDeviceRegistry;
const disposables: { dispose(): void }[] = [];

beforeEach(() => {
  registry = new FakeDeviceRegistry();
});

afterEach(() => {
  for (const d of disposables.splice(0)) d.dispose();
});

const makeImage = (length: number) => randomAppImage(length, 99);

function v2Device(options: ConstructorParameters<typeof FakeV2Device>[0] = {}) {
  const device = registry.add(new FakeV2Device({ restartDelayMs: 1, ...options }));
  disposables.push(device);
  return device;
}

function baselineDevice() {
  const device = registry.add(
    new FakeBaselineDevice({ restartDelayMs: 1, padShortPackets: false }),
  );
  disposables.push(device);
  return device;
}

describe('uploadAuto', () => {
  it('uses v2 when the device offers it, connecting by itself', async () => {
    const device = v2Device();
    const transport = new FakeTransport(device.address, { registry });
    const phases: AutoPhaseEvent[] = [];
    const image = makeImage(30_000);
    const outcome = await uploadAuto(transport, image, { onPhase: (e) => phases.push(e) });
    expect(outcome.protocol).toBe('v2');
    expect(outcome.choice).toBe('v2-offered');
    expect(phases[0]).toMatchObject({ protocol: 'discovery', phase: 'connect', state: 'start' });
    expect(phases.some((e) => e.protocol === 'v2' && e.phase === 'data')).toBe(true);
    expect(sha256Hex(device.runningImage)).toBe(sha256Hex(image));
  });

  it('falls back to the baseline protocol on a baseline-only device', async () => {
    const device = baselineDevice();
    const transport = new FakeTransport(device.address, { registry });
    const image = makeImage(5000);
    const progress: string[] = [];
    const outcome = await uploadAuto(transport, image, {
      onProgress: (p) => progress.push(p.protocol),
    });
    expect(outcome).toMatchObject({ protocol: 'baseline', choice: 'no-v2-characteristics' });
    expect(progress.every((p) => p === 'baseline')).toBe(true);
    expect(device.bootedImage).toEqual(image);
    expect(transport.writes().every((w) => w.characteristic !== V2_DATA_UUID)).toBe(true);
  });

  it('falls back to the baseline protocol when the MTU cannot carry BEGIN', async () => {
    const device = v2Device({ baseline: true });
    const transport = new FakeTransport(device.address, { registry, mtu: 23 });
    const image = makeImage(2000);
    const outcome = await uploadAuto(transport, image);
    expect(outcome).toMatchObject({ protocol: 'baseline', choice: 'mtu-too-small' });
    expect(device.baseline?.bootedImage?.subarray(0, image.length)).toEqual(image);
  });

  it('can be forced to the baseline on a device that has both; the baseline drops a v2 session', async () => {
    const device = v2Device({
      baseline: true,
      ackEvery: 1024,
      faults: { dropLinkAtStreamByte: 5000 },
    });
    const transport = new FakeTransport(device.address, { registry });
    const image = makeImage(20_000);
    await expect(uploadAuto(transport, image, { protocol: 'v2' })).rejects.toMatchObject({
      code: 'LINK_LOST',
    });
    expect(device.hasSession).toBe(true);
    const outcome = await uploadAuto(transport, image, { protocol: 'baseline' });
    expect(outcome).toMatchObject({ protocol: 'baseline', choice: 'forced' });
    expect(device.hasSession).toBe(false);
    expect(transport.writes().some((w) => w.characteristic === OTA_DATA_UUID)).toBe(true);
    expect(device.baseline?.bootedImage?.subarray(0, image.length)).toEqual(image);
  });

  it('forcing v2 on a baseline-only device says which characteristic is missing', async () => {
    const device = baselineDevice();
    const transport = new FakeTransport(device.address, { registry });
    await expect(uploadAuto(transport, makeImage(100), { protocol: 'v2' })).rejects.toMatchObject({
      code: 'UNKNOWN_CHARACTERISTIC',
    });
  });

  it('is exported from the package entry point', () => {
    expect(pkg.uploadAuto).toBe(uploadAuto);
    expect(typeof pkg.uploadV2).toBe('function');
    // The test doubles live in @esp-ble-ota/testing, not in the production package.
    expect('FakeV2Device' in pkg).toBe(false);
    expect('FakeTransport' in pkg).toBe(false);
    expect(typeof pkg.V2RefusedError).toBe('function');
  });
});
