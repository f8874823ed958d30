import { Scenario } from '@esp-ble-ota/hil';
import { describe, it } from 'vitest';

describe('rollback', () => {
  it('new firmware that fails its self-test is rolled back by the bootloader to the old one', async (t) => {
    const s = await Scenario.open(t, {
      benchNeeds:
        'an image built with CONFIG_BLE_OTA_SELF_TEST_FORCE_FAIL (not built for the bench)',
    });
    const bad = s.images.selfTestFailImage;
    if (!bad) throw new Error('the build produced no self-test-fail image');
    const before = await s.boot();
    const { info } = await s.flash(bad);
    // The bad image boots once from the other slot, fails its self-test and asks for rollback.
    const trial = await s.expectBoot();
    await s.console.expect(/Rollback to previously worked partition/);
    s.check(
      'bad image booted once and failed its self-test',
      trial.offset !== before.offset && trial.version === info.version,
      `${trial.version} at 0x${trial.offset.toString(16)}`,
    );
    // The bootloader finds it aborted and boots the old slot, which is still valid.
    const after = await s.expectBoot();
    s.check(
      'bootloader rolled back to the old firmware',
      after.offset === before.offset && after.version === before.version,
      `${after.version} at 0x${after.offset.toString(16)}`,
    );
  });
});
