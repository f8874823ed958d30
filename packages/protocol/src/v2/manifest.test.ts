import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OtaError } from '../errors.ts';
import { buildAppImage } from '../image/build.ts';
import { APP_DESC_MAGIC } from '../image/layout.ts';
import {
  SIG_BLOCK_MAGIC,
  SIG_BLOCK_VERSION_ECDSA,
  SIG_BLOCK_VERSION_RSA,
  SIG_SECTOR_SIZE,
} from '../image/signature.ts';
import { signImage } from '../image/signing.ts';
import { compareAppVersions, imageChipId, imageManifest } from './uploader.ts';

const rsa = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;

describe("a signed image's manifest", () => {
  it("carries the image's signature blocks, secure_version and version, as the device reads them", () => {
    const image = buildAppImage({
      chip: 'esp32c3',
      project: 'p',
      version: '3.1.4-rc1',
      secureVersion: 7,
      payload: new Uint8Array(10_000).fill(1),
    });
    expect(imageManifest(image)).toBeUndefined(); // unsigned: nothing to send
    const signed = signImage(image, [rsa, ec]);
    const m = imageManifest(signed);
    if (!m) throw new Error('no manifest for a signed image');
    expect(m.length).toBe(40 + 2 * 1216);
    expect([m[0], m[1]]).toEqual([1, 2]);
    expect(new DataView(m.buffer).getUint32(4, true)).toBe(7);
    expect(new TextDecoder().decode(m.subarray(8, 17))).toBe('3.1.4-rc1');
    expect(m[17]).toBe(0);
    const sector = signed.length - 4096;
    expect(m.subarray(40)).toEqual(signed.subarray(sector, sector + 2 * 1216));
    expect([m[40 + 1], m[40 + 1216 + 1]]).toEqual([2, 3]); // RSA, then ECDSA
  });
});

describe('the manifest of any image that ends in a signature sector (property)', () => {
  // Whole sectors whose app descriptor (where the device reads it: secure_version at 36,
  // version[32] at 48) holds arbitrary bytes, then a sector that opens with a block header.
  const claimsArb = fc.record({
    sectors: fc.integer({ min: 1, max: 2 }),
    hasDesc: fc.boolean(),
    secureVersion: fc.nat({ max: 0xffffffff }),
    version: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    blockVersion: fc.constantFrom(SIG_BLOCK_VERSION_RSA, SIG_BLOCK_VERSION_ECDSA),
    skew: fc.nat(7),
  });
  type Claims = typeof claimsArb extends fc.Arbitrary<infer T> ? T : never;
  function signedLooking(c: Claims): Uint8Array {
    const length = (c.sectors + 1) * SIG_SECTOR_SIZE;
    const backing = new Uint8Array(length + c.skew);
    const data = backing.subarray(c.skew);
    const view = new DataView(backing.buffer, c.skew, length);
    data[0] = 0xe9;
    if (c.hasDesc) view.setUint32(32, APP_DESC_MAGIC, true);
    view.setUint32(36, c.secureVersion, true);
    data.set(c.version, 48);
    const at = c.sectors * SIG_SECTOR_SIZE;
    data.fill(0xff, at);
    data[at] = SIG_BLOCK_MAGIC;
    data[at + 1] = c.blockVersion;
    return data;
  }

  it('carries the secure_version and version bytes the device will compare, whatever they are', () => {
    fc.assert(
      fc.property(claimsArb, (claims) => {
        const { hasDesc, secureVersion, version } = claims;
        let manifest: Uint8Array | undefined;
        try {
          manifest = imageManifest(signedLooking(claims));
        } catch (error) {
          // The device compares raw bytes (strncmp), so no byte string is a reason to refuse.
          expect.fail(`imageManifest threw ${String(error)}`);
        }
        if (manifest === undefined) throw new Error('no manifest for a signed-looking image');
        const view = new DataView(manifest.buffer, manifest.byteOffset, manifest.byteLength);
        expect(view.getUint32(4, true)).toBe(hasDesc ? secureVersion : 0);
        const nul = version.indexOf(0);
        const expected = new Uint8Array(32);
        if (hasDesc) expected.set(nul < 0 ? version : version.subarray(0, nul));
        expect(manifest.subarray(8, 40)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('imageManifest and imageChipId on random bytes return or throw the package errors only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3 * SIG_SECTOR_SIZE }), (data) => {
        for (const read of [imageManifest, imageChipId]) {
          try {
            read(data);
          } catch (error) {
            expect(error).toBeInstanceOf(OtaError);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('app version order (as the firmware orders them)', () => {
  it('compares major.minor.patch and nothing after', () => {
    expect(compareAppVersions('1.2.3', '1.2.4')).toBe(-1);
    expect(compareAppVersions('v2', '1.9.9')).toBe(1);
    expect(compareAppVersions('1.0.0-hil.ab12cd34', '1.0.0')).toBe(0);
    expect(compareAppVersions('1.10.0', '1.9.0')).toBe(1);
    expect(compareAppVersions('abc123', '1.0.0')).toBeUndefined();
  });
});
