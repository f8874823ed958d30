import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAppImage, signImage } from '@esp-ble-ota/protocol';
import type { Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webRoot } from './serve.ts';
import { chromiumPath, launchChromium, NO_CHROMIUM } from './test/chromium.ts';
import { type RecordedSession, recordSession } from './test/parity-session.ts';

declare global {
  interface Window {
    parity: { recordSession(image: Uint8Array): Promise<RecordedSession> };
  }
}

/** A compressible app image signed with two keys (RSA-3072 and ECDSA P-256). */
function signedImage(): Uint8Array {
  const payload = new Uint8Array(48 * 1024).map((_, i) => ((i * 31) % 7 === 0 ? i & 0xff : 0x20));
  const image = buildAppImage({ chip: 'esp32', project: 'parity', version: '2.0.0', payload });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  return signImage(image, [rsa, ec]);
}

describe.skipIf(chromiumPath === undefined)('the protocol package in a browser', () => {
  let browser: Browser;
  let bundle: string;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ble-ota-parity-'));
    // The session bundled as a page would get it: vite, the protocol package's browser entry.
    await build({
      root: webRoot,
      configFile: false,
      logLevel: 'warn',
      build: {
        outDir: dir,
        emptyOutDir: true,
        minify: false,
        lib: {
          entry: join(webRoot, 'src/test/parity-session.ts'),
          name: 'parity',
          formats: ['iife'],
          fileName: () => 'parity.js',
        },
      },
    });
    bundle = await readFile(join(dir, 'parity.js'), 'utf8');
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('sends the same bytes on the wire as under Node, and checks signatures alike', async () => {
    const image = signedImage();
    const underNode = await recordSession(image);

    const page = await browser.newPage();
    // A secure context (Web Crypto needs one) with nothing but the bundle in it.
    await page.route('http://127.0.0.1:9/**', (route) =>
      route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>parity</title>' }),
    );
    await page.goto('http://127.0.0.1:9/');
    await page.addScriptTag({ content: bundle });
    const inChromium = await page.evaluate(
      async (bytes) => window.parity.recordSession(new Uint8Array(bytes)),
      Array.from(image),
    );

    expect(underNode.deflated).toBe(true);
    expect(underNode.signatures?.map((s) => [s.scheme, s.valid])).toEqual([
      ['rsa3072', true],
      ['ecdsa256', true],
    ]);
    expect(underNode.frames.some((f) => f.startsWith('write-cmd'))).toBe(true);
    expect(inChromium.frames).toEqual(underNode.frames);
    expect(inChromium.signatures).toEqual(underNode.signatures);
  });
});

// Without Chromium the run says why these tests did not run.
if (chromiumPath === undefined) {
  console.warn(`skipped: ${NO_CHROMIUM}`);
  describe('the protocol package in a browser', () => {
    it.skip(NO_CHROMIUM, () => {});
  });
}
