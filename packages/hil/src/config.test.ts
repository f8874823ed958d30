import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BLE_TARGETS,
  COMMON_USB_SERIAL_BRIDGES,
  defineConfig,
  findConfigFile,
  findSerialPort,
  HilConfigError,
  loadConfig,
  type SerialPortInfo,
} from './config.ts';

const repoRoot = resolve(import.meta.dirname, '../../..');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hil-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(body: string, at = dir): string {
  const file = join(at, 'hil.config.ts');
  writeFileSync(file, body);
  return file;
}

async function loadError(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected the promise to reject with an Error');
  return err;
}

describe('loadConfig defaults', () => {
  it('fills every field when there is no config file', async () => {
    const config = await loadConfig({ cwd: dir, env: {} });
    expect(config.rig).toBe('sim');
    expect(config.target).toBe('esp32');
    expect(config.sim).toEqual({
      linkProfile: 'linux-noble-esp32',
      boards: 1,
      buildDir: join(dir, 'firmware/host/build'),
    });
    expect(config.bench.port).toBeUndefined();
    expect(config.bench.usbVidPid).toEqual([
      '10c4:ea60',
      '1a86:7523',
      '1a86:55d4',
      '0403:6001',
      '0403:6010',
      '0403:6014',
      '0403:6015',
      '303a:1001',
    ]);
    expect(config.bench.bleName).toBe('esp32');
    expect(config.thresholds.transferSlowerPct).toBe(15);
    expect(config.thresholds.kBpsLowerPct).toBeUndefined();
    expect(config.resultsDir).toBe(join(dir, 'hil-results'));
    expect(config.baselineFile).toBe(join(dir, 'hil-baseline.json'));
    expect(config.root).toBe(dir);
    expect(config.configFile).toBeUndefined();
  });

  it('reads hil.config.ts from a parent directory and resolves its paths against it', async () => {
    writeConfig(
      "export default { target: 'esp32s3', resultsDir: 'out/hil', sim: { boards: 2 }, thresholds: { transferSlowerPct: 5 } };",
    );
    const sub = join(dir, 'hil-tests', 'suites');
    mkdirSync(sub, { recursive: true });
    expect(findConfigFile(sub)).toBe(join(dir, 'hil.config.ts'));
    const config = await loadConfig({ cwd: sub, env: {} });
    expect(config.target).toBe('esp32s3');
    expect(config.sim.boards).toBe(2);
    expect(config.sim.linkProfile).toBe('linux-noble-esp32');
    expect(config.thresholds.transferSlowerPct).toBe(5);
    expect(config.resultsDir).toBe(join(dir, 'out/hil'));
    expect(config.root).toBe(dir);
    expect(config.sources.target).toBe(join(dir, 'hil.config.ts'));
  });

  it('loads the repository hil.config.ts', async () => {
    const config = await loadConfig({ cwd: repoRoot, env: {} });
    expect(config.configFile).toBe(join(repoRoot, 'hil.config.ts'));
    expect(config.rig).toBe('sim');
    expect(config.resultsDir).toBe(join(repoRoot, 'hil-results'));
    expect(config.baselineFile).toBe(join(repoRoot, 'hil-baseline.json'));
  });

  it('defineConfig returns its argument', () => {
    const input = { rig: 'bench' as const, bench: { port: '/dev/ttyUSB0' } };
    expect(defineConfig(input)).toBe(input);
  });
});

