/**
 * Runs the transfers `pnpm bench` reports, on the virtual rig through the real noble: the
 * firmware's host build behind the virtual controller, every transfer one `updateDevice()` over the
 * noble transport (access.ts), modeled time read from the board's link.
 */
import { generateKeyPairSync } from 'node:crypto';
import { setRequestedMtu } from '@esp-ble-ota/noble';
import {
  type Clock,
  publicKeyDigest,
  signImage,
  UpdateError,
  type UpdateEvent,
} from '@esp-ble-ota/protocol';
import {
  describeLinkTuning,
  FLASH_PROFILES,
  type FlashProfileName,
  type LinkParams,
  type LinkProfile,
  ModeledAirScheduler,
  profileCeilingKBps,
  scaleDeviceCpu,
  startVirtualRig,
  TAKES_ANY_IMAGE,
  type VirtualBoard,
  zeroDeviceCpu,
} from '@esp-ble-ota/sim';
import { type RigAccess, rigAccess, updateOnRig } from './access.ts';
import {
  benchImage,
  MIB,
  realisticImageMissing,
  signedRealisticImage,
  sizeBeforeSigning,
} from './images.ts';
import {
  isSkipped,
  type ProfileMeasurement,
  type SensitivityRow,
  type Skipped,
  type StackMeasurement,
  type TransferMeasurement,
} from './results.ts';

export interface RunOptions {
  imageBytes?: number;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /** The device's flash: LINK-MODEL.md's measured ESP32 figures (default) or the datasheet's. */
  flash?: FlashProfileName;
  /** What-if: the device's ACL receive pool instead of the firmware's own configuration. */
  peripheralRxBuffers?: number;
  /** What-if: the central's controller honours this max CE length (us); default: ignored. */
  maxCeLenUs?: number;
  /** Only the v2 transfer without deflate (the sensitivity runs). */
  v2Only?: boolean;
  /** What-if: the device's CPU costs nothing (`zero`) or this many times the model (default 1). */
  deviceCpu?: 'zero' | number;
  /** Also v2 and v2+deflate on a slot erased beforehand (the board idle first); default true. */
  preErased?: boolean;
}

/**
 * Modeled time the board is left idle, with no connection, before a pre-erased run: the
 * firmware's default CONFIG_BLE_OTA_PRE_ERASE_DELAY_S (30 s) and a 64 KB block a second
 * (CONFIG_BLE_OTA_PRE_ERASE_PAUSE_MS) for the 31 blocks of a 1.94 MB slot, with room to spare.
 */
export const PRE_ERASE_IDLE_MS = 75_000;

/** The profile as a run uses it: its flash and what-if model parameters applied. */
export function runProfileVariant(profile: LinkProfile, options: RunOptions = {}): LinkProfile {
  const cpu = profile.deviceCpu;
  const deviceCpu =
    cpu === undefined || options.deviceCpu === undefined || options.deviceCpu === 1
      ? cpu
      : options.deviceCpu === 'zero'
        ? zeroDeviceCpu(cpu)
        : scaleDeviceCpu(cpu, options.deviceCpu);
  return {
    ...profile,
    ...(deviceCpu ? { deviceCpu } : {}),
    flash: FLASH_PROFILES[options.flash ?? 'measured'],
    model: {
      ...profile.model,
      ...(options.maxCeLenUs === undefined ? {} : { maxCeLenUs: options.maxCeLenUs }),
    },
  };
}

/** The board's link-model clock; the bench always runs on a modeled link. */
function modeledClock(board: VirtualBoard): Clock {
  const clock = board.modeledClock;
  if (!clock)
    throw new Error(`board ${board.name} has no modeled link: the bench needs a link profile`);
  return clock;
}

interface PhaseSpan {
  phase: string;
  startedAt: number;
  endedAt: number;
}

