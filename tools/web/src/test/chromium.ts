/**
 * Chromium for the page's tests: Debian's `chromium` package (scripts/bootstrap.sh installs it),
 * driven by playwright-core. Without it the tests that need it are skipped with this reason.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** The binary itself: /usr/bin/chromium is a wrapper script that prints a harmless error. */
const CANDIDATES = process.env.CHROMIUM_PATH
  ? [process.env.CHROMIUM_PATH]
  : ['/usr/lib/chromium/chromium', '/usr/bin/chromium'];

export const chromiumPath: string | undefined = CANDIDATES.find((p) => existsSync(p));

export const NO_CHROMIUM =
  'Chromium is not installed: these tests drive the page in a real browser (Debian/Ubuntu: apt-get install chromium, as scripts/bootstrap.sh does; or set CHROMIUM_PATH)';

/** Headless Chromium with Web Bluetooth on (it is off on Linux unless a flag turns it on). */
export async function launchChromium(): Promise<Browser> {
  if (chromiumPath === undefined) throw new Error(NO_CHROMIUM);
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--enable-features=WebBluetooth',
    ],
  });
}
