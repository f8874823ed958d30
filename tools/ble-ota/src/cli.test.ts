import { buildAppImage, parseAppImage } from '@esp-ble-ota/protocol';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import {
  makeFifo,
  run,
  runNearFifo,
  tmp,
  writeBytes,
  writeImage,
  writeSparse,
} from './test/harness.ts';

const IMAGE = { chip: 'esp32', project: 'blink', version: '2.1.0' } as const;

/** An image whose only fault is its checksum byte (built without the SHA-256 that covers it). */
function badChecksumImage(): string {
  const bytes = buildAppImage({ ...IMAGE, hashAppended: false });
  const info = parseAppImage(bytes);
  bytes[info.checksum.offset] = (bytes[info.checksum.offset] ?? 0) ^ 0x5a;
  return writeBytes('bad-checksum.bin', bytes);
}

/** An image whose checksum is right but whose appended SHA-256 is not. */
function badHashImage(): string {
  const bytes = buildAppImage(IMAGE);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x01;
  return writeBytes('bad-hash.bin', bytes);
}

describe('ble-ota info', () => {
  const options = { ...IMAGE, chip: 'esp32s3', idfVersion: 'v5.3.1', secureVersion: 3 } as const;

  it('prints what the inspector finds, as text', async () => {
    const result = await run(['info', writeImage('info.bin', options)]);
    expect(result.code).toBe(ExitCode.OK);
    expect(result.stdout).toMatch(/Chip:\s+ESP32-S3 \(chip id 9\)/);
    expect(result.stdout).toMatch(/Project:\s+blink/);
    expect(result.stdout).toMatch(/Version:\s+2\.1\.0/);
    expect(result.stdout).toMatch(/ESP-IDF:\s+v5\.3\.1/);
    expect(result.stdout).toMatch(/Checksum:\s+valid/);
    expect(result.stdout).toMatch(/Hash:\s+valid/);
  });

  it('prints the promised JSON fields with --json', async () => {
    const result = await run(['info', writeImage('info.bin', options), '--json']);
    expect(result.code).toBe(ExitCode.OK);
    const info = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(info).toMatchObject({
      chip: 'ESP32-S3',
      chipId: 9,
      project: 'blink',
      version: '2.1.0',
      idfVersion: 'v5.3.1',
      secureVersion: 3,
      size: buildAppImage(options).length,
      checksumValid: true,
      hashValid: true,
    });
  });

  it('shows a corrupt image and exits with IMAGE_INVALID', async () => {
    const checksum = await run(['info', badChecksumImage(), '--json']);
    expect(checksum.code).toBe(ExitCode.IMAGE_INVALID);
    expect(JSON.parse(checksum.stdout)).toMatchObject({ checksumValid: false, hashValid: null });
    expect(checksum.stderr).toMatch(/corrupt \(checksum mismatch\)/);

    const hash = await run(['info', badHashImage()]);
    expect(hash.code).toBe(ExitCode.IMAGE_INVALID);
    expect(hash.stdout).toMatch(/Hash:\s+INVALID/);
    expect(hash.stderr).toMatch(/corrupt \(SHA-256 mismatch\)/);
  });
});

