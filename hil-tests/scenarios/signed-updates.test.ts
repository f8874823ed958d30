import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Scenario } from '@esp-ble-ota/hil';
import {
  publicKeyDigest,
  signImage,
  V2RefusedError,
  withSecureVersion,
} from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';

// A board whose firmware takes signed updates only (CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS) and
// keeps an anti-rollback minimum (CONFIG_BLE_OTA_ANTI_ROLLBACK). The signing key is this run's
// own; on a bench the board must have been built to trust it, so the bench skips these.
const trusted = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const BENCH_NEEDS =
  "a board built with CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS set to this run's signing key";

async function open(t: Parameters<typeof Scenario.open>[0], antiRollback = false) {
  return Scenario.open(t, {
    board: { security: { trustedKeyDigests: [publicKeyDigest(trusted)], antiRollback } },
    benchNeeds: BENCH_NEEDS,
  });
}

async function refusal(s: Scenario, image: Uint8Array): Promise<V2RefusedError> {
  const refused = await s.flash(image, { protocol: 'v2' }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(V2RefusedError);
  return refused as V2RefusedError;
}

describe('signed updates', () => {
  it('a signed upgrade passes: the board checks the signature and boots the new image', async (t) => {
    const s = await open(t);
    const before = await s.boot();
    s.result.fromVersion = before.version;
    const image = signImage(
      new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image)),
      [trusted],
    );
    const { upload } = await s.flash(image, { protocol: 'v2' });
    if (upload.protocol === 'v2') expect(upload.result.outcome).toBe('installed');
    await s.expectUpdated(before, s.images.firmware.version);
  });

  it('an unsigned image is refused (UNSIGNED) and the old firmware stays', async (t) => {
    const s = await open(t);
    const before = await s.boot();
    const refused = await refusal(
      s,
      new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image)),
    );
    expect(refused.statusName).toBe('UNSIGNED');
    s.check('refused at END', true, refused.message);
    expect(await s.boot()).toEqual(before);
  });

  it('an image changed after signing is refused (BAD_SIGNATURE) and the old firmware stays', async (t) => {
    const s = await open(t);
    const before = await s.boot();
    const signed = signImage(
      new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image)),
      [trusted],
    );
    // In the 0xFF padding before the signature sector: still a valid ESP image, no longer signed.
    signed[signed.length - 4097] = 0;
    const refused = await refusal(s, signed);
    expect(refused.statusName).toBe('BAD_SIGNATURE');
    s.check('refused at END', true, refused.message);
    expect(await s.boot()).toEqual(before);
  });

  it('an image signed by another key is refused (UNTRUSTED_KEY)', async (t) => {
    const s = await open(t);
    const before = await s.boot();
    const refused = await refusal(
      s,
      signImage(new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image)), [
        stranger,
      ]),
    );
    expect(refused.statusName).toBe('UNTRUSTED_KEY');
    s.check('refused at END', true, refused.message);
    expect(await s.boot()).toEqual(before);
  });

  it('a lower secure_version is refused once a higher one confirmed itself (DOWNGRADE)', async (t) => {
    const s = await open(t, true);
    const built = new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image));
    const before = await s.boot();
    await s.flash(signImage(withSecureVersion(built, 2), [trusted]), { protocol: 'v2' });
    const updated = await s.expectUpdated(before, s.images.firmware.version);
    const refused = await refusal(s, signImage(withSecureVersion(built, 1), [trusted]));
    expect(refused.statusName).toBe('DOWNGRADE');
    s.check('refused at END', true, refused.message);
    expect((await s.boot()).version).toBe(updated.version);
  });
});