describe('environment and command-line overrides', () => {
  it('env overrides the file, the command line overrides env', async () => {
    writeConfig("export default { rig: 'sim', target: 'esp32', bench: { bleName: 'from-file' } };");
    const config = await loadConfig({
      cwd: dir,
      env: {
        HIL_RIG: 'bench',
        HIL_TARGET: 'esp32c3',
        HIL_PORT: '/dev/ttyACM0',
        HIL_BLE_NAME: 'bench-board',
        HIL_BLE_ADDRESS: 'A4:CF:12:34:56:78',
        HIL_USB_VID_PID: '303A:1001, 10c4:ea60',
        HIL_TRANSFER_SLOWER_PCT: '20',
      },
      overrides: { target: 'esp32s3', bench: { port: '/dev/ttyUSB1' } },
    });
    expect(config.rig).toBe('bench');
    expect(config.target).toBe('esp32s3');
    expect(config.bench.port).toBe('/dev/ttyUSB1');
    expect(config.bench.bleName).toBe('bench-board');
    expect(config.bench.bleAddress).toBe('a4:cf:12:34:56:78');
    expect(config.bench.usbVidPid).toEqual(['303a:1001', '10c4:ea60']);
    expect(config.thresholds.transferSlowerPct).toBe(20);
    expect(config.sources).toMatchObject({
      rig: 'HIL_RIG',
      target: '--target (command line)',
      'bench.port': '--port (command line)',
      'bench.bleName': 'HIL_BLE_NAME',
    });
  });

  it('HIL_BUILD_DIR sets the build directory of the selected rig, relative to cwd', async () => {
    writeConfig("export default { appPath: 'fw' };");
    const sim = await loadConfig({ cwd: dir, env: { HIL_BUILD_DIR: 'b/sim' } });
    expect(sim.sim.buildDir).toBe(join(dir, 'b/sim'));
    expect(sim.bench.buildDir).toBe(join(dir, 'firmware/build'));
    expect(sim.appPath).toBe(join(dir, 'fw'));

    const bench = await loadConfig({
      cwd: join(dir),
      env: { HIL_BUILD_DIR: '/abs/build', HIL_APP_PATH: 'other' },
      overrides: { rig: 'bench' },
    });
    expect(bench.bench.buildDir).toBe('/abs/build');
    expect(bench.sim.buildDir).toBe(join(dir, 'firmware/host/build'));
    expect(bench.appPath).toBe(join(dir, 'other'));
  });

  it('takes pytest-embedded style flags; --build-dir follows the selected rig', async () => {
    writeConfig("export default { rig: 'sim' };");
    const config = await loadConfig({
      cwd: dir,
      env: { HIL_PORT: '/dev/ttyUSB0', HIL_BUILD_DIR: 'from-env' },
      flags: {
        rig: 'bench',
        port: '/dev/ttyACM3',
        buildDir: 'out/bench',
        appPath: 'fw',
        bleName: 'dut-7',
        target: undefined,
      },
    });
    expect(config.rig).toBe('bench');
    expect(config.bench.port).toBe('/dev/ttyACM3');
    expect(config.bench.buildDir).toBe(join(dir, 'out/bench'));
    expect(config.sim.buildDir).toBe(join(dir, 'firmware/host/build'));
    expect(config.appPath).toBe(join(dir, 'fw'));
    expect(config.target).toBe('esp32');
    expect(config.sources['bench.port']).toBe('--port (command line)');
    expect(config.sources['bench.buildDir']).toBe('--build-dir (command line)');

    const err = await loadError(
      loadConfig({ cwd: dir, env: {}, flags: { rig: 'sim', linkProfile: '' } }),
    );
    expect(err.message).toContain('sim.linkProfile (from --link-profile (command line))');
    const unknown = await loadError(
      loadConfig({ cwd: dir, env: {}, flags: { baud: '115200' } as never }),
    );
    expect(unknown.message).toMatch(/^unknown config flag 'baud'; known: rig, target, port/);
  });

  it('IDF_PATH is the default ESP-IDF checkout; the file and HIL_IDF_PATH win over it', async () => {
    expect((await loadConfig({ cwd: dir, env: { IDF_PATH: '/opt/esp-idf' } })).bench.idfPath).toBe(
      '/opt/esp-idf',
    );
    writeConfig("export default { bench: { idfPath: '/home/me/esp/idf' } };");
    expect((await loadConfig({ cwd: dir, env: { IDF_PATH: '/opt/esp-idf' } })).bench.idfPath).toBe(
      '/home/me/esp/idf',
    );
    const fromEnv = await loadConfig({
      cwd: dir,
      env: { IDF_PATH: '/opt/esp-idf', HIL_IDF_PATH: '/srv/idf' },
    });
    expect(fromEnv.bench.idfPath).toBe('/srv/idf');
  });

  it('HIL_CONFIG names another config file', async () => {
    const other = join(dir, 'ci');
    mkdirSync(other);
    writeConfig("export default { rig: 'bench', bench: { port: 'COM3' } };", other);
    const config = await loadConfig({ cwd: dir, env: { HIL_CONFIG: 'ci/hil.config.ts' } });
    expect(config.rig).toBe('bench');
    // A Windows port name is not a path relative to anything.
    expect(config.bench.port).toBe('COM3');
    expect(config.root).toBe(other);
  });
});

