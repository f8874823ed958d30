/**
 * The build phase: build the firmware (through turbo on the virtual rig, so an unchanged
 * firmware is a cache hit; with idf.py on the bench) and stamp the image with a version the
 * reboot check can tell apart from the one the board runs before the update.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseAppImage, signImage } from '@esp-ble-ota/protocol';
import { rigSigningKey } from '@esp-ble-ota/sim';
import { execa } from 'execa';
import type { LoadedConfig } from './config.ts';
import type { FirmwareInfo } from './model.ts';

export interface PreparedImages {
  firmware: FirmwareInfo;
  /** The image under test: what `pnpm hil` flashes. */
  image: string;
  /** The same firmware with the release version: what a sim board runs before the update. */
  previousImage?: string;
  /** The firmware built so that its self-test fails (sim only): it must be rolled back. */
  selfTestFailImage?: string;
  /** The firmware for another chip than the target (sim only): it must be refused. */
  otherChipImage?: string;
  otherChip?: string;
  /**
   * Virtual rig: the images above are signed with the rig's key (`.ble-ota/rig-signing-key.pem`)
   * and the boards trust only it (the firmware's secure default: signed updates only). The
   * image under test as built, before signing, for scenarios that sign it themselves.
   */
  unsignedImage?: string;
  /** SHA-256 of the key the images are signed with: the boards' trusted key digest. */
  trustedKeyDigest?: string;
  buildMs: number;
}

