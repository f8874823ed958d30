/**
 * hil.config.ts: which rig, which chip, where the board and the build are. Precedence, lowest
 * first: defaults, the config file, HIL_* environment variables, command-line flags. Relative
 * paths in the file are relative to the file; in the environment and on the command line they
 * are relative to the working directory, as a shell user expects.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CHIPS, type ChipTarget, hasBleRadio, noBleRadioReason } from '@esp-ble-ota/protocol';
import { z } from 'zod';
import { RIG_NAMES, thresholdsSchema } from './model.ts';

export const CONFIG_FILE_NAME = 'hil.config.ts';

/**
 * USB serial bridges found on ESP32 dev boards, as `vid:pid` (lowercase hex), in the order
 * esptool users meet them.
 */
export const COMMON_USB_SERIAL_BRIDGES: readonly { vidPid: string; name: string }[] = [
  { vidPid: '10c4:ea60', name: 'Silicon Labs CP210x' },
  { vidPid: '1a86:7523', name: 'WCH CH340' },
  { vidPid: '1a86:55d4', name: 'WCH CH9102' },
  { vidPid: '0403:6001', name: 'FTDI FT232R' },
  { vidPid: '0403:6010', name: 'FTDI FT2232' },
  { vidPid: '0403:6014', name: 'FTDI FT232H' },
  { vidPid: '0403:6015', name: 'FTDI FT231X' },
  { vidPid: '303a:1001', name: 'Espressif USB-Serial/JTAG' },
];

/** Chips without a Bluetooth LE radio cannot run this firmware. */
export const BLE_TARGETS: readonly ChipTarget[] = CHIPS.map((c) => c.target).filter(hasBleRadio);
const ALL_TARGETS = new Set<string>(CHIPS.map((c) => c.target));

const targetSchema = z.enum(BLE_TARGETS as [ChipTarget, ...ChipTarget[]], {
  error: (issue) =>
    ALL_TARGETS.has(String(issue.input))
      ? `${String(issue.input)}: ${noBleRadioReason(String(issue.input))}; choose one of ${BLE_TARGETS.join(', ')}`
      : `unknown target '${String(issue.input)}'; choose one of ${BLE_TARGETS.join(', ')}`,
});

const vidPidSchema = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(z.string().regex(/^[0-9a-f]{4}:[0-9a-f]{4}$/, "expected 'vid:pid' in hex, e.g. 10c4:ea60"));

const bleAddressSchema = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(
    z
      .string()
      .regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, "expected a BLE address like 'a4:cf:12:34:56:78'"),
  );

const nonEmptyPath = z.string().min(1, 'expected a path');

export const hilConfigSchema = z.strictObject({
  rig: z.enum(RIG_NAMES).default('sim'),
  /** ESP-IDF target name, as `idf.py set-target` takes it. */
  target: targetSchema.default('esp32'),
  /** The ESP-IDF project of the device under test. */
  appPath: nonEmptyPath.default('firmware'),
  sim: z
    .strictObject({
      /** A link profile of the virtual rig, `<central>-<chip>`. */
      linkProfile: z.string().min(1).default('linux-noble-esp32'),
      /** How many simulated boards may run scenarios side by side. */
      boards: z.number().int().min(1).max(64).default(1),
      /** The host CMake build of the simulated device program. */
      buildDir: nonEmptyPath.default('firmware/host/build'),
    })
    .prefault({}),
  bench: z
    .strictObject({
      /** Serial port of the board; found by `usbVidPid` when absent. */
      port: nonEmptyPath.optional(),
      usbVidPid: z
        .array(vidPidSchema)
        .min(1)
        .default(COMMON_USB_SERIAL_BRIDGES.map((b) => b.vidPid)),
      bleName: z.string().min(1).max(29).default('esp32'),
      bleAddress: bleAddressSchema.optional(),
      /** ESP-IDF checkout; IDF_PATH of an export.sh shell when absent. */
      idfPath: nonEmptyPath.optional(),
      /** `idf.py -B`: where the bench build goes. */
      buildDir: nonEmptyPath.default('firmware/build'),
    })
    .prefault({}),
  thresholds: thresholdsSchema
    .extend({ transferSlowerPct: thresholdsSchema.shape.transferSlowerPct.default(15) })
    .prefault({}),
  resultsDir: nonEmptyPath.default('hil-results'),
  baselineFile: nonEmptyPath.default('hil-baseline.json'),
});

