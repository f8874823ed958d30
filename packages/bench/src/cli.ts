/**
 * `pnpm bench [--json [file]] [--profile name ...] [--image-bytes n]`: baseline against protocol
 * v2 for every link profile on the virtual rig, and the client stack's own speed (issue 7).
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { getProfile, PROFILES } from '@esp-ble-ota/sim';
import { MIB } from './images.ts';
import { benchResult, type ProfileMeasurement, renderTable } from './results.ts';
import { measureClientStack, runProfile } from './run.ts';

const USAGE = `usage: pnpm bench [--json [file]] [--profile <name>]... [--image-bytes <n>]
  --json [file]      write the figures as JSON to stdout, or to <file>, instead of the table
  --profile <name>   run only this link profile (repeatable); default: all of
                     ${PROFILES.map((p) => p.name).join(', ')}
  --image-bytes <n>  image size (default ${MIB}, 1 MiB)
exit codes: 0 done (targets are reported, not enforced), 1 a run failed to start, 2 usage error`;

async function main(argv: string[]): Promise<number> {
  // `--json` takes an optional file: a following word that is not an option.
  const jsonAt = argv.indexOf('--json');
  let jsonFile: string | undefined;
  if (jsonAt >= 0 && argv[jsonAt + 1] !== undefined && !argv[jsonAt + 1]?.startsWith('--')) {
    jsonFile = argv[jsonAt + 1];
    argv = [...argv.slice(0, jsonAt + 1), ...argv.slice(jsonAt + 2)];
  }
  let values: { json?: boolean; profile?: string[]; 'image-bytes'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        profile: { type: 'string', multiple: true },
        'image-bytes': { type: 'string' },
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
  let profiles = PROFILES;
  try {
    if (values.profile) profiles = values.profile.map(getProfile);
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
  for (const profile of profiles) measured.push(await runProfile(profile, { imageBytes, log }));
  const result = benchResult(imageBytes, measured, stack);
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
