import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import manifest from '../package.json' with { type: 'json' };

const SRC = dirname(fileURLToPath(import.meta.url));
const NODE_BUILTINS = new Set(builtinModules);

/** Every module `entry` reaches through relative imports, with the bare specifiers each imports. */
function importGraph(entry: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const pending = [entry];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (graph.has(file)) continue;
    const text = readFileSync(file, 'utf8');
    const bare: string[] = [];
    // `import ... from 'x'`, `export ... from 'x'`, `import 'x'`; type-only imports vanish
    // from the bundle, so they do not count.
    for (const m of text.matchAll(/^(import|export)(\s+type)?[^;]*?from\s+'([^']+)'/gms)) {
      const [, , typeOnly, spec] = m;
      if (spec === undefined || typeOnly !== undefined) continue;
      if (spec.startsWith('.')) pending.push(resolve(dirname(file), spec));
      else bare.push(spec);
    }
    graph.set(file, bare);
  }
  return graph;
}

describe('the browser entry', () => {
  const graph = importGraph(resolve(SRC, 'browser.ts'));

  it('imports no Node module, directly or through another module', () => {
    const nodeImports = [...graph].flatMap(([file, specs]) =>
      specs
        .filter((s) => s.startsWith('node:') || NODE_BUILTINS.has(s))
        .map((s) => `${file.slice(SRC.length + 1)}: ${s}`),
    );
    expect(nodeImports).toEqual([]);
    expect(graph.has(resolve(SRC, 'image/signing.ts'))).toBe(false);
  });

  it('imports only packages it declares as dependencies', () => {
    const declared = Object.keys(manifest.dependencies);
    const used = new Set(
      [...graph.values()].flat().map((s) => s.replace(/^(@[^/]+\/[^/]+|[^/]+).*$/, '$1')),
    );
    expect([...used].filter((p) => !declared.includes(p))).toEqual([]);
    // The walk reached the upload session and what it deflates with.
    expect(graph.has(resolve(SRC, 'v2/uploader.ts'))).toBe(true);
    expect(used).toContain('pako');
  });

  it('is what a bundler for a page gets, and the Node entry adds signing to it', () => {
    expect(manifest.exports['.'].browser).toBe('./src/browser.ts');
    expect(manifest.exports['./browser']).toBe('./src/browser.ts');
    expect(readFileSync(resolve(SRC, 'index.ts'), 'utf8')).toMatch(/from '\.\/image\/signing\.ts'/);
  });
});
