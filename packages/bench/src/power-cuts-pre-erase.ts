/**
 * `pnpm bench --power-cuts`, the background-erase half (issue 21): a power cut at operations of
 * the firmware's background erase of the update slot (CONFIG_BLE_OTA_PRE_ERASE), each skipped or
 * torn, then an update on what the cut left. Judged: the erase record is never ahead of the flash
 * (a slot part it calls erased is all 0xFF), and the update after the cut installs and boots.
 *
 * As the update sweep (power-cuts.ts): the background erase runs once on a board whose running
 * image confirmed itself and whose other slot holds the previous image, journaling every erase
 * and write (`--flash-journal`); the flash after a cut at operation N is the flash before it with
 * records 1..N-1 replayed and record N skipped or torn.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAppImage } from '@esp-ble-ota/protocol';
import {
  applyFlashOp,
  type FlashJournalRecord,
  readFlashJournal,
  SimulatedDevice,
} from '@esp-ble-ota/sim';
import { execa } from 'execa';
import { benchImage, hostBuildDir } from './images.ts';
import { cutFlash, cutPoints, cutUpdateBytes, updateThroughRig } from './power-cuts.ts';
import { PRE_ERASE_IDLE_MS } from './run.ts';

/** Where the host build keeps the erase record: the last sector of nvs (firmware/host/README.md). */
const RECORD_SECTOR = 0xc000;
const RECORD_MAGIC = 0x52455250;

export interface PreEraseCutReport {
  /** Erase/write operations of one background erase of the whole slot. */
  operations: number;
  sweep: 'sample' | 'all';
  cutPoints: number;
  /** After the cut: the update installed and the board booted it, or not. */
  counts: { new: number; notInstalled: number; unbootable: number; wrong: number };
  /** Cuts that left a record calling slot bytes erased (the update skipped their erase). */
  believedErased: number;
  /** Cuts that left a record ahead of the flash: must be 0. */
  recordAhead: Array<{ cut: number; torn: boolean; erasedTo: number }>;
  failures: Array<{ cut: number; torn: boolean; booted: string }>;
  wallSeconds: number;
}

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** The newest valid entry of the erase record log in a flash image, as port_host.c reads it. */
export function readEraseRecord(
  flash: Uint8Array,
): { slotAddress: number; erasedTo: number } | undefined {
  const view = new DataView(flash.buffer, flash.byteOffset, flash.byteLength);
  let best: { seq: number; slotAddress: number; erasedTo: number } | undefined;
  for (let i = 0; i < 4096 / 32; i++) {
    const at = RECORD_SECTOR + i * 32;
    if (view.getUint32(at, true) !== RECORD_MAGIC) continue;
    if (crc32(flash.subarray(at, at + 16)) !== view.getUint32(at + 16, true)) continue;
    const seq = view.getUint32(at + 4, true);
    if (best === undefined || seq > best.seq) {
      best = {
        seq,
        slotAddress: view.getUint32(at + 8, true),
        erasedTo: view.getUint32(at + 12, true),
      };
    }
  }
  return best && { slotAddress: best.slotAddress, erasedTo: best.erasedTo };
}

