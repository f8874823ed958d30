import { stat } from 'node:fs/promises';
import {
  hardResetSequence,
  ResetLinesUnsupportedError,
  runResetSequence,
} from '@esp-ble-ota/serial';
import { SerialPort } from 'serialport';
import { CliError } from '../errors.ts';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { fileKind } from '../files.ts';
import { type CliIo, line, type VirtualRigBoard } from '../io.ts';
import { openRadio, type Radio, simOptions } from '../rig.ts';

export interface MonitorOptions {
  baud: number;
  reset?: boolean;
  sim?: boolean;
  simProfile?: string;
  simChip?: string;
  /** Stop after this long (ms); default: until Ctrl-C or the port closes. */
  timeout?: number;
  /** Exit with 0 as soon as the console prints this text. */
  until?: string;
}

/** Longest console text kept for --until matching across chunk boundaries. */
const UNTIL_WINDOW = 4096;

export async function monitorCommand(
  port: string | undefined,
  options: MonitorOptions,
  io: CliIo,
): Promise<ExitCodeValue> {
  let radio: Radio | undefined;
  let path = port;
  const sim = simOptions(options);
  let board: VirtualRigBoard | undefined;
  if (sim !== undefined) {
    radio = await openRadio(io, sim);
    board = radio.rig?.boards[0];
    path ??= board?.serialPath;
    if (path === undefined) {
      await radio.close();
      throw new CliError(ExitCode.ERROR, 'the virtual rig has no board with a serial console');
    }
    line(io.stderr, `monitoring ${radio.rig?.boards[0]?.name ?? 'board'} on ${path} (virtual rig)`);
  }
  if (path === undefined) {
    throw new CliError(
      ExitCode.USAGE,
      'monitor needs a serial port (e.g. /dev/ttyUSB0), or --sim for the virtual rig',
    );
  }
  await checkSerialPath(path);
  const serial = new SerialPort({ path, baudRate: options.baud, autoOpen: false });
  try {
    await new Promise<void>((resolve, reject) => {
      serial.open((error) => (error ? reject(error) : resolve()));
    }).catch((error: unknown) => {
      throw openError(path, error);
    });
    if (board?.powerCycle !== undefined) {
      // The rig booted the board before the port was open, and a pty keeps nothing for a
      // reader that comes later: power it again so the boot shows, as plugging in a board does.
      const pumping = pump(serial, options, io);
      await board.powerCycle();
      return await pumping;
    }
    if (options.reset) {
      // esptool's hard reset: EN pulsed through RTS while DTR keeps GPIO0 released, so the
      // chip boots its app rather than the ROM download mode.
      await runResetSequence(serial, hardResetSequence(), path).catch((error: unknown) => {
        if (error instanceof ResetLinesUnsupportedError) {
          throw new CliError(ExitCode.USAGE, error.message, { cause: error });
        }
        throw error;
      });
    }
    return await pump(serial, options, io);
  } finally {
    if (serial.isOpen) await new Promise<void>((resolve) => serial.close(() => resolve()));
    await radio?.close();
  }
}

const PORT_HINT =
  "pass the board's serial port (e.g. /dev/ttyUSB0 or /dev/ttyACM0; ls /dev/ttyUSB* /dev/ttyACM*), or --sim for the virtual rig";

/**
 * A serial port is a character device; refuse anything else before opening it (serialport would
 * fail on a file with a bare ioctl error, and an open() of a FIFO blocks). A path stat cannot
 * see is left to the open, which names a missing port (and Windows' COM3 is no path).
 */
async function checkSerialPath(path: string): Promise<void> {
  const stats = await stat(path).catch(() => undefined);
  if (stats === undefined || stats.isCharacterDevice()) return;
  throw new CliError(
    ExitCode.USAGE,
    `${path} is ${fileKind(stats)}, not a serial port; ${PORT_HINT}`,
  );
}

function openError(path: string, error: unknown): CliError {
  const message = error instanceof Error ? error.message : String(error);
  if (/ENOTTY|Inappropriate ioctl/i.test(message)) {
    // A character device that is no terminal (/dev/null, /dev/zero): no baud rate to set.
    return new CliError(
      ExitCode.USAGE,
      `${path} is a character device but not a serial port (it takes no serial settings: ${message.replace(/^Error: /, '')}); ${PORT_HINT}`,
      { cause: error },
    );
  }
  if (/ENOENT|No such file/i.test(message)) {
    return new CliError(
      ExitCode.USAGE,
      `serial port not found: ${path}; is the board plugged in? (ls /dev/ttyUSB* /dev/ttyACM*)`,
      { cause: error },
    );
  }
  if (/EACCES|Permission denied/i.test(message)) {
    return new CliError(
      ExitCode.USAGE,
      `no permission to open ${path}; add your user to the dialout group (sudo usermod -aG dialout $USER) and log in again`,
      { cause: error },
    );
  }
  return new CliError(ExitCode.ERROR, `cannot open ${path}: ${message}`, { cause: error });
}

function pump(serial: SerialPort, options: MonitorOptions, io: CliIo): Promise<ExitCodeValue> {
  return new Promise<ExitCodeValue>((resolve) => {
    const decoder = new TextDecoder();
    let recent = '';
    let done = false;
    const finish = (code: ExitCodeValue) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      io.signal?.removeEventListener('abort', onAbort);
      serial.removeListener('data', onData);
      serial.removeListener('close', onClose);
      resolve(code);
    };
    const onData = (chunk: Buffer) => {
      const text = decoder.decode(chunk, { stream: true });
      io.stdout.write(text);
      if (options.until !== undefined) {
        recent = (recent + text).slice(-UNTIL_WINDOW);
        if (recent.includes(options.until)) finish(ExitCode.OK);
      }
    };
    const onClose = () => {
      line(io.stderr, 'serial port closed');
      finish(options.until === undefined ? ExitCode.OK : ExitCode.TIMEOUT);
    };
    const onAbort = () => finish(ExitCode.INTERRUPTED);
    const timer =
      options.timeout === undefined
        ? undefined
        : setTimeout(() => {
            if (options.until !== undefined) {
              line(io.stderr, `"${options.until}" did not appear within ${options.timeout} ms`);
              finish(ExitCode.TIMEOUT);
            } else finish(ExitCode.OK);
          }, options.timeout);
    serial.on('data', onData);
    serial.on('close', onClose);
    if (io.signal?.aborted) onAbort();
    else io.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
