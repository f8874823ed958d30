import { Scenario } from '@esp-ble-ota/hil';
import { describe, it } from 'vitest';

describe('baseline compatibility', () => {
  it('a client written like the baseline (REQUEST and DONE as Write Commands) still updates the firmware', async (t) => {
    const s = await Scenario.open(t);
    const before = await s.boot();
    await s.flash(s.images.image, { requestWriteType: 'command' });
    await s.expectUpdated(before, s.images.firmware.version);
  });
});