export class BuildError extends Error {
  override name = 'BuildError';
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function describe(path: string, built: boolean): Promise<FirmwareInfo> {
  const bytes = new Uint8Array(await readFile(path));
  const info = parseAppImage(bytes);
  return {
    version: info.version,
    image: path,
    size: bytes.length,
    sha256: info.imageSha256,
    built,
  };
}

/** The turbo summary line `Cached:    1 cached, 1 total` says whether anything was rebuilt. */
export function turboRebuilt(output: string): boolean {
  const m = output.match(/Cached:\s+(\d+) cached, (\d+) total/);
  if (!m) return true;
  return Number(m[1]) < Number(m[2]);
}

async function releaseVersion(config: LoadedConfig): Promise<string> {
  const file = resolve(config.root, config.appPath, 'version.txt');
  const text = await readFile(file, 'utf8').catch(() => {
    throw new BuildError(
      `cannot read the app version from ${file}: the firmware keeps its version there`,
    );
  });
  const version = text.split('\n')[0]?.trim() ?? '';
  if (!version) throw new BuildError(`${file} is empty: put the app version on its first line`);
  return version;
}

const OTHER_CHIP: Record<string, string> = { esp32: 'esp32s3' };

async function prepareSim(config: LoadedConfig, imagesDir: string): Promise<PreparedImages> {
  const started = performance.now();
  const build = await execa(
    'pnpm',
    [
      'exec',
      'turbo',
      'run',
      'build',
      // The device program and image tools, and the virtual board's UART bridge.
      '--filter=@esp-ble-ota/firmware-host',
      '--filter=@esp-ble-ota/sim',
      '--output-logs=errors-only',
    ],
    { cwd: config.root, all: true, reject: false, env: { FORCE_COLOR: '0' } },
  );
  // The realistic RISC-V image (firmware/target-image) for the scenario that sends it: built on
  // its own, since turbo does not cache it and "rebuilt" is said of the firmware above. Without
  // the toolchain it builds nothing and that scenario says why it is skipped.
  const target =
    build.exitCode === 0
      ? await execa(
          'pnpm',
          [
            'exec',
            'turbo',
            'run',
            'build',
            '--filter=@esp-ble-ota/firmware-target-image',
            '--output-logs=errors-only',
          ],
          { cwd: config.root, all: true, reject: false, env: { FORCE_COLOR: '0' } },
        )
      : undefined;
  const buildMs = performance.now() - started;
  if (target && target.exitCode !== 0) {
    throw new BuildError(
      `the realistic image's build failed (turbo run build --filter=@esp-ble-ota/firmware-target-image):\n${target.all?.slice(-4000)}`,
    );
  }
  if (build.exitCode !== 0) {
    throw new BuildError(
      `the firmware's host build failed (turbo run build --filter=@esp-ble-ota/firmware-host --filter=@esp-ble-ota/sim):\n${build.all?.slice(-4000)}`,
    );
  }
  const buildDir = resolve(config.root, config.sim.buildDir);
  const tool = join(buildDir, 'esp-app-image');
  const elf = join(buildDir, 'ble-ota-app.elf');
  const badElf = join(buildDir, 'ble-ota-app-selftest-fail.elf');
  for (const f of [tool, elf]) {
    if (!existsSync(f)) throw new BuildError(`the host build did not produce ${f}`);
  }
  const base = await releaseVersion(config);
  // Stamped by content: an unchanged firmware keeps its version (and its cache hit), a changed
  // one gets a new one; either way it differs from the release the board starts with.
  const stamp = `${base}-hil.${(await sha256File(elf)).slice(0, 8)}`;
  const wrap = async (exe: string, chip: string, version: string, name: string) => {
    const out = join(imagesDir, name);
    await execa(tool, ['--chip', chip, '--version', version, '--out', out, exe]);
    return out;
  };
  // Signed as idf.py signs an app built with a signing key configured: the boards trust only
  // the rig's key, so each image the scenarios send is signed with it.
  const { key, digest } = await rigSigningKey();
  const sign = async (path: string) => {
    const out = path.replace(/\.bin$/, '-signed.bin');
    await writeFile(out, signImage(new Uint8Array(await readFile(path)), [key]));
    return out;
  };
  const chip = config.target;
  const unsignedImage = await wrap(elf, chip, stamp, `app-${chip}.bin`);
  const image = await sign(unsignedImage);
  const previousImage = await sign(await wrap(elf, chip, base, `app-${chip}-previous.bin`));
  const selfTestFailImage = existsSync(badElf)
    ? await sign(await wrap(badElf, chip, `${stamp}-bad`, `app-${chip}-selftest-fail.bin`))
    : undefined;
  const otherChip = OTHER_CHIP[chip] ?? 'esp32';
  const otherChipImage = await sign(await wrap(elf, otherChip, stamp, `app-${otherChip}.bin`));
  return {
    firmware: await describe(image, turboRebuilt(build.all ?? '')),
    image,
    previousImage,
    ...(selfTestFailImage ? { selfTestFailImage } : {}),
    otherChipImage,
    otherChip,
    unsignedImage,
    trustedKeyDigest: digest,
    buildMs,
  };
}

async function prepareBench(config: LoadedConfig, imagesDir: string): Promise<PreparedImages> {
  const appDir = resolve(config.root, config.appPath);
  const buildDir = resolve(config.root, config.bench.buildDir);
  const base = await releaseVersion(config);
  const now = new Date();
  const stamp = `${base}-hil.${now.toISOString().replace(/[-:T]/g, '').slice(2, 14)}`;
  const idfPath = config.bench.idfPath ?? process.env.IDF_PATH;
  const idf = idfPath ? join(idfPath, 'tools', 'idf.py') : 'idf.py';
  // The firmware's sdkconfig.defaults signs the app (signed updates only, the secure default):
  // say so before idf.py fails on the missing key.
  const signingKey = join(appDir, 'ble_ota_signing_key.pem');
  if (!existsSync(signingKey)) {
    throw new BuildError(
      `no signing key at ${signingKey}: the firmware takes signed updates only and idf.py signs the app with it. Make it once with \`pnpm ble-ota keygen ${signingKey}\` (keep it out of git), flash the first signed build over USB, then run pnpm hil again`,
    );
  }
  const started = performance.now();
  const result = await execa(
    idfPath ? 'python' : 'idf.py',
    [...(idfPath ? [idf] : []), '-C', appDir, '-B', buildDir, 'build'],
    {
      all: true,
      reject: false,
      env: { BLE_OTA_APP_VERSION: stamp, ...(idfPath ? { IDF_PATH: idfPath } : {}) },
    },
  ).catch((error: unknown) => {
    throw new BuildError(
      `cannot run idf.py (${(error as Error).message}): run \`. $IDF_PATH/export.sh\` first or set bench.idfPath in hil.config.ts`,
    );
  });
  const buildMs = performance.now() - started;
  if (result.exitCode === undefined) {
    // Not started at all (no idf.py on PATH, no python): execa reports it without throwing.
    throw new BuildError(
      `cannot run idf.py (${result.shortMessage}): run \`. $IDF_PATH/export.sh\` first or set bench.idfPath in hil.config.ts`,
    );
  }
  if (result.exitCode !== 0) {
    throw new BuildError(`idf.py build failed in ${appDir}:\n${result.all?.slice(-4000)}`);
  }
  const image = join(buildDir, 'esp_ble_ota.bin');
  if (!existsSync(image)) throw new BuildError(`idf.py build did not produce ${image}`);
  await mkdir(imagesDir, { recursive: true });
  return { firmware: await describe(image, true), image, buildMs };
}

/** Builds the firmware for the configured rig and returns the images the scenarios use. */
export async function prepareImages(config: LoadedConfig): Promise<PreparedImages> {
  const imagesDir = resolve(config.root, config.resultsDir, 'images');
  await mkdir(imagesDir, { recursive: true });
  return config.rig === 'sim' ? prepareSim(config, imagesDir) : prepareBench(config, imagesDir);
}
