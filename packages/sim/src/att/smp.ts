import { createCipheriv, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The link security the firmware's OTA writes need (CONFIG_BLE_OTA_LINK_SECURITY), as the
 * device program's `--gatt-json` gives it per characteristic (`writeSecurity`).
 */
export type LinkSecurityLevel = 'open' | 'encrypted' | 'authenticated';

/** What NimBLE's `ble_gap_conn_desc.sec_state` says of one connection. */
export interface LinkSecurityState {
  encrypted: boolean;
  /** The keys came from a pairing with MITM protection. */
  authenticated: boolean;
  /** Key size in bytes, 0 while unencrypted. */
  keySize: number;
  /** The keys of this link are stored as a bond. */
  bonded: boolean;
}

/** A bond as NimBLE's store keeps it for a peer (the responder's LTK and its EDIV/Rand). */
export interface Bond {
  ltk: Buffer;
  ediv: number;
  rand: Buffer;
  authenticated: boolean;
  keySize: number;
}

/** SMP command codes (Core Vol 3 Part H 3.3). */
export const SmpOp = {
  PairingRequest: 0x01,
  PairingResponse: 0x02,
  PairingConfirm: 0x03,
  PairingRandom: 0x04,
  PairingFailed: 0x05,
  EncryptionInformation: 0x06,
  CentralIdentification: 0x07,
} as const;

/** Pairing Failed reasons (Core Vol 3 Part H 3.5.5). */
export const SmpReason = {
  ConfirmValueFailed: 0x04,
  PairingNotSupported: 0x05,
  AuthenticationRequirements: 0x03,
  EncryptionKeySize: 0x06,
  CommandNotSupported: 0x07,
  UnspecifiedReason: 0x08,
  InvalidParameters: 0x0a,
} as const;

const AUTHREQ_BONDING = 0x01;
const AUTHREQ_SC = 0x08;
const IO_NO_INPUT_NO_OUTPUT = 0x03;
const KEY_DIST_ENC = 0x01;
const KEY_DIST_ID = 0x02;
const MIN_KEY_SIZE = 7;

/** What one pairing attempt came to, for the rig's log and tests. */
export type PairingOutcome =
  | { result: 'paired'; method: 'legacy-just-works'; bonded: boolean }
  | { result: 'refused'; reason: number; why: string }
  | { result: 'failed'; reason: number; why: string };

export interface SmpContext {
  level: LinkSecurityLevel;
  /** Sends one SMP PDU to the central (L2CAP CID 6). */
  send(pdu: Buffer): void;
  /** Initiator (central) and responder addresses as they were used to connect; all public here. */
  central: { address: string; random: boolean };
  peripheral: { address: string; random: boolean };
  /** The device's bond store (NimBLE's ble_store, in NVS: it outlives connections and reboots). */
  bonds: Map<string, Bond>;
  outcome(o: PairingOutcome): void;
}

/**
 * The security manager of a NimBLE peripheral, as far as the rig models it: the responder side
 * of LE legacy pairing with Just Works (TK 0), which is what noble's HCI stack (smp.js) does as
 * a central, then the key distribution of a bonding pairing (the device's LTK, EDIV and Rand)
 * and encryption with the STK or a bonded LTK.
 *
 * What it does not model: LE Secure Connections (P-256 ECDH, f4/f5/f6): a request that asks
 * for it is refused with "Pairing Not Supported" where NimBLE would pair; passkey entry and
 * numeric comparison, so no pairing here is ever authenticated; identity (IRK) and signing
 * (CSRK) keys; the link layer's encryption itself (LL_ENC_REQ, session keys, AES-CCM and its
 * MIC, and their few connection events of delay), for which the controller only compares
 * keys; and SMP's 30 s timeout.
 */
export class SmpResponder {
  /** Security of the link now. */
  readonly state: LinkSecurityState = {
    encrypted: false,
    authenticated: false,
    keySize: 0,
    bonded: false,
  };
  private preq: Buffer | undefined;
  private pres: Buffer | undefined;
  private mconfirm: Buffer | undefined;
  private srand: Buffer | undefined;
  private stk: { key: Buffer; keySize: number; bonding: boolean; distribute: number } | undefined;
  /** Key size and bonding agreed in the feature exchange, for the STK that follows. */
  private pendingKeySize = 16;
  private pendingBonding = false;

  constructor(private readonly ctx: SmpContext) {}

  /** Whether the device holds keys of this central (NimBLE then answers "Insufficient Encryption"). */
  get hasBond(): boolean {
    return this.ctx.bonds.has(this.ctx.central.address);
  }

  handle(pdu: Buffer): void {
    const code = pdu[0];
    switch (code) {
      case SmpOp.PairingRequest:
        this.pairingRequest(pdu);
        return;
      case SmpOp.PairingConfirm:
        if (!this.pres || pdu.length !== 17) {
          this.fail(SmpReason.UnspecifiedReason, 'a Pairing Confirm out of order');
          return;
        }
        this.mconfirm = Buffer.from(pdu.subarray(1));
        this.srand = randomBytes(16);
        this.ctx.send(
          Buffer.concat([Buffer.from([SmpOp.PairingConfirm]), this.confirm(this.srand)]),
        );
        return;
      case SmpOp.PairingRandom:
        this.pairingRandom(pdu);
        return;
      case SmpOp.PairingFailed:
        this.reset();
        return;
      default:
        // Keys a central distributes (it asked for none here), or a command NimBLE does not take.
        if (code === SmpOp.EncryptionInformation || code === SmpOp.CentralIdentification) return;
        this.ctx.send(Buffer.from([SmpOp.PairingFailed, SmpReason.CommandNotSupported]));
    }
  }

  /**
   * The central's controller started encryption (LE Start Encryption); the device's controller
   * asked its host for the key of (`rand`, `ediv`) and the link layer compared it with the
   * central's. Returns the HCI status the Encryption Change event carries: 0 encrypted, 0x06
   * "PIN or Key Missing" when the device has no such key (LTK negative reply), or 0x3d "MIC
   * failure" when the keys differ (the link then drops).
   */
  startEncryption(rand: Buffer, ediv: number, key: Buffer): number {
    const stk = this.stk;
    if (stk && ediv === 0 && rand.every((b) => b === 0)) {
      this.stk = undefined;
      if (!equal(key, stk.key)) return 0x3d;
      Object.assign(this.state, {
        encrypted: true,
        authenticated: false,
        keySize: stk.keySize,
        bonded: false,
      });
      this.distributeKeys(stk);
      return 0;
    }
    const bond = this.ctx.bonds.get(this.ctx.central.address);
    if (!bond || bond.ediv !== ediv || !equal(bond.rand, rand)) return 0x06;
    if (!equal(bond.ltk, key)) return 0x3d;
    Object.assign(this.state, {
      encrypted: true,
      authenticated: bond.authenticated,
      keySize: bond.keySize,
      bonded: true,
    });
    return 0;
  }

  private pairingRequest(pdu: Buffer): void {
    this.reset();
    if (this.ctx.level === 'open') {
      // A firmware built with link security off has no security manager to pair with.
      this.refuse(
        SmpReason.PairingNotSupported,
        'the firmware pairs with no one (link security open)',
      );
      return;
    }
    if (pdu.length !== 7) {
      this.fail(SmpReason.InvalidParameters, 'a Pairing Request of the wrong length');
      return;
    }
    const authReq = pdu[3] ?? 0;
    const maxKeySize = pdu[4] ?? 0;
    if (maxKeySize < MIN_KEY_SIZE || maxKeySize > 16) {
      this.refuse(
        SmpReason.EncryptionKeySize,
        `a maximum key size of ${maxKeySize} bytes (NimBLE takes 7 to 16)`,
      );
      return;
    }
    if (authReq & AUTHREQ_SC) {
      this.refuse(
        SmpReason.PairingNotSupported,
        'LE Secure Connections pairing is not modeled by the virtual rig (a NimBLE device would pair)',
      );
      return;
    }
    if (this.ctx.level === 'authenticated') {
      // CONFIG_BLE_OTA_LINK_AUTHENTICATED with CONFIG_BT_NIMBLE_SM_LEGACY off: legacy pairing
      // cannot protect its keys from a sniffer, so only LE Secure Connections is taken.
      this.refuse(
        SmpReason.AuthenticationRequirements,
        'the device takes LE Secure Connections pairing with MITM protection only; this central asked for LE legacy pairing',
      );
      return;
    }
    // A central that lost its keys pairs again: NimBLE raises BLE_GAP_EVENT_REPEAT_PAIRING and
    // the firmware deletes the old bond and retries (ble_ota_nimble.c), as this does.
    this.ctx.bonds.delete(this.ctx.central.address);
    const ours = AUTHREQ_BONDING | AUTHREQ_SC;
    const initDist = (pdu[5] ?? 0) & (KEY_DIST_ENC | KEY_DIST_ID);
    const respDist = (pdu[6] ?? 0) & (KEY_DIST_ENC | KEY_DIST_ID);
    this.preq = Buffer.from(pdu);
    this.pres = Buffer.from([
      SmpOp.PairingResponse,
      IO_NO_INPUT_NO_OUTPUT,
      0x00,
      ours,
      16,
      initDist,
      respDist,
    ]);
    this.stk = undefined;
    this.pendingKeySize = Math.min(maxKeySize, 16);
    this.pendingBonding = (authReq & AUTHREQ_BONDING) !== 0;
    this.ctx.send(this.pres);
  }

  private pairingRandom(pdu: Buffer): void {
    if (!this.mconfirm || !this.srand || pdu.length !== 17) {
      this.fail(SmpReason.UnspecifiedReason, 'a Pairing Random out of order');
      return;
    }
    const mrand = Buffer.from(pdu.subarray(1));
    if (!equal(this.confirm(mrand), this.mconfirm)) {
      this.fail(
        SmpReason.ConfirmValueFailed,
        "the central's confirm value does not match its random",
      );
      return;
    }
    this.ctx.send(Buffer.concat([Buffer.from([SmpOp.PairingRandom]), this.srand]));
    this.stk = {
      key: s1(TK_JUST_WORKS, this.srand, mrand),
      keySize: this.pendingKeySize,
      bonding: this.pendingBonding,
      distribute: this.pres?.[6] ?? 0,
    };
    this.mconfirm = undefined;
  }

  /** After encryption with the STK: the responder's keys, and the bond if both sides bond. */
  private distributeKeys(stk: { keySize: number; bonding: boolean; distribute: number }): void {
    let bonded = false;
    if (stk.distribute & KEY_DIST_ENC) {
      const ltk = Buffer.concat([randomBytes(stk.keySize), Buffer.alloc(16 - stk.keySize)]);
      const ediv = randomBytes(2).readUInt16LE(0);
      const rand = randomBytes(8);
      this.ctx.send(Buffer.concat([Buffer.from([SmpOp.EncryptionInformation]), ltk]));
      const ident = Buffer.alloc(11);
      ident.writeUInt8(SmpOp.CentralIdentification, 0);
      ident.writeUInt16LE(ediv, 1);
      rand.copy(ident, 3);
      this.ctx.send(ident);
      if (stk.bonding) {
        this.ctx.bonds.set(this.ctx.central.address, {
          ltk,
          ediv,
          rand,
          authenticated: false,
          keySize: stk.keySize,
        });
        bonded = true;
      }
    }
    this.state.bonded = bonded;
    this.ctx.outcome({ result: 'paired', method: 'legacy-just-works', bonded });
  }

  private confirm(random: Buffer): Buffer {
    const { preq, pres } = this;
    if (!preq || !pres) throw new Error('unreachable: confirm before the pairing feature exchange');
    return c1(
      TK_JUST_WORKS,
      random,
      pres,
      preq,
      Buffer.from([this.ctx.central.random ? 1 : 0]),
      addressLe(this.ctx.central.address),
      Buffer.from([this.ctx.peripheral.random ? 1 : 0]),
      addressLe(this.ctx.peripheral.address),
    );
  }

  private refuse(reason: number, why: string): void {
    this.ctx.send(Buffer.from([SmpOp.PairingFailed, reason]));
    this.reset();
    this.ctx.outcome({ result: 'refused', reason, why });
  }

  private fail(reason: number, why: string): void {
    this.ctx.send(Buffer.from([SmpOp.PairingFailed, reason]));
    this.reset();
    this.ctx.outcome({ result: 'failed', reason, why });
  }

  private reset(): void {
    this.preq = undefined;
    this.pres = undefined;
    this.mconfirm = undefined;
    this.srand = undefined;
  }
}

/** Just Works: the temporary key is 0. */
const TK_JUST_WORKS = Buffer.alloc(16);

/**
 * The security function e (Core Vol 3 Part H 2.2.1): AES-128 of node:crypto, with SMP's byte
 * order (values are little-endian on the wire, AES works on big-endian blocks).
 */
export function smpE(key: Buffer, data: Buffer): Buffer {
  const cipher = createCipheriv('aes-128-ecb', reverse(key), null);
  cipher.setAutoPadding(false);
  return reverse(Buffer.concat([cipher.update(reverse(data)), cipher.final()]));
}

/** The legacy confirm value function c1 (Core Vol 3 Part H 2.2.3); all values little-endian. */
export function c1(
  k: Buffer,
  r: Buffer,
  pres: Buffer,
  preq: Buffer,
  iat: Buffer,
  ia: Buffer,
  rat: Buffer,
  ra: Buffer,
): Buffer {
  const p1 = Buffer.concat([iat, rat, preq, pres]);
  const p2 = Buffer.concat([ra, ia, Buffer.alloc(4)]);
  return smpE(k, xor(smpE(k, xor(r, p1)), p2));
}

/** The legacy key generation function s1 (Core Vol 3 Part H 2.2.4): STK = s1(TK, Srand, Mrand). */
export function s1(k: Buffer, r1: Buffer, r2: Buffer): Buffer {
  return smpE(k, Buffer.concat([r2.subarray(0, 8), r1.subarray(0, 8)]));
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

function reverse(b: Buffer): Buffer {
  return Buffer.from(b).reverse();
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** "aa:bb:cc:dd:ee:ff" as SMP carries it: six bytes, least significant first. */
function addressLe(address: string): Buffer {
  return Buffer.from(address.split(':').reverse().join(''), 'hex');
}
