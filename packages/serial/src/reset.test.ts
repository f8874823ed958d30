import { SerialPortMock } from 'serialport';
import { afterEach, describe, expect, it } from 'vitest';
import {
  classicResetSequence,
  hardResetSequence,
  parseResetSequence,
  usbJtagSerialResetSequence,
} from './reset.ts';
import { type SerialBinding, SerialConsole } from './serial-console.ts';

// serialport's own mock binding (@serialport/binding-mock), typed through serialport.
const MockBinding = SerialPortMock.binding;

describe('reset sequences (esptool’s, in serialport’s both-lines-at-once form)', () => {
  it('replays esptool’s ClassicReset call by call from the lines’ state after open', () => {
    expect(classicResetSequence()).toEqual([
      { dtr: false, rts: true }, // D0: IO0 released (RTS still asserted from open)
      { dtr: false, rts: true }, // R1: EN low
      { waitMs: 100 },
      { dtr: true, rts: true }, // D1
      { dtr: true, rts: false }, // R0: EN high with IO0 low -> download mode
      { waitMs: 50 },
      { dtr: false, rts: false }, // D0: IO0 released
    ]);
    expect(
      classicResetSequence({ initial: { dtr: false, rts: false }, resetDelayMs: 400 })[0],
    ).toEqual({
      dtr: false,
      rts: false,
    });
    expect(classicResetSequence({ resetDelayMs: 400 })).toContainEqual({ waitMs: 400 });
  });

  it('pulses EN with IO0 released for a hard reset, longer on USB-Serial/JTAG', () => {
    expect(hardResetSequence()).toEqual([
      { dtr: false, rts: true },
      { dtr: false, rts: true },
      { waitMs: 100 },
      { dtr: false, rts: false },
    ]);
    expect(hardResetSequence({ usb: true }).filter((s) => 'waitMs' in s)).toEqual([
      { waitMs: 200 },
      { waitMs: 200 },
    ]);
  });

  it('goes through (1,1) into reset on USB-Serial/JTAG, as esptool does', () => {
    const steps = usbJtagSerialResetSequence({ initial: { dtr: false, rts: false } });
    const states = steps.filter((s) => !('waitMs' in s));
    expect(states).toContainEqual({ dtr: true, rts: true });
    expect(states.at(-1)).toEqual({ dtr: false, rts: false });
  });

  it('reads esptool’s custom_reset_sequence notation and rejects mistakes with a hint', () => {
    expect(parseResetSequence('U0,1|W0.1|U1,0|W0.05|U0,0')).toEqual([
      { dtr: false, rts: true },
      { waitMs: 100 },
      { dtr: true, rts: false },
      { waitMs: 50 },
      { dtr: false, rts: false },
    ]);
    expect(() => parseResetSequence('R2')).toThrow(/"R2" needs 0 or 1/);
    expect(() => parseResetSequence('W-1')).toThrow(/needs a delay in seconds/);
    expect(() => parseResetSequence('X1')).toThrow(/unknown command "X1"/);
  });
});

