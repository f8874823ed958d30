import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rigSigningKey } from './signing-key.ts';

describe("the rig's signing key", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('is made once, private to its owner, and the same for every process that asks at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rig-key-'));
    dirs.push(dir);
    const path = join(dir, 'nested', 'rig-signing-key.pem');
    const keys = await Promise.all([rigSigningKey(path), rigSigningKey(path), rigSigningKey(path)]);
    expect(new Set(keys.map((k) => k.digest)).size).toBe(1);
    expect(keys[0]?.digest).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readFile(path, 'utf8')).toMatch(/BEGIN EC PRIVATE KEY/);
    expect((await rigSigningKey(path)).digest).toBe(keys[0]?.digest);
  });
});
