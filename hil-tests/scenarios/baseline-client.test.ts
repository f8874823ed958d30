import { Scenario } from '@esp-ble-ota/hil';
import { describe, expect, it } from 'vitest';

describe('baseline compatibility', () => {
  it('a client written like the baseline (REQUEST and DONE as Write Commands) still updates the firmware', async (t) => {
    const s = await Scenario.open(t);
    const before = await s.boot();
    const { upload } = await s.flash(s.images.image, {
      protocol: 'baseline',
      requestWriteType: 'command',
    });
    expect(upload.protocol).toBe('baseline');
    await s.expectUpdated(before, s.images.firmware.version);
  });
});
