// The firmware's denial-of-service limits on the virtual rig, through the real noble: a central
// that connects and does nothing is dropped by the device (its TERMINATE frame becomes a
// peripheral-initiated disconnect on the air) and the board advertises again.
import { stripVTControlCharacters } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Noble } from './hci/install.ts';
import { startVirtualRig, type VirtualBoard, type VirtualRig } from './rig.ts';
import { findByName, waitPoweredOn } from './testing/baseline-client.ts';

type NoblePeripheral = Awaited<ReturnType<typeof findByName>>;

/** Console text of a board from now on (colour codes removed). */
function record(board: VirtualBoard) {
  let text = '';
  board.device.on('console', (d) => {
    text += stripVTControlCharacters(Buffer.from(d).toString('latin1'));
  });
  return {
    get text() {
      return text;
    },
  };
}

/** The HCI reason noble reports when this link drops. */
function dropped(p: NoblePeripheral): Promise<number> {
  return new Promise((resolve) => p.once('disconnect', (reason: number) => resolve(reason)));
}

async function connectIdle(noble: Noble, name: string): Promise<NoblePeripheral> {
  await waitPoweredOn(noble);
  const p = await findByName(noble, name);
  await p.connectAsync();
  return p;
}

describe('virtual rig: the device drops a central that does nothing', () => {
  let rig: VirtualRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it('after its idle timeout (real time on the zero-latency link), and advertises again', async () => {
    rig = await startVirtualRig({
      profile: 'immediate',
      boards: [{ limits: { idleTimeoutS: 1 } }],
    });
    const board = rig.boards[0];
    if (!board) throw new Error('no board');
    const uart = record(board);
    const p = await connectIdle(rig.noble, 'esp32');
    expect(board.peripheral.advertising).toBe(false);
    const reason = dropped(p);
    // Nothing is sent: the firmware's once-a-second tick finds the link idle and ends it.
    expect(await reason).toBe(0x13); // remote user terminated, as ble_gap_terminate makes it
    expect(board.peripheral.connections()).toEqual([]);
    expect(board.peripheral.advertising).toBe(true);
    expect(uart.text).toMatch(
      /W \(\d+\) ble_ota: conn 1 started or moved on no update for \d+ ms: disconnecting it so that others can update/,
    );
    // The device hears of it as NimBLE reports a disconnect its own host asked for.
    await vi.waitFor(() =>
      expect(uart.text).toMatch(
        /ble_ota: disconnect reason 0x216\r\n[\s\S]*advertising as "esp32"/,
      ),
    );
    // The next central finds it and gets in.
    const again = await connectIdle(rig.noble, 'esp32');
    expect(board.peripheral.connections()).toHaveLength(1);
    await again.disconnectAsync();
  }, 60_000);

  it("at the firmware's default of 30 s on a modeled link, as idle() lets modeled time pass", async () => {
    rig = await startVirtualRig({ profile: 'linux-noble-esp32' });
    const board = rig.boards[0];
    if (!board?.modeledClock) throw new Error('no board with a modeled clock');
    const uart = record(board);
    const p = await connectIdle(rig.noble, 'esp32');
    const connectedAt = board.modeledClock.now();
    let reason: number | undefined;
    void dropped(p).then((r) => {
      reason = r;
    });
    let idleS = 0;
    while (reason === undefined && board.peripheral.connections().length > 0 && idleS < 60) {
      await board.idle(1000);
      idleS += 1;
    }
    const droppedAt = board.modeledClock.now();
    await expect.poll(() => reason).toBe(0x13);
    const logged = Number(uart.text.match(/started or moved on no update for (\d+) ms/)?.[1]);
    console.log(
      `idle central on linux-noble-esp32: dropped ${((droppedAt - connectedAt) / 1000).toFixed(1)} s of modeled time after its connect (the device counted ${logged} ms)`,
    );
    // The device's own count: the timeout, whatever real time the rig also took.
    expect(logged).toBeGreaterThanOrEqual(30_000);
    // Idle seconds: the drop came in the second that reached 30 s (the device's clock also runs
    // with the real time the rig took meanwhile, so it may come a second early).
    expect(idleS).toBeGreaterThanOrEqual(29);
    expect(idleS).toBeLessThanOrEqual(31);
    expect(board.peripheral.advertising).toBe(true);
  }, 60_000);
});