export type HilConfig = z.output<typeof hilConfigSchema>;
/** What hil.config.ts may say: every field has a default. */
export type HilConfigInput = z.input<typeof hilConfigSchema>;

type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;
export type HilConfigOverrides = DeepPartial<HilConfigInput>;

/** Types hil.config.ts; returns its argument. */
export function defineConfig(config: HilConfigInput): HilConfigInput {
  return config;
}

/** A config after loading: every path absolute, and where each value came from. */
export interface LoadedConfig extends HilConfig {
  /** Directory of the config file, or the working directory without one. */
  root: string;
  configFile?: string;
  /** Dotted field path -> where its value came from (`HIL_PORT`, `--port`, the file). */
  sources: Record<string, string>;
}

export class HilConfigError extends Error {
  override name = 'HilConfigError';
}

type FieldKind = 'string' | 'number' | 'list' | 'path';

interface EnvVar {
  name: string;
  field: string;
  kind: FieldKind;
  help: string;
}

/** Environment overrides, the names CI jobs and bench hosts set. */
export const ENV_VARS: readonly EnvVar[] = [
  { name: 'HIL_RIG', field: 'rig', kind: 'string', help: 'sim or bench' },
  { name: 'HIL_TARGET', field: 'target', kind: 'string', help: 'ESP-IDF target, e.g. esp32s3' },
  { name: 'HIL_APP_PATH', field: 'appPath', kind: 'path', help: 'ESP-IDF project directory' },
  {
    name: 'HIL_BUILD_DIR',
    field: '<rig>.buildDir',
    kind: 'path',
    help: 'build directory of the selected rig',
  },
  {
    name: 'HIL_LINK_PROFILE',
    field: 'sim.linkProfile',
    kind: 'string',
    help: 'virtual rig link profile',
  },
  { name: 'HIL_SIM_BOARDS', field: 'sim.boards', kind: 'number', help: 'simulated boards' },
  { name: 'HIL_PORT', field: 'bench.port', kind: 'string', help: 'serial port, e.g. /dev/ttyUSB0' },
  {
    name: 'HIL_USB_VID_PID',
    field: 'bench.usbVidPid',
    kind: 'list',
    help: 'comma-separated vid:pid list',
  },
  { name: 'HIL_BLE_NAME', field: 'bench.bleName', kind: 'string', help: 'advertised name' },
  { name: 'HIL_BLE_ADDRESS', field: 'bench.bleAddress', kind: 'string', help: 'BLE address' },
  { name: 'HIL_IDF_PATH', field: 'bench.idfPath', kind: 'path', help: 'ESP-IDF checkout' },
  {
    name: 'HIL_TRANSFER_SLOWER_PCT',
    field: 'thresholds.transferSlowerPct',
    kind: 'number',
    help: 'percent',
  },
  {
    name: 'HIL_KBPS_LOWER_PCT',
    field: 'thresholds.kBpsLowerPct',
    kind: 'number',
    help: 'percent',
  },
  { name: 'HIL_RESULTS_DIR', field: 'resultsDir', kind: 'path', help: 'reports directory' },
  { name: 'HIL_BASELINE_FILE', field: 'baselineFile', kind: 'path', help: 'baseline file' },
];

/**
 * The config flags of the command line, named as pytest-embedded names them. `buildDir` is the
 * build directory of whichever rig ends up selected, like HIL_BUILD_DIR.
 */
export interface ConfigFlags {
  rig?: string;
  target?: string;
  port?: string;
  appPath?: string;
  buildDir?: string;
  linkProfile?: string;
  bleName?: string;
  bleAddress?: string;
  resultsDir?: string;
  baselineFile?: string;
}

const FLAG_FIELDS: Record<keyof ConfigFlags, { flag: string; field: string }> = {
  rig: { flag: '--rig', field: 'rig' },
  target: { flag: '--target', field: 'target' },
  port: { flag: '--port', field: 'bench.port' },
  appPath: { flag: '--app-path', field: 'appPath' },
  buildDir: { flag: '--build-dir', field: '<rig>.buildDir' },
  linkProfile: { flag: '--link-profile', field: 'sim.linkProfile' },
  bleName: { flag: '--ble-name', field: 'bench.bleName' },
  bleAddress: { flag: '--ble-address', field: 'bench.bleAddress' },
  resultsDir: { flag: '--results-dir', field: 'resultsDir' },
  baselineFile: { flag: '--baseline-file', field: 'baselineFile' },
};

