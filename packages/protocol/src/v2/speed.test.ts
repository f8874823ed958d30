import { describe, expect, it } from 'vitest';
import { FakeDeviceRegistry, FakeTransport } from '../fake-transport.ts';
import { randomAppImage, sha256Hex } from '../test-support.ts';
import { FakeV2Device } from './fake-device.ts';
import { uploadV2 } from './uploader.ts';

describe('client stack speed (no link latency)', () => {
  it.each([
    { mtu: 247, window: 16 * 1024 },
    { mtu: 517, window: 32 * 1024 },
  ])('moves a 4 MiB image at MTU $mtu and prints bytes/s', async ({ mtu, window }) => {
    const image = randomAppImage(4 * 1024 * 1024, 7);
    const registry = new FakeDeviceRegistry();
    const device = registry.add(
      new FakeV2Device({ restartDelayMs: 0, window, slotSize: 8 * 1024 * 1024 }),
    );
    const transport = new FakeTransport(device.address, { registry, mtu, txBuffers: 12 });
    await transport.connect();
    const started = performance.now();
    const result = await uploadV2(transport, image, { compression: 'never' });
    const seconds = (performance.now() - started) / 1000;
    const mbps = image.length / seconds / 1e6;
    console.log(
      `client stack: ${(image.length / 1e6).toFixed(1)} MB at MTU ${mtu} (frame ${result.frameSize} B, window ${window} B) in ${seconds.toFixed(3)} s = ${mbps.toFixed(1)} MB/s (data phase ${(result.bytesPerSecond / 1e6).toFixed(1)} MB/s)`,
    );
    expect(result.sentBytes).toBe(image.length);
    expect(sha256Hex(device.runningImage)).toBe(result.imageSha256);
    device.dispose();
  });
});
