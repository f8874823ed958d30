import { describe, expect, it } from 'vitest';
import {
  benchResult,
  type ProfileMeasurement,
  renderSensitivity,
  renderTable,
  renderVerification,
  sensitivityResult,
  verificationResult,
} from './results.ts';

function profile(over: Partial<ProfileMeasurement> = {}): ProfileMeasurement {
  return {
    name: 'macos-esp32',
    central: 'macos',
    chip: 'esp32',
    phy: '1M',
    mtu: 185,
    connIntervalMs: 15,
    linkCeilingKBps: 89.1,
    linkCeilingWriteBytes: 167,
    flashCeilingKBps: 72.9,
    encryptedLink: { baseline: true, v2: true },
    device: { eraseUnit: 'block', rxBuffers: 128, frameBytes: 182 },
    flash: 'measured',
    baseline: { seconds: 200, imageBytes: 1_000_000, streamBytes: 1_000_000 },
    v2: { seconds: 16, imageBytes: 1_000_000, streamBytes: 1_000_000 },
    v2Compressed: { seconds: 15, imageBytes: 1_000_000, streamBytes: 300_000 },
    linkTuning: ['esp32 conn 1: asked data length 251; granted'],
    ...over,
  };
}

describe('bench figures', () => {
  it("have issue 7's JSON shape, kB = 1000 bytes, share of the lesser ceiling and the speed-up", () => {
    const r = benchResult(1_000_000, [profile()], {
      bytes: 1_000_000,
      wallSeconds: 0.1,
      protocol: 'v2',
    });
    const json = JSON.parse(JSON.stringify(r));
    expect(Object.keys(json)).toEqual(
      expect.arrayContaining(['profiles', 'clientStackMBps', 'imageBytes', 'targets']),
    );
    const p = json.profiles[0];
    for (const key of [
      'name',
      'central',
      'chip',
      'phy',
      'mtu',
      'connIntervalMs',
      'ceilingKBps',
      'baseline',
      'v2',
      'v2Compressed',
      'speedup',
    ]) {
      expect(p).toHaveProperty(key);
    }
    expect(p.ceilingKBps).toBe(72.9);
    expect(p.baseline).toEqual({ seconds: 200, kBps: 5, imageBytes: 1_000_000 });
    expect(p.v2.kBps).toBe(62.5);
    expect(p.v2.shareOfCeiling).toBeCloseTo(62.5 / 72.9, 10);
    expect(p.v2Compressed).toMatchObject({ seconds: 15, streamBytes: 300_000 });
    expect(p.v2Compressed.kBps).toBeCloseTo(66.667, 3);
    expect(p.speedup).toBe(12.5);
    expect(json.clientStackMBps).toBe(10);
  });

  it('judges the targets from the figures and says which are missed', () => {
    const r = benchResult(
      1_000_000,
      [
        profile(),
        profile({
          name: 'linux-noble-esp32',
          v2: { seconds: 40, imageBytes: 1_000_000, streamBytes: 1_000_000 },
          v2Compressed: { seconds: 41, imageBytes: 1_000_000, streamBytes: 300_000 },
        }),
      ],
      { bytes: 1_000_000, wallSeconds: 0.5, protocol: 'v2' },
    );
    const byName = Object.fromEntries(r.targets.map((t) => [t.name, t]));
    expect(byName['v2 reaches 85% of the ceiling on every profile']?.met).toBe(false);
    expect(byName['v2 reaches 85% of the ceiling on every profile']?.detail).toMatch(
      /linux-noble-esp32 34\.3%/,
    );
    expect(byName['v2 is 10x the baseline on macos-esp32']).toMatchObject({
      met: true,
      detail: '12.5x',
    });
    expect(byName['compression shortens the transfer']?.met).toBe(false);
    expect(byName['client stack moves at least 5 MB/s']).toMatchObject({
      met: false,
      detail: '2.00 MB/s',
    });
    const table = renderTable(r);
    expect(table).toMatch(/macos-esp32.*72\.9 \(flash\).*200\.0.*5\.0.*16\.0.*62\.5.*85\.7%/);
    expect(table).toMatch(/\[MISSED\] client stack moves at least 5 MB\/s: 2\.00 MB\/s/);
    // What the firmware did is printed once per combination, with the profiles it applies to.
    expect(table).toMatch(
      /device in the v2 run: 64 KB block erases, 128 receive buffers, 182-byte DATA frames \(macos-esp32, linux-noble-esp32\)/,
    );
  });

  it('says whether the runs were on an encrypted link and the write size the link ceiling takes', () => {
    const r = benchResult(
      1_000_000,
      [
        profile(),
        profile({
          name: 'linux-noble-esp32',
          linkCeilingKBps: 97.6,
          linkCeilingWriteBytes: 244,
          encryptedLink: { baseline: false, v2: false },
        }),
        profile({ name: 'android-esp32', encryptedLink: { baseline: false, v2: true } }),
      ],
      { bytes: 1_000_000, wallSeconds: 0.1, protocol: 'v2' },
    );
    expect(r.profiles[0]).toMatchObject({
      linkCeilingWriteBytes: 167,
      encryptedLink: { baseline: true, v2: true },
    });
    const table = renderTable(r);
    expect(table).toMatch(
      /link ceiling at its best write size: 167 B \(macos-esp32, android-esp32\); 244 B \(linux-noble-esp32\)/,
    );
    expect(table).toMatch(/link of the runs: encrypted \(macos-esp32\)/);
    expect(table).toMatch(/link of the runs: not encrypted \(linux-noble-esp32\)/);
    expect(table).toMatch(
      /link of the runs: baseline not encrypted, v2 encrypted \(android-esp32\)/,
    );
    expect(table).toMatch(/every data PDU with a payload carries a 4-byte MIC/);
    // Nothing encrypted: no word about the MIC.
    const open = renderTable(
      benchResult(1_000_000, [profile({ encryptedLink: { baseline: false, v2: false } })], {
        skipped: 'not run',
      }),
    );
    expect(open).toMatch(/link of the runs: not encrypted \(macos-esp32\)/);
    expect(open).not.toMatch(/MIC/);
  });

  it('reports a column that could not run as skipped with its reason, never as a number', () => {
    const skipped = { skipped: 'the firmware offers no v2 characteristics' };
    const r = benchResult(1_000_000, [profile({ v2: skipped, v2Compressed: skipped })], {
      skipped: 'no noble',
    });
    expect(r.profiles[0]?.v2).toEqual(skipped);
    expect(r.profiles[0]?.speedup).toBeNull();
    expect(r.clientStackMBps).toBeNull();
    expect(r.targets.every((t) => t.met === null)).toBe(true);
    expect(renderTable(r)).toMatch(/macos-esp32: the firmware offers no v2 characteristics/);
  });
});

