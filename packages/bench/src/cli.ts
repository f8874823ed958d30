/**
 * `pnpm bench [--json [file]] [--profile name ...] [--image-bytes n]`: baseline against protocol
 * v2 for every link profile on the virtual rig, and the client stack's own speed (issue 7).
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FLASH_PROFILES, type FlashProfileName, getProfile, PROFILES } from '@esp-ble-ota/sim';
import { deflateImageInfo, MIB } from './images.ts';
import { renderPowerCuts, runPowerCuts } from './power-cuts.ts';
import { renderPreEraseCuts, runPreEraseCuts } from './power-cuts-pre-erase.ts';
import {
  benchResult,
  type ProfileMeasurement,
  renderTable,
  sensitivityResult,
  verificationResult,
} from './results.ts';
import { measureClientStack, runProfile, runSensitivity, runVerificationCost } from './run.ts';

const SENSITIVITY_PROFILE = 'linux-noble-esp32s3';

const USAGE = `usage: pnpm bench [--json [file]] [--profile <name>]... [--image-bytes <n>]
                  [--flash measured|datasheet] [--sensitivity <profile>|--no-sensitivity]
       pnpm bench --power-cuts sample|all [--power-cut-protocol v2|baseline] [--json [file]]
  --json [file]      write the figures as JSON to stdout, or to <file>, instead of the table
  --profile <name>   run only this link profile (repeatable); default: all of
                     ${PROFILES.map((p) => p.name).join(', ')}
  --image-bytes <n>  image size (default ${MIB}, 1 MiB)
  --flash <profile>  the device's flash: measured (default; LINK-MODEL.md's ESP32 measurement)
                     or datasheet (W25Q32JV typical)
  --sensitivity <p>  also run v2 on profile <p> under each combination of flash profile, ACL
                     buffers (the firmware's, IDF's 24) and max CE length (ignored, honoured)
                     (default ${SENSITIVITY_PROFILE}), and what a signature check costs there
                     (unsigned, RSA-3072, ECDSA P-256); --no-sensitivity skips both
  --power-cuts <s>   instead: a power cut at flash operations of one update (each skipped and
                     torn), and what the board boots afterwards. The cut flashes are replayed
                     from the journal of one clean update, and checked byte for byte against
                     cuts made through the rig. sample: 30 points x 2, all checked through the
                     rig; all: every operation x 2 (a v2 update has about 3800), 12 checked
  --power-cut-protocol  the update the cuts hit (default v2)
exit codes: 0 done (targets are reported, not enforced), 1 a run failed to start, 2 usage error,
  3 a power cut left a board unbootable or on another image, or the replay did not match the rig`;

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
    'power-cuts'?: string;
    'power-cut-protocol'?: string;
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
        'power-cuts': { type: 'string' },
        'power-cut-protocol': { type: 'string' },
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
  if (values['power-cuts'] !== undefined) {
    const sweep = values['power-cuts'];
    const protocol = values['power-cut-protocol'] ?? 'v2';
    if ((sweep !== 'sample' && sweep !== 'all') || (protocol !== 'v2' && protocol !== 'baseline')) {
      process.stderr.write(
        `--power-cuts is sample or all, --power-cut-protocol v2 or baseline; got ${sweep}, ${protocol}\n${USAGE}\n`,
      );
      return 2;
    }
    const report = await runPowerCuts({ protocol, sweep, log });
    // Issue 21: cuts in the background erase of the update slot, then an update.
    const backgroundErase = await runPreEraseCuts({ sweep, log });
    if (values.json) await emitJson({ ...report, backgroundErase }, jsonFile, log);
    else
      process.stdout.write(`${renderPowerCuts(report)}\n${renderPreEraseCuts(backgroundErase)}\n`);
    const preOk = backgroundErase.failures.length === 0 && backgroundErase.recordAhead.length === 0;
    return report.failures.length === 0 && report.replayMismatches.length === 0 && preOk ? 0 : 3;
  }
  const started = performance.now();
  // The client stack first, on a quiet machine: it is the one wall-clock figure.
  log('client stack, zero-latency link');
  const stack = await measureClientStack({ imageBytes, log });
  const measured: ProfileMeasurement[] = [];
  for (const profile of profiles) {
    measured.push(await runProfile(profile, { imageBytes, log, flash }));
  }
  const result = benchResult(imageBytes, measured, stack);
  result.deflateImage = await deflateImageInfo(imageBytes);
  if (sensitivity) {
    result.sensitivity = sensitivityResult(
      sensitivity.name,
      await runSensitivity(sensitivity, { imageBytes, log }),
    );
    result.verification = verificationResult(
      sensitivity.name,
      await runVerificationCost(sensitivity, { imageBytes, log }),
    );
  }
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (values.json) {
    await emitJson(result, jsonFile, log);
  } else {
    process.stdout.write(`${renderTable(result)}\n`);
  }
  return 0;
}

async function emitJson(value: unknown, file: string | undefined, log: (line: string) => void) {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  if (file) {
    await writeFile(resolve(process.env.INIT_CWD ?? process.cwd(), file), text);
    log(`wrote ${file}`);
  } else {
    process.stdout.write(text);
  }
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
