/**
 * What a scenario in hil-tests/ works with: a board (simulated or real), its serial console,
 * the upload over BLE through the same noble transport on both rigs, and the record of phases,
 * checks and figures that the runner turns into reports.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  loadNoble,
  MAX_REQUESTED_MTU,
  type Noble,
  nobleAccess,
  setRequestedMtu,
} from '@esp-ble-ota/noble';
import {
  type AppImageInfo,
  type Clock,
  type DeviceInformation,
  parseAppImage,
  signImage,
  UpdateError,
  type UpdateEvent,
  type UploadAutoResult,
  updateDevice,
} from '@esp-ble-ota/protocol';
import { SerialConsole } from '@esp-ble-ota/serial';
import type { BoardOptions, VirtualBoard, VirtualRig } from '@esp-ble-ota/sim';
import { type RunContext, readRunContext } from './context.ts';
import type {
  PhaseName,
  PhaseTiming,
  ScenarioResult,
  ThroughputSample,
  VerdictCheck,
} from './model.ts';

/** The bits of vitest's test context a scenario needs (kept structural: no vitest import here). */
export interface TestContextLike {
  task: { name: string; file?: { name: string } | undefined; suite?: { name: string } | undefined };
  skip(note?: string): never;
  onTestFinished(fn: () => unknown): void;
}

export interface ScenarioOptions {
  /** Virtual rig only: options of the simulated board (faults, chip, restart delay). */
  board?: BoardOptions;
  /**
   * What this scenario needs that a bench may not have configured; the bench run is skipped
   * with this text (e.g. "an image built with CONFIG_BLE_OTA_SELF_TEST_FORCE_FAIL").
   */
  benchNeeds?: string;
  /** The scenario makes the board panic on purpose: a panic line does not fail it. */
  expectPanic?: boolean;
  /** Why this scenario cannot run on this machine (a missing tool), or undefined: skipped with it. */
  unavailable?: string | undefined;
}

export interface FlashOptions {
  /** `command` writes REQUEST/DONE as Write Commands, as the baseline's Python client does. */
  requestWriteType?: 'request' | 'command';
  /**
   * Skip the client's pre-flight checks (chip, slot size, and what the device's v2 INFO says it
   * enforces: signed only, secure_version, older versions), to test that the device refuses.
   */
  skipPreflight?: boolean;
  /** v2: ask the device to take an older app version (where its firmware allows it). */
  allowDowngrade?: boolean;
  /** Send an image whose checksum or hash is wrong (to test that the device refuses it). */
  allowCorrupt?: boolean;
  /** 'auto' (default): v2 when the device offers it, else the baseline protocol. */
  protocol?: 'auto' | 'v2' | 'baseline';
  /** v2: deflate the image ('auto': when it makes the stream smaller). */
  compression?: 'auto' | 'always' | 'never';
  /**
   * Reconnects after a lost link (v2 resumes); default 0, as scenarios that drop the link check
   * the failure and resume themselves.
   */
  resumeAttempts?: number;
  /**
   * v2: an image the board may run (the run's previous build): when it does, and its firmware
   * takes patches, a patch against it goes out instead of the image.
   */
  base?: string | Uint8Array;
  /** v2: change the patch before it is sent, unchecked (to test that the device refuses it). */
  alterPatch?: (patch: Uint8Array) => Uint8Array;
  signal?: AbortSignal;
}

export interface FlashOutcome {
  info: AppImageInfo;
  device: DeviceInformation;
  upload: UploadAutoResult;
}

/** What a scenario writes for the runner: its result so far, and how to match it to vitest's. */
export type ScenarioRecord = ScenarioResult & { key: string };

export interface BootInfo {
  /** Flash offset of the app the bootloader loaded. */
  offset: number;
  version: string;
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 80);
}

/** Longest test-name part of a scenario id. */
const TITLE_SLUG_MAX = 60;

/** A test name in slug form, cut at a word boundary so that no id ends in half a word. */
function titleSlug(title: string): string {
  const full = slug(title);
  if (full.length <= TITLE_SLUG_MAX) return full;
  const cut = full.slice(0, TITLE_SLUG_MAX + 1);
  const boundary = cut.lastIndexOf('-');
  return boundary > 0 ? cut.slice(0, boundary) : full.slice(0, TITLE_SLUG_MAX);
}

