import { chmod, copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceFrame, FrameDecoder } from './device/frames.ts';
import {
  HCI_EVENT_PKT,
  LE_CONN_UPDATE_COMPLETE,
  LE_DATA_LENGTH_CHANGE,
  LE_PHY_UPDATE_COMPLETE,
} from './hci/constants.ts';
import { describeLinkTuning, startVirtualRig, type VirtualBoard, type VirtualRig } from './rig.ts';
import { findByName } from './testing/baseline-client.ts';

const fakeProgram = fileURLToPath(new URL('./testing/fake-device-program.mjs', import.meta.url));

/** Sets the fake program's environment for one test (the rig's child processes inherit it). */
function fakeEnv(vars: Record<string, string>): () => void {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function consoleText(board: VirtualBoard): { text: string } {
  const out = { text: '' };
  board.device.on('console', (d) => {
    out.text += Buffer.from(d).toString('latin1');
  });
  return out;
}

/** LE meta subevents the central's controller sent to noble. */
function leSubevents(rig: VirtualRig): number[] {
  const c = rig.radio.controllers[0];
  if (!c) return [];
  return c.trace
    .filter(([dir, p]) => dir === 'controller->host' && p[0] === HCI_EVENT_PKT && p[1] === 0x3e)
    .map(([, p]) => p[3] as number);
}

describe('FrameDecoder: v2 host frames', () => {
  it('decodes LINK_REQUEST of each kind and FRAME_DONE', () => {
    const d = new FrameDecoder();
    const f = (type: number, payload: number[]) =>
      Uint8Array.from([type, payload.length & 0xff, payload.length >> 8, ...payload]);
    const events = d.push(
      Buffer.concat([
        f(DeviceFrame.LINK_REQUEST, [1, 1, 0, 6, 0, 12, 0, 0, 0, 0x90, 0x01]),
        f(DeviceFrame.LINK_REQUEST, [2, 1, 0, 251, 0, 0x48, 0x08]),
        f(DeviceFrame.LINK_REQUEST, [3, 1, 0, 2, 3]),
        f(DeviceFrame.FRAME_DONE, [0x04]),
      ]),
    );
    expect(events).toEqual([
      {
        type: 'linkRequest',
        request: {
          kind: 'connParams',
          conn: 1,
          minInterval: 6,
          maxInterval: 12,
          latency: 0,
          timeout: 400,
        },
      },
      {
        type: 'linkRequest',
        request: { kind: 'dataLength', conn: 1, txOctets: 251, txTimeUs: 2120 },
      },
      { type: 'linkRequest', request: { kind: 'phy', conn: 1, txPhys: 2, rxPhys: 3 } },
      { type: 'frameDone', frameType: 0x04 },
    ]);
  });

  it('refuses a LINK_REQUEST of an unknown kind or cut short, naming it', () => {
    expect(() => new FrameDecoder().push(Uint8Array.of(0x89, 3, 0, 9, 1, 0))).toThrow(
      /unknown LINK_REQUEST kind 9/,
    );
    expect(() => new FrameDecoder().push(Uint8Array.of(0x89, 5, 0, 1, 1, 0, 6, 0))).toThrow(
      /LINK_REQUEST of kind 1 too short/,
    );
  });
});

describe('link tuning on the virtual rig, through noble', () => {
  let rig: VirtualRig | undefined;
  let restore: (() => void) | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
    restore?.();
    restore = undefined;
  });

  async function connectWith(profile: string) {
    restore = fakeEnv({ FAKE_FRAME_DONE: '1', FAKE_LINK_REQUESTS: '1,2,3', FAKE_V2_LAYOUT: '1' });
    // Extended mode: noble then enables the Data Length Change and PHY Update events.
    rig = await startVirtualRig({ profile, program: fakeProgram, nobleExtended: true });
    const r = rig;
    const board = r.boards[0] as VirtualBoard;
    const out = consoleText(board);
    const controller = () => r.radio.controllers[0];
    const p = await findByName(r.noble, 'esp32');
    const c = controller();
    if (c) c.traceEnabled = true;
    await p.connectAsync();
    await until(
      () => board.linkLog.length === 3 && board.linkLog.every((x) => x.outcome),
      'three link requests to complete',
    );
    await until(() => (out.text.match(/link_update/g) ?? []).length === 3, 'three LINK_UPDATEs');
    return { board, out, p };
  }

  it('grants 7.5 ms, data length 251 and 2M to an ESP32-S3 on a Linux central, tells noble and the device', async () => {
    const { board, out } = await connectWith('linux-noble-esp32s3');
    const link = board.currentLink;
    expect(link?.params).toMatchObject({ connIntervalMs: 7.5, dataLength: 251, phy: '2M' });
    for (const r of board.linkLog) {
      expect(r.outcome?.accepted).toBe(true);
      expect(describeLinkTuning(r)).toMatch(/granted/);
    }
    expect(board.linkLog.map((r) => r.request.kind)).toEqual(['connParams', 'dataLength', 'phy']);
    expect(rig?.linkLog()).toEqual(board.linkLog);
    // The connection started at the link layer's defaults; the requests moved it.
    expect(board.linkLog[1]?.outcome?.dataLength).toBe(251);
    // The last LINK_UPDATE carries everything the link uses now (interval in 1.25 ms units).
    expect(out.text).toMatch(/link_update conn=1 interval=6 data_length=251 phy=2\r\n$/);
    const sub = rig ? leSubevents(rig) : [];
    expect(sub).toContain(LE_CONN_UPDATE_COMPLETE);
    expect(sub).toContain(LE_PHY_UPDATE_COMPLETE);
    // noble's LE event mask, even extended (1fff...), leaves Data Length Change (bit 6) off, so
    // the controller keeps it to itself as a real one would.
    expect(sub).not.toContain(LE_DATA_LENGTH_CHANGE);
  }, 30_000);

  it('keeps a classic ESP32 on 1M and a macOS central at 15 ms', async () => {
    const { board, out } = await connectWith('macos-esp32');
    expect(board.currentLink?.params).toMatchObject({
      connIntervalMs: 15,
      dataLength: 251,
      phy: '1M',
    });
    const phy = board.linkLog.find((r) => r.request.kind === 'phy');
    expect(phy?.outcome?.phy).toBe('1M');
    expect(out.text).toMatch(/link_update conn=1 interval=12 data_length=251 phy=1\r\n$/);
    // Nothing changed PHY: noble hears of no PHY update it did not ask for.
    expect(rig ? leSubevents(rig) : []).not.toContain(LE_PHY_UPDATE_COMPLETE);
  }, 30_000);
});

