/**
 * What `pnpm bench` reports (issue 7): per link profile the modeled transfer of a 1 MiB image by
 * the baseline protocol, by v2 and by v2 with deflate, against the profile's ceiling; and the
 * client stack's own speed. kB = 1000 bytes. Pure functions: measurements in, figures out.
 */
import Table from 'cli-table3';

/** One transfer as measured on the rig (modeled time). */
export interface TransferMeasurement {
  /** Modeled seconds from the first command (REQUEST / BEGIN) to the device's final answer. */
  seconds: number;
  /** Image bytes (what lands in flash). */
  imageBytes: number;
  /** Bytes that went over the air as image data (the deflated stream when compressing). */
  streamBytes: number;
}

/** Why a column has no figure. */
export interface Skipped {
  skipped: string;
}

export interface ProfileMeasurement {
  name: string;
  central: string;
  chip: string;
  phy: string;
  mtu: number;
  connIntervalMs: number;
  linkCeilingKBps: number;
  /** The Write Command value size that reaches `linkCeilingKBps` (every size up to MTU - 3 tried). */
  linkCeilingWriteBytes: number;
  flashCeilingKBps: number;
  /**
   * Whether each transfer ran on an encrypted link (LE Start Encryption succeeded: every data
   * PDU with a payload carries a 4-byte MIC), read from the link as the transfer ended; null when
   * it did not run. The ceiling is computed for the v2 run's link, MIC included.
   */
  encryptedLink: EncryptedLink;
  /** What the firmware did in the v2 run, which decides how close it gets to the ceiling. */
  device: DeviceFacts;
  /** The flash profile of the device: `measured` (LINK-MODEL.md's ESP32 figures) or `datasheet`. */
  flash: string;
  baseline: TransferMeasurement | Skipped;
  v2: TransferMeasurement | Skipped;
  v2Compressed: TransferMeasurement | Skipped;
  /**
   * v2 and v2+deflate on a slot the firmware erased beforehand (CONFIG_BLE_OTA_PRE_ERASE, the
   * board idle and unconnected first), with the app-slot erases the update still made.
   */
  v2PreErased?: PreErasedMeasurement | Skipped;
  v2CompressedPreErased?: PreErasedMeasurement | Skipped;
  /** Each LINK_REQUEST of the v2 run and its outcome, one line each. */
  linkTuning: string[];
}

export interface PreErasedMeasurement extends TransferMeasurement {
  /** Erase commands in the app slots during the update (0 when the whole slot was erased). */
  slotErases: number;
}

export interface EncryptedLink {
  baseline: boolean | null;
  v2: boolean | null;
}

export interface DeviceFacts {
  /** 'block' once the firmware erased a 64 KB block, else 'sector' (4 KB at a time). */
  eraseUnit: 'sector' | 'block';
  /** Link-layer PDUs the device holds while its host is stalled (the firmware's ACL pool). */
  rxBuffers: number | null;
  /** The v2 DATA frame (ATT value) size the device asked for. */
  frameBytes: number | null;
}

export interface StackMeasurement {
  /** Image bytes of one transfer through protocol + noble transport + noble + controller. */
  bytes: number;
  /** Wall seconds of one transfer once the stack is warm (median of `runs`). */
  wallSeconds: number;
  protocol: 'v2' | 'baseline';
  /** The first transfer, while V8 still compiles the stack. */
  coldWallSeconds?: number;
  runs?: number;
  /** The ATT MTU and DATA frame size the transfers used. */
  mtu?: number;
  frameBytes?: number;
}

export interface BenchFigures {
  seconds: number;
  kBps: number;
}

