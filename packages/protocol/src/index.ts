/**
 * The package's Node entry: everything the browser entry has (`browser.ts`), and signing, which
 * needs a private key and node:crypto. A bundler for a page picks `browser.ts` (the `browser`
 * condition of package.json's exports).
 */
export * from './browser.ts';
export {
  keyScheme,
  loadSigningKey,
  publicKeyBytes,
  publicKeyDigest,
  signatureBlock,
  signImage,
} from './image/signing.ts';
