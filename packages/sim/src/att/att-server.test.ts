import { describe, expect, it } from 'vitest';
import { BASELINE_LAYOUT, BaselineTestApp } from '../hci/test-support.ts';
import { AttServer } from './att-server.ts';
import { AttributeDb } from './gatt-layout.ts';

// Handles as NimBLE assigns them for the baseline layout behind its GAP and GATT services:
// 1 GAP svc, 2/3 name, 4/5 appearance, 6 GATT svc, 7/8 service changed, 9 its CCCD,
// 10 OTA svc, 11/12 control, 13 control CCCD, 14/15 data, 16 DIS svc, 17/18 2a29, 19/20 2a24, 21/22 2a26.
const OTA_SVC = 'd8e6fd1d4a14c6b1534c4c596dd9f1d6';
const CONTROL = '30d8e33a0e2722b7a446c021aa71d67a';
const DATA = 'b0a5f8458dca899bd84c401f88884023';

function server(mtu = 256) {
  const app = new BaselineTestApp();
  const sent: string[] = [];
  const mtus: number[] = [];
  const db = new AttributeDb(BASELINE_LAYOUT);
  const att = new AttServer({
    conn: 1,
    db,
    app,
    appearance: 0x0200,
    deviceName: () => 'esp32',
    serverMtu: () => mtu,
    send: (pdu) => sent.push(pdu.toString('hex')),
    mtuChanged: (m) => mtus.push(m),
  });
  /** Feeds one request (hex, spaces ignored) and returns what the server sent, comma-separated. */
  const req = async (hex: string) => {
    sent.length = 0;
    await att.handlePdu(Buffer.from(hex.replace(/ /g, ''), 'hex'));
    return sent.join(',');
  };
  return { att, app, db, req, mtus, sent };
}