export interface ProfileResult {
  name: string;
  central: string;
  chip: string;
  phy: string;
  mtu: number;
  connIntervalMs: number;
  /** The lesser of the link's streaming ceiling and the flash's (src/link ceilings). */
  ceilingKBps: number;
  linkCeilingKBps: number;
  linkCeilingWriteBytes: number;
  flashCeilingKBps: number;
  encryptedLink: EncryptedLink;
  device: DeviceFacts;
  flash: string;
  baseline: (BenchFigures & { imageBytes: number }) | Skipped;
  v2: (BenchFigures & { imageBytes: number; shareOfCeiling: number }) | Skipped;
  v2Compressed: (BenchFigures & { imageBytes: number; streamBytes: number }) | Skipped;
  /** Absent when not run (the sensitivity runs). */
  v2PreErased?: (BenchFigures & { imageBytes: number; slotErases: number }) | Skipped;
  v2CompressedPreErased?:
    | (BenchFigures & { imageBytes: number; streamBytes: number; slotErases: number })
    | Skipped;
  /** v2 kB/s over baseline kB/s, or null when either is missing. */
  speedup: number | null;
  linkTuning: string[];
}

export interface TargetCheck {
  name: string;
  met: boolean | null;
  detail: string;
}

/** One what-if run: v2 (no deflate) with one set of the model's assumptions. */
export interface SensitivityRow {
  flash: string;
  /** The device's ACL receive pool; `firmware` is what its configuration declares. */
  rxBuffers: number | 'firmware';
  /** Whether the central's controller honours the max CE length noble asks for (0). */
  ceLength: 'ignored' | 'honoured';
  /** The device's CPU cost (device-cpu.ts): the model's estimate, none, or twice it. */
  deviceCpu: 'modeled' | 'zero' | 'x2';
  v2: TransferMeasurement | Skipped;
}

/** What each assumption of the model is worth, on one profile. */
export interface Sensitivity {
  profile: string;
  rows: (Omit<SensitivityRow, 'v2'> & { v2: BenchFigures | Skipped; vsFirst: number | null })[];
}

export function sensitivityResult(profile: string, rows: readonly SensitivityRow[]): Sensitivity {
  const first = rows[0]?.v2;
  const firstKBps = first && !isSkipped(first) ? figures(first).kBps : null;
  return {
    profile,
    rows: rows.map((r) => {
      const v2 = isSkipped(r.v2) ? r.v2 : figures(r.v2);
      return {
        ...r,
        v2,
        vsFirst: isSkipped(v2) || firstKBps === null ? null : v2.kBps / firstKBps,
      };
    }),
  };
}

/** The sensitivity table: one row per combination, the first row the model's own assumptions. */
export function renderSensitivity(s: Sensitivity): string {
  const table = new Table({
    head: [
      'flash',
      'ACL rx buffers',
      'max CE length',
      'device CPU',
      'v2 s',
      'v2 kB/s',
      'vs first row',
    ],
    style: { head: [], border: [] },
  });
  for (const r of s.rows) {
    table.push([
      r.flash,
      String(r.rxBuffers),
      r.ceLength === 'ignored' ? 'ignored (whole interval)' : 'honoured: 0, one exchange per event',
      r.deviceCpu,
      cell(r.v2, 'seconds'),
      cell(r.v2, 'kBps'),
      r.vsFirst === null ? '-' : `${(r.vsFirst * 100).toFixed(0)}%`,
    ]);
  }
  return [
    `what each assumption is worth, ${s.profile}, v2 without deflate (modeled time):`,
    table.toString(),
    'flash: measured = LINK-MODEL.md arduino-esp32 PR 7002 (1 MiB in 23.6 s by sectors, 9.8 s by blocks; programming assumed at the datasheet typical), datasheet = W25Q32JV typical',
    'ACL rx buffers: firmware = CONFIG_BT_NIMBLE_TRANSPORT_ACL_FROM_LL_COUNT from sdkconfig.defaults; 24 = the IDF default. That the pool fills while the flash cache is off is an assumption no hardware here checked',
    "max CE length: noble's LE Create Connection asks 0; a controller that honours it sends one exchange per connection event",
    "device CPU: modeled = device-cpu.ts's per-chip estimates (NimBLE host per PDU, CRC32, SHA-256, inflate, signature checks; from cycle counts, not measured); zero = a free CPU, as before the model; x2 = twice the estimates",
  ].join('\n');
}

