/**
 * `pnpm bench --power-cuts sample|all`: a power cut at flash operations of one update through
 * the device program on the virtual rig (real noble, zero-latency link), each operation skipped
 * or torn (half a write programmed, half an erase done), and what the board boots afterwards.
 *
 * How, so that every cut point fits in minutes (mcuboot's simulator does the same):
 * 1. One clean update on a fresh board journals every erase and write, with the bytes written
 *    (the device program's `--flash-journal`): those of the boot that takes the update, then
 *    those of the first boot of the new image (the bootloader and the app confirming itself).
 * 2. For cut point N, the flash as the cut leaves it is the power-on flash with journal records
 *    1..N-1 replayed, and record N skipped or torn. The device program boots that flash (its
 *    bootloader, then the app it picks, restarts and rollbacks included); its console says
 *    which image runs.
 * 3. The replay rests on one assumption: up to the cut, the device does what it did in the
 *    clean update (nothing it does depends on the cut to come). Checked, not assumed: at the
 *    checked points of the updating boot the update is made again through the rig with the
 *    device program's own power cut, and the flash it leaves must equal the replayed one byte
 *    for byte. (The rig cuts only in a board's first boot, so the cuts in the new image's first
 *    boot are replayed and not checked that way.)
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { parseAppImage } from '@esp-ble-ota/protocol';
import {
  applyFlashOp,
  type FlashJournalRecord,
  readFlashJournal,
  SimulatedDevice,
  startVirtualRig,
  type VirtualBoard,
} from '@esp-ble-ota/sim';
import { execa } from 'execa';
import { rigAccess, updateOnRig } from './access.ts';
import { benchImage, hostBuildDir } from './images.ts';

export type CutBoot = 'old' | 'new' | 'unbootable' | 'wrong';

export interface CutOutcome {
  cut: number;
  torn: boolean;
  booted: CutBoot;
  version?: string;
}

export interface PowerCutReport {
  protocol: 'v2' | 'baseline';
  /** Erase/write operations of one clean update, counted from power-on, both boots. */
  operations: number;
  /** Of those, the operations of the first boot of the new image. */
  newImageBootOperations: number;
  sweep: 'sample' | 'all';
  cutPoints: number;
  counts: Record<CutBoot, number>;
  /** The cut points that left no bootable app or another image than old or new. */
  failures: CutOutcome[];
  /** Cuts also made through the rig, whose flash matched the replayed one byte for byte. */
  replayChecked: number;
  /** Cuts made through the rig whose flash differed from the replay: the sweep is not valid. */
  replayMismatches: Array<{ cut: number; torn: boolean; firstDifference: number }>;
  wallSeconds: number;
}

/** The last app version a board's console printed (app_init's "App version:" line). */
export function bootedVersion(text: string): string | undefined {
  return [...stripVTControlCharacters(text).matchAll(/App version:\s+(\S+)/g)]
    .map((m) => m[1])
    .at(-1);
}

/**
 * One update through the rig on the flash file at `flashPath`. `cut`: the device program's own
 * power cut at that operation, after which the board stays off. Without a cut the board
 * restarts into what it installed, and the result says which version runs.
 */
