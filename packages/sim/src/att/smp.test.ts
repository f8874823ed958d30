import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { BASELINE_LAYOUT, BaselineTestApp } from '../hci/test-support.ts';
import { AttServer } from './att-server.ts';
import { AttributeDb, type GattLayout } from './gatt-layout.ts';
import {
  type Bond,
  c1,
  type LinkSecurityLevel,
  type PairingOutcome,
  SmpResponder,
  s1,
} from './smp.ts';

const require = createRequire(import.meta.url);
/** noble's own SMP crypto (lib/hci-socket/crypto.js): what the central computes. */
const nobleCrypto = require('@abandonware/noble/lib/hci-socket/crypto.js') as {
  c1(...args: Buffer[]): Buffer;
  s1(k: Buffer, r1: Buffer, r2: Buffer): Buffer;
};

/** The spec writes values most significant byte first; SMP carries them least significant first. */
const le = (hex: string) => Buffer.from(hex, 'hex').reverse();

describe('LE legacy pairing functions', () => {
  it('c1 and s1 give the Core spec sample results (Vol 3 Part H 2.2.3, 2.2.4)', () => {
    const confirm = c1(
      Buffer.alloc(16),
      le('5783D52156AD6F0E6388274EC6702EE0'),
      le('05000800000302'),
      le('07071000000101'),
      Buffer.from([1]),
      le('A1A2A3A4A5A6'),
      Buffer.from([0]),
      le('B1B2B3B4B5B6'),
    );
    expect(Buffer.from(confirm).reverse().toString('hex')).toBe('1e1e3fef878988ead2a74dc5bef13b86');
    const stk = s1(
      Buffer.alloc(16),
      le('000F0E0D0C0B0A091122334455667788'),
      le('010203040506070899AABBCCDDEEFF00'),
    );
    expect(Buffer.from(stk).reverse().toString('hex')).toBe('9a1fe1f0e8b0f49b5b4216ae796da062');
  });

  it("agree with noble's smp crypto on random inputs", () => {
    for (let i = 0; i < 20; i++) {
      const r = () =>
        Buffer.from(Array.from({ length: 16 }, () => Math.floor(Math.random() * 256)));
      const args = [
        r(),
        r(),
        r().subarray(0, 7),
        r().subarray(0, 7),
        Buffer.from([0]),
        r().subarray(0, 6),
        Buffer.from([1]),
        r().subarray(0, 6),
      ] as const;
      expect(c1(...args).equals(nobleCrypto.c1(...args))).toBe(true);
      const [k, r1, r2] = [r(), r(), r()];
      expect(s1(k, r1, r2).equals(nobleCrypto.s1(k, r1, r2))).toBe(true);
    }
  });
});

const CENTRAL = 'c0:ff:ee:00:00:01';
const DEVICE = '24:0a:c4:00:00:01';

/** A responder and the PDUs it sends, with the central's side played here as noble plays it. */
function responder(level: LinkSecurityLevel, bonds = new Map<string, Bond>()) {
  const sent: Buffer[] = [];
  const outcomes: PairingOutcome[] = [];
  const smp = new SmpResponder({
    level,
    send: (pdu) => sent.push(pdu),
    central: { address: CENTRAL, random: false },
    peripheral: { address: DEVICE, random: false },
    bonds,
    outcome: (o) => outcomes.push(o),
  });
  return { smp, sent, outcomes, bonds };
}

/** noble's Pairing Request: NoInputNoOutput, no OOB, bonding without MITM, key 16, responder distributes its LTK. */
const NOBLE_PREQ = Buffer.from([0x01, 0x03, 0x00, 0x01, 0x10, 0x00, 0x01]);

/** Runs noble's side of LE legacy Just Works against `smp`; returns the STK both sides hold. */
function pairLikeNoble(r: ReturnType<typeof responder>, preq = NOBLE_PREQ): Buffer | undefined {
  const ia = le(CENTRAL.replaceAll(':', ''));
  const ra = le(DEVICE.replaceAll(':', ''));
  r.smp.handle(preq);
  const pres = r.sent.at(-1);
  if (pres?.[0] !== 0x02) return undefined;
  const tk = Buffer.alloc(16);
  const mrand = Buffer.alloc(16, 0x5a);
  const mconfirm = nobleCrypto.c1(
    tk,
    mrand,
    pres,
    preq,
    Buffer.from([0]),
    ia,
    Buffer.from([0]),
    ra,
  );
  r.smp.handle(Buffer.concat([Buffer.from([0x03]), mconfirm]));
  const sconfirm = r.sent.at(-1)?.subarray(1) ?? Buffer.alloc(0);
  r.smp.handle(Buffer.concat([Buffer.from([0x04]), mrand]));
  const srand = r.sent.at(-1)?.subarray(1) ?? Buffer.alloc(0);
  // The central checks the device's confirm value against its random, as noble does.
  const expected = nobleCrypto.c1(
    tk,
    srand,
    pres,
    preq,
    Buffer.from([0]),
    ia,
    Buffer.from([0]),
    ra,
  );
  expect(expected.equals(sconfirm)).toBe(true);
  return nobleCrypto.s1(tk, srand, mrand);
}

