import { describe, expect, it } from 'vitest';
import { ceilingKBps, profileCeilingKBps } from './ceilings.ts';
import { FLASH_SLOW } from './flash.ts';
import { getProfile, PROFILES } from './profiles.ts';
import { simulateBaselineUpload, simulateStream } from './scenarios.ts';

const IMAGE = 500_000;

describe('the baseline to reproduce (LINK-MODEL.md)', () => {
  it('takes 75-105 s for a 500 kB image from a macOS central to a classic ESP32', async () => {
    const r = await simulateBaselineUpload(getProfile('macos-esp32'), IMAGE);
    const s = r.totalUs / 1e6;
    console.log(
      `baseline macos-esp32 500 kB: total ${s.toFixed(2)} s (setup ${(r.phases.setupUs / 1e6).toFixed(2)} s, ` +
        `transfer ${(r.phases.transferUs / 1e6).toFixed(2)} s, finish ${(r.phases.finishUs / 1e6).toFixed(3)} s, ` +
        `restart ${(r.phases.restartUs / 1e6).toFixed(1)} s), ${r.writes} writes of ${r.packetSize} B, ` +
        `${r.sectorErases} sector erases, ${(IMAGE / (r.phases.transferUs / 1e6) / 1000).toFixed(2)} kB/s`,
    );
    expect(r.attMtu).toBe(185);
    expect(r.packetSize).toBe(182);
    expect(r.writes).toBe(Math.ceil(IMAGE / 182));
    expect(r.sectorErases).toBe(Math.ceil((r.writes * 182) / 4096));
    expect(s).toBeGreaterThanOrEqual(75);
    expect(s).toBeLessThanOrEqual(105);
    // Each packet costs two intervals; each erase pushes the answer three intervals further.
    // (Phases end when the last answer arrives, a few air-time microseconds off the anchors.)
    const expected = r.writes * 30_000 + r.sectorErases * 45_000;
    expect(Math.abs(r.phases.transferUs - expected)).toBeLessThan(1_000);
  });

  it('is slower with the slow-flash fault (400 ms sector erases)', async () => {
    const typical = await simulateBaselineUpload(getProfile('macos-esp32'), 100_000);
    const slow = await simulateBaselineUpload(getProfile('macos-esp32'), 100_000, {
      flash: FLASH_SLOW,
    });
    const perErase = (slow.totalUs - typical.totalUs) / typical.sectorErases;
    expect(perErase).toBeGreaterThan(355_000);
    expect(perErase).toBeLessThan(420_000);
  });

  it('follows each central: a 256-byte MTU from noble, 7.5 ms interval', async () => {
    const r = await simulateBaselineUpload(getProfile('linux-noble-esp32'), 100_000);
    expect(r.packetSize).toBe(253);
    // Two fragments per request at 7.5 ms still fit one event: 2 intervals per packet.
    expect(r.phases.transferUs).toBeLessThan(r.writes * 2 * 7_500 + r.sectorErases * 60_000);
  });
});

describe('determinism', () => {
  it('gives identical modeled durations for identical inputs', async () => {
    const a = await simulateBaselineUpload(getProfile('android-esp32s3'), 200_000);
    const b = await simulateBaselineUpload(getProfile('android-esp32s3'), 200_000);
    expect(b).toEqual(a);
    const p = getProfile('macos-esp32s3').params;
    const s1 = await simulateStream({ params: p, bytes: 50_000 });
    const s2 = await simulateStream({ params: p, bytes: 50_000 });
    expect(s2).toEqual(s1);
  });
});