/** Config field -> the flag that sets it, for errors about values given as `overrides`. */
export const CLI_FLAGS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.values(FLAG_FIELDS).flatMap(({ flag, field }) =>
    field.startsWith('<rig>.')
      ? RIG_NAMES.map((r) => [field.replace('<rig>', r), flag])
      : [[field, flag]],
  ),
);

// Not bench.port: `COM3` is a port name, not a path relative to anything.
const PATH_FIELDS = [
  'appPath',
  'sim.buildDir',
  'bench.idfPath',
  'bench.buildDir',
  'resultsDir',
  'baselineFile',
];

type Tree = Record<string, unknown>;

function isPlainObject(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function getPath(tree: Tree, path: string): unknown {
  let node: unknown = tree;
  for (const key of path.split('.')) {
    if (!isPlainObject(node)) return undefined;
    node = node[key];
  }
  return node;
}

function setPath(tree: Tree, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = tree;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (!isPlainObject(next)) {
      node[key] = {};
    }
    node = node[key] as Tree;
  }
  node[keys[keys.length - 1] as string] = value;
}

/** Dotted paths of every leaf (arrays are leaves) set in `tree`. */
function leaves(tree: Tree, prefix = ''): string[] {
  return Object.entries(tree).flatMap(([key, value]) => {
    if (value === undefined) return [];
    const path = prefix === '' ? key : `${prefix}.${key}`;
    return isPlainObject(value) ? leaves(value, path) : [path];
  });
}

/** Merges `layer` into `into`, recording `source` for every leaf it sets. */
function applyLayer(
  into: Tree,
  layer: Tree,
  source: string,
  sources: Record<string, string>,
  baseDir: string,
): void {
  for (const path of leaves(layer)) {
    let value = getPath(layer, path);
    if (PATH_FIELDS.includes(path) && typeof value === 'string' && value !== '') {
      value = isAbsolute(value) ? value : resolve(baseDir, value);
    }
    setPath(into, path, value);
    sources[path] = source;
  }
}

