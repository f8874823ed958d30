import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import {
  loadSigningKey,
  publicKeyDigest,
  readSignatures,
  SignatureError,
  type SignatureScheme,
  signImage,
} from '@esp-ble-ota/protocol';
import { CliError } from '../errors.ts';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { checkOutputPath, readInputFile } from '../files.ts';
import { assertImageIntact, type LoadedImage, loadImage } from '../image.ts';
import { type CliIo, json, line } from '../io.ts';

export interface SignOptions {
  key: string[];
  output?: string;
  json?: boolean;
}

const KEY_HINT =
  'pass the PEM file that ble-ota keygen (or espsecure.py generate_signing_key --version 2) wrote';

/** A PEM signing key is a few KiB (RSA-3072 about 2.5); a larger file is no key. */
const MAX_KEY_BYTES = 1024 * 1024;

/** PKCS#8 `ENCRYPTED PRIVATE KEY`, or the older OpenSSL form with a `Proc-Type: 4,ENCRYPTED` header. */
const ENCRYPTED_PEM = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:\s*4,ENCRYPTED/m;

async function readKey(path: string): Promise<KeyObject> {
  const pem = await readInputFile(path, {
    noun: 'key file',
    hint: KEY_HINT,
    missingHint: 'make one with ble-ota keygen (or espsecure.py generate_signing_key --version 2)',
    maxBytes: MAX_KEY_BYTES,
    tooLarge: (size) => ({
      exitCode: ExitCode.USAGE,
      message: `${path} is ${size}, too large to be a PEM signing key (a few KiB; at most 1 MiB here); ${KEY_HINT}`,
    }),
  });
  // OpenSSL only says "interrupted or cancelled" when it finds no passphrase to decrypt with.
  if (ENCRYPTED_PEM.test(new TextDecoder().decode(pem))) {
    throw new CliError(
      ExitCode.USAGE,
      `${path} is encrypted with a passphrase; ble-ota needs an unencrypted key: write one with \`openssl pkey -in ${path} -out plain.pem\` (it asks for the passphrase), pass plain.pem and keep it as safe as the encrypted one`,
    );
  }
  try {
    return loadSigningKey(pem);
  } catch (error) {
    throw new CliError(ExitCode.USAGE, `${path}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * `image` with a Secure Boot v2 signature sector by the keys in `keyPaths` (at most 3). An image
 * that is already signed, or a key that cannot sign, is a usage error; `alreadySigned` says what
 * to do instead.
 */
export async function signLoadedImage(
  image: LoadedImage,
  keyPaths: readonly string[],
  alreadySigned: string,
): Promise<Uint8Array> {
  if (image.signatures !== undefined) {
    throw new CliError(
      ExitCode.USAGE,
      `${image.path} is already signed (${image.signatures.blocks.length} signature block(s)); ${alreadySigned}`,
    );
  }
  const keys = await Promise.all(keyPaths.map(readKey));
  try {
    return signImage(image.bytes, keys);
  } catch (error) {
    if (error instanceof SignatureError) {
      throw new CliError(ExitCode.USAGE, error.message, { cause: error });
    }
    throw error;
  }
}

/** Where a signed copy of `path` goes by default: `app.bin` -> `app-signed.bin`, beside it. */
export function signedPath(path: string): string {
  const ext = extname(path);
  return join(dirname(path), `${basename(path, ext)}-signed${ext || '.bin'}`);
}

/**
 * `ble-ota sign --key K.pem IMAGE`: appends a Secure Boot v2 signature sector, as
 * `espsecure.py sign_data --version 2 --keyfile K.pem` does, one block per --key (at most 3).
 */
export async function signCommand(
  path: string,
  options: SignOptions,
  io: CliIo,
): Promise<ExitCodeValue> {
  const image = await loadImage(path);
  assertImageIntact(image);
  const signed = await signLoadedImage(
    image,
    options.key,
    'sign the unsigned image, with every --key at once',
  );
  const output = options.output ?? signedPath(path);
  await checkOutputPath(output, 'the signed image file', join(output, basename(signedPath(path))));
  await writeFile(output, signed);
  const sig = await readSignatures(signed);
  if (options.json) {
    json(io.stdout, {
      event: 'signed',
      file: output,
      size: signed.length,
      signedLength: sig?.signedLength,
      keys: sig?.blocks.map((b) => ({ scheme: b.scheme, keyDigest: b.keyDigest })),
    });
  } else {
    line(
      io.stdout,
      `signed ${image.info.project} ${image.info.version} (secure_version ${image.info.secureVersion}): ${output}, ${signed.length} bytes`,
    );
    for (const b of sig?.blocks ?? []) {
      line(io.stdout, `  signature ${b.index + 1}: ${b.scheme}, key digest ${b.keyDigest}`);
    }
  }
  return ExitCode.OK;
}

export interface KeygenOptions {
  scheme: SignatureScheme;
  json?: boolean;
}

/**
 * `ble-ota keygen K.pem`: a new signing key, in the PEM form espsecure writes (PKCS#1 for RSA,
 * SEC1 for ECDSA), readable by the owner only. An existing file is never overwritten.
 */
export async function keygenCommand(
  path: string,
  options: KeygenOptions,
  io: CliIo,
): Promise<ExitCodeValue> {
  const { privateKey } =
    options.scheme === 'rsa3072'
      ? generateKeyPairSync('rsa', { modulusLength: 3072, publicExponent: 65537 })
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem =
    options.scheme === 'rsa3072'
      ? privateKey.export({ type: 'pkcs1', format: 'pem' })
      : privateKey.export({ type: 'sec1', format: 'pem' });
  try {
    await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'EEXIST') {
      const isDirectory = await stat(path).then(
        (s) => s.isDirectory(),
        () => false,
      );
      throw new CliError(
        ExitCode.USAGE,
        isDirectory
          ? `${path} is a directory; give the path of a new key file, e.g. ${join(path, 'signing-key.pem')}`
          : `${path} exists; keygen never overwrites a key (an image signed with the old one would lose its only key): choose another file name`,
        { cause: error },
      );
    }
    throw new CliError(ExitCode.USAGE, `cannot write ${path}: ${String(error)}`, { cause: error });
  }
  const digest = publicKeyDigest(privateKey);
  if (options.json) {
    json(io.stdout, { event: 'keygen', file: path, scheme: options.scheme, keyDigest: digest });
  } else {
    line(io.stdout, `wrote a ${options.scheme} signing key to ${path} (mode 0600)`);
    line(io.stdout, `public key digest: ${digest}`);
    line(
      io.stdout,
      'keep the key offline and backed up; the device trusts its digest (see docs/security.md)',
    );
  }
  return ExitCode.OK;
}