export interface BenchResult {
  imageBytes: number;
  profiles: ProfileResult[];
  /** Million bytes per second through the client stack with a zero-latency link, or null. */
  clientStackMBps: number | null;
  clientStack: (StackMeasurement & { MBps: number; coldMBps?: number }) | Skipped;
  /** Issue 7's "Done when" figures, measured. */
  targets: TargetCheck[];
  /** What the model's assumptions are worth, when it was run. */
  sensitivity?: Sensitivity;
  /** The image the v2+deflate column sends, and how far deflate shrinks it. */
  deflateImage?: DeflateImage;
  /** What checking the signature costs an update (issue 13), when it was run. */
  verification?: VerificationCost;
}

export interface VerificationCost {
  profile: string;
  runs:
    | Array<{
        signature: string;
        encryptedLink: boolean;
        beginSeconds: number;
        endSeconds: number;
        totalSeconds: number;
        /** Modeled seconds more than the unsigned update, BEGIN phase only (manifest, pairing). */
        extraBeginSeconds: number;
        /** Modeled seconds more than the unsigned update, END phase only. */
        extraEndSeconds: number;
      }>
    | Skipped;
}

export function verificationResult(
  profile: string,
  runs:
    | ReadonlyArray<{
        signature: string;
        encryptedLink: boolean;
        beginSeconds: number;
        endSeconds: number;
        totalSeconds: number;
      }>
    | Skipped,
): VerificationCost {
  if ('skipped' in runs) return { profile, runs };
  const unsigned = runs.find((r) => r.signature === 'none');
  return {
    profile,
    runs: runs.map((r) => ({
      ...r,
      extraBeginSeconds: r.beginSeconds - (unsigned?.beginSeconds ?? 0),
      extraEndSeconds: r.endSeconds - (unsigned?.endSeconds ?? 0),
    })),
  };
}

export function renderVerification(v: VerificationCost): string {
  if ('skipped' in v.runs)
    return `signature check cost, ${v.profile}: not measured (${v.runs.skipped})`;
  const ms = (s: number) => `${(s * 1000).toFixed(1)} ms`;
  return [
    `signature check cost, ${v.profile}, v2 without deflate (modeled device time; device-cpu.ts estimates, not measured):`,
    ...v.runs.map((r) => {
      const what =
        r.signature === 'none'
          ? 'unsigned, any image taken'
          : `signed ${r.signature}, only the trusted key taken${r.encryptedLink ? ', encrypted link' : ''}`;
      const extra = (s: number) =>
        r.signature === 'none' ? '' : ` (${s >= 0 ? '+' : ''}${ms(s)})`;
      return `  ${what}: BEGIN ${ms(r.beginSeconds)}${extra(r.extraBeginSeconds)}, END ${ms(r.endSeconds)}${extra(r.extraEndSeconds)}, update ${r.totalSeconds.toFixed(2)} s`;
    }),
    "  BEGIN holds the first 64 KB block erase; a signed image adds its manifest (1256 bytes in Write Requests) and one public-key operation before that erase; an encrypted link adds the pairing (LE legacy Just Works: 4 SMP exchanges and the key distribution; the link layer's encryption start is not modeled) and a 4-byte MIC on every data PDU after it",
    '  END holds two esp_image_verify passes (esp_ota_end, esp_ota_set_boot_partition); a signed image adds a SHA-256 over the image and one public-key operation per signature block',
  ].join('\n');
}

export interface DeflateImage {
  kind: 'realistic' | 'host-padded';
  /** Deflated size / image size (zlib level 9). */
  deflateRatio: number;
  /** realistic: bytes of RISC-V code and data in one copy, and the copies in the image. */
  codeBytes?: number;
  copies?: number;
  /** host-padded: why the realistic image was not used. */
  reason?: string;
}

