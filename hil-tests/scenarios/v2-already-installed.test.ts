import { Scenario } from '@esp-ble-ota/hil';
import { describe, expect, it } from 'vitest';

describe('v2 already installed', () => {
  it('flashing the image the board already runs sends nothing and reports success', async (t) => {
    const s = await Scenario.open(t);
    const before = await s.boot();
    await s.flash(s.images.image);
    const running = await s.expectUpdated(before, s.images.firmware.version);

    const again = await s.flash(s.images.image);
    if (again.upload.protocol !== 'v2') throw new Error('expected v2');
    expect(again.upload.result.outcome).toBe('already-installed');
    s.check(
      'already installed: no image byte sent',
      again.upload.result.sentBytes === 0 && again.upload.result.sentFrames === 0,
      `${again.upload.result.sentBytes} bytes in ${again.upload.result.sentFrames} frames`,
    );
    // No restart: the board keeps running the same app in the same slot.
    const after = await s.boot();
    expect(after).toEqual(running);
  });
});
