import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildAppImage } from '../image/build.ts';
import { signImage } from '../image/signature.ts';
import { compareAppVersions, imageManifest } from './uploader.ts';

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

describe('app version order (as the firmware orders them)', () => {
  it('compares major.minor.patch and nothing after', () => {
    expect(compareAppVersions('1.2.3', '1.2.4')).toBe(-1);
    expect(compareAppVersions('v2', '1.9.9')).toBe(1);
    expect(compareAppVersions('1.0.0-hil.ab12cd34', '1.0.0')).toBe(0);
    expect(compareAppVersions('1.10.0', '1.9.0')).toBe(1);
    expect(compareAppVersions('abc123', '1.0.0')).toBeUndefined();
  });
});