function describeDeflateImage(d: DeflateImage): string {
  const pct = `${(d.deflateRatio * 100).toFixed(1)}%`;
  return d.kind === 'realistic'
    ? `v2+deflate sends the realistic image (firmware/target-image: the firmware's core and picolibc compiled for RISC-V, ${d.codeBytes} B of code and data, ${d.copies} copies): deflate leaves ${pct} of it`
    : `v2+deflate sends the host-padded image (the x86-64 host app, incompressible padding): deflate leaves ${pct} of it, which says nothing about a real image; the realistic one was not used: ${d.reason}`;
}

const isSkipped = (x: object): x is Skipped => 'skipped' in x;

function figures(m: TransferMeasurement): BenchFigures {
  return { seconds: m.seconds, kBps: m.imageBytes / 1000 / m.seconds };
}

export function profileResult(m: ProfileMeasurement): ProfileResult {
  const ceilingKBps = Math.min(m.linkCeilingKBps, m.flashCeilingKBps);
  const baseline = isSkipped(m.baseline)
    ? m.baseline
    : { ...figures(m.baseline), imageBytes: m.baseline.imageBytes };
  const v2 = isSkipped(m.v2)
    ? m.v2
    : (() => {
        const f = figures(m.v2);
        return { ...f, imageBytes: m.v2.imageBytes, shareOfCeiling: f.kBps / ceilingKBps };
      })();
  const v2Compressed = isSkipped(m.v2Compressed)
    ? m.v2Compressed
    : {
        ...figures(m.v2Compressed),
        imageBytes: m.v2Compressed.imageBytes,
        streamBytes: m.v2Compressed.streamBytes,
      };
  const speedup = !isSkipped(baseline) && !isSkipped(v2) ? v2.kBps / baseline.kBps : null;
  const pre = (x: PreErasedMeasurement | Skipped) =>
    isSkipped(x)
      ? x
      : {
          ...figures(x),
          imageBytes: x.imageBytes,
          streamBytes: x.streamBytes,
          slotErases: x.slotErases,
        };
  return {
    name: m.name,
    central: m.central,
    chip: m.chip,
    phy: m.phy,
    mtu: m.mtu,
    connIntervalMs: m.connIntervalMs,
    ceilingKBps,
    linkCeilingKBps: m.linkCeilingKBps,
    linkCeilingWriteBytes: m.linkCeilingWriteBytes,
    flashCeilingKBps: m.flashCeilingKBps,
    encryptedLink: m.encryptedLink,
    device: m.device,
    flash: m.flash,
    baseline,
    v2,
    v2Compressed,
    ...(m.v2PreErased === undefined ? {} : { v2PreErased: pre(m.v2PreErased) }),
    ...(m.v2CompressedPreErased === undefined
      ? {}
      : { v2CompressedPreErased: pre(m.v2CompressedPreErased) }),
    speedup,
    linkTuning: m.linkTuning,
  };
}

