/**
 * The images this machine flashed, keyed by SHA-256: when a device later runs one of them (its v2
 * INFO says which SHA-256 it runs), `ble-ota flash` sends a patch against it instead of the whole
 * image (docs/protocol-v2.md, "Delta updates").
 *
 * Where: $BLE_OTA_IMAGE_STORE, else $XDG_CACHE_HOME/ble-ota/images, else ~/.cache/ble-ota/images;
 * one file `<sha256>.bin` per image. A file whose bytes no longer hash to its name is ignored.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function imageStoreDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BLE_OTA_IMAGE_STORE) return env.BLE_OTA_IMAGE_STORE;
  const cache = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'ble-ota', 'images');
}

export class ImageStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The image with this SHA-256 (lowercase hex), if this machine flashed it. */
  get(sha256: string): Uint8Array | undefined {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(join(this.dir, `${sha256}.bin`)));
    } catch {
      return undefined;
    }
    return sha256Hex(bytes) === sha256 ? bytes : undefined;
  }

  /** Keeps an image the device now runs. Returns its SHA-256. */
  put(bytes: Uint8Array): string {
    const sha = sha256Hex(bytes);
    mkdirSync(this.dir, { recursive: true });
    const path = join(this.dir, `${sha}.bin`);
    const partial = `${path}.${process.pid}.partial`;
    writeFileSync(partial, bytes);
    renameSync(partial, path); // whole or absent, whatever stops us
    return sha;
  }
}
