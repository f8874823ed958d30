/**
 * The virtual rig's signing key: one per checkout, made on first use, in `.ble-ota/` (ignored by
 * git). The rig's boards trust it the way a product's firmware trusts its vendor's key
 * (CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS), so the rig runs the secure default, signed updates
 * only, and what the hil sends is signed with it. It protects nothing: it is a test key,
 * readable by anyone with the checkout; never put it on a product.
 */
import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSigningKey, publicKeyDigest } from '@esp-ble-ota/protocol';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const RIG_SIGNING_KEY_PATH = join(repoRoot, '.ble-ota', 'rig-signing-key.pem');

export interface RigSigningKey {
  key: KeyObject;
  path: string;
  /** SHA-256 of the public key, as the board's trusted key digest. */
  digest: string;
}

/**
 * Loads the rig's key, making it first if there is none (ECDSA P-256, SEC1 PEM, mode 0600). Safe
 * when several processes start at once: the key is written aside and linked into place, and a
 * process that loses the race reads the winner's.
 */
export async function rigSigningKey(path = RIG_SIGNING_KEY_PATH): Promise<RigSigningKey> {
  const read = async () => {
    const key = loadSigningKey(await readFile(path));
    return { key, path, digest: publicKeyDigest(key) };
  };
  try {
    return await read();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = privateKey.export({ type: 'sec1', format: 'pem' });
  const aside = `${path}.${process.pid}.${randomBytes(6).toString('hex')}`;
  await writeFile(aside, pem, { mode: 0o600, flag: 'wx' });
  try {
    await link(aside, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await unlink(aside).catch(() => {});
  }
  return read();
}