/** Finds hil.config.ts in `cwd` or the nearest parent directory that has one. */
export function findConfigFile(cwd: string): string | undefined {
  let dir = resolve(cwd);
  for (;;) {
    const candidate = join(dir, CONFIG_FILE_NAME);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

async function importConfigFile(file: string): Promise<Tree> {
  let mod: { default?: unknown };
  try {
    // Runs under tsx (the runner) or vitest, both of which load TypeScript modules.
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw new HilConfigError(
      `could not load ${file}: ${(err as Error).message}\n` +
        'Run the runner through tsx (pnpm hil) so TypeScript config files can be imported.',
      { cause: err },
    );
  }
  if (!isPlainObject(mod.default)) {
    throw new HilConfigError(
      `${file} must export its config as the default export: export default defineConfig({ ... })`,
    );
  }
  return mod.default;
}

interface EnvValue {
  name: string;
  field: string;
  value: unknown;
}

function envValues(env: NodeJS.ProcessEnv, rig: string): EnvValue[] {
  const values: EnvValue[] = [];
  for (const v of ENV_VARS) {
    const raw = env[v.name];
    if (raw === undefined || raw.trim() === '') continue;
    const text = raw.trim();
    const field = v.field.replace('<rig>', rig);
    let value: unknown = text;
    if (v.kind === 'number') {
      value = Number(text);
      if (!Number.isFinite(value)) {
        throw new HilConfigError(`${v.name}='${raw}' is not a number (${field}: ${v.help})`);
      }
    } else if (v.kind === 'list') {
      value = text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    }
    values.push({ name: v.name, field, value });
  }
  return values;
}

function describeSource(path: string, sources: Record<string, string>): string {
  // zod reports the failing element of a list (bench.usbVidPid.2); the source is on the list.
  const known = Object.keys(sources)
    .filter((p) => path === p || path.startsWith(`${p}.`))
    .sort((a, b) => b.length - a.length)[0];
  return known === undefined ? 'default' : (sources[known] as string);
}

export interface LoadConfigOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Flags from the command line; win over the file and the environment. */
  flags?: ConfigFlags;
  /** Any field, from the command line or a caller; wins over everything else. */
  overrides?: HilConfigOverrides;
  /** Explicit config file; else HIL_CONFIG, else the nearest hil.config.ts. */
  configFile?: string;
  /**
   * Link profile names the virtual rig knows; when given, `sim.linkProfile` must be one of
   * them. The runner passes the simulator's list so this module need not load the simulator.
   */
  linkProfiles?: readonly string[];
}

export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env;
  const explicit = options.configFile ?? env.HIL_CONFIG;
  const configFile = explicit !== undefined ? resolve(cwd, explicit) : findConfigFile(cwd);
  if (explicit !== undefined && configFile !== undefined && !existsSync(configFile)) {
    throw new HilConfigError(
      `config file ${configFile} does not exist (from ${options.configFile !== undefined ? 'the configFile option' : 'HIL_CONFIG'})`,
    );
  }
  const root = configFile !== undefined ? dirname(configFile) : cwd;

  const merged: Tree = {};
  const sources: Record<string, string> = {};
  // IDF_PATH is what ESP-IDF's export.sh sets; it is the natural default, not an override.
  if (env.IDF_PATH !== undefined && env.IDF_PATH !== '') {
    applyLayer(merged, { bench: { idfPath: env.IDF_PATH } }, 'IDF_PATH', sources, cwd);
  }
  if (configFile !== undefined) {
    const fileLayer = await importConfigFile(configFile);
    applyLayer(merged, fileLayer, configFile, sources, root);
  }

  const overrides = (options.overrides ?? {}) as Tree;
  const flags = options.flags ?? {};
  // HIL_BUILD_DIR and --build-dir mean the build directory of whichever rig ends up selected.
  const envRig = env.HIL_RIG?.trim() || undefined;
  const rig = String(getPath(overrides, 'rig') ?? flags.rig ?? envRig ?? merged.rig ?? 'sim');
  const rigKey = rig === 'bench' ? 'bench' : 'sim';
  for (const { name, field, value } of envValues(env, rigKey)) {
    applyLayer(merged, buildTree(field, value), name, sources, cwd);
  }
  for (const [key, value] of Object.entries(flags)) {
    const spec = FLAG_FIELDS[key as keyof ConfigFlags];
    if (spec === undefined) {
      throw new HilConfigError(
        `unknown config flag '${key}'; known: ${Object.keys(FLAG_FIELDS).join(', ')}`,
      );
    }
    if (value === undefined) continue;
    const field = spec.field.replace('<rig>', rigKey);
    applyLayer(merged, buildTree(field, value), `${spec.flag} (command line)`, sources, cwd);
  }
  for (const path of leaves(overrides)) {
    const flag = CLI_FLAGS[path];
    const label = flag !== undefined ? `${flag} (command line)` : 'command line';
    applyLayer(merged, buildTree(path, getPath(overrides, path)), label, sources, cwd);
  }

  const parsed = hilConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const path = issue.path.map(String).join('.');
      return `  ${path || '(config)'} (from ${describeSource(path, sources)}): ${issue.message}`;
    });
    throw new HilConfigError(
      `invalid HIL configuration:\n${lines.join('\n')}\n` +
        `Fix ${configFile ?? `a ${CONFIG_FILE_NAME}`}, the environment variable or the flag named above.`,
    );
  }
  const config = parsed.data;
  if (
    options.linkProfiles !== undefined &&
    !options.linkProfiles.includes(config.sim.linkProfile)
  ) {
    throw new HilConfigError(
      `invalid HIL configuration:\n  sim.linkProfile (from ${describeSource('sim.linkProfile', sources)}): ` +
        `unknown link profile '${config.sim.linkProfile}'; choose one of ${options.linkProfiles.join(', ')}`,
    );
  }
  // Defaults are relative to the project root, like paths written in the file.
  for (const path of PATH_FIELDS) {
    const value = getPath(config as unknown as Tree, path);
    if (typeof value === 'string' && !isAbsolute(value)) {
      setPath(config as unknown as Tree, path, resolve(root, value));
    }
  }
  return {
    ...config,
    root,
    ...(configFile !== undefined ? { configFile } : {}),
    sources,
  };
}

function buildTree(path: string, value: unknown): Tree {
  const tree: Tree = {};
  setPath(tree, path, value);
  return tree;
}

