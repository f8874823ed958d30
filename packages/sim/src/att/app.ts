/**
 * What the virtual peripheral asks of the application behind it. It maps 1:1 onto the device
 * program's stdio frames (Contract B): onConnect = CONNECT, onDisconnect = DISCONNECT,
 * onMtu = MTU, onWrite = WRITE (+ WRITE_RSP when withResponse), onRead = READ (+ READ_RSP),
 * onSubscribe = SUBSCRIBE; the app answers NOTIFY with `VirtualPeripheral.notify()` and
 * HELLO with `startAdvertising()` / `stopAdvertising()`.
 */
export interface PeripheralApp {
  onConnect(conn: number, mtu: number): void;
  /** `reason` is the HCI reason code the peripheral's controller reports (e.g. 0x13, 0x08). */
  onDisconnect(conn: number, reason: number): void;
  onMtu(conn: number, mtu: number): void;
  /**
   * A Write Request (`withResponse`) or Write Command. Resolve to 0 or an ATT error code; for a
   * Write Command the result is ignored, as NimBLE ignores it.
   */
  onWrite(
    conn: number,
    chrId: number,
    data: Uint8Array,
    withResponse: boolean,
  ): Promise<number> | number;
  onRead(conn: number, chrId: number): Promise<ReadResult> | ReadResult;
  /** `flags`: bit 0 notifications, bit 1 indications (the CCCD value). */
  onSubscribe(conn: number, chrId: number, flags: number): void;
}

export interface ReadResult {
  /** 0 or an ATT error code. */
  status: number;
  data: Uint8Array;
}

/** ATT error codes (Core Vol 3 Part F 3.4.1.1) and the one CSS code NimBLE uses. */
export const AttError = {
  InvalidHandle: 0x01,
  ReadNotPermitted: 0x02,
  WriteNotPermitted: 0x03,
  InvalidPdu: 0x04,
  InsufficientAuthentication: 0x05,
  RequestNotSupported: 0x06,
  InvalidOffset: 0x07,
  InsufficientAuthorization: 0x08,
  PrepareQueueFull: 0x09,
  AttributeNotFound: 0x0a,
  AttributeNotLong: 0x0b,
  InsufficientEncryptionKeySize: 0x0c,
  InvalidAttributeValueLength: 0x0d,
  Unlikely: 0x0e,
  InsufficientEncryption: 0x0f,
  UnsupportedGroupType: 0x10,
  InsufficientResources: 0x11,
} as const;
