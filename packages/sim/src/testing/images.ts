import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { defaultDeviceProgram } from '../device/simulated-device.ts';

/** The firmware host build's output directory (device program, image tools, app). */
export const hostBuildDir = join(defaultDeviceProgram, '..');

/**
 * The host app wrapped again with another version, as a new build of the firmware would be
 * (esp-app-image from the host build); written to `dir` and returned.
 */
export async function appImage(version: string, dir: string, chip = 'esp32'): Promise<Uint8Array> {
  const out = join(dir, `app-${version}-${chip}.bin`);
  await execa(join(hostBuildDir, 'esp-app-image'), [
    '--chip',
    chip,
    '--version',
    version,
    '--out',
    out,
    join(hostBuildDir, 'ble-ota-app.elf'),
  ]);
  return new Uint8Array(await readFile(out));
}
