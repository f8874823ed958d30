import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import {
  makeFifo,
  run,
  runNearFifo,
  tmp,
  writeBytes,
  writeImage,
  writeSparse,
} from './test/harness.ts';

const key = join(tmp, 'sign-test-rsa.pem');
const ecKey = join(tmp, 'sign-test-ec.pem');

let keyDigest = '';

beforeAll(async () => {
  const made = await run(['keygen', key]);
  expect(made.code).toBe(ExitCode.OK);
  keyDigest = made.stdout.match(/public key digest: ([0-9a-f]{64})/)?.[1] ?? '';
  expect((await run(['keygen', '--scheme', 'ecdsa256', ecKey])).code).toBe(ExitCode.OK);
});

describe('ble-ota keygen, sign and info', () => {
  it('keygen writes an owner-only PEM, says its digest, and never overwrites a key', async () => {
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(readFileSync(key, 'utf8')).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    expect(readFileSync(ecKey, 'utf8')).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
    const before = readFileSync(key, 'utf8');
    const again = await run(['keygen', key]);
    expect(again.code).toBe(ExitCode.USAGE);
    expect(again.stderr).toMatch(/exists; keygen never overwrites a key/);
    expect(readFileSync(key, 'utf8')).toBe(before);
  });

  it('sign appends a signature sector that info shows and verifies, one block per key', async () => {
    const image = writeImage('to-sign.bin', { version: '3.0.0', secureVersion: 2 });
    const out = join(tmp, 'signed.bin');
    const signed = await run(['sign', image, '--key', key, '--key', ecKey, '-o', out]);
    expect(signed.stderr).toBe('');
    expect(signed.code).toBe(ExitCode.OK);
    expect(signed.stdout).toMatch(/^signed blink 3\.0\.0 \(secure_version 2\): .*signed\.bin/m);
    const info = await run(['info', out, '--json']);
    expect(info.code).toBe(ExitCode.OK);
    const [json] = info.out.jsonLines();
    expect(json).toMatchObject({ signed: true, version: '3.0.0', secureVersion: 2 });
    expect(
      ((json?.signatures ?? []) as { scheme: string; valid: boolean }[]).map((s) => [
        s.scheme,
        s.valid,
      ]),
    ).toEqual([
      ['rsa3072', true],
      ['ecdsa256', true],
    ]);
    expect(json?.warnings).toEqual([]);
    const text = await run(['info', out]);
    expect(text.stdout).toMatch(/^Signature 1: +RSA-3072-PSS, key digest [0-9a-f]{64}, valid$/m);
    expect(text.stdout).toMatch(/^Signature 2: +ECDSA P-256, key digest [0-9a-f]{64}, valid$/m);
    // the digest sign and info print is the one keygen printed for that key
    expect(keyDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(text.stdout).toContain(`RSA-3072-PSS, key digest ${keyDigest}, valid`);
    expect(signed.stdout).toContain(`signature 1: rsa3072, key digest ${keyDigest}`);
    const unsigned = await run(['info', image]);
    expect(unsigned.stdout).toMatch(/^Signature: +none \(not signed for Secure Boot v2\)$/m);
  });

  it('info fails a signed image changed after signing, naming the block and why', async () => {
    const image = writeImage('to-tamper.bin', { version: '3.0.1' });
    const out = join(tmp, 'tampered-src.bin');
    expect((await run(['sign', image, '--key', key, '-o', out])).code).toBe(ExitCode.OK);
    const bytes = new Uint8Array(readFileSync(out));
    // inside the 0xFF padding: the image itself still parses, checksum and hash hold
    const at = bytes.length - 4096 - 1;
    bytes[at] = 0x00;
    const tampered = writeBytes('tampered.bin', bytes);
    const info = await run(['info', tampered]);
    expect(info.code).toBe(ExitCode.IMAGE_INVALID);
    expect(info.stdout).toMatch(/Signature 1: .*INVALID: the image changed after it was signed/);
    expect(info.stderr).toMatch(
      /signature 1 is invalid: the image changed after it was signed \(digest mismatch\); a device that checks signatures refuses it/,
    );
  });

  it('refuses a missing key, a key that is no key, a weak key, too many keys and a signed image', async () => {
    const image = writeImage('refusals.bin');
    const missing = await run(['sign', image, '--key', join(tmp, 'nope.pem')]);
    expect(missing.code).toBe(ExitCode.USAGE);
    expect(missing.stderr).toMatch(/key file not found: .*nope\.pem; make one with ble-ota keygen/);
    const notKey = await run(['sign', image, '--key', image]);
    expect(notKey.code).toBe(ExitCode.USAGE);
    expect(notKey.stderr).toMatch(/not a private key/);
    const none = await run(['sign', image]);
    expect(none.code).toBe(ExitCode.USAGE);
    expect(none.stderr).toMatch(/required option '-k, --key <pem>' not specified/);
    const four = await run(['sign', image, '-k', key, '-k', key, '-k', ecKey, '-k', ecKey]);
    expect(four.code).toBe(ExitCode.USAGE);
    expect(four.stderr).toMatch(/give 1 to 3 signing keys/);
    const out = join(tmp, 'twice.bin');
    expect((await run(['sign', image, '-k', key, '-o', out])).code).toBe(ExitCode.OK);
    const twice = await run(['sign', out, '-k', key]);
    expect(twice.code).toBe(ExitCode.USAGE);
    expect(twice.stderr).toMatch(/is already signed \(1 signature block\(s\)\)/);
  });

  it('says a passphrase-protected key is encrypted and how to get an unencrypted one', async () => {
    const image = writeImage('encrypted-key.bin');
    const encrypted = { cipher: 'aes-256-cbc', passphrase: 'secret' } as const;
    const pkcs8 = join(tmp, 'encrypted-pkcs8.pem');
    writeFileSync(
      pkcs8,
      generateKeyPairSync('ec', {
        namedCurve: 'prime256v1',
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem', ...encrypted },
      }).privateKey,
    );
    // The older OpenSSL form: "Proc-Type: 4,ENCRYPTED" inside BEGIN EC PRIVATE KEY.
    const sec1 = join(tmp, 'encrypted-sec1.pem');
    writeFileSync(
      sec1,
      generateKeyPairSync('ec', {
        namedCurve: 'prime256v1',
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'sec1', format: 'pem', ...encrypted },
      }).privateKey,
    );
    for (const pem of [pkcs8, sec1]) {
      for (const argv of [
        ['sign', image, '--key', pem],
        ['flash', image, '--sim', '--key', pem],
      ]) {
        const result = await run(argv);
        expect(result.code).toBe(ExitCode.USAGE);
        expect(result.stderr).toBe(
          `error: ${pem} is encrypted with a passphrase; ble-ota needs an unencrypted key: write one with \`openssl pkey -in ${pem} -out plain.pem\` (it asks for the passphrase), pass plain.pem and keep it as safe as the encrypted one\n`,
        );
        expect(result.radioOpened).toBe(0);
      }
    }
  });

  it('says what a --key that is no key file is: a directory, a FIFO, a huge file', async () => {
    const image = writeImage('key-paths.bin');
    const hint =
      'pass the PEM file that ble-ota keygen (or espsecure.py generate_signing_key --version 2) wrote';
    const dir = await run(['sign', image, '--key', tmp]);
    expect(dir.code).toBe(ExitCode.USAGE);
    expect(dir.stderr).toBe(`error: ${tmp} is a directory, not a key file; ${hint}\n`);
    const huge = writeSparse('huge.pem', 3 * 2 ** 30);
    const big = await run(['flash', image, '--sim', '--key', huge]);
    expect(big.code).toBe(ExitCode.USAGE);
    expect(big.stderr).toBe(
      `error: ${huge} is 3.00 GiB, too large to be a PEM signing key (a few KiB; at most 1 MiB here); ${hint}\n`,
    );
    expect(big.radioOpened).toBe(0);
    if (process.platform !== 'win32') {
      const fifo = makeFifo('key.fifo');
      const piped = await runNearFifo(['sign', image, '--key', fifo], fifo);
      expect(piped.blocked).toBe(false);
      expect(piped.code).toBe(ExitCode.USAGE);
      expect(piped.stderr).toBe(
        `error: ${fifo} is a FIFO (named pipe), not a regular file; ${hint}\n`,
      );
    }
  });

  it('keygen on a directory says it is a directory and asks for a file path', async () => {
    const dir = join(tmp, 'keys');
    mkdirSync(dir);
    const result = await run(['keygen', dir]);
    expect(result.code).toBe(ExitCode.USAGE);
    expect(result.stderr).toBe(
      `error: ${dir} is a directory; give the path of a new key file, e.g. ${join(dir, 'signing-key.pem')}\n`,
    );
  });

  it('sign -o on a directory or a FIFO says what it is, and never blocks', async () => {
    const image = writeImage('output-paths.bin');
    const dir = await run(['sign', image, '--key', key, '-o', tmp]);
    expect(dir.code).toBe(ExitCode.USAGE);
    expect(dir.stderr).toBe(
      `error: ${tmp} is a directory; give the path of the signed image file, e.g. ${join(tmp, 'output-paths-signed.bin')}\n`,
    );
    if (process.platform !== 'win32') {
      const fifo = makeFifo('signed.fifo');
      const piped = await runNearFifo(['sign', image, '--key', key, '-o', fifo], fifo);
      expect(piped.blocked).toBe(false);
      expect(piped.code).toBe(ExitCode.USAGE);
      expect(piped.stderr).toBe(
        `error: ${fifo} is a FIFO (named pipe), not a regular file; give the path of the signed image file\n`,
      );
    }
  });
});