/** Issue 7's targets, each with the figure that decides it. */
export function checkTargets(
  profiles: readonly ProfileResult[],
  clientStackMBps: number | null,
): TargetCheck[] {
  const share = profiles.map((p) => ({
    name: p.name,
    share: isSkipped(p.v2) ? null : p.v2.shareOfCeiling,
  }));
  const missing = share.filter((s) => s.share === null).map((s) => s.name);
  const low = share.filter((s) => s.share !== null && s.share < 0.85);
  const mac = profiles.find((p) => p.name === 'macos-esp32');
  const compression = profiles.map((p) => ({
    name: p.name,
    shorter:
      isSkipped(p.v2) || isSkipped(p.v2Compressed) ? null : p.v2Compressed.seconds < p.v2.seconds,
  }));
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  return [
    {
      name: 'v2 reaches 85% of the ceiling on every profile',
      met: missing.length > 0 ? null : low.length === 0,
      detail:
        missing.length > 0
          ? `no v2 figure for ${missing.join(', ')}`
          : share.map((s) => `${s.name} ${pct(s.share ?? 0)}`).join(', '),
    },
    {
      name: 'v2 is 10x the baseline on macos-esp32',
      met: mac?.speedup == null ? null : mac.speedup >= 10,
      detail: mac?.speedup == null ? 'no v2 or baseline figure' : `${mac.speedup.toFixed(1)}x`,
    },
    {
      name: 'compression shortens the transfer',
      met: compression.some((c) => c.shorter === null)
        ? null
        : compression.every((c) => c.shorter === true),
      detail: compression
        .map(
          (c) => `${c.name} ${c.shorter === null ? 'n/a' : c.shorter ? 'shorter' : 'NOT shorter'}`,
        )
        .join(', '),
    },
    preErasedTarget(profiles),
    {
      name: 'client stack moves at least 5 MB/s',
      met: clientStackMBps === null ? null : clientStackMBps >= 5,
      detail: clientStackMBps === null ? 'not measured' : `${clientStackMBps.toFixed(2)} MB/s`,
    },
  ];
}

/**
 * Issue 21's target: a full image with v2+deflate on a pre-erased slot in at most 5 s on the 2M
 * profiles and 8 s on the 1M ones. Not judged (n/a) when no profile ran it.
 */
function preErasedTarget(profiles: readonly ProfileResult[]): TargetCheck {
  const name =
    'v2+deflate on a pre-erased slot: at most 5 s on the 2M profiles, 8 s on the 1M ones (issue 21)';
  const ran = profiles.filter((p) => p.v2CompressedPreErased !== undefined);
  if (ran.length === 0) return { name, met: null, detail: 'not run' };
  const judged = ran.map((p) => {
    const x = p.v2CompressedPreErased;
    const limit = p.phy === '2M' ? 5 : 8;
    return {
      name: p.name,
      limit,
      seconds: x === undefined || isSkipped(x) ? null : x.seconds,
    };
  });
  const missing = judged.some((j) => j.seconds === null);
  return {
    name,
    met: missing ? null : judged.every((j) => (j.seconds as number) <= j.limit),
    detail: judged
      .map((j) =>
        j.seconds === null
          ? `${j.name} n/a`
          : `${j.name} ${j.seconds.toFixed(2)} s ${j.seconds <= j.limit ? '<=' : '>'} ${j.limit} s`,
      )
      .join(', '),
  };
}

export function benchResult(
  imageBytes: number,
  profiles: readonly ProfileMeasurement[],
  stack: StackMeasurement | Skipped,
): BenchResult {
  const results = profiles.map(profileResult);
  const clientStack = isSkipped(stack)
    ? stack
    : {
        ...stack,
        MBps: stack.bytes / 1e6 / stack.wallSeconds,
        ...(stack.coldWallSeconds === undefined
          ? {}
          : { coldMBps: stack.bytes / 1e6 / stack.coldWallSeconds }),
      };
  const clientStackMBps = isSkipped(clientStack) ? null : clientStack.MBps;
  return {
    imageBytes,
    profiles: results,
    clientStackMBps,
    clientStack,
    targets: checkTargets(results, clientStackMBps),
  };
}

const f1 = (x: number) => x.toFixed(1);

function cell(x: BenchFigures | Skipped, what: 'seconds' | 'kBps'): string {
  return isSkipped(x) ? '-' : what === 'seconds' ? f1(x.seconds) : f1(x.kBps);
}