// A mock binding that records the modem-line writes serialport passes down, with their time.
function recordingBinding() {
  const calls: Array<{ dtr: boolean; rts: boolean; at: number }> = [];
  const ports: Array<Awaited<ReturnType<typeof MockBinding.open>>> = [];
  const binding: SerialBinding = {
    list: () => MockBinding.list(),
    async open(options: Parameters<typeof MockBinding.open>[0]) {
      const port = await MockBinding.open(options);
      ports.push(port);
      const set = port.set.bind(port);
      port.set = async (opts: Parameters<typeof set>[0]) => {
        calls.push({ dtr: opts.dtr ?? true, rts: opts.rts ?? true, at: performance.now() });
        await set(opts);
      };
      return port;
    },
  };
  return { binding, calls, ports };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SerialConsole reset through DTR/RTS (serialport mock binding)', () => {
  let con: SerialConsole | undefined;
  afterEach(async () => {
    await con?.close();
    con = undefined;
    MockBinding.reset();
  });

  it('hard-resets on open with the exact line states and a 100 ms EN pulse', async () => {
    MockBinding.createPort('/dev/ttyUSB0');
    const { binding, calls } = recordingBinding();
    con = await SerialConsole.open('/dev/ttyUSB0', { binding, resetOnOpen: true });
    expect(calls.map(({ dtr, rts }) => ({ dtr, rts }))).toEqual([
      { dtr: false, rts: true },
      { dtr: false, rts: true },
      { dtr: false, rts: false },
    ]);
    const pulse = (calls[2]?.at ?? 0) - (calls[1]?.at ?? 0);
    expect(pulse).toBeGreaterThanOrEqual(95);
  });

  it('resets into the download mode with esptool’s classic sequence, continuing from the last state', async () => {
    MockBinding.createPort('/dev/ttyUSB0');
    const { binding, calls } = recordingBinding();
    con = await SerialConsole.open('/dev/ttyUSB0', { binding });
    await con.hardReset();
    calls.length = 0;
    await con.resetIntoBootloader();
    expect(calls.map(({ dtr, rts }) => ({ dtr, rts }))).toEqual([
      { dtr: false, rts: false },
      { dtr: false, rts: true },
      { dtr: true, rts: true },
      { dtr: true, rts: false },
      { dtr: false, rts: false },
    ]);
    const ioLowAfterEn = (calls[4]?.at ?? 0) - (calls[3]?.at ?? 0);
    expect(ioLowAfterEn).toBeGreaterThanOrEqual(45);
  });

  it('uses the USB-Serial/JTAG sequence when told the board is on Espressif’s USB', async () => {
    MockBinding.createPort('/dev/ttyACM0');
    const { binding, calls } = recordingBinding();
    con = await SerialConsole.open('/dev/ttyACM0', { binding, usbSerialJtag: true });
    await con.resetIntoBootloader();
    const expected = usbJtagSerialResetSequence().filter((s) => !('waitMs' in s));
    expect(calls.map(({ dtr, rts }) => ({ dtr, rts }))).toEqual(expected);
  });

  it('discards the output from before a reset unless asked to keep it', async () => {
    MockBinding.createPort('/dev/ttyUSB2');
    const { binding, ports } = recordingBinding();
    con = await SerialConsole.open('/dev/ttyUSB2', { binding });
    ports[0]?.emitData(
      'rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\nold app line\r\n',
    );
    await con.expect('old app', { timeout: 1000 });
    ports[0]?.emitData('I (5) app: still old\r\n');
    await con.expect('still', { timeout: 1000 });
    await con.hardReset();
    expect(con.buffer).toBe('');
    // The power-on reset event was before the hard reset: expectEvent() must not return it.
    await expect(con.expectEvent('reset', { timeout: 50 })).rejects.toThrow(/saw no match/);
    ports[0]?.emitData(
      'ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n',
    );
    await expect(con.expectEvent('reset', { timeout: 1000 })).resolves.toMatchObject({ code: 1 });

    ports[0]?.emitData('kept line\r\n');
    await con.expect('kept', { timeout: 1000 });
    ports[0]?.emitData('tail before reset\r\n');
    await sleep(20);
    await con.hardReset({ keepOutput: true });
    await expect(con.expect('tail before reset', { timeout: 100 })).resolves.toBeDefined();
  });

  it('reads data from any binding, here the mock’s emitData()', async () => {
    MockBinding.createPort('/dev/ttyUSB1');
    const { binding, ports } = recordingBinding();
    con = await SerialConsole.open('/dev/ttyUSB1', { binding });
    const waiting = con.expect(/ESP-IDF:\s+(\S+)/, { timeout: 1000 });
    ports[0]?.emitData('\x1b[0;32mI (298) app_init: ESP-IDF:          v5.3.1\x1b[0m\r\n');
    expect((await waiting).groups).toEqual(['v5.3.1']);
  });
});
