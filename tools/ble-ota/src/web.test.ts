import { describe, expect, it, vi } from 'vitest';
import { main } from './main.ts';
import { Sink } from './test/harness.ts';

describe('ble-ota web', () => {
  it('serves the update page on localhost, prints its URL, and stops on Ctrl-C with exit 0', async () => {
    const stdout = new Sink();
    const stderr = new Sink();
    const controller = new AbortController();
    const done = main(['web', '--port', '0'], { stdout, stderr, signal: controller.signal });

    const url = await vi.waitFor(
      () => {
        const found = /the update page is at (http:\/\/\S+)/.exec(stdout.text)?.[1];
        if (found === undefined) throw new Error(`no URL yet: ${stdout.text}${stderr.text}`);
        return found;
      },
      { timeout: 60_000, interval: 50 },
    );
    expect(url).toMatch(/^http:\/\/(127\.0\.0\.1|localhost):\d+\/$/);
    const html = await (await fetch(url)).text();
    expect(html).toContain('<title>ESP32 BLE OTA</title>');
    expect(html).toContain('<label for="image-file">');
    // The page's script is served too (the built bundle, not the TypeScript source).
    const script = /<script type="module" crossorigin src="\.\/(assets\/[^"]+\.js)"/.exec(
      html,
    )?.[1];
    expect(script).toBeDefined();
    const js = await fetch(new URL(script ?? '', url));
    expect(js.status).toBe(200);
    expect(stderr.text).toMatch(/Ctrl-C stops the server/);

    controller.abort();
    expect(await done).toBe(0);
    await expect(fetch(url)).rejects.toThrow();
  });

  it('refuses a port that is not one', async () => {
    const stdout = new Sink();
    const stderr = new Sink();
    expect(await main(['web', '--port', '70000'], { stdout, stderr })).toBe(2);
    expect(stderr.text).toMatch(/"70000" is not a TCP port; use 1 to 65535, or 0 for any free one/);
  });
});
