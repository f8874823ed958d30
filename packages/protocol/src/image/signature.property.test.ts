// The signature sector parser on arbitrary and on damaged input: it returns a result (a block it
// cannot check is reported invalid) or throws SignatureError, never anything else.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildAppImage } from './build.ts';
import {
  checkSignatureBlock,
  findSignatureSector,
  readSignatures,
  SIG_BLOCK_MAGIC,
  SIG_BLOCK_SIZE,
  SIG_BLOCK_VERSION_ECDSA,
  SIG_BLOCK_VERSION_RSA,
  SIG_SECTOR_SIZE,
  SignatureError,
} from './signature.ts';
import { signImage } from './signing.ts';

/** Runs `parse`, and fails the property on any exception other than SignatureError. */
async function parseOrRefuse<T>(parse: () => T | Promise<T>): Promise<T | SignatureError> {
  try {
    return await parse();
  } catch (error) {
    if (error instanceof SignatureError) return error;
    throw error;
  }
}

/** `bytes` as a view at `skew` into a larger buffer, as a Uint8Array from a socket or a file is. */
function skewed(bytes: Uint8Array, skew: number): Uint8Array {
  const backing = new Uint8Array(bytes.length + skew);
  backing.set(bytes, skew);
  return backing.subarray(skew);
}

/** Whole sectors of random data, then a sector that opens with one to three block headers. */
const signedLookingArb = fc
  .record({
    sectors: fc.integer({ min: 1, max: 3 }),
    seed: fc.uint8Array({ minLength: 64, maxLength: 64 }),
    blocks: fc.array(
      fc.record({
        version: fc.constantFrom(SIG_BLOCK_VERSION_RSA, SIG_BLOCK_VERSION_ECDSA, 0x01, 0xff),
        curve: fc.constantFrom(1, 2, 0xff),
        body: fc.uint8Array({ minLength: SIG_BLOCK_SIZE, maxLength: SIG_BLOCK_SIZE }),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    skew: fc.nat(7),
  })
  .map(({ sectors, seed, blocks, skew }) => {
    const data = new Uint8Array((sectors + 1) * SIG_SECTOR_SIZE);
    for (let i = 0; i < sectors * SIG_SECTOR_SIZE; i++) data[i] = (seed[i % 64] ?? 0) ^ (i >> 6);
    const at = sectors * SIG_SECTOR_SIZE;
    data.fill(0xff, at);
    blocks.forEach(({ version, curve, body }, i) => {
      const block = data.subarray(at + i * SIG_BLOCK_SIZE, at + (i + 1) * SIG_BLOCK_SIZE);
      block.set(body);
      block[0] = SIG_BLOCK_MAGIC;
      // The first block must name a known version, or there is no sector to parse.
      block[1] = i === 0 && version !== SIG_BLOCK_VERSION_RSA ? SIG_BLOCK_VERSION_ECDSA : version;
      block[36] = curve;
    });
    return skewed(data, skew);
  });

describe('readSignatures on arbitrary input (property)', () => {
  it('returns undefined or a result for random bytes, never throws', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 3 * SIG_SECTOR_SIZE }),
        fc.nat(7),
        async (data, skew) => {
          const view = skewed(data, skew);
          await parseOrRefuse(() => readSignatures(view));
          await parseOrRefuse(() => findSignatureSector(view));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('reports every block of a random signature sector, none of them valid, and never throws', async () => {
    await fc.assert(
      fc.asyncProperty(signedLookingArb, async (data) => {
        const result = await parseOrRefuse(() => readSignatures(data));
        expect(result).not.toBeInstanceOf(SignatureError);
        const info = result as Exclude<typeof result, SignatureError>;
        expect(info?.signedLength).toBe(data.length - SIG_SECTOR_SIZE);
        expect(info?.blocks.length).toBeGreaterThanOrEqual(1);
        for (const block of info?.blocks ?? []) {
          expect(block.valid).toBe(false);
          expect(block.keyDigest).toMatch(/^[0-9a-f]{64}$/);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('checkSignatureBlock on arbitrary input (property)', () => {
  it('checks a block of any length or throws SignatureError, never a RangeError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: SIG_BLOCK_SIZE + 8 }),
        fc.constantFrom(SIG_BLOCK_VERSION_RSA, SIG_BLOCK_VERSION_ECDSA),
        fc.nat(7),
        async (bytes, version, skew) => {
          const block = skewed(bytes, skew);
          if (block.length > 1) block[1] = version;
          const result = await parseOrRefuse(() => checkSignatureBlock(block, new Uint8Array(16)));
          if (block.length < SIG_BLOCK_SIZE) {
            expect(result).toBeInstanceOf(SignatureError);
            expect((result as SignatureError).message).toMatch(
              new RegExp(`^a signature block is ${SIG_BLOCK_SIZE} bytes, got ${block.length}`),
            );
          } else {
            expect(result).not.toBeInstanceOf(SignatureError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('a signed image changed anywhere the signature covers (property)', () => {
  let rsa: KeyObject;
  let ec: KeyObject;
  let signed: Uint8Array;
  beforeAll(() => {
    rsa = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
    ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const image = buildAppImage({
      chip: 'esp32c3',
      project: 'fuzz',
      version: '1.0.0',
      payload: new Uint8Array(6000).map((_, i) => (i * 7) & 0xff),
    });
    signed = signImage(image, [rsa, ec]);
  });

  it('no longer has every block valid, and parses without throwing', async () => {
    const at = () => signed.length - SIG_SECTOR_SIZE;
    // Each block's CRC covers its first 1196 bytes and is the next 4; 16 zero bytes follow.
    const covered = () => at() + SIG_BLOCK_SIZE + 1200;
    expect((await readSignatures(signed))?.blocks.map((b) => b.valid)).toEqual([true, true]);
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.integer({ min: 1, max: 255 }), async (where, flip) => {
        const offset = where % covered();
        if (offset >= at() + 1200 && offset < at() + SIG_BLOCK_SIZE) return; // block 1's padding
        const mutated = signed.slice();
        mutated[offset] = (mutated[offset] ?? 0) ^ flip;
        const result = await parseOrRefuse(() => readSignatures(mutated));
        expect(result).not.toBeInstanceOf(SignatureError);
        const info = result as Exclude<typeof result, SignatureError>;
        const stillAll = info !== undefined && info.blocks.length === 2;
        expect(stillAll && info.blocks.every((b) => b.valid)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