/** Modeled seconds from the start of `first` to the end of `last`. */
function span(phases: readonly PhaseSpan[], first: string, last: string): number {
  const a = phases.find((p) => p.phase === first);
  const b = phases.find((p) => p.phase === last);
  if (!a || !b) {
    throw new Error(
      `the upload reported no ${a ? last : first} phase (phases: ${phases.map((p) => p.phase).join(', ')})`,
    );
  }
  return (b.endedAt - a.startedAt) / 1000;
}

/** The failure in the upload's own words (an UpdateError's cause, without its advice). */
function errorText(error: unknown): string {
  const cause = error instanceof UpdateError && error.cause !== undefined ? error.cause : error;
  return cause instanceof Error ? cause.message : String(cause);
}

/**
 * One profile: a fresh rig (board of the profile's chip), then baseline, v2 and v2 with deflate
 * on one connection after another, each with its own image version (so none is "already
 * installed"). A failed column is reported as skipped with its reason, never as a number.
 */
export async function runProfile(
  base: LinkProfile,
  options: RunOptions = {},
): Promise<ProfileMeasurement> {
  const profile = runProfileVariant(base, options);
  const size = options.imageBytes ?? MIB;
  const log = options.log ?? (() => {});
  const images = {
    baseline: await benchImage(profile.chip, 'bench-baseline', size),
    v2: await benchImage(profile.chip, 'bench-v2', size),
    // With deflate the bytes matter: the realistic image (RISC-V code) where it is built.
    v2z:
      realisticImageMissing() === undefined
        ? await signedRealisticImage(profile.chip, 'bench-v2-deflate', size)
        : await benchImage(profile.chip, 'bench-v2-deflate', size),
    v2Pre: await benchImage(profile.chip, 'bench-v2-pre', size),
    v2zPre:
      realisticImageMissing() === undefined
        ? await signedRealisticImage(profile.chip, 'bench-v2-deflate-pre', size)
        : await benchImage(profile.chip, 'bench-v2-deflate-pre', size),
  };
  const ceiling = profileCeilingKBps(profile);
  const used: UsedLink = {};
  // noble is the profile's central: it asks for the MTU that central asks for (Android 517).
  const mtuBefore = setRequestedMtu(profile.centralMtu);
  const rig = await startVirtualRig({
    profile,
    boards: [{ chip: profile.chip, restartDelayMs: 0 }],
    ...(options.peripheralRxBuffers === undefined
      ? {}
      : { peripheralRxBuffers: options.peripheralRxBuffers }),
  });
  const board = rig.boards[0] as VirtualBoard;
  const access = rigAccess(rig, board);
  const result: ProfileMeasurement = {
    name: profile.name,
    central: profile.central,
    chip: profile.chip,
    phy: profile.params.phy,
    mtu: profile.params.attMtu,
    connIntervalMs: profile.params.connIntervalMs,
    linkCeilingKBps: ceiling.linkKBps,
    linkCeilingWriteBytes: ceiling.linkWriteBytes,
    flashCeilingKBps: ceiling.flashKBps,
    encryptedLink: { baseline: null, v2: null },
    device: { eraseUnit: 'sector', rxBuffers: null, frameBytes: null },
    flash: profile.flash.name === 'typical' ? 'datasheet' : profile.flash.name,
    baseline: { skipped: 'not run' },
    v2: { skipped: 'not run' },
    v2Compressed: { skipped: 'not run' },
    linkTuning: [],
  };
  const preErased = options.preErased ?? !options.v2Only;
  try {
    modeledClock(board);
    if (options.v2Only) {
      result.baseline = { skipped: 'not asked for (v2 only)' };
    } else {
      try {
        await board.waitReady();
        log(`${profile.name}: baseline, ${size} B`);
        let encrypted: boolean | undefined;
        const { upload } = await updateOnRig(access, images.baseline.bytes, {
          protocol: 'baseline',
          onEvent: (e) => {
            // The link as the data went over it (DONE is the last command on it).
            if (e.type === 'phase' && e.phase === 'done' && e.state === 'start') {
              encrypted = board.currentLink?.params.encrypted;
            }
          },
        });
        if (upload.protocol !== 'baseline') throw new Error(`ran ${upload.protocol}`);
        result.baseline = measurement(span(upload.result.phases, 'request', 'done'), size, size);
        result.encryptedLink.baseline = encrypted ?? null;
      } catch (error) {
        result.baseline = { skipped: `baseline upload failed: ${errorText(error)}` };
      }
    }
    const v2Skip = () => (access.offersV2 === false ? noV2 : undefined);
    const v2 = (u: UsedLink, image: Uint8Array, compression: 'never' | 'always') => {
      const skip = v2Skip();
      return skip
        ? { skipped: skip }
        : runV2(u, access, board, image, compression, log, profile.name);
    };
    result.v2 = await v2(used, images.v2.bytes, 'never');
    result.linkTuning = board.linkLog.map(describeLinkTuning);
    result.v2Compressed = options.v2Only
      ? { skipped: v2Skip() ?? 'not asked for (v2 only)' }
      : await v2({}, images.v2z.bytes, 'always');
    if (preErased) {
      // The same transfers on a slot the firmware erased while the board sat idle, unconnected
      // (its default CONFIG_BLE_OTA_PRE_ERASE), after each restart.
      const preRun = async (image: Uint8Array, compression: 'never' | 'always') => {
        const skip = v2Skip();
        if (skip) return { skipped: skip };
        await board.waitReady();
        log(`${profile.name}: board idle ${PRE_ERASE_IDLE_MS / 1000} s (background erase)`);
        await board.idle(PRE_ERASE_IDLE_MS);
        const erases = countSlotErases(board);
        const m = await v2({}, image, compression);
        return isSkipped(m) ? m : { ...m, slotErases: erases.stop() };
      };
      result.v2PreErased = await preRun(images.v2Pre.bytes, 'never');
      result.v2CompressedPreErased = await preRun(images.v2zPre.bytes, 'always');
    }
    const link = used.params;
    if (link) {
      result.encryptedLink.v2 = link.encrypted;
      // What the v2 transfer ran on: link tuning decides PHY and interval, and the MTU is what
      // noble (asking for the profile central's MTU) and the firmware settled on. The ceiling
      // is the profile's with the MTU that was actually negotiated.
      result.phy = link.phy;
      result.mtu = link.attMtu;
      result.connIntervalMs = link.connIntervalMs;
      // A device that erases 64 KB blocks (one FLASH_OP per block) lifts the flash ceiling.
      // The device may ask for another interval than the profile's first (11.25 ms on 2M); the
      // ceiling is the better of both, so a well-chosen interval is not counted as beating it.
      // An encrypted link (the firmware's secure default) has its MIC on every data PDU.
      const eraseUnit = used.blockErase ? 'block' : 'sector';
      const ceilings = [profile.params.connIntervalMs, link.connIntervalMs].map((connIntervalMs) =>
        profileCeilingKBps(
          {
            ...profile,
            params: {
              ...profile.params,
              attMtu: link.attMtu,
              connIntervalMs,
              encrypted: link.encrypted,
            },
          },
          eraseUnit,
        ),
      );
      const c = ceilings.reduce((a, b) => (b.linkKBps > a.linkKBps ? b : a));
      result.linkCeilingKBps = c.linkKBps;
      result.linkCeilingWriteBytes = c.linkWriteBytes;
      result.flashCeilingKBps = c.flashKBps;
      result.device = {
        eraseUnit: used.blockErase ? 'block' : 'sector',
        rxBuffers: used.rxBuffers ?? null,
        frameBytes: used.frameBytes ?? null,
      };
    } else if (result.encryptedLink.baseline) {
      // No v2 run to read the link from: the profile's link, encrypted as the baseline's was.
      const c = profileCeilingKBps({ ...profile, params: { ...profile.params, encrypted: true } });
      result.linkCeilingKBps = c.linkKBps;
      result.linkCeilingWriteBytes = c.linkWriteBytes;
      result.flashCeilingKBps = c.flashKBps;
    }
  } finally {
    await rig.close();
    setRequestedMtu(mtuBefore);
  }
  return result;
}

