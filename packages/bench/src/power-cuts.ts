/**
 * `pnpm bench --power-cuts sample|all`: one update per cut point through the device program on
 * the virtual rig (real noble, zero-latency link), the power cut at that flash operation, the
 * operation skipped or torn (half a write programmed, half an erase done). After each cut the
 * board powers on again by itself; what it boots is read from its console. Reported: how many
 * cut points, how many booted the old image, the new one, none (unbootable), or another image.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { openTransport } from '@esp-ble-ota/noble';
import { parseAppImage, uploadBaseline, uploadV2 } from '@esp-ble-ota/protocol';
import { startVirtualRig, type VirtualBoard } from '@esp-ble-ota/sim';
import { benchImage, hostBuildDir } from './images.ts';
import { CHARACTERISTICS } from './run.ts';

export type CutBoot = 'old' | 'new' | 'unbootable' | 'wrong';

export interface CutOutcome {
  cut: number;
  torn: boolean;
  booted: CutBoot;
  version?: string;
}

export interface PowerCutReport {
  protocol: 'v2' | 'baseline';
  /** Erase/write operations of one clean update, counted from power-on. */
  operations: number;
  sweep: 'sample' | 'all';
  cutPoints: number;
  counts: Record<CutBoot, number>;
  /** The cut points that left no bootable app or another image than old or new. */
  failures: CutOutcome[];
  wallSeconds: number;
}

interface RunResult {
  ops: number;
  bootedVersion: string | undefined;
  state: string;
}

/** One update on a fresh board, with the power cut at `cut` (0: no cut). */
async function oneUpdate(
  image: Uint8Array,
  protocol: 'v2' | 'baseline',
  cut: number,
  torn: boolean,
): Promise<RunResult> {
  const rig = await startVirtualRig({
    profile: 'immediate',
    boards: [{ restartDelayMs: 0, ...(cut > 0 ? { powerCutAt: cut, powerCutTorn: torn } : {}) }],
  });
  try {
    const board = rig.boards[0] as VirtualBoard;
    let text = '';
    let ops = 0;
    board.device.on('console', (d) => {
      text += stripVTControlCharacters(Buffer.from(d).toString('latin1'));
    });
    board.device.once('off', (info) => {
      ops = info.flashOps.filter((o) => o.op !== 'read').length;
    });
    // A cut during the boot itself can take the board away before the upload starts.
    const opened = await openTransport({
      noble: rig.noble as never,
      address: board.address,
      scanTimeoutMs: 10_000,
      characteristics: CHARACTERISTICS,
    }).catch(() => undefined);
    if (opened) {
      await (protocol === 'v2'
        ? uploadV2(opened.transport, image, { compression: 'never' })
        : uploadBaseline(opened.transport, image)
      ).catch(() => undefined); // a cut ends the upload with a lost link
      await opened.transport.close().catch(() => {});
    }
    // The board comes back by itself after the cut (or the restart into the new image).
    for (let i = 0; i < 400 && !(board.boots >= 2 && board.device.state !== 'booting'); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    await board.waitReady();
    const version = [...text.matchAll(/App version:\s+(\S+)/g)].map((m) => m[1]).at(-1);
    return { ops, bootedVersion: version, state: board.device.state };
  } finally {
    await rig.close();
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

export async function runPowerCuts(options: {
  protocol: 'v2' | 'baseline';
  sweep: 'sample' | 'all';
  workers?: number;
  log?: (line: string) => void;
}): Promise<PowerCutReport> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  // The host app as it is (no padding), with a version of its own; the board's factory image
  // (ota_0 of a new flash file) is the host build's, whose version says "old".
  const factory = parseAppImage(
    new Uint8Array(await readFile(join(hostBuildDir, 'ble-ota-app-esp32.bin'))),
  );
  const oldVersion = factory.version;
  const { bytes: image, version: newVersion } = await benchImage('esp32', 'cut-new', 900_000);
  // A clean update: how many operations it has, and what "old" boots as.
  const clean = await oneUpdate(image, options.protocol, 0, false);
  if (clean.bootedVersion !== newVersion) {
    throw new Error(
      `a clean ${options.protocol} update booted ${clean.bootedVersion ?? 'nothing'}, not ${newVersion}`,
    );
  }
  const operations = clean.ops;
  const points = cutPoints(operations, options.sweep);
  const jobs = points.flatMap((cut) => [false, true].map((torn) => ({ cut, torn })));
  log(
    `power cuts: ${options.protocol} update of ${image.length} B, ${operations} operations, ${jobs.length} cuts (${points.length} points, skipped and torn), ${options.workers ?? 2} at a time`,
  );
  const outcomes: CutOutcome[] = [];
  let next = 0;
  const worker = async () => {
    for (;;) {
      const job = jobs[next++];
      if (!job) return;
      const r = await oneUpdate(image, options.protocol, job.cut, job.torn);
      const v = r.bootedVersion;
      const booted: CutBoot =
        r.state !== 'running' || v === undefined
          ? 'unbootable'
          : v === newVersion
            ? 'new'
            : v === oldVersion
              ? 'old'
              : 'wrong';
      outcomes.push({ cut: job.cut, torn: job.torn, booted, ...(v ? { version: v } : {}) });
      if (outcomes.length % 20 === 0) log(`power cuts: ${outcomes.length} of ${jobs.length}`);
    }
  };
  await Promise.all(Array.from({ length: options.workers ?? 2 }, worker));
  const counts: Record<CutBoot, number> = { old: 0, new: 0, unbootable: 0, wrong: 0 };
  for (const o of outcomes) counts[o.booted] += 1;
  return {
    protocol: options.protocol,
    operations,
    sweep: options.sweep,
    cutPoints: outcomes.length,
    counts,
    failures: outcomes
      .filter((o) => o.booted === 'unbootable' || o.booted === 'wrong')
      .sort((a, b) => a.cut - b.cut),
    wallSeconds: (performance.now() - started) / 1000,
  };
}

/** `N cut points, X old, Y new, 0 unbootable, 0 wrong image`, then each failure. */
export function renderPowerCuts(r: PowerCutReport): string {
  const lines = [
    `power cuts, ${r.protocol} update (${r.operations} flash operations, ${r.sweep === 'all' ? 'every one' : 'sampled'}, each skipped and torn): ${r.cutPoints} cut points, ${r.counts.old} booted the old image, ${r.counts.new} the new, ${r.counts.unbootable} unbootable, ${r.counts.wrong} wrong image (${r.wallSeconds.toFixed(0)} s)`,
  ];
  for (const f of r.failures) {
    lines.push(
      `  cut at operation ${f.cut}${f.torn ? ' (torn)' : ''}: ${f.booted}${f.version ? ` (${f.version})` : ''}`,
    );
  }
  return lines.join('\n');
}