/** One line per distinct thing the firmware did in the v2 runs, naming the profiles. */
function describeDevices(profiles: readonly ProfileResult[]): string[] {
  const groups = new Map<string, string[]>();
  for (const p of profiles) {
    const d = p.device;
    const key = [
      d.eraseUnit === 'block' ? '64 KB block erases' : '4 KB sector erases',
      d.rxBuffers === null ? 'receive buffers unknown' : `${d.rxBuffers} receive buffers`,
      d.frameBytes === null ? 'no v2 frames' : `${d.frameBytes}-byte DATA frames`,
    ].join(', ');
    groups.set(key, [...(groups.get(key) ?? []), p.name]);
  }
  return [...groups].map(([what, names]) => `device in the v2 run: ${what} (${names.join(', ')})`);
}

/** One line per write size the link ceilings take, naming the profiles, beside v2's frames. */
function describeCeilingWrites(profiles: readonly ProfileResult[]): string[] {
  const groups = new Map<number, string[]>();
  for (const p of profiles) {
    groups.set(p.linkCeilingWriteBytes, [...(groups.get(p.linkCeilingWriteBytes) ?? []), p.name]);
  }
  return [
    `link ceiling at its best write size: ${[...groups].map(([bytes, names]) => `${bytes} B (${names.join(', ')})`).join('; ')}`,
  ];
}

/** Whether the runs were on an encrypted link, per distinct answer, naming the profiles. */
function describeEncryption(profiles: readonly ProfileResult[]): string[] {
  const word = (e: boolean | null) => (e === null ? 'not run' : e ? 'encrypted' : 'not encrypted');
  const groups = new Map<string, string[]>();
  for (const p of profiles) {
    const { baseline, v2 } = p.encryptedLink;
    const key = baseline === v2 ? word(v2) : `baseline ${word(baseline)}, v2 ${word(v2)}`;
    groups.set(key, [...(groups.get(key) ?? []), p.name]);
  }
  const lines = [...groups].map(
    ([what, names]) => `link of the runs: ${what} (${names.join(', ')})`,
  );
  if (profiles.some((p) => p.encryptedLink.baseline || p.encryptedLink.v2)) {
    lines.push(
      "  encrypted: the firmware's secure default takes OTA writes on an encrypted link only, so noble paired (LE legacy Just Works); from LE Start Encryption on, every data PDU with a payload carries a 4-byte MIC (the ceilings count it; the LL encryption procedure's own PDUs are not modeled)",
    );
  }
  return lines;
}

/** Issue 21: the same v2 transfers on a slot erased during the update and beforehand. */
function renderPreErased(profiles: readonly ProfileResult[]): string | undefined {
  const ran = profiles.filter(
    (p) => p.v2PreErased !== undefined || p.v2CompressedPreErased !== undefined,
  );
  if (ran.length === 0) return undefined;
  const table = new Table({
    head: [
      'profile',
      'v2 s: erased during',
      'beforehand',
      'v2+deflate s: during',
      'beforehand',
      'slot erases in the pre-erased runs',
    ],
    style: { head: [], border: [] },
  });
  const erases = (x: ProfileResult['v2PreErased']) =>
    x === undefined || isSkipped(x) ? '-' : String(x.slotErases);
  for (const p of ran) {
    table.push([
      p.name,
      cell(p.v2, 'seconds'),
      p.v2PreErased === undefined ? '-' : cell(p.v2PreErased, 'seconds'),
      cell(p.v2Compressed, 'seconds'),
      p.v2CompressedPreErased === undefined ? '-' : cell(p.v2CompressedPreErased, 'seconds'),
      `${erases(p.v2PreErased)} / ${erases(p.v2CompressedPreErased)}`,
    ]);
  }
  const skips = ran.flatMap((p) =>
    [p.v2PreErased, p.v2CompressedPreErased]
      .filter((x): x is Skipped => x !== undefined && isSkipped(x))
      .map((s) => `  ${p.name}: ${s.skipped}`),
  );
  return [
    'update slot erased during the update, and beforehand (issue 21: the firmware erased it in the background while the board sat idle without a connection, CONFIG_BLE_OTA_PRE_ERASE at its default):',
    table.toString(),
    ...skips,
  ].join('\n');
}