/**
 * v2 (no deflate) on one profile under each combination of the model's assumptions that no
 * hardware here checked: flash speed, the device's ACL pool, whether the central's controller
 * honours noble's max CE length. The first row is the model's own choice.
 */
export async function runSensitivity(
  profile: LinkProfile,
  options: Pick<RunOptions, 'imageBytes' | 'log'> = {},
): Promise<SensitivityRow[]> {
  const rows: SensitivityRow[] = [];
  for (const flash of ['measured', 'datasheet'] as const) {
    for (const rxBuffers of ['firmware', 24] as const) {
      for (const ceLength of ['ignored', 'honoured'] as const) {
        const m = await runProfile(profile, {
          ...options,
          flash,
          v2Only: true,
          ...(rxBuffers === 'firmware' ? {} : { peripheralRxBuffers: rxBuffers }),
          // noble's LE (Extended) Create Connection asks for a max CE length of 0.
          ...(ceLength === 'honoured' ? { maxCeLenUs: 0 } : {}),
        });
        rows.push({ flash, rxBuffers, ceLength, deviceCpu: 'modeled', v2: m.v2 });
      }
    }
  }
  // The device's CPU, against the first row: free (what every figure assumed before), or twice
  // the estimate (device-cpu.ts has no measured figure).
  for (const deviceCpu of ['zero', 2] as const) {
    const m = await runProfile(profile, { ...options, flash: 'measured', v2Only: true, deviceCpu });
    rows.push({
      flash: 'measured',
      rxBuffers: 'firmware',
      ceLength: 'ignored',
      deviceCpu: deviceCpu === 'zero' ? 'zero' : 'x2',
      v2: m.v2,
    });
  }
  return rows;
}

