import { OTA_CONTROL_UUID, OTA_DATA_UUID } from '@esp-ble-ota/protocol';
import {
  createProfileLink,
  getProfile,
  type ModeledAirScheduler,
  streamCeilingKBps,
} from '@esp-ble-ota/sim';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openTransport } from './open.ts';
import { Chr, releaseVirtualNobles, setupVirtual } from './test/virtual-radio.ts';
import type { NobleTransport } from './transport.ts';

afterEach(() => releaseVirtualNobles());

// The modeled link (LINK-MODEL.md's Linux/noble central and a classic ESP32): the central's
// controller returns ACL credits only as PDUs go on air, so pacing meets real back-pressure.
const profile = getProfile('linux-noble-esp32');
const links: ModeledAirScheduler[] = [];
let transport: NobleTransport | undefined;

afterAll(async () => {
  await transport?.close();
});

describe('Write Command pacing on the modeled link', () => {
  it('keeps the backlog bounded, the order intact and the link busy', async () => {
    const setup = setupVirtual({
      address: '24:0a:c4:00:01:01',
      createLink: () => {
        const link = createProfileLink(profile);
        links.push(link);
        return link;
      },
    });
    const opened = await openTransport({ noble: setup.noble, address: setup.peripheral.address });
    transport = opened.transport;
    const link = links.at(-1);
    expect(link).toBeDefined();
    if (link === undefined) return;

    const budget = 2 * (transport.controllerBuffers?.num ?? 0);
    const size = transport.mtu - 3;
    const count = 400;
    const startUs = link.nowUs;
    let worst = 0;
    for (let i = 0; i < count; i++) {
      const packet = new Uint8Array(size).fill(i & 0xff);
      packet[0] = i >> 8;
      await transport.write(OTA_DATA_UUID, packet, { withResponse: false });
      worst = Math.max(worst, transport.aclBacklog() ?? 0);
    }
    // A Write Request after the stream: its response means every command before it arrived.
    await transport.write(OTA_CONTROL_UUID, Uint8Array.of(0), { withResponse: true });
    const elapsedUs = link.nowUs - startUs;

    expect(worst).toBeLessThan(budget);
    const received = setup.app.writes.filter((w) => w.chrId === Chr.data);
    expect(received).toHaveLength(count);
    expect(received.map((w) => ((w.data[0] ?? 0) << 8) | (w.data[1] ?? 0))).toEqual(
      Array.from({ length: count }, (_, i) => ((i >> 8) << 8) | (i & 0xff)),
    );
    // Modeled throughput: pacing must not leave the link idle between credits.
    const kBps = (count * size) / 1000 / (elapsedUs / 1e6);
    const ceiling = streamCeilingKBps({ ...link.params, attMtu: transport.mtu });
    expect(kBps).toBeGreaterThan(0.85 * ceiling);
    expect(kBps).toBeLessThanOrEqual(ceiling * 1.01);
  });
});