describe('profiles', () => {
  it('covers three centrals against a classic ESP32 and an ESP32-S3, and noble against a C3', () => {
    expect(PROFILES.map((p) => p.name)).toEqual([
      'linux-noble-esp32',
      'linux-noble-esp32s3',
      'macos-esp32',
      'macos-esp32s3',
      'android-esp32',
      'android-esp32s3',
      'linux-noble-esp32c3',
    ]);
    expect(getProfile('linux-noble-esp32c3').deviceCpu?.cores).toBe(1);
    expect(() => getProfile('windows-esp32')).toThrow(/choose one of/);
  });

  it('says where every link number comes from', () => {
    for (const p of PROFILES) {
      for (const key of [
        'connIntervalMs',
        'requestMtu',
        'phy',
        'dataLength',
        'attMtu',
        'aclBuffers',
        'peripheralRxBuffers',
      ]) {
        expect(p.sources[key], `${p.name}.${key}`).toMatch(/LINK-MODEL\.md|assumption/);
      }
    }
  });

  it('keeps the chip facts: no 2M PHY on the classic ESP32, MTU capped by NimBLE', () => {
    for (const p of PROFILES) {
      expect(p.params.phy).toBe(p.chip === 'esp32' ? '1M' : '2M');
      expect(p.params.attMtu).toBeLessThanOrEqual(527);
    }
    expect(getProfile('macos-esp32').params).toMatchObject({ connIntervalMs: 15, attMtu: 185 });
    expect(getProfile('android-esp32').params.attMtu).toBe(517);
    expect(getProfile('linux-noble-esp32').params.attMtu).toBe(256);
  });

  it('streams within 10% of each profile ceiling through the modeled link', async () => {
    const table: Array<Record<string, string | number>> = [];
    for (const p of PROFILES) {
      const ceiling = ceilingKBps(p.params);
      const sim = await simulateStream({
        params: p.params,
        bytes: 100_000,
        senderBuffers: p.centralAclBuffers,
      });
      const withFlash = profileCeilingKBps(p);
      table.push({
        profile: p.name,
        phy: p.params.phy,
        mtu: p.params.attMtu,
        'CI ms': p.params.connIntervalMs,
        'link kB/s': Number(ceiling.toFixed(1)),
        'simulated kB/s': Number(sim.kBps.toFixed(1)),
        'write-request kB/s': Number(ceilingKBps(p.params, 'write-request').toFixed(2)),
        'flash 4K kB/s': Number(withFlash.flashKBps.toFixed(1)),
        'flash 64K kB/s': Number(profileCeilingKBps(p, 'block').flashKBps.toFixed(1)),
      });
      expect(Math.abs(sim.kBps - ceiling) / ceiling, p.name).toBeLessThan(0.1);
      // The profile ceiling takes the best ATT size up to the MTU, never less than the full MTU.
      expect(withFlash.linkKBps).toBeGreaterThanOrEqual(ceiling);
      expect(withFlash.ceilingKBps).toBe(Math.min(withFlash.linkKBps, withFlash.flashKBps));
    }
    console.table(table);
  });
});

describe('streaming into flash (what a v2 transfer is up against)', () => {
  it('overlaps 4 KB erases with the link through the receive buffers, close to min(link, flash)', async () => {
    const p = getProfile('macos-esp32');
    const ceiling = profileCeilingKBps(p, 'sector');
    expect(ceiling.ceilingKBps).toBe(ceiling.flashKBps);
    const r = await simulateStream({
      params: p.params,
      model: p.model,
      bytes: 200_000,
      senderBuffers: p.centralAclBuffers,
      flash: { timing: p.flash, eraseUnit: 'sector' },
    });
    expect(r.kBps / ceiling.ceilingKBps).toBeGreaterThan(0.95);
    expect(r.kBps).toBeLessThanOrEqual(ceiling.ceilingKBps);
  });

  it('loses throughput to NAKs when a 150 ms block erase overflows 24 receive buffers', async () => {
    const p = getProfile('macos-esp32s3');
    const r = await simulateStream({
      params: p.params,
      model: p.model,
      bytes: 200_000,
      senderBuffers: p.centralAclBuffers,
      flash: { timing: p.flash, eraseUnit: 'block' },
    });
    const bigger = await simulateStream({
      params: p.params,
      model: { ...p.model, peripheralRxBuffers: 80 },
      bytes: 200_000,
      senderBuffers: p.centralAclBuffers,
      flash: { timing: p.flash, eraseUnit: 'block' },
    });
    expect(r.stats.naks).toBeGreaterThan(0);
    expect(bigger.kBps).toBeGreaterThan(r.kBps);
    expect(r.kBps).toBeLessThan(profileCeilingKBps(p, 'block').ceilingKBps);
  });
});