const noV2 = 'the firmware offers no v2 characteristics (protocol v2 not in this host build)';

/** What the v2 transfer ran on, read from the board while the link was up. */
interface UsedLink {
  params?: LinkParams;
  blockErase?: boolean;
  rxBuffers?: number;
  frameBytes?: number;
}

async function runV2(
  used: UsedLink,
  access: RigAccess,
  board: VirtualBoard,
  image: Uint8Array,
  compression: 'never' | 'always',
  log: (line: string) => void,
  name: string,
): Promise<TransferMeasurement | Skipped> {
  try {
    await board.waitReady();
    log(`${name}: v2${compression === 'always' ? ' with deflate' : ''}, ${image.length} B`);
    const onEvent = (e: UpdateEvent) => {
      // The link as the data went over it (it is gone once the device restarts).
      if (e.type === 'phase' && e.phase === 'end' && e.state === 'start' && board.currentLink) {
        used.params = { ...board.currentLink.params };
        used.blockErase = board.device.flashOps.some((op) => op.op === 'erase' && op.len >= 65536);
        const link = board.currentLink;
        if (link instanceof ModeledAirScheduler) {
          used.rxBuffers = link.options.peripheralRxBuffers;
        }
      }
    };
    const { upload } = await updateOnRig(access, image, { protocol: 'v2', compression, onEvent });
    if (upload.protocol !== 'v2') throw new Error(`ran ${upload.protocol}`);
    const r = upload.result;
    if (r.outcome !== 'installed') return { skipped: `v2 upload ended with ${r.outcome}` };
    used.frameBytes = r.frameSize;
    if (compression === 'always' && !r.compression.used) {
      return { skipped: `the device did not take deflate (${r.compression.reason})` };
    }
    return measurement(span(r.phases, 'begin', 'end'), image.length, r.streamSize);
  } catch (error) {
    if (access.offersV2 === false) return { skipped: noV2 };
    return { skipped: `v2 upload failed: ${errorText(error)}` };
  }
}

