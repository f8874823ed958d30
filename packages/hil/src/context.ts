/**
 * What the runner hands to the scenario processes (vitest runs hil-tests/ in workers): the rig,
 * the images it built, where results go. Passed as a JSON file named by HIL_CONTEXT.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { RigName } from './model.ts';
import type { PreparedImages } from './prepare.ts';

export interface RunContext {
  rig: RigName;
  target: string;
  /** Virtual rig: its link profile. */
  linkProfile?: string;
  /** Virtual rig: the host build with the device program. */
  simBuildDir: string;
  /** Bench: the board's serial port. */
  serialPort?: string;
  bleName: string;
  bleAddress?: string;
  images: PreparedImages;
  resultsDir: string;
  scenariosDir: string;
  logsDir: string;
}

export const CONTEXT_ENV = 'HIL_CONTEXT';

export async function writeRunContext(file: string, ctx: RunContext): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(ctx, null, 2)}\n`);
}

let cached: RunContext | undefined;

export async function readRunContext(env: NodeJS.ProcessEnv = process.env): Promise<RunContext> {
  if (cached) return cached;
  const file = env[CONTEXT_ENV];
  if (!file) {
    throw new Error(
      `${CONTEXT_ENV} is not set: the scenarios in hil-tests/ run under the HIL runner, start them with \`pnpm hil\` (it builds the firmware first)`,
    );
  }
  cached = JSON.parse(await readFile(file, 'utf8')) as RunContext;
  return cached;
}
