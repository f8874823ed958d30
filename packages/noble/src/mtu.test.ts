import { startVirtualRig } from '@esp-ble-ota/sim';
import { afterEach, describe, expect, it } from 'vitest';
import { NOBLE_DEFAULT_MTU, requestedMtu, setRequestedMtu } from './mtu.ts';
import { openTransport } from './open.ts';

afterEach(() => {
  setRequestedMtu(NOBLE_DEFAULT_MTU);
});

/** The MTU a new link to the rig's board settles on, through the real noble. */
async function negotiated(profile: string): Promise<number> {
  const rig = await startVirtualRig({ profile, boards: [{ restartDelayMs: 0 }] });
  try {
    const board = rig.boards[0];
    if (!board) throw new Error('no board');
    const { transport } = await openTransport({
      noble: rig.noble,
      address: board.address,
      scanTimeoutMs: 5000,
    });
    const mtu = transport.mtu;
    await transport.close();
    return mtu;
  } finally {
    await rig.close();
  }
}

describe("noble's requested MTU (the one hook into noble's Gatt)", () => {
  it('asks for 256 by default, as noble does, and for 517 once set: the firmware prefers 517', async () => {
    expect(requestedMtu()).toBe(256);
    expect(await negotiated('immediate')).toBe(256);
    expect(setRequestedMtu(517)).toBe(256);
    expect(await negotiated('immediate')).toBe(517);
    // a central that offers less keeps the link at its value (macOS: 185)
    expect(await negotiated('macos-esp32')).toBe(185);
  }, 60_000);

  it('refuses an MTU ATT cannot have', () => {
    expect(() => setRequestedMtu(22)).toThrow(/from 23 to 517, got 22/);
    expect(() => setRequestedMtu(518)).toThrow(RangeError);
    expect(() => setRequestedMtu(300.5)).toThrow(RangeError);
    expect(requestedMtu()).toBe(256);
  });
});
