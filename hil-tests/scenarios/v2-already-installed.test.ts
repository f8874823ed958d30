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
    expect(again.upload.result.sentBytes).toBe(0);
    expect(again.upload.result.sentFrames).toBe(0);
    s.check('already installed: no image byte sent', true);
    // No restart: the board keeps running the same app in the same slot.
    const after = await s.boot();
    expect(after).toEqual(running);
  });
});