describe('bad input is refused before any radio traffic', () => {
  const cases: Array<{ what: string; path: () => string; code: number; message: RegExp }> = [
    {
      what: 'a missing file',
      path: () => `${tmp}/does-not-exist.bin`,
      code: ExitCode.USAGE,
      message: /image file not found: .*does-not-exist\.bin; pass the app image/,
    },
    {
      what: 'a directory',
      path: () => tmp,
      code: ExitCode.USAGE,
      message: /is a directory, not an image file/,
    },
    {
      what: 'a file that is not an ESP image',
      path: () => writeBytes('elf.bin', Uint8Array.of(0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0)),
      code: ExitCode.IMAGE_INVALID,
      message: /not an ESP app image: first byte is 0x7f, expected 0xe9/,
    },
    {
      what: 'a truncated image',
      path: () => writeBytes('short.bin', buildAppImage(IMAGE).subarray(0, 100)),
      code: ExitCode.IMAGE_INVALID,
      message: /truncated|cut short/,
    },
    {
      what: 'an image with a bad checksum',
      path: badChecksumImage,
      code: ExitCode.IMAGE_INVALID,
      message:
        /is corrupt: its checksum byte is 0x[0-9a-f]{2} but the segments sum to 0x[0-9a-f]{2}/,
    },
    {
      what: 'an image with a bad SHA-256',
      path: badHashImage,
      code: ExitCode.IMAGE_INVALID,
      message: /is corrupt: its appended SHA-256 \([0-9a-f]{64}\) does not match its content/,
    },
  ];

  for (const c of cases) {
    it(`flash refuses ${c.what}`, async () => {
      for (const extra of [[], ['--sim'], ['--json']]) {
        const result = await run(['flash', c.path(), ...extra]);
        expect(result.code).toBe(c.code);
        expect(result.stderr).toMatch(c.message);
        expect(result.radioOpened).toBe(0);
      }
    });
  }

  it.skipIf(process.platform === 'win32')(
    'info, flash and sign refuse a FIFO at once, without opening it',
    async () => {
      const fifo = makeFifo('image.fifo');
      for (const argv of [
        ['info', fifo],
        ['flash', fifo],
        ['flash', fifo, '--sim', '--json'],
        ['sign', fifo, '--key', `${tmp}/unused.pem`],
      ]) {
        const result = await runNearFifo(argv, fifo);
        expect(result.blocked, `${argv.join(' ')} blocked on the FIFO`).toBe(false);
        expect(result.code).toBe(ExitCode.USAGE);
        expect(result.stderr).toContain(
          `error: ${fifo} is a FIFO (named pipe), not a regular file; pass the app image that ESP-IDF builds (build/<project>.bin)`,
        );
        expect(result.radioOpened).toBe(0);
      }
    },
  );

  it('refuses a file too large to be an app image without reading it, over 2 GiB too', async () => {
    const cases = [
      [writeSparse('huge.bin', 3 * 2 ** 30), '3.00 GiB'],
      [writeSparse('just-too-large.bin', 128 * 2 ** 20 + 1), '128.00 MiB'],
    ] as const;
    for (const [path, size] of cases) {
      for (const argv of [
        ['info', path],
        ['flash', path, '--sim'],
      ]) {
        const result = await run(argv);
        expect(result.code).toBe(ExitCode.IMAGE_INVALID);
        expect(result.stderr).toBe(
          `error: ${path} is ${size}, too large to be an ESP app image: one is at most 128 MiB (the largest flash its header can name); pass the app image that ESP-IDF builds (build/<project>.bin)\n`,
        );
        expect(result.radioOpened).toBe(0);
      }
    }
  });

  it('flash --json reports the refusal as an error event', async () => {
    const result = await run(['flash', badHashImage(), '--json']);
    const events = result.out.jsonLines();
    expect(events.at(-1)).toMatchObject({
      event: 'error',
      exitCode: ExitCode.IMAGE_INVALID,
      message: expect.stringMatching(/SHA-256/),
    });
  });
});