/** Erases in the app slots (from 0x10000: not otadata) from now until stop(), during an update. */
function countSlotErases(board: VirtualBoard): { stop: () => number } {
  let n = 0;
  const on = (op: { op: string; addr: number }) => {
    if (op.op === 'erase' && op.addr >= 0x10000) n++;
  };
  board.device.on('flashOp', on);
  return {
    stop: () => {
      board.device.off('flashOp', on);
      return n;
    },
  };
}

function measurement(seconds: number, imageBytes: number, streamBytes: number) {
  if (!(seconds > 0)) throw new Error(`a transfer took ${seconds} s of modeled time`);
  return { seconds, imageBytes, streamBytes };
}

/**
 * The client stack's own speed: protocol v2 through the update flow, the noble transport,
 * noble's HCI stack and the virtual controller, on a zero-latency link, against the rig's board
 * (the firmware's host build, which answers as fast as it can and writes its flash in memory).
 * Wall-clock, so the figure is this machine's, and the device program's work shares the
 * machine's cores with the client. The first transfer runs while V8 still compiles the stack
 * (reported as `coldMBps`), and it keeps optimising over the next two; the figure is the median
 * of the five transfers after the first, the rate an update sees once it has run for a few
 * hundred milliseconds.
 */
export async function measureClientStack(
  options: RunOptions & { runs?: number } = {},
): Promise<StackMeasurement | Skipped> {
  const size = options.imageBytes ?? MIB;
  const runs = Math.max(1, options.runs ?? 5);
  const times: number[] = [];
  let last: { mtu: number; frameBytes: number } | undefined;
  // noble asks for 517, the most a real adapter allows (LINK-MODEL.md).
  const mtuBefore = setRequestedMtu(STACK_MTU);
  const rig = await startVirtualRig({
    profile: 'immediate',
    boards: [{ chip: 'esp32', restartDelayMs: 0 }],
  });
  try {
    const board = rig.boards[0] as VirtualBoard;
    const access = rigAccess(rig, board);
    for (let i = 0; i <= runs; i++) {
      const t = await clientStackOnce(access, board, size, `bench-client-stack-${i}`);
      if ('skipped' in t) return t;
      times.push(t.wallSeconds);
      last = t;
    }
  } finally {
    await rig.close();
    setRequestedMtu(mtuBefore);
  }
  const [cold, ...warm] = times as [number, ...number[]];
  warm.sort((a, b) => a - b);
  const wallSeconds = warm[Math.floor(warm.length / 2)] as number;
  return {
    bytes: size,
    wallSeconds,
    protocol: 'v2',
    coldWallSeconds: cold,
    runs: warm.length,
    ...(last ? { mtu: last.mtu, frameBytes: last.frameBytes } : {}),
  };
}

/** One v2 update through the stack; wall seconds from BEGIN to END_RSP. */
async function clientStackOnce(
  access: RigAccess,
  board: VirtualBoard,
  size: number,
  version: string,
): Promise<{ wallSeconds: number; mtu: number; frameBytes: number } | Skipped> {
  const image = await benchImage('esp32', version, size);
  try {
    await board.waitReady();
    let begun = performance.now();
    let ended = begun;
    const { upload } = await updateOnRig(access, image.bytes, {
      protocol: 'v2',
      compression: 'never',
      onEvent: (e) => {
        if (e.type !== 'phase') return;
        if (e.phase === 'begin' && e.state === 'start') begun = performance.now();
        if (e.phase === 'end' && e.state === 'end') ended = performance.now();
      },
    });
    if (upload.protocol !== 'v2') return { skipped: `the update ran ${upload.protocol}` };
    const r = upload.result;
    if (r.outcome !== 'installed') return { skipped: `the board answered ${r.outcome}` };
    return { wallSeconds: (ended - begun) / 1000, mtu: r.mtu, frameBytes: r.frameSize };
  } catch (error) {
    return { skipped: `client stack run failed: ${errorText(error)}` };
  }
}

/** The ATT MTU of the client stack figure: the most noble asks for on a real adapter. */
export const STACK_MTU = 517;