describe("issue 21's pre-erased slot", () => {
  it('shows each profile with the slot erased during the update and beforehand, and judges 5 s on 2M, 8 s on 1M', () => {
    const pre = (seconds: number, streamBytes = 600_000) => ({
      seconds,
      imageBytes: 1_000_000,
      streamBytes,
      slotErases: 0,
    });
    const r = benchResult(
      1_000_000,
      [
        profile({ v2PreErased: pre(13, 1_000_000), v2CompressedPreErased: pre(7.9) }),
        profile({
          name: 'macos-esp32s3',
          phy: '2M',
          v2PreErased: pre(8, 1_000_000),
          v2CompressedPreErased: pre(5.3),
        }),
      ],
      { skipped: 'no noble' },
    );
    const target = r.targets.find((t) => /pre-erased slot/.test(t.name));
    expect(target).toMatchObject({
      met: false,
      detail: 'macos-esp32 7.90 s <= 8 s, macos-esp32s3 5.30 s > 5 s',
    });
    const text = renderTable(r);
    expect(text).toMatch(/update slot erased during the update, and beforehand/);
    expect(text).toMatch(/macos-esp32s3 +│ 16\.0 +│ 8\.0 +│ 15\.0 +│ 5\.3 +│ 0 \/ 0/);
    expect(text).toMatch(/\[MISSED\] v2\+deflate on a pre-erased slot/);
    // every profile within its limit: met
    const ok = benchResult(1_000_000, [profile({ v2CompressedPreErased: pre(7.9) })], {
      skipped: 'no noble',
    });
    expect(ok.targets.find((t) => /pre-erased slot/.test(t.name))?.met).toBe(true);
  });

  it('is not judged when no profile ran on a pre-erased slot', () => {
    const r = benchResult(1_000_000, [profile()], { skipped: 'no noble' });
    expect(r.targets.find((t) => /pre-erased slot/.test(t.name))).toMatchObject({
      met: null,
      detail: 'not run',
    });
    expect(renderTable(r)).not.toMatch(/erased during the update/);
  });
});