/** The scenario file's name without `.test.ts`, in slug form. */
export function scenarioFileSlug(file: string | undefined): string {
  return slug((file ?? 'scenario').replace(/^.*\//, '').replace(/\.test\.ts$/, ''));
}

/**
 * Scenario ids are stable across runs (they key the baseline): the file's name when the file
 * holds one scenario, `<file>/<test name>` when it holds several.
 */
export function scenarioId(file: string | undefined, title: string, testsInFile: number): string {
  const base = scenarioFileSlug(file);
  return testsInFile > 1 ? `${base}/${titleSlug(title)}` : base;
}

/** How the runner finds what a test recorded: its file and title, as vitest reports them. */
export function recordKey(file: string | undefined, title: string): string {
  return `${(file ?? '').replace(/^.*\//, '')}::${title}`;
}

/** How long a refused upload waits for the device's error line on the console. */
const DEVICE_LOG_WAIT_MS = 2_000;

/** `error` with the error lines (ESP_LOGE) the device logged while the upload ran. */
function withDeviceErrors(error: unknown, lines: readonly string[]): unknown {
  if (!(error instanceof Error) || lines.length === 0) return error;
  error.message = `${error.message}; the device logged: ${lines.map((l) => `"${l}"`).join(', ')}`;
  return error;
}

export class Scenario {
  readonly result: ScenarioRecord;
  private doneAckAt: { wall: number } | undefined;

  private constructor(
    readonly ctx: RunContext,
    readonly id: string,
    readonly console: SerialConsole,
    readonly noble: Noble | undefined,
    readonly rig: VirtualRig | undefined,
    readonly board: VirtualBoard | undefined,
    readonly logPath: string,
    title: string,
    suite: string,
    fileName: string | undefined,
  ) {
    this.result = {
      id,
      key: recordKey(fileName, title),
      title,
      suite,
      result: 'passed',
      phases: {},
      consoleLog: logPath,
      ...(ctx.linkProfile ? { linkProfile: ctx.linkProfile } : {}),
    };
  }

  static async open(test: TestContextLike, options: ScenarioOptions = {}): Promise<Scenario> {
    const ctx = await readRunContext();
    const id = `${scenarioFileSlug(test.task.file?.name)}/${titleSlug(test.task.name)}`;
    if (ctx.rig === 'bench' && options.benchNeeds) {
      await writeSkipped(ctx, id, test, `bench: needs ${options.benchNeeds}`);
      test.skip(`bench: needs ${options.benchNeeds}`);
    }
    if (options.unavailable !== undefined) {
      await writeSkipped(ctx, id, test, options.unavailable);
      test.skip(options.unavailable);
    }
    const logPath = join(ctx.logsDir, `${id.replace(/\//g, '__')}.log`);
    await mkdir(ctx.logsDir, { recursive: true });
    let rig: VirtualRig | undefined;
    let board: VirtualBoard | undefined;
    let noble: Noble | undefined;
    let serialPath: string;
    // A bench's adapter asks for the most; the link takes the lesser of it and the board's.
    setRequestedMtu(MAX_REQUESTED_MTU);
    if (ctx.rig === 'sim') {
      const sim = await import('@esp-ble-ota/sim');
      rig = await sim.startVirtualRig({
        profile: ctx.linkProfile ?? 'linux-noble-esp32',
        program: join(ctx.simBuildDir, 'ble-ota-device'),
        boards: [
          {
            chip: ctx.target,
            name: ctx.bleName,
            ...(ctx.images.previousImage ? { image: ctx.images.previousImage } : {}),
            // The firmware's secure default: signed updates only, by the key the images are
            // signed with, and no going below the secure_version that confirmed itself.
            ...(ctx.images.trustedKeyDigest
              ? { security: sim.signedUpdatesOnly(ctx.images.trustedKeyDigest) }
              : {}),
            ...options.board,
          },
        ],
      });
      board = rig.boards[0];
      if (!board) throw new Error('the virtual rig started without a board');
      // noble plays the profile's central and asks for that central's MTU (Android 517).
      setRequestedMtu(rig.profile?.centralMtu ?? MAX_REQUESTED_MTU);
      noble = rig.noble;
      serialPath = board.serialPath;
    } else {
      if (!ctx.serialPort) {
        throw new Error(
          'bench: no serial port (set bench.port in hil.config.ts, HIL_PORT, or --port, or plug in a board with a known USB bridge)',
        );
      }
      serialPath = ctx.serialPort;
    }
    const console = await SerialConsole.open(serialPath, { logPath, defaultTimeoutMs: 20_000 });
    // A panic anywhere in a scenario fails it at its next expect(), whatever it waits for.
    if (!options.expectPanic) console.notExpect('Guru Meditation Error');
    const scenario = new Scenario(
      ctx,
      id,
      console,
      noble,
      rig,
      board,
      logPath,
      test.task.name,
      test.task.suite?.name ?? test.task.file?.name ?? 'hil',
      test.task.file?.name,
    );
    test.onTestFinished(() => scenario.close());
    return scenario;
  }

  get images() {
    return this.ctx.images;
  }

  /** Modeled milliseconds of the board's link (virtual rig with a link profile), else undefined. */
  private modeledNowMs(): number | undefined {
    return this.board?.modeledClock?.now();
  }

  phase(name: PhaseName, timing: PhaseTiming): void {
    this.result.phases[name] = timing;
  }

  /** A check for the report only; the caller throws with a message of its own. */
  private record(name: string, ok: boolean, detail?: string): void {
    const c: VerdictCheck = { name, ok, ...(detail === undefined ? {} : { detail }) };
    this.result.checks = [...(this.result.checks ?? []), c];
  }

  /**
   * An assertion the report lists: recorded either way, and a failed one fails the scenario
   * (after it is recorded, so the report says which check failed and what was seen).
   */
  check(name: string, ok: boolean, detail?: string): void {
    this.record(name, ok, detail);
    if (!ok) throw new Error(`check failed: ${name}${detail === undefined ? '' : ` (${detail})`}`);
  }

  /**
   * Resets the board and waits until its app runs: the sim board is power-cycled, a bench
   * board is reset through DTR/RTS. Returns which app booted, from the console.
   */
  async boot(): Promise<BootInfo> {
    if (this.board) {
      await this.console.flush();
      await this.board.powerCycle();
    } else {
      await this.console.hardReset();
    }
    return this.expectBoot();
  }

  /**
   * `image` signed as the images of this run are (with the rig's key, which the virtual
   * boards trust); unchanged on a bench, whose images come signed by its build, or not at all.
   */
  async signed(image: Uint8Array): Promise<Uint8Array> {
    if (this.ctx.rig !== 'sim' || !this.ctx.images.trustedKeyDigest) return image;
    const { rigSigningKey } = await import('@esp-ble-ota/sim');
    return signImage(image, [(await rigSigningKey()).key]);
  }

  /** Waits for the next boot on the console: the slot the bootloader loaded and the app version. */
  async expectBoot(opts: { timeout?: number } = {}): Promise<BootInfo> {
    const timeout = opts.timeout ?? 30_000;
    const app = await this.console.expectEvent('bootApp', { timeout });
    const info = await this.console.expectEvent('appInfo', { timeout });
    return { offset: app.offset, version: info.version ?? '' };
  }

  /**
   * Flashes `image` over BLE with the update flow every front end uses (`updateDevice`), through
   * the noble transport: find and connect, device information, protocol, pre-flight checks
   * (chip, slot size from the device), transfer, finalize. The board's console, not a
   * reconnect, verifies the new version (`expectUpdated`). Records the phases.
   */
  async flash(image: string | Uint8Array, opts: FlashOptions = {}): Promise<FlashOutcome> {
    const bytes = typeof image === 'string' ? new Uint8Array(await readFile(image)) : image;
    const base =
      typeof opts.base === 'string' ? new Uint8Array(await readFile(opts.base)) : opts.base;
    const info = parseAppImage(bytes);
    if (!opts.allowCorrupt && (!info.checksumValid || info.hashValid === false)) {
      throw new Error(
        `image ${info.version} is corrupt (checksum ${info.checksumValid ? 'ok' : 'bad'}, hash ${info.hashValid ? 'ok' : 'bad'}); refusing to send it`,
      );
    }
    this.result.imageBytes = bytes.length;
    this.result.toVersion = info.version;

    const noble = this.noble ?? (await loadNoble());
    const clock: Clock | undefined =
      this.modeledNowMs() === undefined ? undefined : { now: () => this.modeledNowMs() ?? 0 };
    const access = nobleAccess(noble, {
      filter: this.board
        ? { address: this.board.address }
        : this.ctx.bleAddress
          ? { address: this.ctx.bleAddress }
          : { name: this.ctx.bleName },
      clock: () => clock,
    });

    const samples: ThroughputSample[] = [];
    // Figures are those of the last upload of the scenario.
    this.result.throughput = samples;
    delete this.result.transferSeconds;
    delete this.result.kBps;
    delete this.result.phases.transfer;
    delete this.result.phases.finalize;
    let modeledBase: number | undefined;
    let transferStartWall = 0;
    const connectStart = performance.now();
    let device: DeviceInformation = {};
    // What the device logs (ESP_LOGE) while this upload runs, to explain a refusal.
    const deviceErrors: string[] = [];
    let errorLogged: (() => void) | undefined;
    const stopListening = this.console.onLine((l) => {
      if (!/^E \(\d+\) /.test(l)) return;
      deviceErrors.push(l.trim());
      errorLogged?.();
    });
    const onEvent = (event: UpdateEvent) => {
      if (event.type === 'connected') {
        device = event.device;
        const connectModeled = this.modeledNowMs();
        this.phase('connect', {
          wallMs: performance.now() - connectStart,
          ...(connectModeled === undefined ? {} : { modeledMs: connectModeled }),
        });
        if (device.firmwareRevision) this.result.fromVersion ??= device.firmwareRevision;
        return;
      }
      if (event.type === 'progress') {
        const snap = event.snapshot;
        const t =
          modeledBase !== undefined
            ? (this.modeledNowMs() ?? 0) - modeledBase
            : performance.now() - transferStartWall;
        const last = samples.at(-1);
        if (!last || snap.bytes === snap.total || t - last.tMs >= 50) {
          samples.push({ tMs: t, bytes: snap.bytes });
        }
        return;
      }
      if (event.type !== 'phase') return;
      if (event.state === 'start') {
        if (event.phase === 'data') {
          transferStartWall = performance.now();
          modeledBase = this.modeledNowMs();
        }
        return;
      }
      const modeled = event.modeledMs === undefined ? {} : { modeledMs: event.modeledMs };
      if (event.phase === 'data') {
        this.phase('transfer', { wallMs: event.wallMs, ...modeled });
        // Recorded here, not after the upload: a refusal at the end still moved the whole image.
        const ms = modeled.modeledMs ?? event.wallMs;
        if (event.state === 'end' && ms > 0) {
          this.result.transferSeconds = ms / 1000;
          this.result.kBps = bytes.length / 1000 / (ms / 1000);
        }
      }
      if (event.phase === 'done' || event.phase === 'end') {
        this.phase('finalize', { wallMs: event.wallMs, ...modeled });
        if (event.state === 'end') this.doneAckAt = { wall: performance.now() };
      }
    };
    let upload: UploadAutoResult;
    try {
      ({ upload } = await updateDevice(access, {
        image: bytes,
        imageInfo: info,
        protocol: opts.protocol ?? 'auto',
        ...(opts.skipPreflight ? { preflight: false } : {}),
        compression: opts.compression ?? 'auto',
        ...(opts.allowDowngrade ? { allowDowngrade: true } : {}),
        ...(base === undefined ? {} : { baseImages: base }),
        ...(opts.alterPatch === undefined ? {} : { alterPatch: opts.alterPatch }),
        requestWriteType: opts.requestWriteType ?? 'request',
        findTimeoutMs: 20_000,
        // Scenarios drop the link on purpose and resume themselves (v2-resume, link-lost).
        resumeAttempts: opts.resumeAttempts ?? 0,
        // The console says which image booted and whether it confirmed itself.
        verify: false,
        ...(opts.signal ? { signal: opts.signal } : {}),
        onEvent,
      }));
    } catch (error) {
      const cause = error instanceof UpdateError ? error.cause : error;
      // A refusal is logged by the device as it answers: wait for that line, not a fixed time.
      const code = (cause as { code?: unknown } | undefined)?.code;
      if ((code === 'REFUSED' || code === 'ATT_ERROR') && deviceErrors.length === 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, DEVICE_LOG_WAIT_MS);
          errorLogged = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      throw withDeviceErrors(cause, deviceErrors);
    } finally {
      stopListening();
    }
    this.result.protocol = upload.protocol;
    if (upload.protocol === 'v2') {
      const r = upload.result;
      this.result.sentBytes = r.sentBytes;
      // Image bytes this transfer delivered per second: a resumed one delivers only the rest,
      // a compressed one more image than it sends. Nothing sent: no transfer figures.
      if (r.sentBytes === 0) {
        delete this.result.transferSeconds;
        delete this.result.kBps;
      } else if (this.result.transferSeconds) {
        const delivered = (bytes.length * (r.streamSize - r.resumedFrom)) / r.streamSize;
        this.result.kBps = delivered / 1000 / this.result.transferSeconds;
      }
      this.record(
        'protocol v2',
        true,
        `${r.outcome}, ${r.delta.used ? `a ${r.delta.patchSize} B patch, ` : ''}${r.compression.used ? `deflate ${r.streamSize} B stream` : 'uncompressed'}, resumed from ${r.resumedFrom}, sent ${r.sentBytes} B`,
      );
    }
    return { info, device, upload };
  }

  /**
   * The verdict after an update: the board rebooted into the other slot, runs `version`, and
   * confirmed itself (its self-test passed), with no panic on the way. Records the reboot phase.
   */
  async expectUpdated(before: BootInfo, version: string): Promise<BootInfo> {
    const from = this.doneAckAt?.wall ?? performance.now();
    const after = await this.expectBoot({ timeout: 30_000 });
    this.record(
      'booted the other slot',
      after.offset !== before.offset,
      `0x${before.offset.toString(16)} -> 0x${after.offset.toString(16)}`,
    );
    this.record('runs the new version', after.version === version, after.version);
    if (after.offset === before.offset) {
      throw new Error(
        `the board booted 0x${after.offset.toString(16)} again after the update, not the other slot: the bootloader did not take the new image`,
      );
    }
    if (after.version !== version) {
      throw new Error(`the board runs ${after.version} after the update, not ${version}`);
    }
    // The new app either confirms itself, or fails its self-test and asks for a rollback, or
    // crashes: say which, with the console line, rather than time out.
    const outcome = await this.console.expectAny(
      [
        /new image confirmed/,
        /^.*(?:Diagnostics failed|self-test failed|Rollback to previously worked partition|Rollback is not possible).*$/m,
        /^.*(?:Guru Meditation Error|abort\(\) was called|Rebooting\.\.\.).*$/m,
      ],
      { timeout: 30_000 },
    );
    this.record(
      'self-test passed and the image confirmed itself',
      outcome.index === 0,
      outcome.match.trim(),
    );
    this.phase('reboot', { wallMs: performance.now() - from });
    if (outcome.index === 1) {
      throw new Error(
        `the new image ${version} booted from 0x${after.offset.toString(16)} but failed its self-test and asked for a rollback: "${outcome.match.trim()}"`,
      );
    }
    if (outcome.index === 2) {
      throw new Error(`the new image ${version} crashed after booting: "${outcome.match.trim()}"`);
    }
    return after;
  }

  /** Names of the faults that fired, for the report. */
  private faultNames(): string[] {
    return this.rig?.faultNames() ?? [];
  }

  async close(): Promise<void> {
    const faults = this.faultNames();
    if (faults.length) this.result.faults = faults;
    await this.console.close().catch(() => {});
    await this.rig?.close().catch(() => {});
    await writeScenario(this.ctx, this.result);
  }
}

async function writeScenario(ctx: RunContext, result: ScenarioRecord): Promise<void> {
  await mkdir(ctx.scenariosDir, { recursive: true });
  await writeFile(
    join(ctx.scenariosDir, `${result.id.replace(/\//g, '__')}.json`),
    `${JSON.stringify(result, null, 2)}\n`,
  );
}

async function writeSkipped(
  ctx: RunContext,
  id: string,
  test: TestContextLike,
  reason: string,
): Promise<void> {
  await writeScenario(ctx, {
    id,
    key: recordKey(test.task.file?.name, test.task.name),
    title: test.task.name,
    suite: test.task.suite?.name ?? test.task.file?.name ?? 'hil',
    result: 'skipped',
    skipReason: reason,
    phases: {},
  });
}