describe('configuration errors', () => {
  it('names the env var and the allowed values', async () => {
    const err = await loadError(loadConfig({ cwd: dir, env: { HIL_RIG: 'qemu' } }));
    expect(err).toBeInstanceOf(HilConfigError);
    expect(err.message).toMatch(/rig \(from HIL_RIG\)/);
    expect(err.message).toMatch(/"sim"\|"bench"/);
  });

  it('refuses a chip without BLE and lists the targets that have it', async () => {
    const err = await loadError(loadConfig({ cwd: dir, env: { HIL_TARGET: 'esp32s2' } }));
    expect(err.message).toContain(
      'target (from HIL_TARGET): esp32s2: the ESP32-S2 has no Bluetooth LE radio',
    );
    expect(err.message).toContain(BLE_TARGETS.join(', '));
    expect(BLE_TARGETS).toContain('esp32c3');
    expect(BLE_TARGETS).not.toContain('esp32p4');
  });

  it('names the field of the config file', async () => {
    const file = writeConfig(
      "export default { sim: { boards: 0 }, bench: { usbVidPid: ['10c4:ea60', 'cp2102'] } };",
    );
    const err = await loadError(loadConfig({ cwd: dir, env: {} }));
    expect(err.message).toContain(`sim.boards (from ${file})`);
    expect(err.message).toMatch(/sim\.boards.*>=1/);
    expect(err.message).toContain(`bench.usbVidPid.1 (from ${file}): expected 'vid:pid' in hex`);
  });

  it('refuses unknown keys, which are usually typos', async () => {
    writeConfig("export default { sim: { linkprofile: 'macos-esp32' } };");
    const err = await loadError(loadConfig({ cwd: dir, env: {} }));
    expect(err.message).toMatch(/sim.*Unrecognized key.*linkprofile/);
  });

  it('says which number env var is not a number', async () => {
    const err = await loadError(
      loadConfig({ cwd: dir, env: { HIL_TRANSFER_SLOWER_PCT: 'fifteen' } }),
    );
    expect(err.message).toBe(
      "HIL_TRANSFER_SLOWER_PCT='fifteen' is not a number (thresholds.transferSlowerPct: percent)",
    );
  });

  it('checks a BLE address from the command line', async () => {
    const err = await loadError(
      loadConfig({ cwd: dir, env: {}, overrides: { bench: { bleAddress: 'a4cf12345678' } } }),
    );
    expect(err.message).toContain('bench.bleAddress (from --ble-address (command line))');
  });

  it('checks the link profile against the names the virtual rig knows', async () => {
    const err = await loadError(
      loadConfig({
        cwd: dir,
        env: { HIL_LINK_PROFILE: 'windows-esp32' },
        linkProfiles: ['linux-noble-esp32', 'macos-esp32'],
      }),
    );
    expect(err.message).toContain(
      "sim.linkProfile (from HIL_LINK_PROFILE): unknown link profile 'windows-esp32'; choose one of linux-noble-esp32, macos-esp32",
    );
  });

  it('requires a default export', async () => {
    const file = writeConfig("export const config = { rig: 'sim' };");
    const err = await loadError(loadConfig({ cwd: dir, env: {} }));
    expect(err.message).toBe(
      `${file} must export its config as the default export: export default defineConfig({ ... })`,
    );
  });

  it('reports a missing explicit config file', async () => {
    const err = await loadError(loadConfig({ cwd: dir, env: { HIL_CONFIG: 'nope.ts' } }));
    expect(err.message).toBe(
      `config file ${join(dir, 'nope.ts')} does not exist (from HIL_CONFIG)`,
    );
  });
});

