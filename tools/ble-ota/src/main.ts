import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_SLOT_SIZE, flashCommand } from './commands/flash.ts';
import { infoCommand } from './commands/info.ts';
import { type MonitorOptions, monitorCommand } from './commands/monitor.ts';
import { type ScanCommandOptions, scanCommand } from './commands/scan.ts';
import { keygenCommand, type SignOptions, signCommand } from './commands/sign.ts';
import { type WebOptions, webCommand } from './commands/web.ts';
import { exitCodeFor } from './errors.ts';
import { ExitCode, type ExitCodeValue, exitCodeHelp } from './exit-codes.ts';
import { type CliIo, json, line } from './io.ts';
import {
  parseAddress,
  parseBaud,
  parseCount,
  parseDuration,
  parsePort,
  parseSize,
} from './parse.ts';

const EXAMPLES = `
Examples:
  ble-ota info build/app.bin
  ble-ota keygen signing-key.pem
  ble-ota sign --key signing-key.pem build/app.bin
  ble-ota scan --sim
  ble-ota flash build/app.bin --name esp32
  ble-ota flash build/app.bin --sim --json
  ble-ota monitor /dev/ttyUSB0 --reset
  ble-ota web`;

/**
 * Run ble-ota with `argv` (without node and the script) and return the exit code. Everything
 * goes through `io`, so tests call this directly and read what a user would see.
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode: ExitCodeValue = ExitCode.OK;
  let wantsJson = false;
  const run =
    <A extends unknown[]>(body: (...args: A) => Promise<ExitCodeValue>) =>
    async (...args: A) => {
      exitCode = await body(...args);
    };

  const program = new Command('ble-ota')
    .description(
      'Update ESP32 firmware over BLE (protocol v2, or the baseline OTA protocol) and inspect app images.',
    )
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(s.startsWith('error:') ? s : `error: ${s}`),
    })
    .showHelpAfterError('(run ble-ota --help for usage)')
    .addHelpText('after', `${EXAMPLES}\n\n${exitCodeHelp()}`);

  /** --sim and the options that shape the rig it starts. */
  const withSim = (command: Command) =>
    command
      .addOption(
        new Option(
          '--sim',
          'run against the virtual rig (simulated ESP32 behind a virtual controller)',
        ),
      )
      .addOption(
        new Option(
          '--sim-profile <profile>',
          'link profile of the rig: linux-noble-esp32 (default), macos-esp32, android-esp32s3, ..., immediate',
        ),
      )
      .addOption(
        new Option(
          '--sim-chip <chip>',
          'chip of the simulated board (esp32, esp32s3, esp32c3, ...; one with a BLE radio)',
        ),
      )
      .addOption(
        new Option(
          '--sim-insecure',
          "a simulated board that takes any image (firmware built with signature checks off); by default it takes images signed by the rig's key (.ble-ota/rig-signing-key.pem) only",
        ),
      );
  const jsonOption = (what: string) => new Option('--json', what);

  withSim(program.command('scan'))
    .description('list nearby devices that offer the OTA service (name, address, RSSI)')
    .addOption(
      new Option('-t, --timeout <duration>', 'how long to scan (10, 10s, 500ms)')
        .default(5000, '5s')
        .argParser(parseDuration),
    )
    .option('--all', 'list every advertiser, not only OTA devices')
    .addOption(jsonOption('print a JSON array of devices'))
    .action(
      run(async (options: ScanCommandOptions) => {
        wantsJson = options.json ?? false;
        return scanCommand(options, io);
      }),
    );

  program
    .command('info')
    .description(
      'show what an ESP app image contains and whether its checksum, SHA-256 and signatures hold',
    )
    .argument('<image>', 'app image (.bin)')
    .addOption(jsonOption('print one JSON object'))
    .action(
      run(async (image: string, options: { json?: boolean }) => {
        wantsJson = options.json ?? false;
        return infoCommand(image, options, io);
      }),
    );

  program
    .command('sign')
    .description(
      'append a Secure Boot v2 signature sector to an app image (as espsecure.py sign_data --version 2)',
    )
    .argument('<image>', 'unsigned app image (.bin)')
    .addOption(
      new Option('-k, --key <pem>', 'signing key (RSA-3072 or ECDSA P-256 PEM); up to 3 times')
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value])
        .makeOptionMandatory(),
    )
    .option('-o, --output <file>', 'where the signed image goes (default: <image>-signed.bin)')
    .addOption(jsonOption('print one JSON object'))
    .action(
      run(async (image: string, options: SignOptions) => {
        wantsJson = options.json ?? false;
        return signCommand(image, options, io);
      }),
    );

  program
    .command('keygen')
    .description('make a new Secure Boot v2 signing key (never overwrites a file)')
    .argument('<file>', 'where the PEM key goes')
    .addOption(
      new Option('--scheme <scheme>', 'rsa3072 (every chip) or ecdsa256 (ESP32-C2, C6, H2, P4)')
        .choices(['rsa3072', 'ecdsa256'])
        .default('rsa3072'),
    )
    .addOption(jsonOption('print one JSON object'))
    .action(
      run(async (file: string, options: { scheme: 'rsa3072' | 'ecdsa256'; json?: boolean }) => {
        wantsJson = options.json ?? false;
        return keygenCommand(file, options, io);
      }),
    );

  withSim(program.command('flash'))
    .description(
      'check an app image, upload it to a device over BLE, and verify the device runs it',
    )
    .argument('<image>', 'app image (.bin)')
    .addOption(new Option('-n, --name <name>', 'device name to connect to').conflicts('address'))
    .addOption(
      new Option('-a, --address <address>', 'device address to connect to').argParser(parseAddress),
    )
    .addOption(
      new Option('-t, --timeout <duration>', 'how long to scan for the device')
        .default(10_000, '10s')
        .argParser(parseDuration),
    )
    .addOption(
      new Option(
        '--protocol <protocol>',
        'upload protocol: v2 (windowed, resumable, verified) when the device offers it, else the baseline',
      )
        .choices(['auto', 'v2', 'baseline'])
        .default('auto'),
    )
    .addOption(
      new Option(
        '--compression <when>',
        'protocol v2: deflate the image (auto: when the device inflates and it gets smaller)',
      )
        .choices(['auto', 'always', 'never'])
        .default('auto'),
    )
    .addOption(
      new Option(
        '--resume-attempts <n>',
        'protocol v2: reconnect and resume this many times after a lost link',
      )
        .default(3)
        .argParser(parseCount),
    )
    .addOption(
      new Option(
        '--slot-size <bytes>',
        `size of the device's OTA app slot (1M, 0x100000); default: with v2 the device checks its own; with the baseline protocol the size the device tells in v2 INFO, else ${DEFAULT_SLOT_SIZE / 1024 / 1024}M (the baseline partition table)`,
      ).argParser(parseSize),
    )
    .addOption(
      new Option(
        '-k, --key <pem>',
        'sign the image with this key before sending it (RSA-3072 or ECDSA P-256 PEM; up to 3 times); with --sim the board trusts .ble-ota/rig-signing-key.pem',
      ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .option(
      '--allow-downgrade',
      "protocol v2: install an older app version than the running one, where the device allows it (CONFIG_BLE_OTA_ALLOW_DOWNGRADE); a secure_version below the device's minimum is refused whatever this says",
    )
    .option(
      '--base <file>',
      'protocol v2: an image the device may run; if it runs exactly this one (and takes patches) a patch against it goes out instead of the image',
    )
    .option(
      '--no-image-store',
      'do not look for the running image among the images flashed from here, nor keep this one ($BLE_OTA_IMAGE_STORE, else ~/.cache/ble-ota/images)',
    )
    .option('--skip-chip-check', "do not compare the image's chip with the device's model")
    .option('--no-verify', 'do not reconnect after the restart to check the running version')
    .addOption(
      new Option('--verify-timeout <duration>', 'how long to wait for the device to come back')
        .default(30_000, '30s')
        .argParser(parseDuration),
    )
    .addOption(
      new Option(
        '--step-timeout <duration>',
        'time limit of each protocol step: a write, an answer (REQUEST_ACK, DONE_ACK; v2 INFO, BEGIN_RSP, WINDOW_ACK, END_RSP), the restart',
      ).argParser(parseDuration),
    )
    .addOption(
      new Option(
        '--baseline-writes',
        "send REQUEST and DONE as Write Commands, as the baseline's Python client does (implies --protocol baseline)",
      ).implies({ protocol: 'baseline' }),
    )
    .addOption(jsonOption('print machine-readable events, one JSON object per line'))
    .action(
      run(
        async (
          image: string,
          options: {
            name?: string;
            address?: string;
            timeout: number;
            slotSize?: number;
            protocol: 'auto' | 'v2' | 'baseline';
            compression: 'auto' | 'always' | 'never';
            resumeAttempts: number;
            skipChipCheck?: boolean;
            verify: boolean;
            verifyTimeout: number;
            baselineWrites?: boolean;
            stepTimeout?: number;
            sim?: boolean;
            simProfile?: string;
            simChip?: string;
            json?: boolean;
          },
        ) => {
          wantsJson = options.json ?? false;
          return flashCommand(
            image,
            {
              ...options,
              chipCheck: !(options.skipChipCheck ?? false),
            },
            io,
          );
        },
      ),
    );

  withSim(program.command('monitor'))
    .description("print a board's serial console")
    .argument('[port]', 'serial port (/dev/ttyUSB0); optional with --sim')
    .addOption(new Option('-b, --baud <rate>', 'baud rate').default(115_200).argParser(parseBaud))
    .option(
      '--reset',
      'reset the board through DTR/RTS after opening the port (with --sim the board is always power-cycled once the port is open)',
    )
    .addOption(new Option('--timeout <duration>', 'stop after this long').argParser(parseDuration))
    .option('--until <text>', 'exit as soon as the console prints this text (exit 7 on --timeout)')
    .action(
      run(async (port: string | undefined, options: MonitorOptions) =>
        monitorCommand(port, options, io),
      ),
    );

  program
    .command('web')
    .description(
      'serve the browser page that updates a device over Web Bluetooth, on localhost, and print its URL',
    )
    .addOption(
      new Option('-p, --port <port>', 'port to listen on (the next free one if taken; 0: any)')
        .default(8088)
        .argParser(parsePort),
    )
    .addOption(
      new Option(
        '--host <host>',
        'address to listen on; Web Bluetooth needs localhost or https',
      ).default('127.0.0.1'),
    )
    .action(run(async (options: WebOptions) => webCommand(options, io)));

  // Scripts call subcommands; each one's --help carries the exit codes too.
  for (const command of program.commands) command.addHelpText('after', `\n${exitCodeHelp()}`);

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end through here too, with exit code 0.
      return error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    const code = exitCodeFor(error);
    const message = error instanceof Error ? error.message : String(error);
    if (wantsJson) {
      json(io.stdout, {
        event: 'error',
        exitCode: code,
        code: (error as { code?: unknown }).code ?? null,
        message,
      });
    }
    line(io.stderr, `error: ${message}`);
    if (code === ExitCode.ERROR && error instanceof Error && error.stack) {
      line(io.stderr, error.stack);
    }
    return code;
  }
}
