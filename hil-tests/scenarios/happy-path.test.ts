import { Scenario } from '@esp-ble-ota/hil';
import { describe, expect, it } from 'vitest';

describe('happy path', () => {
  it('flashes the new build over BLE and the board boots it from the other slot', async (t) => {
    const s = await Scenario.open(t);
    const before = await s.boot();
    s.result.fromVersion = before.version;
    const { result } = await s.flash(s.images.image);
    expect(result.bytes).toBe(s.result.imageBytes);
    await s.expectUpdated(before, s.images.firmware.version);
  });
});