describe('the sensitivity table', () => {
  it('compares every row with the first (the model as it stands) and says what each column means', () => {
    const t = (seconds: number) => ({ seconds, imageBytes: 1_000_000, streamBytes: 1_000_000 });
    const s = sensitivityResult('linux-noble-esp32s3', [
      {
        flash: 'measured',
        rxBuffers: 'firmware',
        ceLength: 'ignored',
        deviceCpu: 'modeled',
        v2: t(10),
      },
      { flash: 'measured', rxBuffers: 24, ceLength: 'ignored', deviceCpu: 'modeled', v2: t(12.5) },
      {
        flash: 'datasheet',
        rxBuffers: 24,
        ceLength: 'honoured',
        deviceCpu: 'modeled',
        v2: { skipped: 'failed' },
      },
      {
        flash: 'measured',
        rxBuffers: 'firmware',
        ceLength: 'ignored',
        deviceCpu: 'zero',
        v2: t(8),
      },
    ]);
    expect(s.rows.map((r) => r.vsFirst)).toEqual([1, 0.8, null, 1.25]);
    const text = renderSensitivity(s);
    expect(text).toMatch(
      /│ measured +│ 24 +│ ignored \(whole interval\) +│ modeled +│ 12\.5 │ 80\.0 +│ 80% +│/,
    );
    expect(text).toMatch(/│ zero +│ 8\.0 +│ 125\.0 +│ 125% +│/);
    expect(text).toMatch(/device CPU: modeled = device-cpu\.ts's per-chip estimates/);
    expect(text).toMatch(/honoured: 0, one exchange per event/);
    expect(text).toMatch(/programming assumed at the datasheet typical/);
  });
});

describe('the signature check cost', () => {
  it('says what each signature (and the encrypted link) adds to BEGIN and END over the unsigned update', () => {
    const v = verificationResult('linux-noble-esp32c3', [
      {
        signature: 'none',
        encryptedLink: false,
        beginSeconds: 0.2,
        endSeconds: 0.27,
        totalSeconds: 11.11,
      },
      {
        signature: 'RSA-3072',
        encryptedLink: false,
        beginSeconds: 0.28,
        endSeconds: 0.36,
        totalSeconds: 11.2,
      },
      {
        signature: 'ECDSA P-256',
        encryptedLink: true,
        beginSeconds: 0.45,
        endSeconds: 0.5,
        totalSeconds: 11.4,
      },
    ]);
    const text = renderVerification(v);
    expect(text).toMatch(
      /unsigned, any image taken: BEGIN 200\.0 ms, END 270\.0 ms, update 11\.11 s/,
    );
    expect(text).toMatch(
      /signed RSA-3072, only the trusted key taken: BEGIN 280\.0 ms \(\+80\.0 ms\), END 360\.0 ms \(\+90\.0 ms\)/,
    );
    expect(text).toMatch(
      /signed ECDSA P-256, only the trusted key taken, encrypted link: BEGIN 450\.0 ms \(\+250\.0 ms\)/,
    );
    expect(text).toMatch(/the link layer's encryption start is not modeled/);
    expect(renderVerification(verificationResult('x', { skipped: 'no rig' }))).toMatch(
      /not measured \(no rig\)/,
    );
  });
});