describe('findSerialPort', () => {
  const defaults = COMMON_USB_SERIAL_BRIDGES.map((b) => b.vidPid);
  const ports: SerialPortInfo[] = [
    { path: '/dev/ttyS0' },
    {
      path: '/dev/ttyUSB0',
      vendorId: '10C4',
      productId: 'EA60',
      manufacturer: 'Silicon Labs',
      serialNumber: '0001',
    },
    { path: '/dev/ttyACM0', vendorId: '2e8a', productId: '000a', manufacturer: 'Raspberry Pi' },
  ];

  it('finds the one board by the USB id of its bridge', async () => {
    const found = await findSerialPort({ usbVidPid: defaults }, { list: async () => ports });
    expect(found).toEqual({
      path: '/dev/ttyUSB0',
      vidPid: '10c4:ea60',
      description: '/dev/ttyUSB0 (10c4:ea60, Silicon Labs CP210x, serial 0001)',
    });
  });

  it('matches Espressif USB-Serial/JTAG with short ids', async () => {
    const found = await findSerialPort(
      { usbVidPid: defaults },
      { list: async () => [{ path: '/dev/ttyACM1', vendorId: '303a', productId: '1001' }] },
    );
    expect(found.vidPid).toBe('303a:1001');
  });

  it('lists what it found when nothing matches', async () => {
    const err = await loadError(
      findSerialPort({ usbVidPid: ['1a86:7523'] }, { list: async () => ports }),
    );
    expect(err.message).toContain('no serial port with a USB id in 1a86:7523');
    expect(err.message).toContain('/dev/ttyS0 (no USB id)');
    expect(err.message).toContain('/dev/ttyACM0 (2e8a:000a, Raspberry Pi)');
    expect(err.message).toContain('--port / HIL_PORT / bench.port');
  });

  it('refuses to guess between two boards', async () => {
    const two = [...ports, { path: '/dev/ttyUSB1', vendorId: '1a86', productId: '55d4' }];
    const err = await loadError(findSerialPort({ usbVidPid: defaults }, { list: async () => two }));
    expect(err.message).toMatch(/several boards match.*\/dev\/ttyUSB0.*\/dev\/ttyUSB1.*--port/);
  });

  it('takes a given port that exists, listed or not', async () => {
    const listed = await findSerialPort(
      { port: '/dev/ttyUSB0', usbVidPid: defaults },
      { list: async () => ports },
    );
    expect(listed.vidPid).toBe('10c4:ea60');
    // A pty, like the virtual rig's console, is not a USB device.
    const pty = join(dir, 'pty');
    writeFileSync(pty, '');
    const unlisted = await findSerialPort(
      { port: pty, usbVidPid: defaults },
      { list: async () => ports },
    );
    expect(unlisted).toEqual({ path: pty, description: pty });
  });

  it('says a given port does not exist and lists the ports found', async () => {
    const err = await loadError(
      findSerialPort({ port: '/dev/ttyUSB9', usbVidPid: defaults }, { list: async () => ports }),
    );
    expect(err.message).toMatch(
      /^serial port \/dev\/ttyUSB9 does not exist\. Ports found: .*ttyUSB0/,
    );
  });
});
