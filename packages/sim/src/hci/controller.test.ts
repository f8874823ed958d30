import { describe, expect, it, vi } from 'vitest';
import { Op } from './constants.ts';
import type { VirtualController } from './controller.ts';
import { VirtualRadio } from './radio.ts';
import { setControllerSource, VirtualHciSocket } from './socket.ts';
import { BASELINE_LAYOUT, BaselineTestApp, ImmediateTestScheduler } from './test-support.ts';

const tick = () => new Promise<void>((r) => setImmediate(r));
const hex = (s: string) => Buffer.from(s.replace(/ /g, ''), 'hex');

function rig(
  controllerConfig: Parameters<VirtualRadio['createController']>[0] = {},
  reportRepeatMs = 100,
) {
  const schedulers: ImmediateTestScheduler[] = [];
  const radio = new VirtualRadio({
    createLink: (req) => {
      const s = new ImmediateTestScheduler({ connIntervalMs: req.maxIntervalMs, dataLength: 27 });
      schedulers.push(s);
      return s;
    },
    reportRepeatMs,
  });
  const app = new BaselineTestApp();
  const esp = radio.addPeripheral({
    address: '24:0a:c4:00:00:01',
    name: 'esp32',
    gatt: BASELINE_LAYOUT,
    app,
  });
  app.peripheral = esp;
  const c = radio.createController(controllerConfig);
  const out: Buffer[] = [];
  let user = false;
  c.attachHost({
    toHost: (p, afterHostTurn) => {
      out.push(p);
      if (afterHostTurn) setImmediate(afterHostTurn);
    },
    isUserChannel: () => user,
  });
  const cmd = (opcode: number, params = '') => {
    const p = hex(params);
    const pkt = Buffer.alloc(4 + p.length);
    pkt.writeUInt8(0x01, 0);
    pkt.writeUInt16LE(opcode, 1);
    pkt.writeUInt8(p.length, 3);
    p.copy(pkt, 4);
    c.fromHost(pkt);
  };
  /** Takes what the controller sent so far, as hex strings. */
  const take = () => out.splice(0).map((b) => b.toString('hex'));
  return { radio, c, esp, app, cmd, take, schedulers, setUser: (u: boolean) => (user = u) };
}

/** LE Create Connection to 24:0a:c4:00:00:01 with noble's parameters (7.5-22.5 ms, timeout 420 ms). */
const CREATE_CONN = '6000 3000 00 00 010000c40a24 00 0600 1200 0000 2a00 0400 0600';
// noble's event mask, and an LE mask that also enables data length change and PHY update.
const NOBLE_EVENT_MASK = 'fffffbff07f8bf3d';

async function connected(r: ReturnType<typeof rig>, c: VirtualController = r.c) {
  r.cmd(Op.SetEventMask, NOBLE_EVENT_MASK);
  r.cmd(Op.LeCreateConnection, CREATE_CONN);
  await tick();
  const handle = [...c.connections().keys()][0];
  if (handle === undefined) throw new Error('no connection was made');
  r.take();
  return handle;
}

