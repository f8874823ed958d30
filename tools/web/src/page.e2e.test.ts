// biome-ignore-all lint/performance/useDomNodeTextContent: these are Playwright locators; innerText() is the rendered text a person reads, which is what the tests check
/**
 * The page in a real Chromium, updating a simulated board of the virtual rig through Chromium's
 * fake Bluetooth adapter (src/test/emulated-board.ts says how the page's GATT traffic reaches
 * the firmware's C core and how its notifications come back). The board's console is read
 * with the serial package, as a bench's /dev/ttyUSB0 would be.
 *
 * The board is the firmware's secure default less the encrypted link, which the emulation cannot
 * give (no pairing): images signed by the rig's key only, anti-rollback on.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SerialConsole } from '@esp-ble-ota/serial';
import { rigSigningKey } from '@esp-ble-ota/sim';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildPage, type ServedPage, servePage } from './serve.ts';
import { chromiumPath, launchChromium, NO_CHROMIUM } from './test/chromium.ts';
import {
  EmulatedBoard,
  type EmulatedBoardOptions,
  hostAppImage,
  KEEP_CHARACTERISTICS_SCRIPT,
} from './test/emulated-board.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** `UPDATE_SCREENSHOT=1 pnpm --filter @esp-ble-ota/web test` refreshes the README's picture. */
const SCREENSHOT = process.env.UPDATE_SCREENSHOT
  ? join(repoRoot, 'docs', 'web-update.png')
  : undefined;