/** One signed (or unsigned) v2 update and how long its END took in modeled time. */
export interface VerificationRun {
  signature: 'none' | 'RSA-3072' | 'ECDSA P-256';
  /** The board's OTA writes need an encrypted link: the client paired first (the rig's default). */
  encryptedLink: boolean;
  /**
   * Modeled seconds of the BEGIN phase: subscribing, the signature manifest (signed images:
   * 1256 bytes in Write Requests, then one public-key check before anything is erased), the
   * first 64 KB block erase, and the pairing where the link must be encrypted.
   */
  beginSeconds: number;
  /** Modeled seconds of the END phase (image checks, signature check, boot partition). */
  endSeconds: number;
  /** Modeled seconds of the whole update, BEGIN to END_RSP. */
  totalSeconds: number;
}

/**
 * What checking the signature costs the update, in modeled device time: v2 on `profile`, once
 * unsigned on a board that takes anything, then signed on a board that trusts only the signing
 * key (RSA-3072, then ECDSA P-256). The device reports the SHA-256 over the image and each
 * public-key operation (CPU_WORK); the cost model (device-cpu.ts) prices them.
 */
export async function runVerificationCost(
  base: LinkProfile,
  options: Pick<RunOptions, 'imageBytes' | 'log'> = {},
): Promise<VerificationRun[] | Skipped> {
  const profile = runProfileVariant(base, {});
  const size = options.imageBytes ?? MIB;
  const log = options.log ?? (() => {});
  const ecdsa = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const kinds = [
    ['none', undefined, false],
    ['RSA-3072', generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey, false],
    ['ECDSA P-256', ecdsa, false],
    // The firmware's secure default: signed, and OTA writes only on an encrypted link.
    ['ECDSA P-256', ecdsa, true],
  ] as const;
  const runs: VerificationRun[] = [];
  for (const [signature, key, encryptedLink] of kinds) {
    // The signature sector (4 KB) is part of the image: the signed one is built that much
    // smaller, so that both send the same number of bytes.
    const plain = await benchImage(
      profile.chip,
      `bench-verify-${runs.length}`,
      key ? sizeBeforeSigning(size) : size,
      { signed: false },
    );
    const image = key ? signImage(plain.bytes, [key]) : plain.bytes;
    const mtuBefore = setRequestedMtu(profile.centralMtu);
    const rig = await startVirtualRig({
      profile,
      boards: [
        {
          chip: profile.chip,
          restartDelayMs: 0,
          // Unsigned: a firmware built with signature checks off; signed: one key trusted.
          security: key
            ? {
                trustedKeyDigests: [publicKeyDigest(key)],
                ...(encryptedLink ? { linkSecurity: 'encrypted' as const } : {}),
              }
            : TAKES_ANY_IMAGE,
        },
      ],
    });
    const board = rig.boards[0] as VirtualBoard;
    try {
      await board.waitReady();
      modeledClock(board);
      log(
        `${profile.name}: v2, ${signature === 'none' ? 'unsigned' : `signed ${signature}`}${encryptedLink ? ', encrypted link' : ''}`,
      );
      const { upload } = await updateOnRig(rigAccess(rig, board), image, {
        protocol: 'v2',
        compression: 'never',
      });
      if (upload.protocol !== 'v2') throw new Error(`ran ${upload.protocol}`);
      const r = upload.result;
      if (r.outcome !== 'installed') return { skipped: `the ${signature} run ended ${r.outcome}` };
      runs.push({
        signature,
        encryptedLink,
        beginSeconds: span(r.phases, 'begin', 'begin'),
        endSeconds: span(r.phases, 'end', 'end'),
        totalSeconds: span(r.phases, 'begin', 'end'),
      });
    } catch (error) {
      return { skipped: `the ${signature} run failed: ${errorText(error)}` };
    } finally {
      await rig.close();
      setRequestedMtu(mtuBefore);
    }
  }
  return runs;
}
