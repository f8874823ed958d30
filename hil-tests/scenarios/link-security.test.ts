import { readFile } from 'node:fs/promises';
import { Scenario } from '@esp-ble-ota/hil';
import { InsecureLinkError } from '@esp-ble-ota/protocol';
import type { PairingOutcome } from '@esp-ble-ota/sim';
import { describe, expect, it } from 'vitest';

/** Every pairing on the board's radio while the scenario runs (virtual rig only). */
function pairings(s: Scenario): PairingOutcome[] {
  const seen: PairingOutcome[] = [];
  s.board?.peripheral.on('pairing', (_conn, outcome) => seen.push(outcome));
  return seen;
}

describe('link security', () => {
  it('the OTA writes need an encrypted link: noble pairs on the first refusal, then the update goes through', async (t) => {
    // The rig's secure default (CONFIG_BLE_OTA_LINK_SECURITY "encrypted"), as every other scenario.
    const s = await Scenario.open(t);
    const seen = pairings(s);
    const before = await s.boot();
    s.result.fromVersion = before.version;
    await s.flash(s.images.image);
    await s.expectUpdated(before, s.images.firmware.version);
    if (s.board) {
      expect(seen).toEqual([{ result: 'paired', method: 'legacy-just-works', bonded: true }]);
      s.check(
        'paired before the first OTA write',
        s.board.peripheral.bonds.size === 1,
        'LE legacy Just Works, bonded',
      );
    }
  });

  it('a client that cannot make the pairing the board needs is refused, and nothing on the board changes', async (t) => {
    const s = await Scenario.open(t, {
      board: { security: { linkSecurity: 'authenticated' } },
      benchNeeds:
        'a board built with CONFIG_BLE_OTA_LINK_SECURITY "authenticated" (passkey pairing, which noble cannot do)',
    });
    const seen = pairings(s);
    const before = await s.boot();
    const image = new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image));
    const refused = await s.flash(image, { protocol: 'v2' }).catch((e: unknown) => e);
    s.check('unpaired client refused', refused instanceof InsecureLinkError, String(refused));
    const error = refused as InsecureLinkError;
    expect(error.smpReason).toBe(0x03);
    expect(error.message).toMatch(/the device refused to pair \(SMP authentication requirements/);
    if (s.board) {
      expect(seen).toEqual([expect.objectContaining({ result: 'refused', reason: 0x03 })]);
      expect(s.board.peripheral.bonds.size).toBe(0);
    }
    // The write never reached the firmware: no session was opened, nothing erased.
    const after = await s.boot();
    expect(after).toEqual(before);
    expect(s.console.lastLines.some((l) => /v2 update: |OTA requested/.test(l))).toBe(false);
  });
});
