import { describe, expect, it } from 'vitest';
import { assertConnInterval, attFragmentCount, attFragments, exchangeUs, pduAirUs } from './air.ts';

describe('air time (LINK-MODEL.md "Air time")', () => {
  it('gives the one-exchange figures of the table', () => {
    expect(exchangeUs(27, '1M')).toBe(676);
    expect(exchangeUs(251, '1M')).toBe(2468);
    expect(exchangeUs(251, '2M')).toBe(1392);
  });

  it('adds the MIC only to non-empty PDUs of encrypted links', () => {
    expect(pduAirUs(0, '1M', true)).toBe(pduAirUs(0, '1M', false));
    expect(pduAirUs(27, '1M', true) - pduAirUs(27, '1M', false)).toBe(32);
    expect(pduAirUs(27, '2M', true) - pduAirUs(27, '2M', false)).toBe(16);
  });

  it('fragments an ATT PDU into ceil((M + 4) / L) link-layer PDUs', () => {
    expect(attFragmentCount(23, 27)).toBe(1);
    expect(attFragmentCount(247, 251)).toBe(1);
    expect(attFragmentCount(248, 251)).toBe(2);
    expect(attFragmentCount(185, 27)).toBe(7);
    expect(attFragments(517, 251)).toEqual([251, 251, 19]);
    expect(attFragments(185, 27).reduce((a, b) => a + b, 0)).toBe(189);
  });

  it('rejects payloads and intervals that cannot exist', () => {
    expect(() => pduAirUs(252, '1M')).toThrow(/0 to 251/);
    expect(() => attFragments(100, 20)).toThrow(/data length/);
    expect(() => assertConnInterval(16)).toThrow(/15 or 16.25/);
    expect(() => assertConnInterval(11.25)).not.toThrow();
  });
});
