import { describe, expect, it } from 'vitest';
import { cutPoints, renderPowerCuts } from './power-cuts.ts';

describe('power-cut sweeps', () => {
  it('cut at every operation, or at the first, the last and an even spread', () => {
    expect(cutPoints(5, 'all')).toEqual([1, 2, 3, 4, 5]);
    const sample = cutPoints(3805, 'sample');
    expect(sample.slice(0, 3)).toEqual([1, 2, 3]);
    expect(sample.slice(-3)).toEqual([3803, 3804, 3805]);
    expect(sample).toHaveLength(30);
    expect(new Set(sample).size).toBe(sample.length);
    expect([...sample].sort((a, b) => a - b)).toEqual(sample);
  });

  it('says how many cut points booted what, and names each failure', () => {
    const text = renderPowerCuts({
      protocol: 'v2',
      operations: 3805,
      newImageBootOperations: 2,
      sweep: 'sample',
      cutPoints: 60,
      counts: { old: 55, new: 4, unbootable: 1, wrong: 0 },
      failures: [{ cut: 1200, torn: true, booted: 'unbootable' }],
      replayChecked: 59,
      replayMismatches: [{ cut: 7, torn: false, firstDifference: 0xe000 }],
      wallSeconds: 39.2,
    });
    expect(text).toMatch(
      /^power cuts, v2 update \(3805 flash operations, 2 of them in the new image's first boot; sampled, each skipped and torn\): 60 cut points, 55 booted the old image, 4 the new, 1 unbootable, 0 wrong image \(39 s\)$/m,
    );
    expect(text).toMatch(/^ {2}cut at operation 1200 \(torn\): unbootable$/m);
    expect(text).toMatch(
      /^ {2}replay from the journal checked against 60 cuts made through the rig: 1 differ, so these figures are not valid$/m,
    );
    expect(text).toMatch(
      /^ {2}cut at operation 7: the rig's flash differs from the replay at 0xe000$/m,
    );
  });
});
