import { Scenario } from '@esp-ble-ota/hil';
import { describe, expect, it } from 'vitest';

describe('happy path', () => {
  it('flashes the new build over BLE (v2, picked by the client) and the board boots it from the other slot', async (t) => {
    const s = await Scenario.open(t);
    const before = await s.boot();
    s.result.fromVersion = before.version;
    const { upload } = await s.flash(s.images.image);
    expect(upload.protocol).toBe('v2');
    if (upload.protocol === 'v2') expect(upload.result.outcome).toBe('installed');
    await s.expectUpdated(before, s.images.firmware.version);
  });
});
