import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
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
import { assertImageIntact, type LoadedImage, loadImage } from '../image.ts';
import { type CliIo, json, line } from '../io.ts';

export interface SignOptions {
  key: string[];
  output?: string;
  json?: boolean;
}

async function readKey(path: string): Promise<KeyObject> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new CliError(
      ExitCode.USAGE,
      code === 'ENOENT'
        ? `key file not found: ${path}; make one with ble-ota keygen (or espsecure.py generate_signing_key --version 2)`
        : `cannot read key file ${path}: ${String(error)}`,
      { cause: error },
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
  await writeFile(output, signed);
  const sig = readSignatures(signed);
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
    throw new CliError(
      ExitCode.USAGE,
      code === 'EEXIST'
        ? `${path} exists; keygen never overwrites a key (an image signed with the old one would lose its only key): choose another file name`
        : `cannot write ${path}: ${String(error)}`,
      { cause: error },
    );
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
