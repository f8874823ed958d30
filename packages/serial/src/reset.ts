// Resetting an ESP32 through the USB-UART bridge's modem lines, as esptool does.
//
// On the common auto-reset circuit (ESP32-DevKitC and most boards since), RTS drives EN and
// DTR drives IO0 through two cross-coupled transistors. In serialport's set(), `true` means
// the line is *asserted* (its voltage is low), which is what pyserial's setRTS(True) means:
//   rts asserted, dtr released  -> EN low: the chip is held in reset
//   dtr asserted, rts released  -> IO0 low: the ROM enters the serial download mode at boot
//   both asserted or both released -> EN high, IO0 high: the chip runs
// serialport's set() writes both lines at once (TIOCMSET), and fills in `true` for a line that
// is not given, so every step below names both lines; a step that changes one line repeats
// the other's current state, as esptool's own _setRTS() re-sends DTR.

/** Set both modem lines, or wait. */
export type ResetStep = { dtr: boolean; rts: boolean } | { waitMs: number };

/** Modem line state; `true` = asserted. */
export interface LineState {
  dtr: boolean;
  rts: boolean;
}

/**
 * The lines right after opening a tty on Linux and macOS: the kernel asserts DTR and RTS
 * (both asserted = the chip runs on the auto-reset circuit).
 */
export const LINES_AFTER_OPEN: LineState = { dtr: true, rts: true };

/** esptool's DEFAULT_RESET_DELAY: how long IO0 stays low after EN is released. */
export const DEFAULT_RESET_DELAY_MS = 50;

/**
 * Turns a reset sequence written in esptool's `custom_reset_sequence` notation into steps:
 * `D0`/`D1` set DTR, `R0`/`R1` set RTS, `U0,1` sets both (DTR,RTS), `W0.1` waits seconds,
 * separated by `|`. A command that changes one line keeps the other line's current state.
 */
export function parseResetSequence(
  sequence: string,
  initial: LineState = LINES_AFTER_OPEN,
): ResetStep[] {
  let { dtr, rts } = initial;
  return sequence.split('|').map((raw): ResetStep => {
    const cmd = raw.trim();
    const arg = cmd.slice(1);
    const bit = (v: string) => {
      if (v !== '0' && v !== '1') {
        throw new Error(`reset sequence "${sequence}": "${cmd}" needs 0 or 1, e.g. R1|W0.1|R0`);
      }
      return v === '1';
    };
    switch (cmd[0]) {
      case 'D':
        dtr = bit(arg);
        return { dtr, rts };
      case 'R':
        rts = bit(arg);
        return { dtr, rts };
      case 'U': {
        const [d, r] = arg.split(',');
        dtr = bit(d ?? '');
        rts = bit(r ?? '');
        return { dtr, rts };
      }
      case 'W': {
        const seconds = Number(arg);
        if (!Number.isFinite(seconds) || seconds < 0) {
          throw new Error(
            `reset sequence "${sequence}": "${cmd}" needs a delay in seconds, e.g. W0.1`,
          );
        }
        return { waitMs: Math.round(seconds * 1000) };
      }
      default:
        throw new Error(
          `reset sequence "${sequence}": unknown command "${cmd}" (use D, R, U or W as esptool does)`,
        );
    }
  });
}

/**
 * esptool's HardReset: pulse EN low while IO0 is released, so the chip boots its app.
 * `usb` is for Espressif's USB-Serial/JTAG, which needs longer pulses to see the edges.
 * DTR is released first: with both lines asserted (as after open) the transistors cancel
 * and an RTS pulse alone would not reach EN.
 */
export function hardResetSequence(opts: { usb?: boolean; initial?: LineState } = {}): ResetStep[] {
  const seq = opts.usb ? 'D0|R1|W0.2|R0|W0.2' : 'D0|R1|W0.1|R0';
  return parseResetSequence(seq, opts.initial);
}

/**
 * esptool's ClassicReset: EN low, then IO0 low while EN rises, so the ROM starts the serial
 * download mode ("into bootloader"); IO0 is released afterwards. Each pyserial call of
 * esptool is one step, so the lines pass through the same intermediate states.
 */
export function classicResetSequence(
  opts: { resetDelayMs?: number; initial?: LineState } = {},
): ResetStep[] {
  const delay = (opts.resetDelayMs ?? DEFAULT_RESET_DELAY_MS) / 1000;
  return parseResetSequence(`D0|R1|W0.1|D1|R0|W${delay}|D0`, opts.initial);
}

/** esptool's USBJTAGSerialReset: into download mode over Espressif's USB-Serial/JTAG. */
export function usbJtagSerialResetSequence(opts: { initial?: LineState } = {}): ResetStep[] {
  // Through (1,1) rather than (0,0) on the way into reset, as esptool does.
  return parseResetSequence('R0|D0|W0.1|D1|R0|W0.1|R1|D0|R1|W0.1|D0|R0', opts.initial);
}

/** The part of a serial port that a reset needs: serialport's set(). */
export interface ModemLines {
  set(options: { dtr: boolean; rts: boolean }, callback: (err: Error | null) => void): void;
}

/** The port cannot drive DTR/RTS: a pseudo-terminal, or a bridge without modem lines. */
export class ResetLinesUnsupportedError extends Error {
  constructor(path: string, cause: Error) {
    super(
      `cannot reset the board through ${path}: the port does not support setting DTR/RTS (${cause.message}). ` +
        'A pseudo-terminal (the virtual rig) has no modem lines: reset the simulated device through the rig; ' +
        'on a bench, press the board’s EN/RST button or use a board with the auto-reset circuit.',
      { cause },
    );
    this.name = 'ResetLinesUnsupportedError';
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Plays a reset sequence on a port; the last state set stays on the lines. */
export async function runResetSequence(
  port: ModemLines,
  steps: readonly ResetStep[],
  path = 'the serial port',
): Promise<void> {
  for (const step of steps) {
    if ('waitMs' in step) {
      await sleep(step.waitMs);
      continue;
    }
    await new Promise<void>((resolve, reject) => {
      port.set({ dtr: step.dtr, rts: step.rts }, (err) => {
        if (!err) resolve();
        else if (/inappropriate ioctl|ENOTTY|EINVAL|not supported/i.test(err.message)) {
          reject(new ResetLinesUnsupportedError(path, err));
        } else reject(err);
      });
    });
  }
}
