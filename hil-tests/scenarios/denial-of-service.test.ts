import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Scenario } from '@esp-ble-ota/hil';
import { type Noble, type NobleTransport, openTransport } from '@esp-ble-ota/noble';
import {
  decodeAnswer,
  encodeAbort,
  encodeBegin,
  encodeData,
  encodeEnd,
  imageChipId,
  imageManifest,
  manifestPieces,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  type V2Answer,
  V2Status,
  v2StatusName,
} from '@esp-ble-ota/protocol';
import type { DeviceFlashOp, DeviceLimits, VirtualBoard } from '@esp-ble-ota/sim';
import { describe, expect, it } from 'vitest';

// The firmware's denial-of-service limits (docs/security.md) at their defaults, on the virtual
// rig: a second central on the same radio plays the neighbour. The link model has no events while
// nothing is sent, so waits are modeled time that the board lets pass (VirtualBoard.idle, which
// the device hears as its clock moving on); every figure below is modeled time.
const BENCH_NEEDS = 'a second BLE adapter for the hostile central (the virtual rig makes one)';

/** How often the chip's writer task wakes up to look at its timers: the wait's step. */
const TICK_MS = 1000;
/** The neighbour's pause between two replays: 4 a second, as the core's test has it. */
const REPLAY_PAUSE_MS = 250;
const MINUTE_MS = 60_000;

function boardOf(s: Scenario): VirtualBoard {
  if (!s.board)
    throw new Error('this scenario needs the virtual rig (a second central on its radio)');
  return s.board;
}

