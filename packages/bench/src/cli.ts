/**
 * `pnpm bench [--json [file]] [--profile name ...] [--image-bytes n]`: baseline against protocol
 * v2 for every link profile on the virtual rig, and the client stack's own speed (issue 7).
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FLASH_PROFILES, type FlashProfileName, getProfile, PROFILES } from '@esp-ble-ota/sim';
import { MIB } from './images.ts';
import { benchResult, type ProfileMeasurement, renderTable, sensitivityResult } from './results.ts';
import { measureClientStack, runProfile, runSensitivity } from './run.ts';

const SENSITIVITY_PROFILE = 'linux-noble-esp32s3';

const USAGE = `usage: pnpm bench [--json [file]] [--profile <name>]... [--image-bytes <n>]
                  [--flash measured|datasheet] [--sensitivity <profile>|--no-sensitivity]
  --json [file]      write the figures as JSON to stdout, or to <file>, instead of the table
  --profile <name>   run only this link profile (repeatable); default: all of
                     ${PROFILES.map((p) => p.name).join(', ')}
  --image-bytes <n>  image size (default ${MIB}, 1 MiB)
  --flash <profile>  the device's flash: measured (default; LINK-MODEL.md's ESP32 measurement)
                     or datasheet (W25Q32JV typical)
  --sensitivity <p>  also run v2 on profile <p> under each combination of flash profile, ACL
                     buffers (the firmware's, IDF's 24) and max CE length (ignored, honoured)
                     (default ${SENSITIVITY_PROFILE}); --no-sensitivity skips it
exit codes: 0 done (targets are reported, not enforced), 1 a run failed to start, 2 usage error`;

async function main(argv: string[]): Promise<number> {
  // `--json` takes an optional file: a following word that is not an option.
  const jsonAt = argv.indexOf('--json');
  let jsonFile: string | undefined;
  if (jsonAt >= 0 && argv[jsonAt + 1] !== undefined && !argv[jsonAt + 1]?.startsWith('--')) {
    jsonFile = argv[jsonAt + 1];
    argv = [...argv.slice(0, jsonAt + 1), ...argv.slice(jsonAt + 2)];
  }
  let values: {
    json?: boolean;
    profile?: string[];
    'image-bytes'?: string;
    flash?: string;
    sensitivity?: string;
    'no-sensitivity'?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        profile: { type: 'string', multiple: true },
        'image-bytes': { type: 'string' },
        flash: { type: 'string' },
        sensitivity: { type: 'string' },
        'no-sensitivity': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const imageBytes = values['image-bytes'] === undefined ? MIB : Number(values['image-bytes']);
  if (!Number.isInteger(imageBytes) || imageBytes <= 0) {
    process.stderr.write(
      `--image-bytes must be a positive integer, got ${values['image-bytes']}\n`,
    );
    return 2;
  }
  const flash = (values.flash ?? 'measured') as FlashProfileName;
  if (!(flash in FLASH_PROFILES)) {
    process.stderr.write(
      `--flash must be one of ${Object.keys(FLASH_PROFILES).join(', ')}, got ${values.flash}\n`,
    );
    return 2;
  }
  let profiles = PROFILES;
  let sensitivity: (typeof PROFILES)[number] | undefined;
  try {
    if (values.profile) profiles = values.profile.map(getProfile);
    if (!values['no-sensitivity'])
      sensitivity = getProfile(values.sensitivity ?? SENSITIVITY_PROFILE);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  const started = performance.now();
  // The client stack first, on a quiet machine: it is the one wall-clock figure.
  log('client stack, zero-latency link');
  const stack = await measureClientStack({ imageBytes, log });
  const measured: ProfileMeasurement[] = [];
  for (const profile of profiles) {
    measured.push(await runProfile(profile, { imageBytes, log, flash }));
  }
  const result = benchResult(imageBytes, measured, stack);
  if (sensitivity) {
    result.sensitivity = sensitivityResult(
      sensitivity.name,
      await runSensitivity(sensitivity, { imageBytes, log }),
    );
  }
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (values.json) {
    const text = `${JSON.stringify(result, null, 2)}\n`;
    if (jsonFile) {
      await writeFile(resolve(process.env.INIT_CWD ?? process.cwd(), jsonFile), text);
      log(`wrote ${jsonFile}`);
    } else {
      process.stdout.write(text);
    }
  } else {
    process.stdout.write(`${renderTable(result)}\n`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
