import { readFile } from 'node:fs/promises';
import { Scenario } from '@esp-ble-ota/hil';
import { DeviceRefusedError } from '@esp-ble-ota/protocol';
import { describe, it } from 'vitest';

describe('corrupt image', () => {
  it('the device refuses an image corrupted on the way (DONE_NAK) and the old firmware still boots', async (t) => {
    // On the virtual rig one data packet is corrupted in the air; on a bench the client sends
    // a corrupted image on purpose (its own check would otherwise refuse it first).
    const s = await Scenario.open(t, {
      board: {
        faults: [
          {
            kind: 'corrupt-att-pdu',
            name: 'corrupt-data-packet-100',
            match: { direction: 'c2p', chrId: 1, nth: 100 },
            offset: 40,
          },
        ],
      },
    });
    const before = await s.boot();
    let image = new Uint8Array(await readFile(s.images.image));
    if (s.ctx.rig === 'bench') {
      image = image.slice();
      image[image.length >> 1] = (image[image.length >> 1] ?? 0) ^ 0xff;
    }
    // The baseline protocol has no check of its own before DONE: the device's image check must
    // catch it (v2 catches it earlier, by the CRC in every window ack: v2-corrupt-frame).
    const refused = await s.flash(image, { allowCorrupt: true, protocol: 'baseline' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    s.check(
      'device refused the image at DONE',
      refused instanceof DeviceRefusedError && refused.step === 'DONE',
      String(refused),
    );
    const after = await s.boot();
    s.check(
      'old firmware still boots',
      after.offset === before.offset && after.version === before.version,
      `${after.version} at 0x${after.offset.toString(16)}`,
    );
  });
});