/** What `SerialPort.list()` reports for one port (the fields used here). */
export interface SerialPortInfo {
  path: string;
  vendorId?: string | undefined;
  productId?: string | undefined;
  manufacturer?: string | undefined;
  serialNumber?: string | undefined;
}

export interface FoundSerialPort {
  path: string;
  /** `vid:pid` of the matched bridge; absent when the port was given by path. */
  vidPid?: string;
  description: string;
}

export interface FindSerialPortOptions {
  /** Lists ports; `SerialPort.list()` of the serialport package when absent. */
  list?: () => Promise<SerialPortInfo[]>;
}

function vidPidOf(info: SerialPortInfo): string | undefined {
  if (info.vendorId === undefined || info.productId === undefined) return undefined;
  // Linux reports lowercase hex, Windows and macOS may not, and some drivers drop leading zeros.
  const hex4 = (s: string) => s.toLowerCase().replace(/^0x/, '').padStart(4, '0');
  return `${hex4(info.vendorId)}:${hex4(info.productId)}`;
}

function describePort(info: SerialPortInfo): string {
  const vp = vidPidOf(info);
  const bridge = COMMON_USB_SERIAL_BRIDGES.find((b) => b.vidPid === vp)?.name;
  const parts = [
    vp ?? 'no USB id',
    bridge ?? info.manufacturer,
    info.serialNumber ? `serial ${info.serialNumber}` : undefined,
  ].filter((p): p is string => p !== undefined && p !== '');
  return `${info.path} (${parts.join(', ')})`;
}

async function listSerialPorts(): Promise<SerialPortInfo[]> {
  // Loaded on demand: the native binding is only needed on the bench.
  const { SerialPort } = await import('serialport');
  return SerialPort.list();
}

/**
 * The bench board's serial port: `bench.port` when set (it must exist), else the one port whose
 * USB VID:PID is in `bench.usbVidPid`. Zero or several matches are errors that list what was
 * found, since guessing would flash or watch the wrong board.
 */
export async function findSerialPort(
  bench: Pick<HilConfig['bench'], 'port' | 'usbVidPid'>,
  options: FindSerialPortOptions = {},
): Promise<FoundSerialPort> {
  const list = options.list ?? listSerialPorts;
  if (bench.port !== undefined) {
    const ports = await list().catch(() => [] as SerialPortInfo[]);
    const listed = ports.find((p) => p.path === bench.port);
    if (listed !== undefined) {
      const vidPid = vidPidOf(listed);
      return {
        path: listed.path,
        ...(vidPid !== undefined ? { vidPid } : {}),
        description: describePort(listed),
      };
    }
    // A pty (the virtual rig) or a udev symlink is not in the USB listing but is still a port.
    if (existsSync(bench.port)) return { path: bench.port, description: bench.port };
    throw new HilConfigError(
      `serial port ${bench.port} does not exist. Ports found: ${ports.length === 0 ? 'none' : ports.map(describePort).join('; ')}. ` +
        'Plug the board in or set the right port with --port / HIL_PORT / bench.port.',
    );
  }
  const wanted = new Set(bench.usbVidPid.map((v) => v.toLowerCase()));
  let ports: SerialPortInfo[];
  try {
    ports = await list();
  } catch (err) {
    throw new HilConfigError(
      `could not list serial ports (${(err as Error).message}); set the port with --port / HIL_PORT / bench.port`,
      { cause: err },
    );
  }
  const matches = ports.filter((p) => {
    const vp = vidPidOf(p);
    return vp !== undefined && wanted.has(vp);
  });
  const found = ports.length === 0 ? 'no serial ports at all' : ports.map(describePort).join('; ');
  if (matches.length === 0) {
    throw new HilConfigError(
      `no serial port with a USB id in ${[...wanted].join(', ')}. Found: ${found}. ` +
        'Check the cable (charge-only cables carry no data) and the udev permissions, or set ' +
        'the port with --port / HIL_PORT / bench.port, or add its vid:pid to bench.usbVidPid.',
    );
  }
  if (matches.length > 1) {
    throw new HilConfigError(
      `several boards match (${matches.map(describePort).join('; ')}); choose one with --port / HIL_PORT / bench.port`,
    );
  }
  const only = matches[0] as SerialPortInfo;
  return { path: only.path, vidPid: vidPidOf(only) as string, description: describePort(only) };
}