describe("the rig's security manager (responder)", () => {
  it('pairs with Just Works, encrypts with the STK, distributes its LTK and keeps the bond', () => {
    const r = responder('encrypted');
    const stk = pairLikeNoble(r);
    if (!stk) throw new Error('no pairing response');
    // Pairing Response: NoInputNoOutput, bonding + Secure Connections offered, key 16, LTK only.
    expect(r.sent[0]?.toString('hex')).toBe('02030009100001');
    expect(r.smp.startEncryption(Buffer.alloc(8), 0, stk)).toBe(0);
    expect(r.smp.state).toEqual({
      encrypted: true,
      authenticated: false,
      keySize: 16,
      bonded: true,
    });
    const [encInfo, ident] = r.sent.slice(-2);
    expect(encInfo?.[0]).toBe(0x06);
    expect(ident?.[0]).toBe(0x07);
    const bond = r.bonds.get(CENTRAL);
    expect(bond?.ltk.equals(encInfo?.subarray(1) ?? Buffer.alloc(0))).toBe(true);
    expect(r.outcomes).toEqual([{ result: 'paired', method: 'legacy-just-works', bonded: true }]);

    // A later connection encrypts with the bond's LTK, EDIV and Rand: no pairing.
    const again = responder('encrypted', r.bonds);
    expect(again.smp.hasBond).toBe(true);
    if (!bond) throw new Error('no bond');
    expect(again.smp.startEncryption(bond.rand, bond.ediv, bond.ltk)).toBe(0);
    expect(again.smp.state.bonded).toBe(true);
    // The wrong key is a MIC failure, an unknown EDIV/Rand a missing key.
    expect(
      responder('encrypted', r.bonds).smp.startEncryption(bond.rand, bond.ediv, Buffer.alloc(16)),
    ).toBe(0x3d);
    expect(
      responder('encrypted', r.bonds).smp.startEncryption(Buffer.alloc(8, 1), 7, bond.ltk),
    ).toBe(0x06);
  });

  it('fails a pairing whose confirm value does not match (Confirm Value Failed)', () => {
    const r = responder('encrypted');
    r.smp.handle(NOBLE_PREQ);
    r.smp.handle(Buffer.concat([Buffer.from([0x03]), Buffer.alloc(16, 1)]));
    r.smp.handle(Buffer.concat([Buffer.from([0x04]), Buffer.alloc(16, 2)]));
    expect(r.sent.at(-1)?.toString('hex')).toBe('0504');
    expect(r.outcomes).toEqual([expect.objectContaining({ result: 'failed', reason: 0x04 })]);
    expect(r.bonds.size).toBe(0);
  });

  it('refuses what the device does not take: legacy pairing when it needs MITM, any pairing when open, weak keys, and (not modeled) LE Secure Connections', () => {
    const auth = responder('authenticated');
    expect(pairLikeNoble(auth)).toBeUndefined();
    expect(auth.sent.at(-1)?.toString('hex')).toBe('0503');
    const open = responder('open');
    open.smp.handle(NOBLE_PREQ);
    expect(open.sent.at(-1)?.toString('hex')).toBe('0505');
    const weak = responder('encrypted');
    weak.smp.handle(Buffer.from([0x01, 0x03, 0x00, 0x01, 0x06, 0x00, 0x01]));
    expect(weak.sent.at(-1)?.toString('hex')).toBe('0506');
    const sc = responder('encrypted');
    sc.smp.handle(Buffer.from([0x01, 0x03, 0x00, 0x09, 0x10, 0x00, 0x01]));
    expect(sc.sent.at(-1)?.toString('hex')).toBe('0505');
    expect(sc.outcomes[0]).toMatchObject({ result: 'refused', why: /not modeled/ });
  });
});

describe('ATT write permissions (NimBLE ble_att_svr_check_perms)', () => {
  function secured(level: 'encrypted' | 'authenticated') {
    const layout = structuredClone(BASELINE_LAYOUT) as GattLayout;
    for (const chr of layout.services[0]?.characteristics ?? []) chr.writeSecurity = level;
    const app = new BaselineTestApp();
    const sent: string[] = [];
    const refused: Array<[number, boolean]> = [];
    const link = {
      state: { encrypted: false, authenticated: false, keySize: 0, bonded: false },
      hasBond: false,
    };
    const att = new AttServer({
      conn: 1,
      db: new AttributeDb(layout),
      app,
      appearance: 0,
      deviceName: () => 'esp32',
      serverMtu: () => 256,
      send: (pdu) => sent.push(pdu.toString('hex')),
      mtuChanged: () => {},
      linkSecurity: () => link,
      insecureWrite: (_chr, code, withResponse) => refused.push([code, withResponse]),
    });
    const req = async (hex: string) => {
      sent.length = 0;
      await att.handlePdu(Buffer.from(hex.replace(/ /g, ''), 'hex'));
      return sent.join(',');
    };
    return { app, req, link, refused };
  }

  it('refuses a write on an unencrypted link: Insufficient Authentication, or Insufficient Encryption when it holds keys', async () => {
    const { app, req, link, refused } = secured('encrypted');
    // Write Request to OTA Data (handle 0x0f), then a Write Command to OTA Control (0x0c).
    expect(await req('12 0f00 f400')).toBe('01120f0005');
    expect(await req('52 0c00 01')).toBe('');
    link.hasBond = true;
    expect(await req('12 0f00 f400')).toBe('01120f000f');
    expect(refused).toEqual([
      [0x05, true],
      [0x05, false],
      [0x0f, true],
    ]);
    // Reads, and the CCCD, stay open.
    expect(await req('12 0d00 0100')).toBe('13');
    link.state.encrypted = true;
    expect(await req('12 0f00 f400')).toBe('13');
    expect(app.writes.length).toBe(1);
  });

  it('needs keys with MITM protection where the firmware asks for an authenticated link', async () => {
    const { req, link } = secured('authenticated');
    link.state.encrypted = true;
    expect(await req('12 0f00 f400')).toBe('01120f0005');
    link.state.authenticated = true;
    expect(await req('12 0f00 f400')).toBe('13');
  });
});