describe('virtual controller (exact HCI)', () => {
  it('answers the init commands noble sends with Command Complete as a controller encodes it', () => {
    const { cmd, take } = rig({ address: '00:1a:7d:da:71:13' });
    cmd(Op.Reset);
    cmd(Op.ReadLocalVersion);
    cmd(Op.ReadBdAddr);
    cmd(Op.LeReadBufferSize);
    cmd(Op.LeReadBufferSizeV2);
    cmd(Op.ReadBufferSize);
    cmd(Op.WriteLeHostSupported, '0100');
    cmd(Op.ReadLeHostSupported);
    cmd(Op.LeReadLocalSupportedFeatures);
    cmd(Op.LeReadMaximumDataLength);
    cmd(0x0c14); // Read Local Name: not supported here
    expect(take()).toEqual([
      '040e0401030c00',
      '040e0c010110000b00000bf1050000',
      '040e0a01091000' + '1371da7d1a00',
      '040e07010220' + '00fb0008',
      '040e0a01602000fb0008000000',
      '040e0b01051000fd03' + '00' + '0800' + '0000',
      '040e04016d0c00',
      '040e06016c0c000100',
      '040e0c01032000ff01000000000000',
      '040e0c012f2000fb004808fb004808',
      '040e0401140c01',
    ]);
  });

  it('reports advertising and scan response while scanning, once per address when filtering duplicates', async () => {
    const { cmd, take } = rig();
    cmd(Op.SetEventMask, NOBLE_EVENT_MASK);
    cmd(Op.LeSetScanParameters, '01 1200 1200 00 00');
    cmd(Op.LeSetScanEnable, '0101');
    const out = take();
    expect(out.slice(0, 3)).toEqual(['040e0401010c00', '040e04010b2000', '040e04010c2000']);
    // ADV_IND: flags, 128-bit OTA service, complete local name "esp32", TX power +9; RSSI -45.
    expect(out[3]).toBe(
      '043e2b0201' +
        '00' +
        '00' +
        '010000c40a24' +
        '1f' +
        '020106' +
        '1107d8e6fd1d4a14c6b1534c4c596dd9f1d6' +
        '0609' +
        Buffer.from('esp32').toString('hex') +
        '020a09' +
        'd3',
    );
    expect(out[4]).toBe('043e0c0201' + '04' + '00' + '010000c40a24' + '00' + 'd3');
    expect(out).toHaveLength(5);
    await new Promise((r) => setTimeout(r, 150));
    expect(take()).toEqual([]);
    cmd(Op.LeSetScanParameters, '01 1200 1200 00 00');
    expect(take()).toEqual(['040e04010b20' + '0c']);
  });

  it('repeats reports without duplicate filtering, and a passive scan gets no scan responses', async () => {
    const { cmd, take } = rig({}, 10);
    cmd(Op.SetEventMask, NOBLE_EVENT_MASK);
    cmd(Op.LeSetScanParameters, '00 1200 1200 00 00');
    cmd(Op.LeSetScanEnable, '0100');
    const reports: string[] = [];
    await vi.waitFor(() => {
      reports.push(...take().filter((p) => p.startsWith('043e')));
      expect(reports.length).toBeGreaterThanOrEqual(3);
    });
    cmd(Op.LeSetScanEnable, '0000');
    expect(reports.every((p) => p.slice(10, 12) === '00')).toBe(true);
  });

  it('connects: Command Status, then LE Connection Complete with the link model interval; advertising stops', async () => {
    const r = rig();
    r.cmd(Op.SetEventMask, NOBLE_EVENT_MASK);
    r.take();
    r.cmd(Op.LeCreateConnection, CREATE_CONN);
    expect(r.take()).toEqual(['040f0400010d20']);
    r.cmd(Op.LeCreateConnection, CREATE_CONN);
    expect(r.take()).toEqual(['040f040c010d20']);
    await tick();
    // handle 0x0040, central, public 24:0a:c4:00:00:01, interval 18 (22.5 ms), latency 0, timeout 42.
    expect(r.take()).toEqual([
      '043e1301' + '00' + '4000' + '00' + '00' + '010000c40a24' + '1200' + '0000' + '2a00' + '00',
    ]);
    expect(r.esp.advertising).toBe(false);
    expect(r.app.events).toEqual(['connect 1 23']);
  });

  it('waits for a target that does not advertise, and cancels with status 0x02 in the complete event', async () => {
    const r = rig();
    r.esp.stopAdvertising();
    r.cmd(Op.SetEventMask, NOBLE_EVENT_MASK);
    r.cmd(Op.LeCreateConnection, CREATE_CONN);
    await tick();
    r.take();
    r.cmd(Op.LeCreateConnectionCancel);
    expect(r.take()).toEqual([
      '040e04010e2000',
      '043e1301' + '02' + '0000' + '00' + '00' + '010000c40a24' + '0000' + '0000' + '0000' + '00',
    ]);
    r.cmd(Op.LeCreateConnectionCancel);
    expect(r.take()).toEqual(['040e04010e200c']);
  });

  it('uses LE Enhanced Connection Complete when the host unmasks it', async () => {
    const r = rig();
    r.cmd(Op.LeSetEventMask, '1f02000000000000');
    const handle = await connected(r);
    expect(handle).toBe(0x40);
    const r2 = rig();
    r2.cmd(Op.SetEventMask, NOBLE_EVENT_MASK);
    r2.cmd(Op.LeSetEventMask, '1f02000000000000');
    r2.take();
    r2.cmd(Op.LeCreateConnection, CREATE_CONN);
    await tick();
    expect(r2.take()[1]).toMatch(/^043e1f0a00400000/);
  });

  it('returns ACL credits with Number Of Completed Packets and reports a host that overruns its buffers', async () => {
    const r = rig({ leAclLength: 27, leAclNum: 2 });
    const handle = await connected(r);
    // An ATT Write Command of 2 bytes to OTA Data, split by the host into 27-byte ACL packets.
    const acl = (pb: number, payload: string) => {
      const p = hex(payload);
      const pkt = Buffer.alloc(5 + p.length);
      pkt.writeUInt8(0x02, 0);
      pkt.writeUInt16LE(handle | (pb << 12), 1);
      pkt.writeUInt16LE(p.length, 3);
      p.copy(pkt, 5);
      r.c.fromHost(pkt);
    };
    acl(0, '0500 0400 520f00abcd');
    acl(0, '0500 0400 520f00abce');
    acl(0, '0500 0400 520f00abcf');
    expect(r.take()).toEqual(['041a0101']);
    const credits: string[] = [];
    await vi.waitFor(() => {
      credits.push(...r.take());
      expect(r.app.writes.map((w) => w.data.toString('hex'))).toEqual(['abcd', 'abce']);
      // Number Of Completed Packets: one handle, 0x0040, one packet each time.
      expect(credits).toEqual(['0413050140000100', '0413050140000100']);
    });
    expect(r.schedulers[0]?.holdsTaken).toBeGreaterThanOrEqual(4);
  });

  it('changes data length and PHY when asked, with the events the host unmasked', async () => {
    const r = rig();
    r.cmd(Op.LeSetEventMask, '7f08000000000000');
    const handle = await connected(r);
    expect(r.schedulers[0]?.params.dataLength).toBe(27);
    r.cmd(Op.LeSetDataLength, '4000 fb00 4808');
    expect(r.take()).toEqual(['040e0601222000' + '4000']);
    await tick();
    expect(r.schedulers[0]?.params.dataLength).toBe(251);
    // 251 octets take (251 + 14) x 8 = 2120 us on LE 1M.
    expect(r.take()).toEqual(['043e0b07' + '4000' + 'fb00' + '4808' + 'fb00' + '4808']);
    r.cmd(Op.LeSetPhy, '4000 00 02 02 0000');
    await tick();
    // A classic ESP32 has no 2M PHY: the update completes on 1M.
    expect(r.take()).toEqual(['040f0400013220', '043e060c00400001' + '01']);
    expect(r.schedulers[0]?.params.phy).toBe('1M');
    r.cmd(Op.LeReadPhy, '4000');
    expect(r.take()).toEqual(['040e0801302000400001' + '01']);
    expect(handle).toBe(0x40);
  });

  it('answers link commands for unknown handles with 0x02 and reads RSSI of a known one', async () => {
    const r = rig();
    await connected(r);
    r.cmd(Op.Disconnect, '9900 13');
    r.cmd(Op.ReadRssi, '9900');
    r.cmd(Op.ReadRssi, '4000');
    expect(r.take()).toEqual([
      '040f0402010604',
      '040e070105140299' + '0000',
      '040e07010514004000d3',
    ]);
  });

  it('disconnects: Command Status, then Disconnection Complete 0x16 to the host and the reason to the peer', async () => {
    const r = rig();
    await connected(r);
    r.cmd(Op.Disconnect, '4000 13');
    expect(r.take()).toEqual(['040f0400010604']);
    await tick();
    expect(r.take()).toEqual(['0405040040' + '0016']);
    expect(r.app.events.at(-1)).toBe('disconnect 1 0x13');
    expect(r.esp.advertising).toBe(true);
  });

  it("on a user channel leaves the peripheral's parameter update request to the host", async () => {
    const r = rig();
    r.setUser(true);
    await connected(r);
    const answer = r.esp.requestConnectionUpdate(1, {
      minIntervalMs: 15,
      maxIntervalMs: 15,
      latency: 0,
      supervisionTimeoutMs: 2000,
    });
    await tick();
    await tick();
    // The request reaches the host as ACL data (L2CAP CID 5); nobody answers in the controller.
    expect(r.take()).toEqual(['02402010' + '00' + '0c000500' + '12010800' + '0c000c000000c800']);
    expect(
      await Promise.race([answer, new Promise((res) => setTimeout(() => res('pending'), 20))]),
    ).toBe('pending');
  });
});

