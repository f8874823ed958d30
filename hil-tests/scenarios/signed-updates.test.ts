import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Scenario } from '@esp-ble-ota/hil';
import {
  crc32,
  publicKeyDigest,
  signImage,
  V2RefusedError,
  withAppVersion,
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

async function refusal(
  s: Scenario,
  image: Uint8Array,
  opts: { skipPreflight?: boolean; allowDowngrade?: boolean } = {},
): Promise<V2RefusedError> {
  const refused = await s.flash(image, { protocol: 'v2', ...opts }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(V2RefusedError);
  return refused as V2RefusedError;
}

/**
 * The device refused at BEGIN from the image's manifest: its console says so, and no update
 * slot was opened (it prints "v2 update: ..." when it opens one, before the first erase).
 */
async function expectRefusedBeforeAnyErase(s: Scenario, refused: V2RefusedError): Promise<void> {
  const seen = await s.console.expectAny([
    /v2 update: /,
    /v2 BEGIN refused before any erase: ([^\r\n]*)/,
  ]);
  s.check(
    'refused at BEGIN, before any erase',
    seen.index === 1,
    `${refused.statusName}: ${seen.match}`,
  );
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
    if (upload.protocol === 'v2') {
      expect(upload.result.outcome).toBe('installed');
      // INFO said what the board enforces; the client sent the image's manifest before BEGIN.
      expect(upload.result.info.security).toMatchObject({ signedOnly: true });
    }
    const verified = await s.console.expectAny([
      /v2 BEGIN: manifest signature verified[^\r\n]*/,
      /v2 BEGIN refused[^\r\n]*/,
    ]);
    s.check('manifest verified at BEGIN', verified.index === 0, verified.match);
    await s.expectUpdated(before, s.images.firmware.version);
  });

  it('an unsigned image is refused (UNSIGNED) before any erase and the old firmware stays', async (t) => {
    const s = await open(t);
    const before = await s.boot();
    const unsigned = new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image));
    // The client reads in INFO that the board takes signed images only and sends nothing...
    const early = await refusal(s, unsigned);
    expect(early.statusName).toBe('UNSIGNED');
    s.check('client refused from INFO, nothing sent', early.preflight, early.message);
    // ...and a client that sends it anyway is refused by the board at BEGIN.
    const refused = await refusal(s, unsigned, { skipPreflight: true });
    expect(refused.statusName).toBe('UNSIGNED');
    expect(refused.preflight).toBe(false);
    await expectRefusedBeforeAnyErase(s, refused);
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
    // Its signature block is intact, so the manifest holds at BEGIN; END checks the image.
    s.check('refused at END', refused.step === 'END', refused.message);
    await s.console.expect(/v2 END refused: the image's signature does not hold/);
    // A refused update makes the next BEGIN wait (CONFIG_BLE_OTA_REFUSAL_BACKOFF_MAX_S): the board
    // says how long, and this scenario lets that time pass before it sends the next image.
    const wait = await s.console.expect(/BEGIN is answered BUSY for (\d+) ms/);
    s.check('refusal back-off', true, wait.match);
    await waitOut(s, Number(wait.groups[0]));
    // A signature block changed after signing is refused at BEGIN already.
    const forged = signImage(
      new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image)),
      [trusted],
    );
    const sigByte = forged.length - 4096 + 812 + 10; // a byte of the RSA-PSS signature in the block
    forged[sigByte] = (forged[sigByte] ?? 0) ^ 1;
    forged.set(crcOfBlock(forged.subarray(forged.length - 4096)), forged.length - 4096 + 1196);
    const early = await refusal(s, forged);
    expect(early.statusName).toBe('BAD_SIGNATURE');
    await expectRefusedBeforeAnyErase(s, early);
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
    await expectRefusedBeforeAnyErase(s, refused);
    expect(await s.boot()).toEqual(before);
  });

  it('a lower secure_version is refused once a higher one confirmed itself (DOWNGRADE)', async (t) => {
    const s = await open(t, true);
    const built = new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image));
    const before = await s.boot();
    await s.flash(signImage(withSecureVersion(built, 2), [trusted]), { protocol: 'v2' });
    const updated = await s.expectUpdated(before, s.images.firmware.version);
    const older = signImage(withSecureVersion(built, 1), [trusted]);
    // The board's INFO says its minimum is now 2: the client refuses without sending...
    const early = await refusal(s, older);
    expect(early.statusName).toBe('DOWNGRADE');
    expect(early.preflight).toBe(true);
    // ...and the board refuses it at BEGIN from the manifest, --allow-downgrade or not.
    const refused = await refusal(s, older, { skipPreflight: true, allowDowngrade: true });
    expect(refused.statusName).toBe('DOWNGRADE');
    await expectRefusedBeforeAnyErase(s, refused);
    expect((await s.boot()).version).toBe(updated.version);
  });

  it('an older app version is refused (VERSION_DOWNGRADE); --allow-downgrade installs it where the firmware allows', async (t) => {
    const s = await Scenario.open(t, {
      board: {
        security: {
          trustedKeyDigests: [publicKeyDigest(trusted)],
          antiRollback: true,
          allowDowngrade: true,
        },
      },
      benchNeeds: `${BENCH_NEEDS} and CONFIG_BLE_OTA_ALLOW_DOWNGRADE`,
    });
    const built = new Uint8Array(await readFile(s.images.unsignedImage ?? s.images.image));
    const before = await s.boot();
    const newer = signImage(withAppVersion(built, '9.0.0'), [trusted]);
    await s.flash(newer, { protocol: 'v2' });
    const updated = await s.expectUpdated(before, '9.0.0');
    const older = signImage(built, [trusted]);
    const refused = await refusal(s, older, { skipPreflight: true });
    expect(refused.statusName).toBe('VERSION_DOWNGRADE');
    await expectRefusedBeforeAnyErase(s, refused);
    expect((await s.boot()).version).toBe(updated.version);
    // Asked for, on a board built to allow it: the older version goes in.
    const { upload } = await s.flash(older, { protocol: 'v2', allowDowngrade: true });
    if (upload.protocol === 'v2') expect(upload.result.outcome).toBe('installed');
    await s.expectUpdated(updated, s.images.firmware.version);
  });
});

/** Lets `ms` pass on the board: modeled time on the virtual rig (its clock, and the device's). */
async function waitOut(s: Scenario, ms: number): Promise<void> {
  if (s.board) await s.board.idle(ms);
  else await new Promise((resolve) => setTimeout(resolve, ms));
}

/** The CRC-32 a signature block carries over its first 1196 bytes, little-endian. */
function crcOfBlock(block: Uint8Array): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, crc32(block.subarray(0, 1196)), true);
  return out;
}
