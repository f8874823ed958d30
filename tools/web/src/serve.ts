import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, preview } from 'vite';

/** This package's directory: vite's root for the page. */
export const webRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Builds the page into `outDir` (default dist/ of this package) with vite; returns it. */
export async function buildPage(outDir = join(webRoot, 'dist')): Promise<string> {
  await build({
    root: webRoot,
    configFile: join(webRoot, 'vite.config.ts'),
    logLevel: 'warn',
    build: { outDir, emptyOutDir: true },
  });
  return outDir;
}

export interface ServedPage {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves the built page (vite's preview server) on `host`:`port` (0: any free port). Web
 * Bluetooth needs a secure context: localhost and 127.0.0.1 are, a LAN address is not.
 */
export async function servePage(
  options: { outDir?: string; host?: string; port?: number; strictPort?: boolean } = {},
): Promise<ServedPage> {
  const server = await preview({
    root: webRoot,
    configFile: join(webRoot, 'vite.config.ts'),
    logLevel: 'warn',
    build: { outDir: options.outDir ?? join(webRoot, 'dist') },
    preview: {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 0,
      // Given a port, use it or fail, unless told to take the next free one.
      strictPort: options.strictPort ?? (options.port !== undefined && options.port !== 0),
      open: false,
    },
  });
  const url = server.resolvedUrls?.local[0];
  if (url === undefined) throw new Error('vite preview did not say where it listens');
  return {
    url,
    close: () => server.close(),
  };
}