/** The board's modeled clock (ms), or wall time on the zero-latency link. */
function clock(board: VirtualBoard): number {
  return board.modeledClock?.now() ?? performance.now();
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/**
 * Runs `fn` with another central on the board's radio: noble with a controller (and address) of
 * its own, made for it and released after.
 */
async function withSecondCentral<T>(fn: (noble: Noble) => Promise<T>): Promise<T> {
  const sim = await import('@esp-ble-ota/sim');
  const noble = sim.createNoble();
  try {
    return await fn(noble);
  } finally {
    sim.releaseNoble(noble);
  }
}

describe('denial of service', () => {
  it('a central that connects and does nothing is dropped after the idle timeout; an update then goes through', async (t) => {
    const s = await Scenario.open(t, { benchNeeds: BENCH_NEEDS });
    const board = boardOf(s);
    const before = await s.boot();
    s.result.fromVersion = before.version;

    await withSecondCentral(async (noble) => {
      const hostile = await openTransport({
        noble,
        address: board.address,
        connect: false,
        scanTimeoutMs: 20_000,
      });
      try {
        const link = hostile.device.peripheral;
        let reason: number | undefined;
        link.once('disconnect', (r: number) => {
          reason = r;
        });
        await new Promise<void>((resolve, reject) =>
          link.connect((error) => (error ? reject(error) : resolve())),
        );
        const connectedAt = clock(board);
        // While it holds the link the board does not advertise: no updater can find it.
        s.check('board stops advertising for the hostile link', !board.peripheral.advertising);
        // It sends nothing; the board's timers run on (CONFIG_BLE_OTA_IDLE_TIMEOUT_S, default 30).
        while (reason === undefined && board.peripheral.connections().length > 0) {
          if (clock(board) - connectedAt > 120_000) break;
          await board.idle(TICK_MS);
        }
        await expect.poll(() => reason).toBeDefined();
        const droppedAt = clock(board);
        const counted = await s.console.expect(/started or moved on no update for (\d+) ms/);
        s.check(
          'the device dropped the hostile link (HCI 0x13, remote user terminated)',
          reason === 0x13,
          `reason 0x${reason?.toString(16)} after ${seconds(droppedAt - connectedAt)} s; ${counted.match}`,
        );
        s.check('board advertises again', board.peripheral.advertising);

        await s.flash(s.images.image);
        const doneAt = clock(board);
        await s.expectUpdated(before, s.images.firmware.version);
        const figure = `hostile connect to update done: ${seconds(doneAt - connectedAt)} s (dropped after ${seconds(droppedAt - connectedAt)} s, the device counted ${counted.groups[0]} ms; update ${seconds(doneAt - droppedAt)} s)`;
        console.log(
          `denial of service, idle central on ${s.ctx.linkProfile ?? 'the bench'}: ${figure}`,
        );
        s.check('legitimate update after the idle central', true, figure);
      } finally {
        await hostile.transport.close();
      }
    });
  });

  it('a neighbour replaying a genuine manifest: the refusal back-off bounds the slot erases it causes', async (t) => {
    const s = await Scenario.open(t, { benchNeeds: BENCH_NEEDS });
    const board = boardOf(s);
    await s.boot();
    // The neighbour has a genuine signed image's manifest (any that was ever published) and
    // streams another image under it: BEGIN passes, the slot's first block is erased, and the
    // image's app description gives it away (MANIFEST_MISMATCH), a refused update.
    const genuine = new Uint8Array(await readFile(s.images.image));
    const previous = s.images.previousImage;
    if (!previous)
      throw new Error('the run prepared no previous image to stream under the manifest');
    const other = new Uint8Array(await readFile(previous));

    const withBackoff = await replayFor(board, genuine, other, 'mismatch', MINUTE_MS);
    // The same neighbour against the same firmware built with the back-off off.
    const without = await withAnotherBoard(s, { refusalBackoffMaxS: 0 }, (b) =>
      replayFor(b, genuine, other, 'mismatch', MINUTE_MS),
    );
    // A neighbour that ABORTs its session instead of being refused (firmware defaults): a
    // session abandoned after its slot was opened counts for the back-off too.
    const aborting = await withAnotherBoard(s, {}, (b) =>
      replayFor(b, genuine, other, 'abort', MINUTE_MS),
    );

    const rows: [string, (r: ReplayFigures) => string][] = [
      ['modeled time (s)', (r) => seconds(r.modeledMs)],
      ['BEGINs sent', (r) => String(r.begins)],
      ['BEGINs evaluated (slot opened)', (r) => String(r.opened)],
      ['BEGINs answered BUSY', (r) => String(r.busy)],
      ['refusals (MANIFEST_MISMATCH)', (r) => String(r.mismatches)],
      ['sessions aborted by the neighbour', (r) => String(r.aborts)],
      ['slot erases (64 KB blocks)', (r) => `${r.erases} (${r.erasedKiB} KiB)`],
      ['links dropped by the idle timeout', (r) => String(r.idleDrops)],
    ];
    const table = [
      `a neighbour replaying every ${REPLAY_PAUSE_MS} ms, one modeled minute (${s.ctx.linkProfile ?? 'bench'}):`,
      `  ${''.padEnd(34)}${'back-off on (64 s cap)'.padStart(24)}${'back-off off'.padStart(16)}${'ABORTs (back-off on)'.padStart(20)}`,
      ...rows.map(
        ([name, f]) =>
          `  ${name.padEnd(34)}${f(withBackoff).padStart(24)}${f(without).padStart(16)}${f(aborting).padStart(20)}`,
      ),
    ].join('\n');
    console.log(table);

    s.check(
      'every refused replay cost the board a slot erase (back-off off)',
      without.erases > 0 && without.erases >= without.mismatches && without.busy === 0,
      `${without.erases} erases, ${without.mismatches} refusals, ${without.busy} BUSY`,
    );
    s.check(
      'with the back-off, BEGIN waits after refusals (BUSY, nothing erased)',
      withBackoff.busy > 0 && withBackoff.opened > 0,
      `${withBackoff.busy} of ${withBackoff.begins} BEGINs BUSY`,
    );
    s.check(
      'the back-off makes the erases fewer',
      withBackoff.erases < without.erases,
      `${withBackoff.erases} erases a minute with it, ${without.erases} without`,
    );
    s.check(
      'a neighbour that aborts instead of being refused waits too (the table is the figures)',
      aborting.busy > 0 && aborting.erases < without.erases,
      table,
    );
  });
});

interface ReplayFigures {
  modeledMs: number;
  begins: number;
  opened: number;
  busy: number;
  mismatches: number;
  aborts: number;
  erases: number;
  erasedKiB: number;
  idleDrops: number;
}

/**
 * A neighbour that replays `genuine`'s manifest, as fast as the board answers plus a short pause,
 * for `durationMs` of the board's time: connect (again after a drop), the manifest, BEGIN; if the
 * board opens the slot, `mismatch` sends one DATA frame with `other`'s head (refused: the image
 * is not what the manifest said) and END, `abort` ABORTs the session. Counts what the board did.
 */
async function replayFor(
  board: VirtualBoard,
  genuine: Uint8Array,
  other: Uint8Array,
  mode: 'mismatch' | 'abort',
  durationMs: number,
): Promise<ReplayFigures> {
  const manifest = imageManifest(genuine);
  if (!manifest)
    throw new Error('the image under test is not signed: there is no manifest to replay');
  const begin = encodeBegin({
    deflate: false,
    restart: false,
    manifest: true,
    chipId: imageChipId(genuine) ?? 0,
    imageSize: genuine.length,
    imageSha256: createHash('sha256').update(genuine).digest(),
    streamSize: genuine.length,
  });
  return withSecondCentral((noble) =>
    replayWith(noble, board, manifest, begin, other, mode, durationMs),
  );
}

async function replayWith(
  noble: Noble,
  board: VirtualBoard,
  manifest: Uint8Array,
  begin: Uint8Array,
  other: Uint8Array,
  mode: 'mismatch' | 'abort',
  durationMs: number,
): Promise<ReplayFigures> {
  const answers = new AnswerQueue();
  const figures: ReplayFigures = {
    modeledMs: 0,
    begins: 0,
    opened: 0,
    busy: 0,
    mismatches: 0,
    aborts: 0,
    erases: 0,
    erasedKiB: 0,
    idleDrops: 0,
  };
  const onFlash = (op: DeviceFlashOp) => {
    if (op.op !== 'erase') return;
    figures.erases += 1;
    figures.erasedKiB += op.len / 1024;
  };
  board.device.on('flashOp', onFlash);
  const start = clock(board);
  let transport: NobleTransport | undefined;
  try {
    while (clock(board) - start < durationMs) {
      if (!transport?.connected) {
        await transport?.close();
        transport = (await openTransport({ noble, address: board.address, scanTimeoutMs: 20_000 }))
          .transport;
        transport.on('disconnect', (info) => {
          if (info.initiator === 'remote' && info.reason === 0x13) figures.idleDrops += 1;
        });
        await transport.subscribe(V2_CONTROL_UUID, (data) => answers.push(decodeAnswer(data)));
      }
      const t = transport;
      try {
        for (const piece of manifestPieces(manifest, t.mtu - 3)) {
          await t.write(V2_CONTROL_UUID, piece, { withResponse: true });
        }
        const answered = answers.next('BEGIN_RSP');
        await t.write(V2_CONTROL_UUID, begin, { withResponse: true });
        const rsp = await answered;
        figures.begins += 1;
        if (rsp.status === V2Status.BUSY) {
          figures.busy += 1;
        } else if (rsp.status === V2Status.OK && mode === 'abort') {
          figures.opened += 1;
          const aborted = answers.next('ABORT_RSP');
          await t.write(V2_CONTROL_UUID, encodeAbort(), { withResponse: true });
          if ((await aborted).status === V2Status.OK) figures.aborts += 1;
        } else if (rsp.status === V2Status.OK) {
          figures.opened += 1;
          const ack = answers.next('WINDOW_ACK');
          const room = Math.min(t.mtu - 3, rsp.maxFrame) - 4;
          await t.write(V2_DATA_UUID, encodeData(0, other.subarray(0, room)), {
            withResponse: false,
          });
          const refused = await ack;
          if (refused.status === V2Status.MANIFEST_MISMATCH) figures.mismatches += 1;
          const ended = answers.next('END_RSP');
          await t.write(V2_CONTROL_UUID, encodeEnd(), { withResponse: true });
          await ended;
        } else {
          throw new Error(`BEGIN answered ${v2StatusName(rsp.status)}: not what a replay gets`);
        }
      } catch (error) {
        // The board dropped the link (its idle timeout: BUSY answers move no update on).
        if (t.connected) throw error;
        answers.clear();
        continue;
      }
      await board.idle(REPLAY_PAUSE_MS);
    }
  } finally {
    board.device.off('flashOp', onFlash);
    answers.clear();
    await transport?.close();
  }
  figures.modeledMs = clock(board) - start;
  return figures;
}

/** v2 Control notifications, handed to whoever waits for the next one of a kind. */
class AnswerQueue {
  private readonly waiting: Array<{
    op: V2Answer['op'];
    resolve: (a: V2Answer) => void;
    timer: NodeJS.Timeout;
  }> = [];

  /** The next answer `op`; rejects if none comes within 10 s of wall time (a hung device). */
  next<Op extends V2Answer['op']>(op: Op): Promise<Extract<V2Answer, { op: Op }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${op} from the board`)), 10_000);
      this.waiting.push({ op, resolve: resolve as (a: V2Answer) => void, timer });
    });
  }

  push(answer: V2Answer): void {
    const i = this.waiting.findIndex((w) => w.op === answer.op);
    if (i < 0) return;
    const [w] = this.waiting.splice(i, 1);
    if (!w) return;
    clearTimeout(w.timer);
    w.resolve(answer);
  }

  clear(): void {
    for (const w of this.waiting.splice(0)) clearTimeout(w.timer);
  }
}

/**
 * Runs `fn` on a board of a rig of its own, made as the scenario's board is (same link profile,
 * chip, images and security) but with these limits: the same firmware built another way.
 */
async function withAnotherBoard<T>(
  s: Scenario,
  limits: DeviceLimits,
  fn: (board: VirtualBoard) => Promise<T>,
): Promise<T> {
  const sim = await import('@esp-ble-ota/sim');
  const { ctx } = s;
  const rig = await sim.startVirtualRig({
    profile: ctx.linkProfile ?? 'linux-noble-esp32',
    program: join(ctx.simBuildDir, 'ble-ota-device'),
    boards: [
      {
        chip: ctx.target,
        name: ctx.bleName,
        ...(ctx.images.previousImage ? { image: ctx.images.previousImage } : {}),
        ...(ctx.images.trustedKeyDigest
          ? { security: sim.signedUpdatesOnly(ctx.images.trustedKeyDigest) }
          : {}),
        limits,
      },
    ],
  });
  try {
    const board = rig.boards[0];
    if (!board) throw new Error('the second rig started without a board');
    return await fn(board);
  } finally {
    await rig.close();
  }
}