describe('ATT server (exact PDUs)', () => {
  it('exchanges MTU: answers its preferred MTU and settles on the smaller one', async () => {
    const { att, req, mtus } = server();
    expect(await req('02 0001')).toBe('030001');
    expect(att.mtu).toBe(256);
    expect(await req('02 b900')).toBe('030001');
    expect(att.mtu).toBe(185);
    expect(mtus).toEqual([256, 185]);
  });

  it('discovers primary services one UUID size at a time, then Attribute Not Found', async () => {
    const { req } = server();
    expect(await req('10 0100 ffff 0028')).toBe('1106' + '010005000018' + '060009000118');
    expect(await req('10 0a00 ffff 0028')).toBe(`1114 0a000f00${OTA_SVC}`.replace(/ /g, ''));
    expect(await req('10 1000 ffff 0028')).toBe('1106' + '100016000a18');
    expect(await req('10 1700 ffff 0028')).toBe('011017000a');
  });

  it('answers bad ranges, unsupported group types and short PDUs with their error codes', async () => {
    const { req } = server();
    expect(await req('10 0000 ffff 0028')).toBe('0110000001');
    expect(await req('10 0500 0100 0028')).toBe('0110050001');
    expect(await req('10 0100 ffff 0329')).toBe('0110010010');
    expect(await req('10 0100 ffff')).toBe('0110000004');
    expect(await req('0e 0c00 1200')).toBe('010e000006');
    // An unknown command (bit 6 set) gets no answer at all.
    expect(await req('7f 0c00')).toBe('');
  });

  it('finds a service by UUID (Find By Type Value)', async () => {
    const { req } = server();
    expect(await req(`06 0100 ffff 0028 ${OTA_SVC}`)).toBe('070a000f00');
    expect(await req('06 0100 ffff 0028 0f18')).toBe('010601000a');
  });

  it('discovers characteristics: properties, value handles, UUIDs (Read By Type 0x2803)', async () => {
    const { req } = server();
    // At the default MTU one 21-byte entry fits (2 + 21 <= 23), after the exchange both do.
    expect(await req('08 0a00 0f00 0328')).toBe(`0915 0b00 1a 0c00 ${CONTROL}`.replace(/ /g, ''));
    await req('02 0001');
    expect(await req('08 0a00 0f00 0328')).toBe(
      `0915 0b00 1a 0c00 ${CONTROL} 0e00 08 0f00 ${DATA}`.replace(/ /g, ''),
    );
    expect(await req('08 1000 1600 0328')).toBe(
      '0907' + '1100021200292a' + '1300021400242a' + '1500021600262a',
    );
    expect(await req('08 1600 1600 0328')).toBe('010816000a');
    // No included services (0x2802), as in the baseline; a value read by its type goes to the app.
    expect(await req('08 0a00 0f00 0228')).toBe('01080a000a');
    expect(await req('08 1000 1600 292a')).toBe(
      `090c1200${Buffer.from('Company 42').toString('hex')}`,
    );
    // Reading a write-only value by its type: Read Not Permitted, on the value's handle.
    expect(await req(`08 0e00 0f00 ${DATA}`)).toBe('01080f0002');
  });

  it('lists descriptors (Find Information), reads and writes the CCCD', async () => {
    const { app, req } = server();
    expect(await req('04 0d00 0f00')).toBe('0501' + '0d000229' + '0e000328');
    expect(await req('04 0f00 0f00')).toBe(`0502 0f00 ${DATA}`.replace(/ /g, ''));
    expect(await req('08 0b00 0f00 0229')).toBe('09040d000000');
    expect(await req('12 0d00 0100')).toBe('13');
    expect(app.events).toEqual(['subscribe 1 0 1']);
    expect(await req('08 0b00 0f00 0229')).toBe('09040d000100');
    // Wrong length, and indications on a characteristic that only notifies.
    expect(await req('12 0d00 01')).toBe('01120d000d');
    expect(await req('12 0d00 0200')).toBe('01120d0006');
  });

  it('reads values from the app, declarations and GAP from the table; refuses what is not readable', async () => {
    const { req } = server();
    expect(await req('0a 1200')).toBe(`0b${Buffer.from('Company 42').toString('hex')}`);
    expect(await req('0a 0300')).toBe(`0b${Buffer.from('esp32').toString('hex')}`);
    expect(await req('0a 0500')).toBe('0b0002');
    expect(await req('0a 0b00')).toBe(`0b1a0c00${CONTROL}`);
    expect(await req('0a 0f00')).toBe('010a0f0002');
    expect(await req('0a 9900')).toBe('010a990001');
    expect(await req('0a 0000')).toBe('010a000001');
  });

  it('serves long values through Read Blob at the default MTU', async () => {
    const { app, req } = server();
    const fw = Buffer.from(app.fwRev);
    expect(await req('0a 1600')).toBe(`0b${fw.subarray(0, 22).toString('hex')}`);
    expect(await req('0c 1600 1600')).toBe(`0d${fw.subarray(22, 44).toString('hex')}`);
    expect(await req('0c 1600 3301')).toBe('0d');
    expect(await req('0c 1600 3401')).toBe('010c160007');
  });

  it('takes Write Requests and Write Commands on a characteristic that declares only "write"', async () => {
    const { app, req } = server();
    expect(await req('12 0f00 fd00')).toBe('13');
    expect(await req('52 0f00 01')).toBe('');
    expect(app.writes.map((w) => [w.chrId, w.data.toString('hex'), w.withResponse])).toEqual([
      [1, 'fd00', true],
      [1, '01', false],
    ]);
  });

  it("drops a PDU longer than the ATT MTU unanswered and unseen, as NimBLE's L2CAP does", async () => {
    const { att, app, req, sent } = server(256);
    // Before the exchange the MTU is 23: a 21-byte value (24-byte PDU) does not fit.
    expect(await req(`52 0f00 ${'ab'.repeat(21)}`)).toBe('');
    expect(await req(`12 0f00 ${'ab'.repeat(21)}`)).toBe('');
    expect(app.writes).toEqual([]);
    expect(att.oversizeDropped).toBe(2);
    expect(await req(`52 0f00 ${'ab'.repeat(20)}`)).toBe('');
    expect(app.writes.map((w) => w.data.length)).toEqual([20]);
    // After MTU 256: MTU-3 = 253 bytes fit, 254 do not.
    await req('02 0001');
    app.writes.length = 0;
    await req(`52 0f00 ${'cd'.repeat(254)}`);
    await req(`52 0f00 ${'cd'.repeat(253)}`);
    expect(app.writes.map((w) => w.data.length)).toEqual([253]);
    expect(att.oversizeDropped).toBe(3);
    expect(sent).toEqual([]);
  });

  it('refuses writes the table or the app does not permit, with the right codes', async () => {
    const { app, req } = server(517);
    expect(await req('12 1200 00')).toBe('0112120003');
    expect(await req('12 0b00 00')).toBe('01120b0003');
    expect(await req('12 0300 41')).toBe('0112030003');
    expect(await req('12 4000 00')).toBe('0112400001');
    expect(await req('12 0f')).toBe('0112000004');
    expect(await req('52 1200 00')).toBe('');
    // Longer than an attribute may be, in a PDU the MTU allows.
    await req('02 0502');
    expect(await req(`12 0f00 ${'00'.repeat(513)}`)).toBe('01120f000d');
    app.nextWriteStatus = 0x80;
    expect(await req('12 0f00 01')).toBe('01120f0080');
    expect(app.writes).toHaveLength(1);
  });

  it('runs prepared writes: echoes each part, writes the value on execute, checks offsets and length', async () => {
    const { app, req } = server();
    expect(await req('16 0f00 0000 aabb')).toBe('170f000000aabb');
    expect(await req('16 0f00 0200 cc')).toBe('170f000200cc');
    expect(await req('18 01')).toBe('19');
    expect(app.writes.map((w) => w.data.toString('hex'))).toEqual(['aabbcc']);
    expect(await req('16 0f00 0500 cc')).toBe('170f000500cc');
    expect(await req('18 01')).toBe('01180f0007');
    expect(await req('16 0f00 0000 cc')).toBe('170f000000cc');
    expect(await req('18 00')).toBe('19');
    expect(app.writes).toHaveLength(1);
    expect(await req('16 1200 0000 cc')).toBe('0116120003');
  });

  it('sends notifications truncated to MTU-3 and indications that wait for the confirmation', async () => {
    const { att, db, req, sent } = server();
    const control = db.characteristic(0);
    if (!control) throw new Error('control characteristic missing');
    sent.length = 0;
    att.notify(control, Buffer.alloc(30, 0x11));
    expect(sent).toEqual([`1b0c00${'11'.repeat(20)}`]);
    let confirmed = false;
    const ind = att.indicate(control, Buffer.from([0x05])).then(() => {
      confirmed = true;
    });
    const second = att.indicate(control, Buffer.from([0x06]));
    await Promise.resolve();
    expect(sent.at(-1)).toBe('1d0c0005');
    expect(confirmed).toBe(false);
    await req('1e');
    await ind;
    expect(confirmed).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(sent.at(-1)).toBe('1d0c0006');
    att.close();
    await expect(second).rejects.toThrow(/closed before the client confirmed/);
  });
});
