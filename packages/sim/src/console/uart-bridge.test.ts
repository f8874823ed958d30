import { SerialPort } from 'serialport';
import { afterEach, describe, expect, it } from 'vitest';
import { UartBridge } from './uart-bridge.ts';

async function readUntil(port: SerialPort, text: string, timeoutMs = 2000): Promise<string> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`did not see ${JSON.stringify(text)}; got ${JSON.stringify(seen)}`)),
      timeoutMs,
    );
    port.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
  });
}

describe('UartBridge', () => {
  let bridge: UartBridge | undefined;
  afterEach(async () => {
    await bridge?.close();
    bridge = undefined;
  });

  it('gives a tty that serialport opens and reads like a USB serial port', async () => {
    bridge = await UartBridge.open();
    expect(bridge.path).toMatch(/^\/dev\/pts\/\d+$/);
    const port = new SerialPort({ path: bridge.path, baudRate: 115200 });
    await new Promise<void>((resolve, reject) => port.on('open', resolve).on('error', reject));
    const got = readUntil(port, 'App version:      1.2.3\r\n');
    bridge.write('I (312) app_init: App version:      1.2.3\r\n');
    expect(await got).toContain('I (312) app_init: App version:      1.2.3\r\n');
    await new Promise<void>((resolve) => port.close(() => resolve()));
  });

  it('keeps the same tty for a reader that reopens it, and passes binary bytes unchanged', async () => {
    bridge = await UartBridge.open();
    for (const round of [1, 2]) {
      const port = new SerialPort({ path: bridge.path, baudRate: 115200 });
      await new Promise<void>((resolve, reject) => port.on('open', resolve).on('error', reject));
      await new Promise<void>((resolve) => port.flush(() => resolve()));
      const marker = `round ${round} \x1b[0;32m\x00\xff end`;
      const got = readUntil(port, 'end');
      bridge.write(Buffer.from(marker, 'latin1'));
      expect(await got).toBe(marker);
      await new Promise<void>((resolve) => port.close(() => resolve()));
    }
  });
});

describe('UartBridge.idle', () => {
  it('output written while nobody reads is gone once the bridge is idle, as on a real UART', async () => {
    const bridge = await UartBridge.open();
    try {
      bridge.write('I (31) boot: Loaded app from partition at offset 0x10000\r\n'.repeat(50));
      await bridge.idle();
      const port = new SerialPort({ path: bridge.path, baudRate: 115200 });
      await new Promise<void>((resolve, reject) => port.on('open', resolve).on('error', reject));
      let seen = '';
      port.on('data', (chunk: Buffer) => {
        seen += chunk.toString('latin1');
      });
      bridge.write('rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n');
      await bridge.idle();
      await new Promise((r) => setTimeout(r, 100));
      expect(seen).toBe('rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n');
      await new Promise<void>((resolve) => port.close(() => resolve()));
    } finally {
      await bridge.close();
    }
  });
});
