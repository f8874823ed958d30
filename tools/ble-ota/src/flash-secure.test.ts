// Signed updates and anti-rollback end to end: images signed by `ble-ota sign` (TypeScript,
// node:crypto) are checked by the firmware's host build (C, OpenSSL) on the virtual rig, through
// the real noble, with protocol v2 and the baseline.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SerialConsole } from '@esp-ble-ota/serial';
import {
  type DeviceLimits,
  type DeviceSecurity,
  startVirtualRig as startSimRig,
} from '@esp-ble-ota/sim';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import type { VirtualRig } from './io.ts';
import { adaptRig } from './rig.ts';
import { hostImage, run, tmp, writeBytes } from './test/harness.ts';

/** A runnable image of the host app with an anti-rollback counter. */
function secureImage(version: string, secureVersion = 0): string {
  return hostImage(version, 'esp32', secureVersion);
}

const trustedKey = join(tmp, 'secure-trusted.pem');
const otherKey = join(tmp, 'secure-other.pem');
let trustedDigest = '';

async function sign(image: string, key: string): Promise<string> {
  const out = image.replace(/\.bin$/, `-signed-by-${key === trustedKey ? 'trusted' : 'other'}.bin`);
  const r = await run(['sign', image, '--key', key, '-o', out]);
  expect(r.code).toBe(ExitCode.OK);
  return out;
}

async function secureRig(security: DeviceSecurity, limits?: DeviceLimits) {
  const rig = await startSimRig({
    profile: 'immediate',
    boards: [{ restartDelayMs: 0, security, ...(limits ? { limits } : {}) }],
  });
  const board = rig.boards[0];
  if (board === undefined) throw new Error('the rig has no board');
  const lent: VirtualRig = { ...adaptRig(rig), close: async () => {} };
  return { rig, board, startRig: async () => lent };
}

beforeAll(async () => {
  const made = await run(['keygen', trustedKey]);
  trustedDigest = made.stdout.match(/public key digest: ([0-9a-f]{64})/)?.[1] ?? '';
  expect(trustedDigest).toMatch(/^[0-9a-f]{64}$/);
  expect((await run(['keygen', '--scheme', 'ecdsa256', otherKey])).code).toBe(ExitCode.OK);
});

describe('signed updates on the virtual rig (device trusts one key)', () => {
  it('takes an image signed by the trusted key and boots it; refuses unsigned, tampered and foreign-key images', async () => {
    // Refused images back to back: the firmware's refusal back-off (BEGIN BUSY for 1 s, 2 s, ...
    // after each) is off here; hil-tests/scenarios/denial-of-service.test.ts measures it.
    const { rig, board, startRig } = await secureRig(
      { trustedKeyDigests: [trustedDigest] },
      { refusalBackoffMaxS: 0 },
    );
    const console = await SerialConsole.open(board.serialPath);
    try {
      const unsigned = await run(['flash', secureImage('5.0.0'), '--sim', '--no-verify'], {
        startRig,
      });
      expect(unsigned.code).toBe(ExitCode.DEVICE_REFUSED);
      // The device's INFO says it takes signed images only: refused before anything is sent.
      expect(unsigned.stderr).toMatch(
        /the device would refuse the update: the image is not signed and the device takes signed updates only \(UNSIGNED\): its INFO says .*; nothing was sent; sign it with/,
      );

      const foreign = await run(
        ['flash', await sign(secureImage('5.0.1'), otherKey), '--sim', '--no-verify'],
        { startRig },
      );
      expect(foreign.code).toBe(ExitCode.DEVICE_REFUSED);
      expect(foreign.stderr).toMatch(
        /signed by a key the device does not trust \(UNTRUSTED_KEY\) at BEGIN/,
      );
      // The manifest (the image's signature block) was checked before anything was erased.
      await console.expect(
        /v2 BEGIN refused before any erase: none of the 1 signature block\(s\) read is by a key this device trusts/,
      );

      // One byte of the padding changed after signing: the image itself is still a valid image.
      const signed = new Uint8Array(readFileSync(await sign(secureImage('5.0.2'), trustedKey)));
      signed[signed.length - 4096 - 1] = 0;
      const tampered = writeBytes('secure-tampered.bin', signed);
      const bad = await run(['flash', tampered, '--sim', '--no-verify'], { startRig });
      expect(bad.code).toBe(ExitCode.DEVICE_REFUSED);
      // Its signature block is intact, so BEGIN takes the manifest; END finds the change.
      await console.expect('v2 BEGIN: manifest signature verified');
      expect(bad.stderr).toMatch(/signature does not hold .* \(BAD_SIGNATURE\) at END/);
      await console.expect(/names another image digest: the image changed after it was signed/);

      const goodImage = await sign(secureImage('5.1.0'), trustedKey);
      const good = await run(['flash', goodImage, '--sim'], { startRig });
      expect(good.stderr).not.toMatch(/error/);
      expect(good.code).toBe(ExitCode.OK);
      expect(good.stdout).toMatch(/^verified: the device runs 5\.1\.0$/m);
      // The digest the device logs is the one the signature covers: the SHA-256 of the file up to
      // its signature sector, at BEGIN (from the manifest) and again over the written image.
      const goodBytes = readFileSync(goodImage);
      const signedDigest = createHash('sha256')
        .update(goodBytes.subarray(0, goodBytes.length - 4096))
        .digest('hex');
      await console.expect(`manifest signature verified (image digest ${signedDigest},`);
      await console.expect(
        `signature of the written image verified (image digest ${signedDigest})`,
      );

      // The device's running_sha256 covers the signature sector: the same signed file again is
      // "already installed", nothing sent.
      const again = await run(['flash', goodImage, '--sim'], { startRig });
      expect(again.code).toBe(ExitCode.OK);
      expect(`${again.stdout}${again.stderr}`).toMatch(
        /already installed: the device runs this image/,
      );
    } finally {
      await console.close();
      await rig.close();
    }
  }, 180_000);

  it('refuses an unsigned image over the baseline protocol too (DONE_NAK, the reason on the console)', async () => {
    const { rig, board, startRig } = await secureRig({ trustedKeyDigests: [trustedDigest] });
    const console = await SerialConsole.open(board.serialPath);
    try {
      const r = await run(
        ['flash', secureImage('5.2.0'), '--sim', '--protocol', 'baseline', '--no-verify'],
        { startRig },
      );
      expect(r.code).toBe(ExitCode.DEVICE_REFUSED);
      expect(r.stderr).toMatch(/DONE_NAK/);
      await console.expect(
        /DONE refused: the image is not signed and this device takes signed updates only/,
      );
    } finally {
      await console.close();
      await rig.close();
    }
  }, 120_000);
});

