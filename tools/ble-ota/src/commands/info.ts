import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { imageJson, imageText, loadImage, signatureProblem } from '../image.ts';
import { type CliIo, json, line } from '../io.ts';

export interface InfoOptions {
  json?: boolean;
}

/**
 * Print what the image inspector finds. A readable image with a wrong checksum or hash is
 * printed in full, then exits with IMAGE_INVALID so scripts can use `info` as a check.
 */
export async function infoCommand(
  path: string,
  options: InfoOptions,
  io: CliIo,
): Promise<ExitCodeValue> {
  const image = await loadImage(path);
  if (options.json) json(io.stdout, imageJson(image));
  else io.stdout.write(imageText(image));
  const { info } = image;
  if (!info.checksumValid || info.hashValid === false) {
    line(
      io.stderr,
      `error: ${path} is corrupt (${!info.checksumValid ? 'checksum' : 'SHA-256'} mismatch); the bootloader would reject it`,
    );
    return ExitCode.IMAGE_INVALID;
  }
  const bad = image.signatures?.blocks.find((b) => signatureProblem(b) !== undefined);
  if (bad !== undefined) {
    line(
      io.stderr,
      `error: ${path}: signature ${bad.index + 1} is invalid: ${signatureProblem(bad)}; a device that checks signatures refuses it`,
    );
    return ExitCode.IMAGE_INVALID;
  }
  return ExitCode.OK;
}
