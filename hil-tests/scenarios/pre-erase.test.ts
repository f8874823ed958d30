import { Scenario } from '@esp-ble-ota/hil';
import type { DeviceFlashOp, VirtualBoard } from '@esp-ble-ota/sim';
import { describe, expect, it } from 'vitest';

// Issue 21's pre-erased update slot, on the virtual rig with the firmware's defaults
// (CONFIG_BLE_OTA_PRE_ERASE "when idle without a BLE connection", 30 s after the board went
// idle, one 64 KB block a second): modeled time passes with nothing on the air
// (VirtualBoard.idle), the board erases the slot, and the next update erases nothing.
const BENCH_NEEDS = 'modeled idle time and the flash operations of the board (the virtual rig)';
const TICK_MS = 1000;
/** The delay (30 s), 31 blocks of a 1.94 MB slot a second apart, and room to spare. */
const IDLE_MS = 75_000;
const BLOCK = 0x10000;
/** App slots start at 0x10000 (firmware/partitions.csv); below is nvs and otadata. */
const APP_SLOTS = 0x10000;

function boardOf(s: Scenario): VirtualBoard {
  if (!s.board) throw new Error('this scenario needs the virtual rig (modeled idle time)');
  return s.board;
}

/** The app-slot erases the board makes while `fn` runs. */
async function slotErases(
  board: VirtualBoard,
  fn: () => Promise<unknown>,
): Promise<DeviceFlashOp[]> {
  const ops: DeviceFlashOp[] = [];
  const on = (op: DeviceFlashOp) => {
    if (op.op === 'erase' && op.addr >= APP_SLOTS) ops.push(op);
  };
  board.device.on('flashOp', on);
  try {
    await fn();
  } finally {
    board.device.off('flashOp', on);
  }
  return ops;
}

describe('pre-erased update slot', () => {
  it('an idle board erases its update slot in the background; the update then erases nothing', async (t) => {
    const s = await Scenario.open(t, { benchNeeds: BENCH_NEEDS });
    const board = boardOf(s);
    const before = await s.boot();
    s.result.fromVersion = before.version;

    const background = await slotErases(board, async () => {
      for (let waited = 0; waited < IDLE_MS; waited += TICK_MS) await board.idle(TICK_MS);
    });
    await s.console.expect(/pre-erase: (ota_\d) is erased \((\d+) bytes\)/);
    const slotStart = background[0]?.addr ?? 0;
    s.check(
      'the slot was erased in the background, one 64 KB block at a time, in order',
      background.length > 0 &&
        background.every((op, i) => op.len === BLOCK && op.addr === slotStart + i * BLOCK),
      `${background.length} erases from 0x${slotStart.toString(16)}`,
    );
    expect(background.length).toBe(31);

    let outcome: Awaited<ReturnType<Scenario['flash']>> | undefined;
    const lines: string[] = [];
    const stop = s.console.onLine((line) => lines.push(line));
    const during = await slotErases(board, async () => {
      outcome = await s.flash(s.images.image);
    }).finally(stop);
    if (outcome?.upload.protocol !== 'v2') throw new Error('expected v2');
    const said = lines.find((l) => /v2 BEGIN: ota_\d is pre-erased up to \d+ bytes/.test(l));
    s.check('the console says the update skips the erase', /need no erase/.test(said ?? ''), said);
    s.check(
      'the update erased nothing in the slot',
      during.length === 0,
      `${during.length} erases during the update`,
    );
    await s.expectUpdated(before, s.images.firmware.version);
  });
});
