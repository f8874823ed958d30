import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResetLinesUnsupportedError } from './reset.ts';
import {
  ConsoleClosedError,
  ExpectTimeoutError,
  SerialConsole,
  UnexpectedOutputError,
} from './serial-console.ts';
import { VirtualUart } from './test-support/virtual-uart.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const green = (s: string) => `\x1b[0;32m${s}\x1b[0m\r\n`;
const red = (s: string) => `\x1b[0;31m${s}\x1b[0m\r\n`;

describe('SerialConsole on a real pseudo-terminal (the virtual rig’s UART bridge)', () => {
  let uart: VirtualUart;
  let con: SerialConsole | undefined;

  beforeEach(async () => {
    uart = await VirtualUart.open();
  });
  afterEach(async () => {
    await con?.close();
    con = undefined;
    await uart.close();
  });

  it('matches a regex across chunks cut mid-line and mid-colour-code, with capture groups', async () => {
    con = await SerialConsole.open(uart.path);
    const waiting = con.expect(/Loaded app from partition at offset 0x([0-9a-f]+)\n/, {
      timeout: 2000,
    });
    const line = green('I (411) boot: Loaded app from partition at offset 0x190000');
    // Cut inside the escape sequence, inside the offset and between \r and \n.
    for (const piece of [line.slice(0, 3), line.slice(3, 40), line.slice(40, -1), line.slice(-1)]) {
      await uart.send(piece);
      await sleep(15);
    }
    const got = await waiting;
    expect(got.groups).toEqual(['190000']);
    expect(got.match).toBe('Loaded app from partition at offset 0x190000\n');
    expect(got.before).toBe('I (411) boot: ');
  });

  it('consumes up to the end of the match and keeps the rest for the next expect()', async () => {
    con = await SerialConsole.open(uart.path);
    await uart.send(
      `${green('I (1) app: one')}${green('I (2) app: two')}${green('I (3) app: three')}`,
    );
    await con.expect('two', { timeout: 2000 });
    expect(con.buffer).toBe('\nI (3) app: three\n');
    // "one" came before the consumed match: it is gone.
    await expect(con.expect('one', { timeout: 50 })).rejects.toBeInstanceOf(ExpectTimeoutError);
    const three = await con.expect(/I \((?<t>\d+)\) app: (three)/, { timeout: 100 });
    expect(three.named).toEqual({ t: '3' });
    expect(three.groups).toEqual(['3', 'three']);
    expect(con.buffer).toBe('\n');
  });

  it('expectAny() takes the earliest match and says which pattern it was', async () => {
    con = await SerialConsole.open(uart.path);
    const verdict = con.expectAny([/self-test passed/, /Guru Meditation Error: Core\s+(\d+)/], {
      timeout: 2000,
    });
    await uart.send(
      `Guru Meditation Error: Core  1 panic'ed (StoreProhibited). Exception was unhandled.\r\n${green('I (9) ble_ota: self-test passed')}`,
    );
    const got = await verdict;
    expect(got.index).toBe(1);
    expect(got.groups).toEqual(['1']);
    await expect(
      con.expectAny(['nothing', 'self-test passed'], { timeout: 1000 }),
    ).resolves.toMatchObject({ index: 1 });
  });

  it('resolves at once when the text is already buffered, and refuses a second concurrent expect()', async () => {
    con = await SerialConsole.open(uart.path);
    await uart.send('rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n');
    await con.expect('rst:', { timeout: 2000 });
    const pending = con.expect('never', { timeout: 80 });
    await expect(con.expect('other')).rejects.toThrow(
      /still waiting: await each expect\(\) in turn/,
    );
    await expect(pending).rejects.toBeInstanceOf(ExpectTimeoutError);
  });

  it('fails a timeout with the pattern and the last 20 lines seen', async () => {
    con = await SerialConsole.open(uart.path);
    let text = '';
    for (let i = 1; i <= 25; i++) text += green(`I (${i}) app: line ${i}`);
    await uart.send(`${text}partial prompt> `);
    await con.expect('line 25', { timeout: 2000 });
    const err = await con.expect(/App version:\s+(\S+)/, { timeout: 80 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExpectTimeoutError);
    const msg = (err as Error).message;
    expect(msg).toContain('expect(/App version:\\s+(\\S+)/) saw no match within 80 ms');
    expect(msg).toContain(uart.path);
    expect(msg).toContain('Last 20 lines received:');
    expect(msg).toContain('  | I (6) app: line 6');
    expect(msg).toContain('  | I (25) app: line 25');
    expect(msg).not.toContain('line 5\n');
    expect(msg).toContain('Unfinished line: "partial prompt> "');
    expect(msg).not.toContain('\x1b');
  });

  it('fails the pending expect() as soon as a forbidden line appears, and every later one', async () => {
    con = await SerialConsole.open(uart.path);
    const stop = con.notExpect(/Guru Meditation Error/);
    con.notExpect('Rebooting...');
    const waiting = con.expect('advertising', { timeout: 2000 });
    await uart.send(
      `${green('I (416) ble_ota: self-test')}Guru Meditation Error: Core  0 panic'ed (LoadProhibited). Exception was unhandled.\r\n`,
    );
    const err = await waiting.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnexpectedOutputError);
    expect((err as Error).message).toContain('/Guru Meditation Error/');
    expect((err as Error).message).toContain(
      "  > Guru Meditation Error: Core  0 panic'ed (LoadProhibited)",
    );
    expect((err as Error).message).toContain('  | I (416) ble_ota: self-test');
    expect(() => con?.check()).toThrow(UnexpectedOutputError);
    await expect(con.expect('self-test', { timeout: 100 })).rejects.toBeInstanceOf(
      UnexpectedOutputError,
    );
    stop();
    expect(() => con?.check()).not.toThrow();
    await uart.send('Rebooting...\r\n');
    await sleep(50);
    expect(() => con?.check()).toThrow(/Rebooting\.\.\./);
  });

  it('judges a forbidden line and an expected one in the same chunk in arrival order', async () => {
    con = await SerialConsole.open(uart.path);
    con.notExpect('Rebooting...');
    const ok = con.expect('App version', { timeout: 2000 });
    await uart.send(`${green('I (450) cpu_start: App version:      1.0.0')}Rebooting...\r\n`);
    await expect(ok).resolves.toMatchObject({ match: 'App version' });
    expect(() => con?.check()).toThrow(UnexpectedOutputError);
  });

  it('does not let output from before open() satisfy expect()', async () => {
    await uart.send('stale: I (999) boot: Loaded app from partition at offset 0x10000\r\n');
    await sleep(50);
    con = await SerialConsole.open(uart.path);
    await expect(con.expect('stale', { timeout: 80 })).rejects.toBeInstanceOf(ExpectTimeoutError);
  });

  it('flush() drops what was received and not consumed', async () => {
    con = await SerialConsole.open(uart.path);
    await uart.send(green('I (1) app: before flush'));
    await con.expect('I (1)', { timeout: 2000 });
    expect(con.buffer).toBe(' app: before flush\n');
    await con.flush();
    expect(con.buffer).toBe('');
    await expect(con.expect('before flush', { timeout: 50 })).rejects.toBeInstanceOf(
      ExpectTimeoutError,
    );
    await uart.send(green('I (2) app: after flush'));
    await expect(con.expect('after flush', { timeout: 2000 })).resolves.toMatchObject({
      before: 'I (2) app: ',
    });
  });

  it('writes a raw log with every byte and a plain-text copy without colour codes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'serial-log-'));
    con = await SerialConsole.open(uart.path, { logPath: join(dir, 'tests', 'happy-path.log') });
    const bytes = `${green('I (29) boot: ESP-IDF v5.3.1 2nd stage bootloader')}${red('E (246) esp_image: Checksum failed. Calculated 0xc7 read 0x43')}tail`;
    await uart.send(bytes);
    await con.expect('tail', { timeout: 2000 });
    expect(con.logPaths).toEqual({
      raw: join(dir, 'tests', 'happy-path.log'),
      text: join(dir, 'tests', 'happy-path.txt'),
    });
    await con.close();
    expect(readFileSync(join(dir, 'tests', 'happy-path.log'), 'latin1')).toBe(bytes);
    expect(readFileSync(join(dir, 'tests', 'happy-path.txt'), 'utf8')).toBe(
      'I (29) boot: ESP-IDF v5.3.1 2nd stage bootloader\nE (246) esp_image: Checksum failed. Calculated 0xc7 read 0x43\ntail',
    );
  });

  it('marks resets in the text log on a line of their own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'serial-log-'));
    con = await SerialConsole.open(uart.path, { logPath: join(dir, 'reset.log') });
    await uart.send('half a line');
    await con.expect('half', { timeout: 2000 });
    await con.hardReset().catch(() => undefined); // a pty refuses the lines; the note stays
    await uart.send('\r\nnext\r\n');
    await con.expect('next', { timeout: 2000 });
    await con.close();
    expect(readFileSync(join(dir, 'reset.txt'), 'utf8')).toBe(
      'half a line\n--- hard reset (RTS pulse on EN) ---\n\nnext\n',
    );
  });

  it('switches to a new log per test without reopening the port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'serial-log-'));
    con = await SerialConsole.open(uart.path, { logPath: join(dir, 'first.log') });
    await uart.send(green('I (1) app: first test'));
    await con.expect('first test', { timeout: 2000 });
    expect(await con.startLog(join(dir, 'second.log'))).toEqual({
      raw: join(dir, 'second.log'),
      text: join(dir, 'second.txt'),
    });
    await uart.send(green('I (2) app: second test'));
    await con.expect('second test', { timeout: 2000 });
    await con.stopLog();
    await uart.send(green('I (3) app: not logged'));
    await con.expect('not logged', { timeout: 2000 });
    expect(readFileSync(join(dir, 'first.txt'), 'utf8')).toBe('I (1) app: first test\n');
    expect(readFileSync(join(dir, 'second.txt'), 'utf8')).toBe('I (2) app: second test\n');
    expect(readFileSync(join(dir, 'second.log'), 'latin1')).toBe(green('I (2) app: second test'));
  });

  it('parses the stream into ESP-IDF events that expectEvent() consumes in order', async () => {
    con = await SerialConsole.open(uart.path);
    const seen: string[] = [];
    con.onEvent((e) => seen.push(e.kind));
    const boot = [
      'ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n',
      'rst:0xc (RTC_SW_CPU_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\nSaved PC:0x40376c31\r\n',
      green('I (26) boot: ESP-IDF v5.3.1 2nd stage bootloader'),
      green('I (53) boot: Partition Table:'),
      green('I (57) boot: ## Label            Usage          Type ST Offset   Length'),
      green('I (87) boot:  3 ota_0            OTA app          00 10 00010000 00180000'),
      green('I (94) boot:  4 ota_1            OTA app          00 11 00190000 00180000'),
      green('I (109) boot: End of partition table'),
      green('I (251) boot: Loaded app from partition at offset 0x190000'),
      green('I (272) app_init: Application information:'),
      green('I (280) app_init: App version:      2.0.0'),
      green('I (292) app_init: ELF file SHA256:  61c5d1f0e84b2a93...'),
      green('I (298) app_init: ESP-IDF:          v5.3.1'),
    ];
    const reset = con.expectEvent('reset', { timeout: 2000 });
    for (const piece of boot) await uart.send(piece);
    expect(await reset).toMatchObject({ reason: 'RTC_SW_CPU_RST', category: 'software' });
    const app = await con.expectEvent('bootApp', { timeout: 2000 });
    expect(app.offset).toBe(0x190000);
    const info = await con.expectEvent('appInfo', { timeout: 2000 });
    expect(info.version).toBe('2.0.0');
    // The partition table came before the consumed bootApp event.
    await expect(con.expectEvent('partitionTable', { timeout: 50 })).rejects.toThrow(
      /expectEvent\("partitionTable"\) saw no match within 50 ms/,
    );
    expect(con.parser.currentBoot?.app?.partition?.label).toBe('ota_1');
    expect(seen).toEqual(
      expect.arrayContaining(['rom', 'reset', 'bootloader', 'partitionTable', 'appInfo']),
    );
  });

  it('fails a pending expect() when the console closes', async () => {
    con = await SerialConsole.open(uart.path);
    const caught = con.expect('never', { timeout: 2000 }).catch((e: unknown) => e);
    await con.close();
    const err = await caught;
    expect(err).toBeInstanceOf(ConsoleClosedError);
    expect((err as Error).message).toContain('expect("never") failed');
  });

  it('says clearly that a pty cannot be reset through DTR/RTS', async () => {
    con = await SerialConsole.open(uart.path);
    const err = await con.hardReset().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResetLinesUnsupportedError);
    expect((err as Error).message).toContain(`cannot reset the board through ${uart.path}`);
    // serialport locks the port: the second open below needs the first one closed.
    await con.close();
    con = undefined;
    await expect(SerialConsole.open(uart.path, { resetOnOpen: true })).rejects.toBeInstanceOf(
      ResetLinesUnsupportedError,
    );
  });

  it('explains what to check when the port cannot be opened', async () => {
    await expect(SerialConsole.open('/dev/does-not-exist-ttyUSB9')).rejects.toThrow(
      /cannot open serial port \/dev\/does-not-exist-ttyUSB9: .*dialout/,
    );
  });
});
