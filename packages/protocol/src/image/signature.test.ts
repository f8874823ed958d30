import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildAppImage } from './build.ts';
import { sha256, toHex } from './bytes.ts';
import {
  checkSignatureBlock,
  findSignatureSector,
  readSignatures,
  SIG_BLOCK_SIZE,
  SIG_SECTOR_SIZE,
  SignatureError,
} from './signature.ts';
import { loadSigningKey, publicKeyBytes, publicKeyDigest, signImage } from './signing.ts';

let rsa: KeyObject;
let rsa2: KeyObject;
let ec: KeyObject;
const image = buildAppImage({
  chip: 'esp32c3',
  project: 'signed',
  version: '1.2.3',
  payload: new Uint8Array(10_000).map((_, i) => (i * 31) & 0xff),
});

beforeAll(() => {
  rsa = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
  rsa2 = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
  ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
});

const u32 = (b: Uint8Array, at: number) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);

describe('Secure Boot v2 signing (espsecure sign_data --version 2 layout)', () => {
  it('pads the image with 0xFF to a sector and appends one 4 KB signature sector', () => {
    const signed = signImage(image, [rsa]);
    const padded = Math.ceil(image.length / SIG_SECTOR_SIZE) * SIG_SECTOR_SIZE;
    expect(signed.length).toBe(padded + SIG_SECTOR_SIZE);
    expect(Buffer.from(signed.subarray(0, image.length)).equals(Buffer.from(image))).toBe(true);
    expect(signed.subarray(image.length, padded).every((b) => b === 0xff)).toBe(true);
    expect(findSignatureSector(signed)).toBe(padded);
    // after the one block the sector is 0xFF
    expect(signed.subarray(padded + SIG_BLOCK_SIZE).every((b) => b === 0xff)).toBe(true);
  });

  it('lays an RSA-3072 block out as esp_secure_boot.h says: magic, version, digest, key, sig, CRC, padding', () => {
    const signed = signImage(image, [rsa]);
    const at = findSignatureSector(signed) ?? -1;
    const block = signed.subarray(at, at + SIG_BLOCK_SIZE);
    expect([block[0], block[1], block[2], block[3]]).toEqual([0xe7, 0x02, 0, 0]);
    expect(toHex(block.subarray(4, 36))).toBe(toHex(sha256(signed.subarray(0, at))));
    // n (384 LE), e (u32), rinv, m': the same 776 bytes the key digest covers
    expect(Buffer.from(block.subarray(36, 812)).equals(Buffer.from(publicKeyBytes(rsa)))).toBe(
      true,
    );
    expect(u32(block, 36 + 384)).toBe(65537);
    expect(u32(block, 1196)).toBe(crc32(block.subarray(0, 1196)) >>> 0);
    expect(block.subarray(1200).every((b) => b === 0)).toBe(true);
    expect(publicKeyDigest(rsa)).toBe(toHex(sha256(block.subarray(36, 812))));
  });

  it('lays an ECDSA P-256 block out with curve id 2, X/Y and r/s little-endian, 1031 zero bytes', () => {
    const signed = signImage(image, [ec]);
    const at = findSignatureSector(signed) ?? -1;
    const block = signed.subarray(at, at + SIG_BLOCK_SIZE);
    expect([block[0], block[1]]).toEqual([0xe7, 0x03]);
    expect(block[36]).toBe(2);
    const jwk = ec.export({ format: 'jwk' });
    const x = Buffer.from(jwk.x ?? '', 'base64url').reverse();
    expect(Buffer.from(block.subarray(37, 69)).equals(x)).toBe(true);
    expect(block.subarray(165, 1196).every((b) => b === 0)).toBe(true);
    expect(publicKeyDigest(ec)).toBe(toHex(sha256(block.subarray(36, 101))));
  });

  it('verifies what it signed, up to three keys, and names each key by its digest', async () => {
    const signed = signImage(image, [rsa, ec, rsa2]);
    const info = await readSignatures(signed);
    expect(info?.blocks.map((b) => [b.scheme, b.valid, b.keyDigest])).toEqual([
      ['rsa3072', true, publicKeyDigest(rsa)],
      ['ecdsa256', true, publicKeyDigest(ec)],
      ['rsa3072', true, publicKeyDigest(rsa2)],
    ]);
    expect(await readSignatures(image)).toBeUndefined();
  });

  it('finds a tampered image, a tampered block and a wrong CRC', async () => {
    const signed = signImage(image, [rsa, ec]);
    const at = findSignatureSector(signed) ?? -1;
    const tampered = Uint8Array.from(signed);
    tampered[100] = (tampered[100] as number) ^ 1;
    expect((await readSignatures(tampered))?.blocks.map((b) => [b.digestMatches, b.valid])).toEqual(
      [
        [false, false],
        [false, false],
      ],
    );
    const badSig = Uint8Array.from(signed);
    badSig[at + 812 + 7] = (badSig[at + 812 + 7] as number) ^ 0x80;
    const first = (await readSignatures(badSig))?.blocks[0];
    expect(first).toMatchObject({ digestMatches: true, signatureValid: false, valid: false });
    expect(first?.crcValid).toBe(false);
    // a signature from another key under this block's key does not verify
    const other = signImage(image, [rsa2]);
    const swapped = Uint8Array.from(signed);
    swapped.set(other.subarray(at + 812, at + 1196), at + 812);
    const sb = await checkSignatureBlock(
      swapped.subarray(at, at + SIG_BLOCK_SIZE),
      signed.subarray(0, at),
    );
    expect(sb.signatureValid).toBe(false);
  });

  it('refuses keys the bootloader cannot use, an already signed image, and too many keys', () => {
    const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    expect(() => signImage(image, [rsa2048])).toThrow(
      /an RSA-2048 key cannot sign for Secure Boot v2: use RSA-3072 .* or ECDSA P-256/,
    );
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
    expect(() => signImage(image, [p384])).toThrow(/an EC key on secp384r1 cannot sign/);
    expect(() => signImage(signImage(image, [rsa]), [rsa])).toThrow(/already signed/);
    expect(() => signImage(image, [rsa, ec, rsa2, ec])).toThrow(SignatureError);
    expect(() => loadSigningKey('not a key')).toThrow(/not a private key/);
  });

  it('reads the PEM forms espsecure and OpenSSL write (PKCS#1, SEC1, PKCS#8)', () => {
    const pems = [
      rsa.export({ type: 'pkcs1', format: 'pem' }),
      rsa.export({ type: 'pkcs8', format: 'pem' }),
      ec.export({ type: 'sec1', format: 'pem' }),
    ];
    for (const pem of pems) expect(loadSigningKey(String(pem)).type).toBe('private');
  });

  // An independent check of the crypto fields: OpenSSL's own command line verifies the RSA-PSS
  // signature and reads the same modulus out of the key. Skipped where no openssl is installed.
  const openssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!openssl)(
    'agrees with the openssl command line (PSS signature, modulus; waits for the openssl command)',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'sbv2-'));
      try {
        const signed = signImage(image, [rsa]);
        const at = findSignatureSector(signed) ?? -1;
        const block = signed.subarray(at, at + SIG_BLOCK_SIZE);
        writeFileSync(join(dir, 'data.bin'), signed.subarray(0, at));
        writeFileSync(join(dir, 'sig.bin'), Buffer.from(block.subarray(812, 1196)).reverse());
        writeFileSync(join(dir, 'pub.pem'), String(rsa.export({ type: 'pkcs1', format: 'pem' })));
        const out = execFileSync('openssl', [
          'dgst',
          '-sha256',
          '-sigopt',
          'rsa_padding_mode:pss',
          '-sigopt',
          'rsa_pss_saltlen:32',
          '-prverify',
          join(dir, 'pub.pem'),
          '-signature',
          join(dir, 'sig.bin'),
          join(dir, 'data.bin'),
        ]).toString();
        expect(out).toMatch(/Verified OK/);
        const modulus = execFileSync('openssl', [
          'rsa',
          '-in',
          join(dir, 'pub.pem'),
          '-noout',
          '-modulus',
        ])
          .toString()
          .trim()
          .replace(/^Modulus=/, '')
          .toLowerCase();
        expect(toHex(Buffer.from(block.subarray(36, 36 + 384)).reverse())).toBe(modulus);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