/** The table `pnpm bench` prints. */
export function renderTable(result: BenchResult): string {
  const table = new Table({
    head: [
      'profile',
      'link',
      'ceiling kB/s',
      'baseline s',
      'baseline kB/s',
      'v2 s',
      'v2 kB/s',
      'v2 / ceiling',
      'v2+deflate s',
      'v2+deflate kB/s',
      'speed-up',
    ],
    style: { head: [], border: [] },
  });
  for (const p of result.profiles) {
    table.push([
      p.name,
      `${p.phy} MTU ${p.mtu} ${p.connIntervalMs} ms`,
      `${f1(p.ceilingKBps)} (${p.linkCeilingKBps <= p.flashCeilingKBps ? 'link' : 'flash'})`,
      cell(p.baseline, 'seconds'),
      cell(p.baseline, 'kBps'),
      cell(p.v2, 'seconds'),
      cell(p.v2, 'kBps'),
      isSkipped(p.v2) ? '-' : `${(p.v2.shareOfCeiling * 100).toFixed(1)}%`,
      cell(p.v2Compressed, 'seconds'),
      cell(p.v2Compressed, 'kBps'),
      p.speedup === null ? '-' : `${f1(p.speedup)}x`,
    ]);
  }
  const flashes = [...new Set(result.profiles.map((p) => p.flash))].join(', ');
  const lines = [
    `image: ${result.imageBytes} bytes; modeled time on the virtual rig (kB = 1000 B); device flash: ${flashes}`,
    table.toString(),
    'ceiling: the lesser of the link (the best any write size from 20 bytes to MTU - 3 can do, on the link the v2 run had: PHY, data length, interval, MTU, encryption; one direction, no retransmissions) and the flash (erase + program with the erase unit the firmware used)',
    ...describeCeilingWrites(result.profiles),
    ...describeEncryption(result.profiles),
    ...describeDevices(result.profiles),
    ...(result.deflateImage ? [describeDeflateImage(result.deflateImage)] : []),
    `client stack (update flow + protocol + noble transport + noble + virtual controller, zero-latency link, the rig's board): ${
      isSkipped(result.clientStack)
        ? `not measured (${result.clientStack.skipped})`
        : `${result.clientStack.MBps.toFixed(2)} MB/s wall-clock (${result.clientStack.protocol}, ${result.clientStack.bytes} B in ${result.clientStack.wallSeconds.toFixed(3)} s${
            result.clientStack.mtu === undefined
              ? ''
              : `, MTU ${result.clientStack.mtu}, ${result.clientStack.frameBytes}-byte DATA frames`
          }${
            result.clientStack.coldMBps === undefined
              ? ''
              : `, median of ${result.clientStack.runs} after a first cold transfer at ${result.clientStack.coldMBps.toFixed(2)} MB/s`
          })`
    }`,
  ];
  const skips = result.profiles.flatMap((p) =>
    (['baseline', 'v2', 'v2Compressed'] as const)
      .map((k) => p[k])
      .filter(isSkipped)
      .map((s) => `${p.name}: ${s.skipped}`),
  );
  if (skips.length) lines.push('', 'not measured:', ...[...new Set(skips)].map((s) => `  ${s}`));
  const preErased = renderPreErased(result.profiles);
  if (preErased) lines.push('', preErased);
  if (result.sensitivity) lines.push('', renderSensitivity(result.sensitivity));
  if (result.verification) lines.push('', renderVerification(result.verification));
  lines.push('', 'targets (issues 7 and 21):');
  for (const t of result.targets) {
    lines.push(
      `  [${t.met === null ? ' n/a ' : t.met ? ' met ' : 'MISSED'}] ${t.name}: ${t.detail}`,
    );
  }
  return lines.join('\n');
}

export { isSkipped };