describe.skipIf(chromiumPath === undefined)(
  'the update page in Chromium, on a simulated board',
  () => {
    let browser: Browser;
    let cdp: CDPSession;
    let served: ServedPage;
    let dir: string;
    let images: Record<string, { path: string; bytes: Uint8Array }>;
    let context: BrowserContext | undefined;
    let board: EmulatedBoard | undefined;
    let serial: SerialConsole | undefined;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'ble-ota-web-e2e-'));
      const outDir = await buildPage(join(dir, 'page'));
      served = await servePage({ outDir });
      images = {
        v2: await hostAppImage('2.0.0', dir),
        v3: await hostAppImage('3.0.0', dir),
        unsigned: await hostAppImage('2.0.0', dir, { signed: false }),
        s3: await hostAppImage('2.0.0', dir, { chip: 'esp32s3' }),
      };
      browser = await launchChromium();
      cdp = await browser.newBrowserCDPSession();
    });

    afterAll(async () => {
      await browser?.close();
      await served?.close();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    afterEach(async () => {
      await serial?.close();
      serial = undefined;
      await context?.close();
      context = undefined;
      await board?.close();
      board = undefined;
    });

    /** A page and a board behind the fake adapter; the chooser picks the board. */
    async function open(
      boardOptions: Omit<EmulatedBoardOptions, 'page' | 'cdp'> = {},
      viewport = { width: 1000, height: 900 },
    ): Promise<{ page: Page; board: EmulatedBoard; serial: SerialConsole }> {
      context = await browser.newContext({ viewport });
      const page = await context.newPage();
      await page.addInitScript(KEEP_CHARACTERISTICS_SCRIPT);
      board = await EmulatedBoard.start({ page, cdp, ...boardOptions });
      serial = await SerialConsole.open(board.serialPath, { defaultTimeoutMs: 30_000 });
      // The chooser: the board is listed by its address (its name is empty there). The prompt
      // comes again as devices appear; pick the board once it is listed.
      const pageCdp = await context.newCDPSession(page);
      await pageCdp.send('DeviceAccess.enable');
      const address = board.address.toLowerCase();
      const answered = new Set<string>();
      pageCdp.on('DeviceAccess.deviceRequestPrompted', (prompt) => {
        const device = prompt.devices.find((d) => d.id.toLowerCase() === address);
        if (device === undefined || answered.has(prompt.id)) return;
        answered.add(prompt.id);
        void pageCdp.send('DeviceAccess.selectPrompt', { id: prompt.id, deviceId: device.id });
      });
      await page.goto(served.url);
      return { page, board, serial };
    }

    async function pickImage(page: Page, path: string): Promise<void> {
      await page.getByLabel('App image (.bin, as ESP-IDF builds it)').setInputFiles(path);
      // The page reads the file, then shows what it found or why it cannot send it.
      await page.locator('#image-info:not([hidden]), #error:not([hidden])').first().waitFor();
    }

    async function connect(page: Page): Promise<void> {
      await page.getByRole('button', { name: 'Connect…' }).click();
      await expect.poll(() => page.locator('#device-info').innerText()).toContain('Model');
    }

    const status = (page: Page) => page.getByRole('status').innerText();

    it('shows the image, the device and what it enforces, then updates it with a signed image over v2; the board confirms the new image', async () => {
      const { page, board, serial } = await open();
      await pickImage(page, images.v2?.path ?? '');
      const imageInfo = await page.locator('#image-info').innerText();
      expect(imageInfo).toMatch(/Chip\s+ESP32 \(chip id 0\)/);
      expect(imageInfo).toMatch(/Version\s+2\.0\.0/);
      expect(imageInfo).toMatch(/Secure version\s+0/);
      // Checked in the page by Web Crypto: the rig's key (ECDSA P-256 or RSA-3072) and valid.
      expect(imageInfo).toMatch(
        new RegExp(
          `Signature 1\\s+(ECDSA P-256|RSA-3072-PSS), key digest ${(await rigSigningKey()).digest}, valid`,
        ),
      );

      await connect(page);
      const deviceInfo = await page.locator('#device-info').innerText();
      expect(deviceInfo).toMatch(/Model\s+ESP32/);
      expect(deviceInfo).toMatch(/Protocol\s+v2 \(the device offers it\)/);
      expect(deviceInfo).toContain('takes images signed by a key it trusts only');
      expect(deviceInfo).toContain('anti-rollback: no secure_version below 0');

      // Mid-way the bridge holds the device's acknowledgements: the page shows the upload as it
      // goes, and the picture is taken then.
      const held = board.holdAfterDataBytes(40_000);
      await page.getByRole('button', { name: 'Update' }).click();
      const release = await held;
      await expect
        .poll(() => page.locator('#progress').evaluate((p: HTMLProgressElement) => p.value))
        .toBeGreaterThan(0);
      await expect
        .poll(() => page.locator('#rate').innerText())
        .toMatch(/\d+ % · \d+ of \d+ bytes · [\d.]+ kB\/s · .+ left/);
      expect(await status(page)).toBe('Sending the image…');
      const shot = SCREENSHOT ?? join(dir, 'web-update.png');
      await mkdir(dirname(shot), { recursive: true });
      await page.screenshot({ path: shot, fullPage: true });
      release();

      await expect
        .poll(() => status(page), { timeout: 50_000 })
        .toBe('Done: the device runs 2.0.0.');
      expect(await page.locator('#log').textContent()).toContain('verified: the device runs 2.0.0');
      await serial.expect(/new image confirmed/);
      expect(board.errors).toEqual([]);
    });

    it('refuses an image for another chip and an unsigned one, in the words the command-line tool uses', async () => {
      const { page, board } = await open();
      await connect(page);

      await pickImage(page, images.s3?.path ?? '');
      await page.getByRole('button', { name: 'Update' }).click();
      await expect
        .poll(() => page.getByRole('alert').innerText())
        .toMatch(/image is for ESP32-S3 but the device is an ESP32/);
      expect(await status(page)).toBe('The update did not go through.');

      await pickImage(page, images.unsigned?.path ?? '');
      expect(await page.locator('#image-info').innerText()).toContain(
        'none (not signed for Secure Boot v2)',
      );
      await page.getByRole('button', { name: 'Update' }).click();
      await expect
        .poll(() => page.getByRole('alert').innerText())
        .toMatch(
          /takes signed updates only, and this image has no Secure Boot v2 signature sector/,
        );
      expect(board.errors).toEqual([]);
    });

    it('resumes after the link drops mid-upload and finishes', async () => {
      const { page, board, serial } = await open();
      await pickImage(page, images.v3?.path ?? '');
      await connect(page);
      board.dropLinkAfterDataBytes(60_000);
      await page.getByRole('button', { name: 'Update' }).click();
      await expect
        .poll(() => status(page), { timeout: 50_000 })
        .toBe('Done: the device runs 3.0.0.');
      expect(board.drops).toBe(1);
      expect(await page.locator('#log').textContent()).toMatch(
        /link lost with \d+ of \d+ bytes confirmed by the device; reconnecting to resume from there \(attempt 1 of 3\)/,
      );
      await serial.expect(/new image confirmed/);
      expect(board.errors).toEqual([]);
    });

    it('stops at Cancel mid-upload with the board on its old image, and a second Update finishes', async () => {
      const { page, board, serial } = await open();
      await pickImage(page, images.v3?.path ?? '');
      await connect(page);
      // Nothing is installed until the second Update: no restart, no new image in between.
      const noRestart = serial.notExpect(/Rebooting|rst:|new image confirmed/);
      const held = board.holdAfterDataBytes(40_000);
      await page.getByRole('button', { name: 'Update' }).click();
      const release = await held;
      const cancel = page.getByRole('button', { name: 'Cancel' });
      expect(await cancel.isEnabled()).toBe(true);
      await cancel.click();
      release();
      await expect
        .poll(() => status(page), { timeout: 30_000 })
        .toMatch(/^Cancelled: nothing was installed, the device runs its old image\./);
      expect(await page.getByRole('alert').isHidden()).toBe(true);
      expect(await cancel.isDisabled()).toBe(true);
      expect(await page.getByRole('button', { name: 'Update' }).isEnabled()).toBe(true);
      serial.check();
      noRestart();

      await page.getByRole('button', { name: 'Update' }).click();
      await expect
        .poll(() => status(page), { timeout: 50_000 })
        .toBe('Done: the device runs 3.0.0.');
      // The device held what it had committed before the cancel: the second Update goes on from there.
      expect(await page.locator('#log').textContent()).toMatch(
        /from stream byte [1-9]\d* on \(the device kept what came before\)/,
      );
      await serial.expect(/new image confirmed/);
      expect(board.errors).toEqual([]);
    });

    it('updates a board that offers the baseline protocol only, at phone width, from the keyboard', async () => {
      const { page, board, serial } = await open(
        { baselineOnly: true },
        { width: 390, height: 844 },
      );
      // Nothing wider than a phone's screen: no sideways scrolling.
      expect(
        await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
      ).toBe(true);
      await pickImage(page, images.v2?.path ?? '');
      await page.getByRole('button', { name: 'Connect…' }).focus();
      await page.keyboard.press('Enter');
      await expect.poll(() => page.locator('#device-info').innerText()).toContain('Model');
      expect(await page.locator('#device-info').innerText()).toMatch(
        /Protocol\s+baseline \(the device offers no protocol v2\)/,
      );
      expect(
        await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
      ).toBe(true);
      await page.keyboard.press('Tab');
      await expect(
        page.getByRole('button', { name: 'Update' }).evaluate((b) => b === document.activeElement),
      ).resolves.toBe(true);
      await page.keyboard.press('Enter');
      await expect
        .poll(() => status(page), { timeout: 50_000 })
        .toBe('Done: the device runs 2.0.0.');
      expect(await page.locator('#log').textContent()).toContain('protocol: baseline');
      await serial.expect(/new image confirmed/);
      expect(board.errors).toEqual([]);
    });
  },
);

// Without Chromium the run says why these tests did not run.
if (chromiumPath === undefined) {
  console.warn(`skipped: ${NO_CHROMIUM}`);
  describe('the update page in Chromium, on a simulated board', () => {
    it.skip(NO_CHROMIUM, () => {});
  });
}
