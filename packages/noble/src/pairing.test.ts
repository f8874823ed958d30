import {
  InsecureLinkError,
  MODEL_NUMBER_UUID,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
} from '@esp-ble-ota/protocol';
import type { PairingOutcome } from '@esp-ble-ota/sim';
import { afterEach, describe, expect, it } from 'vitest';
import { openTransport } from './open.ts';
import { Chr, releaseVirtualNobles, setupVirtual } from './test/virtual-radio.ts';
import type { NobleTransport } from './transport.ts';

const open: NobleTransport[] = [];
afterEach(async () => {
  for (const t of open.splice(0)) await t.close();
  releaseVirtualNobles();
});

let nextAddress = 0x40;
async function connected(writeSecurity: 'encrypted' | 'authenticated') {
  const setup = setupVirtual({
    address: `24:0a:c4:00:01:${(nextAddress++).toString(16).padStart(2, '0')}`,
    writeSecurity,
  });
  const pairings: PairingOutcome[] = [];
  const refusedWrites: number[] = [];
  setup.peripheral.on('pairing', (_conn, outcome) => pairings.push(outcome));
  setup.peripheral.on('insecureWrite', (_conn, _chr, code) => refusedWrites.push(code));
  const { transport } = await openTransport({
    noble: setup.noble,
    address: setup.peripheral.address,
    scanTimeoutMs: 2000,
  });
  open.push(transport);
  return { ...setup, transport, pairings, refusedWrites };
}

describe("a device whose OTA writes need an encrypted link, through noble's own pairing", () => {
  it('the first write is refused (Insufficient Authentication), noble pairs Just Works, and the same write then goes through once', async () => {
    const { transport, app, peripheral, pairings, refusedWrites } = await connected('encrypted');
    await transport.write(OTA_DATA_UUID, Uint8Array.of(0xf4, 0x00), { withResponse: true });

    expect(refusedWrites).toEqual([0x05]);
    expect(pairings).toEqual([{ result: 'paired', method: 'legacy-just-works', bonded: true }]);
    expect(app.writes.map((w) => [w.chrId, [...w.data]])).toEqual([[Chr.data, [0xf4, 0x00]]]);
    const conn = app.conn ?? -1;
    expect(peripheral.linkSecurity(conn)).toEqual({
      encrypted: true,
      authenticated: false,
      keySize: 16,
      bonded: true,
    });
    // Later writes, Write Commands included, need no second pairing.
    await transport.write(OTA_CONTROL_UUID, Uint8Array.of(0x01), { withResponse: false });
    await transport.write(OTA_DATA_UUID, Uint8Array.of(1, 2, 3), { withResponse: true });
    expect(app.writes).toHaveLength(3);
    expect(pairings).toHaveLength(1);
  });

  it('drops a Write Command sent before the link is encrypted: it never reaches the firmware', async () => {
    const { transport, app, refusedWrites } = await connected('encrypted');
    await transport.write(OTA_CONTROL_UUID, Uint8Array.of(0x01), { withResponse: false });
    // A request behind it is answered, so the command was handled (and dropped) by then.
    await transport.read(MODEL_NUMBER_UUID);
    expect(refusedWrites).toEqual([0x05]);
    expect(app.writes).toEqual([]);
  });

  it('pairs again on a new connection (noble keeps no keys) and the device replaces the old bond', async () => {
    const first = await connected('encrypted');
    await first.transport.write(OTA_DATA_UUID, Uint8Array.of(1), { withResponse: true });
    const ltk = [...first.peripheral.bonds.values()][0]?.ltk;
    await first.transport.disconnect();
    await first.transport.connect();
    await first.transport.write(OTA_DATA_UUID, Uint8Array.of(2), { withResponse: true });
    expect(first.pairings.map((p) => p.result)).toEqual(['paired', 'paired']);
    expect(first.peripheral.bonds.size).toBe(1);
    expect([...first.peripheral.bonds.values()][0]?.ltk.equals(ltk ?? Buffer.alloc(0))).toBe(false);
  });
});

describe('a device that needs a pairing with MITM protection (CONFIG_BLE_OTA_LINK_SECURITY "authenticated")', () => {
  it("refuses noble's LE legacy pairing; the write fails with the reason and the firmware never sees it", async () => {
    const { transport, app, pairings } = await connected('authenticated');
    const error = await transport
      .write(OTA_DATA_UUID, Uint8Array.of(0xf4, 0x00), { withResponse: true })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InsecureLinkError);
    expect((error as InsecureLinkError).smpReason).toBe(0x03);
    expect((error as Error).message).toMatch(
      /cannot write characteristic .*: the device refused to pair \(SMP authentication requirements \(0x03\)\).*noble pairs LE legacy Just Works only/,
    );
    expect(pairings).toEqual([expect.objectContaining({ result: 'refused', reason: 0x03 })]);
    expect(app.writes).toEqual([]);
  });
});
