import { buildPage, servePage } from '@esp-ble-ota/web';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { type CliIo, line } from '../io.ts';

export interface WebOptions {
  port: number;
  host: string;
}

/**
 * Builds the browser page (vite) and serves it until interrupted. Web Bluetooth wants a secure
 * context: localhost and 127.0.0.1 are one; another host needs https in front of it.
 */
export async function webCommand(options: WebOptions, io: CliIo): Promise<ExitCodeValue> {
  await buildPage();
  const page = await servePage({
    host: options.host,
    port: options.port,
    strictPort: false,
  });
  const local = options.host === '127.0.0.1' || options.host === 'localhost';
  line(io.stdout, `the update page is at ${page.url}`);
  line(
    io.stderr,
    `open it in Chrome, Edge or Opera (Web Bluetooth; on Linux start Chrome with --enable-features=WebBluetooth)${local ? '' : '; a host other than localhost needs https for Web Bluetooth'}. Ctrl-C stops the server.`,
  );
  try {
    await new Promise<void>((resolve) => {
      if (io.signal?.aborted) resolve();
      io.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    await page.close();
  }
  return ExitCode.OK;
}
