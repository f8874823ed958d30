import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { signImage } from '@esp-ble-ota/protocol';
import { execa } from 'execa';
import { defaultDeviceProgram } from '../device/simulated-device.ts';
import { rigSigningKey } from '../signing-key.ts';

/** The firmware host build's output directory (device program, image tools, app). */
export const hostBuildDir = join(defaultDeviceProgram, '..');

/**
 * The host app wrapped again with another version, as a new build of the firmware would be
 * (esp-app-image from the host build), and signed with the rig's key as a build with a signing
 * key configured is (`signed: false` for the image as wrapped); written to `dir` and returned.
 */
export async function appImage(
  version: string,
  dir: string,
  chip = 'esp32',
  { signed = true }: { signed?: boolean } = {},
): Promise<Uint8Array> {
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
  const image = new Uint8Array(await readFile(out));
  return signed ? signImage(image, [(await rigSigningKey()).key]) : image;
}