describe('virtual HCI socket', () => {
  it('applies the raw socket filter and delivers on a later turn of the event loop', async () => {
    const radio = new VirtualRadio({ createLink: () => new ImmediateTestScheduler() });
    setControllerSource(radio);
    const socket = new VirtualHciSocket();
    const got: string[] = [];
    socket.on('data', (d: Buffer) => got.push(d.toString('hex')));
    socket.bindRaw();
    socket.start();
    // noble's filter: command/event/ACL packets; Disconnection Complete, Encryption Change,
    // Command Complete/Status, Number Of Completed Packets; LE Meta. Then only Command Status.
    socket.setFilter(hex('1600000020c108000000004000000000'));
    socket.write(hex('01 030c 00'));
    expect(got).toEqual([]);
    await tick();
    expect(got).toEqual(['040e0401030c00']);
    socket.setFilter(hex('1600000000800000000000000000 0000'));
    socket.write(hex('01 030c 00'));
    await tick();
    expect(got).toHaveLength(1);
    socket.setPowered(false);
    expect(socket.isDevUp()).toBe(false);
    const err = new Promise<Error>((r) => socket.once('error', r));
    socket.write(hex('01 030c 00'));
    expect((await err).message).toBe('Network is down');
    setControllerSource(undefined);
    expect(() => new VirtualHciSocket()).toThrow(/installVirtualHci/);
  });
});