describe('modeled time does not depend on how fast the device answers', () => {
  let rig: VirtualRig | undefined;
  let restore: (() => void) | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
    restore?.();
    restore = undefined;
  });

  /** Streams Write Commands through noble to the fake device, which takes 0-3 ms per frame. */
  async function streamOnce(frameDone: boolean): Promise<{ modeledUs: number; stalls: number }> {
    restore = fakeEnv({
      FAKE_FRAME_DONE: frameDone ? '1' : '0',
      FAKE_V2_LAYOUT: frameDone ? '1' : '0',
      FAKE_LINK_REQUESTS: '1,2',
      FAKE_MAX_DELAY_MS: '3',
      FAKE_FLASH_EVERY: '4',
    });
    rig = await startVirtualRig({ profile: 'linux-noble-esp32', program: fakeProgram });
    const board = rig.boards[0] as VirtualBoard;
    const p = await findByName(rig.noble, 'esp32');
    await p.connectAsync();
    await until(() => board.linkLog.filter((r) => r.outcome).length === 2, 'link tuning');
    const { characteristics } = await p.discoverAllServicesAndCharacteristicsAsync();
    const data = characteristics.find((c) => c.uuid === '234088881f404cd89b89ca8d45f8a5b0');
    if (!data) throw new Error('no OTA data characteristic');
    const link = board.currentLink;
    if (!link) throw new Error('no link');
    const writes = 120;
    let done = 0;
    board.device.on('frameDone', (t) => {
      if (t === 0x04) done += 1;
    });
    let flashOps = 0;
    board.device.on('flashOp', () => {
      flashOps += 1;
    });
    const start = link.nowUs;
    for (let i = 0; i < writes; i++) {
      void data.writeAsync(Buffer.alloc(200, i), true);
    }
    await until(() => done === writes, 'every Write Command processed', 20_000);
    // Let the last stall play out on the link.
    await new Promise((r) => setTimeout(r, 50));
    expect(flashOps).toBe(writes / 4);
    const modeledUs = link.nowUs - start;
    await rig.close();
    rig = undefined;
    restore();
    restore = undefined;
    return { modeledUs, stalls: flashOps };
  }

  it('gives identical modeled durations for two runs of the same Write Command stream', async () => {
    const a = await streamOnce(true);
    const b = await streamOnce(true);
    expect(a.modeledUs).toBeGreaterThan(0);
    expect(b.modeledUs).toBe(a.modeledUs);
  }, 60_000);

  it('still serves a device that never sends FRAME_DONE', async () => {
    restore = fakeEnv({ FAKE_FRAME_DONE: '0', FAKE_V2_LAYOUT: '0', FAKE_LINK_REQUESTS: '' });
    // A path of its own: the rig caches each program's GATT layout, and this one declares no v2.
    const dir = await mkdtemp(join(tmpdir(), 'fake-baseline-'));
    const program = join(dir, 'baseline-device.mjs');
    await copyFile(fakeProgram, program);
    await chmod(program, 0o755);
    rig = await startVirtualRig({ profile: 'immediate', program });
    const board = rig.boards[0] as VirtualBoard;
    const p = await findByName(rig.noble, 'esp32');
    await p.connectAsync();
    const { characteristics } = await p.discoverAllServicesAndCharacteristicsAsync();
    const data = characteristics.find((c) => c.uuid === '234088881f404cd89b89ca8d45f8a5b0');
    // noble's second argument is withoutResponse: a Write Command, then a Write Request.
    await data?.writeAsync(Buffer.from([1, 2, 3]), true);
    await data?.writeAsync(Buffer.from([4]), false);
    expect(board.device.sendsFrameDone).toBeUndefined();
    expect(board.device.framesInFlight).toBe(0);
    await rm(dir, { recursive: true, force: true });
  }, 30_000);
});