export async function runPreEraseCuts(options: {
  sweep: 'sample' | 'all';
  workers?: number;
  log?: (line: string) => void;
}): Promise<PreEraseCutReport> {
  const log = options.log ?? (() => {});
  const workers = options.workers ?? 2;
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'ble-ota-pre-erase-cuts-'));
  try {
    const factoryBytes = new Uint8Array(
      await readFile(join(hostBuildDir, 'ble-ota-app-esp32.bin')),
    );
    const size = cutUpdateBytes(factoryBytes);
    const mid = await benchImage('esp32', 'pre-cut-mid', size);
    const next = await benchImage('esp32', 'pre-cut-new', size);
    const oldVersion = parseAppImage(factoryBytes).version;
    // A board that took one update: it runs `mid` (confirmed), the other slot holds the factory
    // image, which the background erase wipes.
    const start = join(dir, 'start.bin');
    await execa(join(hostBuildDir, 'ble-ota-flash'), [
      'create',
      start,
      '--chip',
      'esp32',
      '--app',
      join(hostBuildDir, 'ble-ota-app-esp32.bin'),
    ]);
    const first = await updateThroughRig(mid.bytes, 'v2', start, {});
    if (first.version !== mid.version) {
      throw new Error(`the first update booted ${first.version ?? 'nothing'}, not ${mid.version}`);
    }
    const base = new Uint8Array(await readFile(start));

    // The background erase, journaled: the board idle and unconnected at the firmware's defaults.
    const erased = join(dir, 'erased.bin');
    const journalPath = join(dir, 'journal.bin');
    await copyFile(start, erased);
    const device = new SimulatedDevice({ flashPath: erased, sendsFrameDone: true });
    try {
      if ((await device.boot({ flashJournal: journalPath })) !== 'running') {
        throw new Error('the board with the first update did not boot');
      }
      await device.idle(PRE_ERASE_IDLE_MS);
    } finally {
      await device.powerOff();
    }
    const journal = readFlashJournal(new Uint8Array(await readFile(journalPath)));
    const done = readEraseRecord(new Uint8Array(await readFile(erased)));
    if (!done || done.erasedTo === 0) {
      throw new Error(
        `no background erase within ${PRE_ERASE_IDLE_MS / 1000} s idle (${journal.length} operations)`,
      );
    }
    const operations = journal.length;
    const points = cutPoints(operations, options.sweep, 12);
    log(
      `power cuts: background erase of the update slot (${done.erasedTo} B at 0x${done.slotAddress.toString(16)} after a ${oldVersion} -> ${mid.version} update), ${operations} operations; ${points.length} cut points x (skipped, torn), each followed by a v2 update of ${next.bytes.length} B through the rig; ${workers} at a time`,
    );

    const cuts = points.flatMap((cut) => [false, true].map((torn) => ({ cut, torn })));
    const state = new Uint8Array(base);
    let applied = 0;
    let taken = 0;
    const nextJob = () => {
      const c = cuts[taken++];
      if (!c) return undefined;
      while (applied < c.cut - 1) applyFlashOp(state, journal[applied++] as FlashJournalRecord);
      return { ...c, flash: cutFlash(state, journal[c.cut - 1] as FlashJournalRecord, c.torn) };
    };
    const report: PreEraseCutReport = {
      operations,
      sweep: options.sweep,
      cutPoints: 0,
      counts: { new: 0, notInstalled: 0, unbootable: 0, wrong: 0 },
      believedErased: 0,
      recordAhead: [],
      failures: [],
      wallSeconds: 0,
    };
    const worker = async (w: number) => {
      const path = join(dir, `cut-${w}.bin`);
      for (let job = nextJob(); job; job = nextJob()) {
        const rec = readEraseRecord(job.flash);
        if (rec && rec.erasedTo > 0) {
          report.believedErased += 1;
          const part = job.flash.subarray(rec.slotAddress, rec.slotAddress + rec.erasedTo);
          if (part.length !== rec.erasedTo || part.some((b) => b !== 0xff)) {
            report.recordAhead.push({ cut: job.cut, torn: job.torn, erasedTo: rec.erasedTo });
          }
        }
        await writeFile(path, job.flash);
        const r = await updateThroughRig(next.bytes, 'v2', path, {});
        const booted =
          r.version === next.version
            ? 'new'
            : r.version === mid.version
              ? 'notInstalled'
              : r.version === undefined
                ? 'unbootable'
                : 'wrong';
        report.counts[booted] += 1;
        report.cutPoints += 1;
        if (booted !== 'new') {
          report.failures.push({ cut: job.cut, torn: job.torn, booted: r.version ?? 'nothing' });
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    report.failures.sort((a, b) => a.cut - b.cut);
    report.recordAhead.sort((a, b) => a.cut - b.cut);
    report.wallSeconds = (performance.now() - started) / 1000;
    return report;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function renderPreEraseCuts(r: PreEraseCutReport): string {
  const lines = [
    `power cuts, background erase of the update slot then a v2 update (${r.operations} flash operations; ${r.sweep === 'all' ? 'every one' : 'sampled'}, each skipped and torn): ${r.cutPoints} cut points, ${r.counts.new} installed and booted the update, ${r.counts.notInstalled} did not install it, ${r.counts.unbootable} unbootable, ${r.counts.wrong} wrong image; record ahead of the flash: ${r.recordAhead.length} (${r.believedErased} cuts left part of the slot recorded as erased, all of it blank) (${r.wallSeconds.toFixed(0)} s)`,
  ];
  for (const a of r.recordAhead) {
    lines.push(
      `  cut at operation ${a.cut}${a.torn ? ' (torn)' : ''}: the record says ${a.erasedTo} B erased, the flash is not`,
    );
  }
  for (const f of r.failures) {
    lines.push(`  cut at operation ${f.cut}${f.torn ? ' (torn)' : ''}: booted ${f.booted}`);
  }
  return lines.join('\n');
}
