import { Scenario } from '@esp-ble-ota/hil';
import { realisticImage, realisticImageMissing } from '@esp-ble-ota/sim';
import { describe, expect, it } from 'vitest';

// firmware/target-image: the firmware's core and picolibc compiled for RISC-V (the ESP32-C3's
// ISA), so that deflate meets the bytes a real update carries, not a host executable.
describe('realistic image', () => {
  it('RISC-V code goes over v2 with deflate, is verified and installed; with nothing the board can run, it is rolled back (needs the RISC-V toolchain)', async (t) => {
    const missing = realisticImageMissing();
    const s = await Scenario.open(t, {
      unavailable: missing && `no realistic image: ${missing}`,
      benchNeeds:
        'the virtual rig: the realistic image holds no code a board can start, so a bench board would only roll it back',
      expectPanic: true,
    });
    const before = await s.boot();
    const image = await realisticImage('esp32', 'realistic-1');
    s.check(
      'deflate leaves 50-70% of RISC-V code and data',
      image.deflateRatio > 0.5 && image.deflateRatio < 0.7,
      `${(image.deflateRatio * 100).toFixed(1)}% of ${image.bytes.length} B (${image.codeBytes} B of code and data, ${image.copies} copies)`,
    );
    // Signed like every image of the run: the board takes signed updates only.
    const bytes = await s.signed(image.bytes);
    const { upload } = await s.flash(bytes, { protocol: 'v2', compression: 'always' });
    expect(upload.protocol).toBe('v2');
    if (upload.protocol !== 'v2') return;
    expect(upload.result.outcome).toBe('installed');
    expect(upload.result.streamSize).toBeLessThan(0.7 * bytes.length);
    s.check(
      'sent deflated and installed',
      upload.result.streamSize < bytes.length,
      `${upload.result.streamSize} B on the air for ${bytes.length} B`,
    );
    // The board jumps into code it cannot run, the panic handler restarts it, and the
    // bootloader rolls the never-confirmed image back.
    // (no app information follows: the app never starts)
    const trial = await s.console.expectEvent('bootApp', { timeout: 30_000 });
    await s.console.expect(/Guru Meditation Error/);
    s.check(
      'the board jumped into the image and faulted',
      trial.offset !== before.offset,
      `at 0x${trial.offset.toString(16)}`,
    );
    const after = await s.expectBoot();
    s.check(
      'rolled back to the old firmware',
      after.offset === before.offset && after.version === before.version,
      `${after.version} at 0x${after.offset.toString(16)}`,
    );
  });
});