describe('usage errors', () => {
  const image = () => writeImage('usage.bin', IMAGE);
  const cases: Array<{ what: string; argv: () => string[]; message: RegExp }> = [
    { what: 'no command', argv: () => [], message: /Usage: ble-ota/ },
    { what: 'an unknown command', argv: () => ['erase'], message: /unknown command 'erase'/ },
    {
      what: 'an unknown option',
      argv: () => ['scan', '--fast'],
      message: /unknown option '--fast'/,
    },
    {
      what: 'a missing image argument',
      argv: () => ['flash'],
      message: /missing required argument 'image'/,
    },
    {
      what: 'a bad duration',
      argv: () => ['scan', '--timeout', 'soon'],
      message: /"soon" is not a duration; use e\.g\. 10, 10s, 500ms or 2m/,
    },
    {
      what: 'a duration past the longest timer (it would fire at once)',
      argv: () => ['scan', '--timeout', '2147484s'],
      message:
        /"2147484s" is longer than the longest wait this tool can time \(2147483647 ms, about 24\.8 days\)/,
    },
    {
      what: 'a step timeout past the longest timer',
      argv: () => ['flash', image(), '--step-timeout', '40000m'],
      message: /"40000m" is longer than the longest wait/,
    },
    {
      what: 'a bad address',
      argv: () => ['flash', image(), '--address', 'esp32'],
      message: /"esp32" is not a Bluetooth address/,
    },
    {
      what: '--name together with --address',
      argv: () => ['flash', image(), '--name', 'esp32', '--address', '24:0a:c4:00:00:01'],
      message: /cannot be used with option '-a, --address/,
    },
    {
      what: 'a bad slot size',
      argv: () => ['flash', image(), '--slot-size', 'big'],
      message: /"big" is not a size/,
    },
    {
      what: 'an unknown protocol',
      argv: () => ['flash', image(), '--protocol', 'v3'],
      message: /argument 'v3' is invalid\. Allowed choices are auto, v2, baseline/,
    },
    {
      what: 'a negative resume count',
      argv: () => ['flash', image(), '--resume-attempts', '-1'],
      message: /"-1" is not a count; use a whole number such as 0 or 3/,
    },
    {
      what: '--baseline-writes with --protocol v2',
      argv: () => ['flash', image(), '--protocol', 'v2', '--baseline-writes'],
      message:
        /--baseline-writes changes how the baseline protocol writes; it cannot go with --protocol v2/,
    },
    {
      what: 'a bad baud rate',
      argv: () => ['monitor', '/dev/ttyUSB0', '--baud', 'fast'],
      message: /not a baud rate/,
    },
    {
      what: 'monitor without a port',
      argv: () => ['monitor'],
      message: /monitor needs a serial port/,
    },
  ];
  for (const c of cases) {
    it(`rejects ${c.what} with exit code 2`, async () => {
      const result = await run(c.argv());
      expect(result.code).toBe(ExitCode.USAGE);
      expect(result.stderr).toMatch(c.message);
      expect(result.radioOpened).toBe(0);
    });
  }

  it('documents every exit code in --help, also of each command', async () => {
    for (const argv of [['--help'], ['flash', '--help'], ['scan', '--help'], ['info', '--help']]) {
      const result = await run(argv);
      expect(result.code).toBe(ExitCode.OK);
      for (const [name, code] of Object.entries(ExitCode)) {
        expect(result.stdout, `${argv.join(' ')}: ${name}`).toMatch(
          new RegExp(`^\\s+${code}  \\S`, 'm'),
        );
      }
      expect(result.stdout).toMatch(
        /^\s+2 {2}usage error \(.*an image, key or port path that names no file or the wrong kind; an encrypted key\)$/m,
      );
      expect(result.stdout).toMatch(
        /^\s+3 {2}image invalid \(not an ESP app image or larger than one can be/m,
      );
    }
  });
});

describe('adapter problems', () => {
  it('maps a missing Bluetooth adapter to exit code 8 with the hint', async () => {
    const { BluetoothUnavailableError, describeLoadError } = await import('@esp-ble-ota/noble');
    const { main } = await import('./main.ts');
    const { Sink } = await import('./test/harness.ts');
    const stdout = new Sink();
    const stderr = new Sink();
    const code = await main(['scan'], {
      stdout,
      stderr,
      loadNoble: async () => {
        throw new BluetoothUnavailableError(describeLoadError({ code: 'EAFNOSUPPORT' }));
      },
    });
    expect(code).toBe(ExitCode.NO_ADAPTER);
    expect(stderr.text).toMatch(/no Bluetooth adapter: .*cap_net_raw,cap_net_admin/);
  });
});
