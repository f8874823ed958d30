import { FakeDeviceRegistry, FakeTransport, FakeV2Device } from '@esp-ble-ota/testing';
import { randomAppImage, sha256Hex } from '@esp-ble-ota/testing/support';
import { describe, expect, it } from 'vitest';
import { uploadV2 } from './uploader.ts';

// How fast the client stack moves an image is a figure for `pnpm bench` (its "client stack"
// line, through the real noble); here only that a transfer many windows long arrives whole.
describe('a transfer many windows long (no link latency)', () => {
  it.each([
    { mtu: 247, window: 16 * 1024 },
    { mtu: 517, window: 32 * 1024 },
  ])(
    'moves a 1 MiB image at MTU $mtu, window $window B, byte for byte',
    async ({ mtu, window }) => {
      const image = randomAppImage(1024 * 1024, 7);
      const registry = new FakeDeviceRegistry();
      const device = registry.add(
        new FakeV2Device({ restartDelayMs: 0, window, slotSize: 8 * 1024 * 1024 }),
      );
      const transport = new FakeTransport(device.address, { registry, mtu, txBuffers: 12 });
      await transport.connect();
      const result = await uploadV2(transport, image, { compression: 'never' });
      expect(result.frameSize).toBe(mtu === 247 ? 244 : 512);
      expect(result.sentBytes).toBe(image.length);
      expect(sha256Hex(device.runningImage)).toBe(result.imageSha256);
      expect(Buffer.from(device.runningImage).equals(Buffer.from(image))).toBe(true);
      device.dispose();
    },
  );
});