describe('anti-rollback on the virtual rig', () => {
  it('raises the minimum once an image confirms itself, then refuses a lower secure_version', async () => {
    const { rig, board, startRig } = await secureRig({
      trustedKeyDigests: [trustedDigest],
      antiRollback: true,
    });
    const console = await SerialConsole.open(board.serialPath);
    try {
      const v3 = await run(['flash', await sign(secureImage('6.0.0', 3), trustedKey), '--sim'], {
        startRig,
      });
      expect(v3.code).toBe(ExitCode.OK);
      await console.expect('secure_version raised to 3');
      const v2 = await run(
        ['flash', await sign(secureImage('6.0.1', 2), trustedKey), '--sim', '--no-verify'],
        { startRig },
      );
      expect(v2.code).toBe(ExitCode.DEVICE_REFUSED);
      expect(v2.stderr).toMatch(
        /secure_version is below the device's minimum .* \(DOWNGRADE\): the image's secure_version is 2, the device takes 3 or higher; nothing was sent/,
      );
      // The baseline cannot read INFO's security byte: the device refuses when the image's
      // app description arrives, long before DONE.
      const v2Baseline = await run(
        [
          'flash',
          await sign(secureImage('6.0.1', 2), trustedKey),
          '--sim',
          '--protocol',
          'baseline',
          '--no-verify',
        ],
        { startRig },
      );
      expect(v2Baseline.code).toBe(ExitCode.DEVICE_REFUSED);
      await console.expect("image refused: secure_version 2 is below the device's minimum 3");
      expect(readFileSync(`${board.flashPath}.efuse`, 'utf8')).toBe('secure_version 3\n');
      // the same secure_version is no downgrade
      const same = await run(['flash', await sign(secureImage('6.0.2', 3), trustedKey), '--sim'], {
        startRig,
      });
      expect(same.code).toBe(ExitCode.OK);
    } finally {
      await console.close();
      await rig.close();
    }
  }, 180_000);
});

describe('older app versions on the virtual rig', () => {
  it('refuses an older app version; --allow-downgrade installs it only where the firmware allows', async () => {
    for (const allowDowngrade of [false, true]) {
      const { rig, board, startRig } = await secureRig({
        trustedKeyDigests: [trustedDigest],
        allowDowngrade,
      });
      const console = await SerialConsole.open(board.serialPath);
      try {
        const newer = await run(['flash', await sign(secureImage('8.0.0'), trustedKey), '--sim'], {
          startRig,
        });
        expect(newer.code).toBe(ExitCode.OK);
        const older = await sign(secureImage('7.9.0'), trustedKey);
        const refused = await run(['flash', older, '--sim', '--no-verify'], { startRig });
        expect(refused.code).toBe(ExitCode.DEVICE_REFUSED);
        expect(refused.stderr).toMatch(
          /the image is version 7\.9\.0, the device runs 8\.0\.0; nothing was sent; build a newer version, or pass --allow-downgrade/,
        );
        const asked = await run(['flash', older, '--sim', '--allow-downgrade'], { startRig });
        if (allowDowngrade) {
          expect(asked.code).toBe(ExitCode.OK);
          expect(asked.stdout).toMatch(/^verified: the device runs 7\.9\.0$/m);
        } else {
          expect(asked.code).toBe(ExitCode.DEVICE_REFUSED);
          expect(asked.stderr).toMatch(/its firmware takes no older version; nothing was sent/);
        }
      } finally {
        await console.close();
        await rig.close();
      }
    }
  }, 180_000);
});

describe('link security on the virtual rig', () => {
  it('a board that needs a pairing noble cannot make refuses the upload (exit 5) and says why', async () => {
    const { rig, board, startRig } = await secureRig({ linkSecurity: 'authenticated' });
    const console = await SerialConsole.open(board.serialPath);
    try {
      const r = await run(['flash', secureImage('9.0.0'), '--sim', '--no-verify'], { startRig });
      expect(r.code).toBe(ExitCode.DEVICE_REFUSED);
      expect(r.stderr).toMatch(
        /the device refused to pair \(SMP authentication requirements \(0x03\)\).*noble pairs LE legacy Just Works only/,
      );
      expect(board.peripheral.bonds.size).toBe(0);
    } finally {
      await console.close();
      await rig.close();
    }
  }, 120_000);
});
