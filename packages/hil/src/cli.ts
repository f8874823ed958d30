/**
 * `pnpm hil [options]`: flags in the spirit of pytest-embedded (--rig, --port, --target,
 * --app-path, --build-dir), plus the run's own (--update-baseline, --shard, --list).
 */
import { Command, Option } from 'commander';
import { HilConfigError } from './config.ts';
import { runHil } from './runner.ts';

export function hilCommand(): Command {
  return new Command('hil')
    .description(
      'Build the firmware, flash it over BLE, verify the reboot on the serial console and track OTA timing against the baseline. Runs on the virtual rig unless --rig bench.',
    )
    .addOption(new Option('--rig <rig>', 'where to run').choices(['sim', 'bench']))
    .option('--target <chip>', 'ESP-IDF target, e.g. esp32, esp32s3, esp32c3')
    .option('--port <path>', 'bench: serial port of the board (default: found by USB id)')
    .option('--app-path <dir>', 'the ESP-IDF project of the device under test')
    .option('--build-dir <dir>', 'build directory of the selected rig')
    .option('--link-profile <name>', 'virtual rig: link profile, e.g. macos-esp32')
    .option('--ble-name <name>', 'bench: advertised name of the board')
    .option('--ble-address <addr>', 'bench: BLE address of the board')
    .option('--results-dir <dir>', 'where reports go (default hil-results)')
    .option('--baseline-file <file>', 'stored timing baseline (default hil-baseline.json)')
    .option('--update-baseline', 'record this run as the new timing baseline')
    .option('--shard <i/n>', 'run the i-th of n shards (split across bench hosts)')
    .option('--list', 'print the scenario ids and exit')
    .option('-t, --grep <pattern>', 'only scenarios whose name matches')
    .addHelpText(
      'after',
      '\nEnvironment overrides: HIL_RIG, HIL_TARGET, HIL_PORT, HIL_LINK_PROFILE, HIL_BLE_NAME, HIL_BLE_ADDRESS, HIL_APP_PATH, HIL_BUILD_DIR, HIL_RESULTS_DIR.\nExit status: 0 all scenarios passed, 1 a scenario failed or regressed, 2 bad configuration or usage.',
    );
}

export async function main(argv = process.argv): Promise<number> {
  const cmd = hilCommand();
  cmd.exitOverride();
  try {
    cmd.parse(argv);
  } catch (error) {
    const code = (error as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : 2;
  }
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
  const flags = Object.fromEntries(
    Object.entries({
      rig: str('rig'),
      target: str('target'),
      port: str('port'),
      appPath: str('appPath'),
      buildDir: str('buildDir'),
      linkProfile: str('linkProfile'),
      bleName: str('bleName'),
      bleAddress: str('bleAddress'),
      resultsDir: str('resultsDir'),
      baselineFile: str('baselineFile'),
    }).filter(([, v]) => v !== undefined),
  );
  try {
    return await runHil({
      cwd: process.env.INIT_CWD ?? process.cwd(),
      flags,
      updateBaseline: o.updateBaseline === true,
      ...(str('shard') ? { shard: str('shard') } : {}),
      ...(str('grep') ? { grep: str('grep') } : {}),
      list: o.list === true,
      color: process.stdout.isTTY === true && process.env.NO_COLOR === undefined,
      terminal: process.stdout.isTTY === true,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`hil: ${message}\n`);
    return error instanceof HilConfigError || /--shard/.test(message) ? 2 : 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then((code) => {
    process.exitCode = code;
  });
}
