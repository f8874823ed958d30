/**
 * The realistic app image (firmware/target-image): compiled RISC-V code and data for the
 * ESP32-C3, wrapped as an ESP app image for any chip, so that what deflate saves on it is what it
 * saves on code. The bench's v2+deflate column and a hil scenario send it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { buildAppImage, resolveChip } from '@esp-ble-ota/protocol';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The target-image build (firmware/target-image): RISC-V code and data for the ESP32-C3. */
export const targetImageDir = join(repoRoot, 'firmware', 'target-image', 'build');

/** Internal DRAM origin per chip, where the image's .dram0.data loads (TRMs' memory maps). */
const DRAM_ORIGIN: Record<string, number> = {
  esp32: 0x3ffb0000,
  esp32s3: 0x3fc88000,
  esp32c3: 0x3fc80000,
};

export interface RealisticImage {
  bytes: Uint8Array;
  version: string;
  /** Bytes of compiled RISC-V code and data in one copy, before repetition. */
  codeBytes: number;
  /** Copies of that code and data the image holds (repeated to reach the size asked for). */
  copies: number;
  /** Deflated size / image size (zlib level 9, what `ble-ota` sends with deflate). */
  deflateRatio: number;
}

/** Why the realistic image cannot be made here, or undefined when it can. */
export function realisticImageMissing(): string | undefined {
  const missing = join(targetImageDir, 'MISSING');
  if (existsSync(missing)) {
    return `the RISC-V toolchain is not installed: ${readFileSync(missing, 'utf8').trim()}`;
  }
  if (!existsSync(join(targetImageDir, 'manifest.json'))) {
    return `firmware/target-image is not built (pnpm --filter @esp-ble-ota/firmware-target-image build)`;
  }
  return undefined;
}

/**
 * A realistic app image of `size` bytes for `chip`: the ESP32-C3 build of the firmware's core and
 * the C library (firmware/target-image), each section at the chip's own flash-mapped or RAM
 * address, its .flash.rodata right after esp_app_desc_t as in an IDF image. The code and data
 * are repeated to reach `size`; deflate's 32 KB window cannot see a repetition 400 KB back, so
 * the deflate ratio is the code's own. It is a valid image (the device verifies and installs it)
 * but holds no host executable: a simulated board that boots it panics and rolls it back, as a
 * chip would with code for another target.
 */
export async function realisticImage(
  chip: string,
  version: string,
  size = 1024 * 1024,
): Promise<RealisticImage> {
  const why = realisticImageMissing();
  if (why) throw new Error(why);
  const manifest = JSON.parse(await readFile(join(targetImageDir, 'manifest.json'), 'utf8')) as {
    segments: Array<{ name: string; file: string; address: number }>;
  };
  const part = async (name: string) => {
    const s = manifest.segments.find((x) => x.name === name);
    if (!s) throw new Error(`${join(targetImageDir, 'manifest.json')} has no ${name}`);
    return new Uint8Array(await readFile(join(targetImageDir, s.file)));
  };
  const text = await part('.flash.text');
  const rodata = await part('.flash.rodata');
  const data = await part('.dram0.data');
  const info = resolveChip(chip);
  const codeBytes = text.length + rodata.length + data.length;
  const build = (copies: number, textTail: number) =>
    buildAppImage({
      chip: info.target,
      project: 'ble_ota_target',
      version,
      flashSize: '4MB',
      payload: repeat(rodata, copies),
      segments: [
        {
          loadAddress: info.irom[0] + 0x20,
          data: concat(repeat(text, copies), text.subarray(0, textTail)),
        },
        ...(DRAM_ORIGIN[info.target] === undefined
          ? []
          : [{ loadAddress: DRAM_ORIGIN[info.target] as number, data }]),
      ],
    });
  // Whole copies of code and rodata while they fit, then the rest of the size from the code.
  let copies = 1;
  while (build(copies + 1, 0).length <= size) copies += 1;
  let tail = Math.max(0, size - build(copies, 0).length);
  let bytes = build(copies, tail);
  while (bytes.length > size && tail > 0) {
    tail = Math.max(0, tail - (bytes.length - size));
    bytes = build(copies, tail);
  }
  // The rest comes from the code alone; a rest longer than the code would leave the image short.
  if (bytes.length < size - 64) {
    throw new RangeError(
      `a realistic image of ${size} bytes cannot be made (${bytes.length} with ${copies} copies of ${codeBytes} bytes and all of the code again); ask for another size`,
    );
  }
  return {
    bytes,
    version,
    codeBytes,
    copies,
    deflateRatio: deflateSync(bytes, { level: 9 }).length / bytes.length,
  };
}

function repeat(a: Uint8Array, copies: number): Uint8Array {
  const out = new Uint8Array(a.length * copies);
  for (let i = 0; i < copies; i++) out.set(a, i * a.length);
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