export async function updateThroughRig(
  image: Uint8Array,
  protocol: 'v2' | 'baseline',
  flashPath: string,
  opts: { journal?: string; cut?: { at: number; torn: boolean } },
): Promise<{ ops: number; version: string | undefined }> {
  const rig = await startVirtualRig({
    profile: 'immediate',
    boards: [
      {
        restartDelayMs: 0,
        flashPath,
        ...(opts.journal ? { flashJournal: opts.journal } : {}),
        ...(opts.cut
          ? { powerCutAt: opts.cut.at, powerCutTorn: opts.cut.torn, stayOffAfterPowerCut: true }
          : {}),
      },
    ],
  });
  try {
    const board = rig.boards[0] as VirtualBoard;
    let text = '';
    let ops = 0;
    board.device.on('console', (d) => {
      text += Buffer.from(d).toString('latin1');
    });
    board.device.once('off', (info) => {
      ops = info.flashOps.filter((o) => o.op !== 'read').length;
    });
    // A cut during the boot itself can take the board away before the upload starts.
    // A cut ends the update with a lost link, or (during the boot itself) before it found the
    // board.
    await updateOnRig(rigAccess(rig, board), image, {
      protocol,
      compression: 'never',
      findTimeoutMs: 10_000,
    }).catch(() => undefined);
    if (opts.cut) {
      for (let i = 0; i < 400 && board.device.state !== 'halted'; i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
      if (board.device.state !== 'halted') {
        throw new Error(`the power cut at operation ${opts.cut.at} did not happen`);
      }
      return { ops, version: undefined };
    }
    // The board restarts by itself into what it installed.
    for (let i = 0; i < 400 && !(board.boots >= 2 && board.device.state !== 'booting'); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    await board.waitReady();
    return { ops, version: bootedVersion(text) };
  } finally {
    await rig.close();
  }
}

/**
 * Powers a board on with the flash file as it is, as after a power cut: its bootloader, and the
 * app it starts, again after each restart the firmware asks for (a rollback, a panic), up to
 * `maxBoots`. Returns the version that ends up running, or undefined if none does.
 */
export async function bootFlash(flashPath: string, maxBoots = 4): Promise<string | undefined> {
  const device = new SimulatedDevice({ flashPath });
  let text = '';
  device.on('console', (d) => {
    text += Buffer.from(d).toString('latin1');
  });
  try {
    let resetReason: 'poweron' | 'sw' = 'poweron';
    for (let boot = 0; boot < maxBoots; boot++) {
      const state = await device.boot({ resetReason, restartDelayMs: 0 });
      if (state === 'running') return bootedVersion(text);
      if (state === 'halted') return undefined;
      resetReason = 'sw';
    }
    return undefined;
  } finally {
    await device.powerOff();
  }
}

/** Cut points of a sweep: every operation, or the first, the last and an even spread. */
export function cutPoints(operations: number, sweep: 'sample' | 'all', samples = 24): number[] {
  if (sweep === 'all') return Array.from({ length: operations }, (_, i) => i + 1);
  const points = new Set<number>([1, 2, 3, operations - 2, operations - 1, operations]);
  for (let i = 1; i <= samples; i++)
    points.add(Math.max(1, Math.round((i * operations) / (samples + 1))));
  return [...points].filter((p) => p >= 1 && p <= operations).sort((a, b) => a - b);
}

/** The flash a cut at operation `cut` leaves: `state` holds records 1..cut-1 already. */
export function cutFlash(state: Uint8Array, record: FlashJournalRecord, torn: boolean): Uint8Array {
  const flash = new Uint8Array(state);
  if (torn) applyFlashOp(flash, record, true);
  return flash;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * The size of the update a sweep cuts: the host app padded to the next 100 KB above it, with room
 * for its signature (the host app's size moves with the firmware; the sweeps print the size).
 */
export function cutUpdateBytes(factoryImage: Uint8Array): number {
  return Math.ceil((factoryImage.length + 2 * 4096) / 100_000) * 100_000;
}

export async function runPowerCuts(options: {
  protocol: 'v2' | 'baseline';
  sweep: 'sample' | 'all';
  workers?: number;
  log?: (line: string) => void;
}): Promise<PowerCutReport> {
  const log = options.log ?? (() => {});
  const workers = options.workers ?? 2;
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'ble-ota-power-cuts-'));
  try {
    // The board's factory image (ota_0 of a new flash) is the host build's: "old". The update
    // is the host app as it is, with a version of its own, signed, and padded to the next 100 KB
    // above it (the host app's size moves with the firmware; the sweep's figures say which size).
    const factoryBytes = new Uint8Array(
      await readFile(join(hostBuildDir, 'ble-ota-app-esp32.bin')),
    );
    const factory = parseAppImage(factoryBytes);
    const oldVersion = factory.version;
    const cutImageBytes = cutUpdateBytes(factoryBytes);
    const { bytes: image, version: newVersion } = await benchImage(
      'esp32',
      'cut-new',
      cutImageBytes,
    );
    const powerOn = join(dir, 'power-on.bin');
    await execa(join(hostBuildDir, 'ble-ota-flash'), [
      'create',
      powerOn,
      '--chip',
      'esp32',
      '--app',
      join(hostBuildDir, 'ble-ota-app-esp32.bin'),
    ]);
    const base = new Uint8Array(await readFile(powerOn));

    // 1. The clean update, journaled.
    const journalPath = join(dir, 'journal.bin');
    const cleanFlash = join(dir, 'clean.bin');
    await copyFile(powerOn, cleanFlash);
    const clean = await updateThroughRig(image, options.protocol, cleanFlash, {
      journal: journalPath,
    });
    if (clean.version !== newVersion) {
      throw new Error(
        `a clean ${options.protocol} update booted ${clean.version ?? 'nothing'}, not ${newVersion}`,
      );
    }
    const journal = readFlashJournal(new Uint8Array(await readFile(journalPath)));
    if (journal.length < clean.ops) {
      throw new Error(
        `the journal of the clean update has ${journal.length} operations, fewer than the ${clean.ops} the device reported for the updating boot`,
      );
    }
    const operations = journal.length;
    const points = cutPoints(operations, options.sweep);
    // Checked through the rig: points of the updating boot (where the rig can cut).
    const checked = new Set(
      (options.sweep === 'all' ? cutPoints(clean.ops, 'sample', 6) : points).filter(
        (p) => p <= clean.ops,
      ),
    );
    log(
      `power cuts: ${options.protocol} update of ${image.length} B, ${operations} operations (${clean.ops} in the updating boot, ${operations - clean.ops} in the new image's first); ${points.length} cut points x (skipped, torn) replayed from the journal, ${checked.size * 2} of them also cut through the rig to check the replay; ${workers} at a time`,
    );

    // 2. Every cut's flash, in order of the cut: the state advances one record at a time, and
    // each job's flash is made when a worker takes it, so only a few 4 MB copies exist at once.
    const cuts = points.flatMap((cut) => [false, true].map((torn) => ({ cut, torn })));
    const outcomes: CutOutcome[] = [];
    const mismatches: PowerCutReport['replayMismatches'] = [];
    let replayChecked = 0;
    const state = new Uint8Array(base);
    let applied = 0;
    let taken = 0;
    const nextJob = () => {
      const c = cuts[taken++];
      if (!c) return undefined;
      while (applied < c.cut - 1) applyFlashOp(state, journal[applied++] as FlashJournalRecord);
      return { ...c, flash: cutFlash(state, journal[c.cut - 1] as FlashJournalRecord, c.torn) };
    };
    let done = 0;
    const total = cuts.length;
    const worker = async (w: number) => {
      const path = join(dir, `cut-${w}.bin`);
      for (let job = nextJob(); job; job = nextJob()) {
        if (checked.has(job.cut)) {
          // The same cut, made by the device program itself in a new update through the rig.
          const real = join(dir, `real-${w}.bin`);
          await copyFile(powerOn, real);
          await updateThroughRig(image, options.protocol, real, {
            cut: { at: job.cut, torn: job.torn },
          });
          const at = firstDifference(new Uint8Array(await readFile(real)), job.flash);
          if (at >= 0) mismatches.push({ cut: job.cut, torn: job.torn, firstDifference: at });
          else replayChecked += 1;
        }
        await writeFile(path, job.flash);
        const v = await bootFlash(path);
        const booted: CutBoot =
          v === undefined
            ? 'unbootable'
            : v === newVersion
              ? 'new'
              : v === oldVersion
                ? 'old'
                : 'wrong';
        outcomes.push({ cut: job.cut, torn: job.torn, booted, ...(v ? { version: v } : {}) });
        done += 1;
        if (done % 500 === 0 || (total <= 500 && done % 20 === 0))
          log(`power cuts: ${done} of ${total}`);
      }
    };
    await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    const counts: Record<CutBoot, number> = { old: 0, new: 0, unbootable: 0, wrong: 0 };
    for (const o of outcomes) counts[o.booted] += 1;
    return {
      protocol: options.protocol,
      operations,
      newImageBootOperations: operations - clean.ops,
      sweep: options.sweep,
      cutPoints: outcomes.length,
      counts,
      failures: outcomes
        .filter((o) => o.booted === 'unbootable' || o.booted === 'wrong')
        .sort((a, b) => a.cut - b.cut),
      replayChecked,
      replayMismatches: mismatches.sort((a, b) => a.cut - b.cut),
      wallSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `N cut points, X old, Y new, 0 unbootable, 0 wrong image`, then each failure. */
export function renderPowerCuts(r: PowerCutReport): string {
  const lines = [
    `power cuts, ${r.protocol} update (${r.operations} flash operations, ${r.newImageBootOperations} of them in the new image's first boot; ${r.sweep === 'all' ? 'every one' : 'sampled'}, each skipped and torn): ${r.cutPoints} cut points, ${r.counts.old} booted the old image, ${r.counts.new} the new, ${r.counts.unbootable} unbootable, ${r.counts.wrong} wrong image (${r.wallSeconds.toFixed(0)} s)`,
    `  replay from the journal checked against ${r.replayChecked + r.replayMismatches.length} cuts made through the rig: ${r.replayMismatches.length === 0 ? 'the same flash, byte for byte' : `${r.replayMismatches.length} differ, so these figures are not valid`}`,
  ];
  for (const f of r.failures) {
    lines.push(
      `  cut at operation ${f.cut}${f.torn ? ' (torn)' : ''}: ${f.booted}${f.version ? ` (${f.version})` : ''}`,
    );
  }
  for (const m of r.replayMismatches) {
    lines.push(
      `  cut at operation ${m.cut}${m.torn ? ' (torn)' : ''}: the rig's flash differs from the replay at 0x${m.firstDifference.toString(16)}`,
    );
  }
  return lines.join('\n');
}
