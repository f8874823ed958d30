/**
 * A client written exactly like the baseline's Python/Bleak one (SEED-PROTOCOL.md), but on noble:
 * first device named `esp32`, characteristics by their own UUIDs, packet size and data written
 * with response, REQUEST and DONE written as Write Commands (Bleak's default of its time).
 * Used to prove that the firmware and the rig still serve the baseline's own exchange.
 */
import type { Noble } from '@esp-ble-ota/noble-types';

/** What noble's Gatt asks for in its Exchange MTU Request (lib/hci-socket/gatt.js). */
const NOBLE_REQUESTED_MTU = 256;

const CONTROL = '7ad671aa21c046a4b722270e3ae3d830';
const DATA = '234088881f404cd89b89ca8d45f8a5b0';

// noble's types are loose here; the fields used are the documented ones.
type Peripheral = {
  address: string;
  mtu: number | null;
  advertisement: { localName?: string };
  connectAsync(): Promise<void>;
  disconnectAsync(): Promise<void>;
  once(event: 'disconnect', listener: (reason: number) => void): void;
  discoverSomeServicesAndCharacteristicsAsync(
    services: string[],
    characteristics: string[],
  ): Promise<{ characteristics: Characteristic[] }>;
  discoverAllServicesAndCharacteristicsAsync(): Promise<{ characteristics: Characteristic[] }>;
};
type Characteristic = {
  uuid: string;
  writeAsync(data: Buffer, withoutResponse: boolean): Promise<void>;
  subscribeAsync(): Promise<void>;
  on(event: 'data', listener: (data: Buffer, isNotification: boolean) => void): void;
};

export async function waitPoweredOn(noble: Noble): Promise<void> {
  while (noble.state !== 'poweredOn') {
    await new Promise<void>((resolve) => noble.once('stateChange', () => resolve()));
  }
}

/** Scans until a device with `name` shows up (the baseline takes the first match). */
export async function findByName(
  noble: Noble,
  name: string,
  timeoutMs = 10_000,
): Promise<Peripheral> {
  await waitPoweredOn(noble);
  const n = noble;
  return new Promise<Peripheral>((resolve, reject) => {
    const timer = setTimeout(() => {
      n.removeListener('discover', onDiscover);
      void n.stopScanningAsync();
      reject(new Error(`no device named ${name} found in ${timeoutMs} ms`));
    }, timeoutMs);
    const onDiscover = (p: Peripheral) => {
      if (p.advertisement.localName !== name) return;
      clearTimeout(timer);
      n.removeListener('discover', onDiscover);
      void n.stopScanningAsync().then(() => resolve(p));
    };
    n.on('discover', onDiscover);
    void n.startScanningAsync([], true);
  });
}

export interface BaselineRunResult {
  packetSize: number;
  packets: number;
  /** Opcodes notified on OTA Control, in order. */
  notifications: number[];
  /** Whether the device dropped the link after DONE_ACK (it restarts). */
  disconnected: boolean;
}

/**
 * The baseline exchange, step by step as SEED-PROTOCOL.md gives it. noble leaves operations
 * pending forever when the link drops; like Bleak, this client fails them on disconnect.
 */
export async function runBaselineExchange(
  p: Peripheral,
  image: Uint8Array,
): Promise<BaselineRunResult> {
  let linkLost: (() => void) | undefined;
  const lost = new Promise<never>((_, reject) => {
    linkLost = () => reject(new Error('link lost'));
  });
  lost.catch(() => {});
  const disconnected = new Promise<boolean>((resolve) =>
    p.once('disconnect', () => {
      linkLost?.();
      resolve(true);
    }),
  );
  // The restart after DONE_ACK is the expected end, not a lost link.
  const expectRestart = () => {
    linkLost = undefined;
  };
  return Promise.race([exchange(p, image, disconnected, expectRestart), lost]);
}

async function exchange(
  p: Peripheral,
  image: Uint8Array,
  disconnected: Promise<boolean>,
  expectRestart: () => void,
): Promise<BaselineRunResult> {
  const { characteristics } = await p.discoverAllServicesAndCharacteristicsAsync();
  const control = characteristics.find((c) => c.uuid === CONTROL);
  const data = characteristics.find((c) => c.uuid === DATA);
  if (!control || !data) throw new Error('OTA characteristics not found');

  const notifications: number[] = [];
  let notify: ((op: number) => void) | undefined;
  control.on('data', (value) => {
    const op = value[0] as number;
    notifications.push(op);
    if (op === 0x05) expectRestart();
    notify?.(op);
  });
  await control.subscribeAsync();
  const nextNotification = () =>
    new Promise<number>((resolve) => {
      notify = (op) => {
        notify = undefined;
        resolve(op);
      };
    });

  // noble's Gatt takes the server's Rx MTU as the link's (it asked for 256); ATT says the lesser
  // of both, which is what the device uses and drops longer PDUs by. A client that trusted
  // p.mtu against this firmware (preferred MTU 517) would send 514-byte packets that never arrive
  // (packages/noble/src/mtu.ts mends it for the project's transport).
  const packetSize = Math.min(p.mtu ?? 23, NOBLE_REQUESTED_MTU) - 3;
  const size = Buffer.alloc(2);
  size.writeUInt16LE(packetSize);
  await data.writeAsync(size, false);

  let answer = nextNotification();
  await control.writeAsync(Buffer.of(0x01), true);
  if ((await answer) !== 0x02) throw new Error('REQUEST_NAK');

  let packets = 0;
  for (let off = 0; off < image.length; off += packetSize) {
    await data.writeAsync(Buffer.from(image.subarray(off, off + packetSize)), false);
    packets += 1;
  }

  answer = nextNotification();
  // The device may restart before noble sees this Write Command leave: only the answer counts.
  void control.writeAsync(Buffer.of(0x04), true);
  const done = await answer;
  if (done !== 0x05) throw new Error(`DONE answered 0x${done.toString(16)}`);
  const gone = await Promise.race([
    disconnected,
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000)),
  ]);
  return { packetSize, packets, notifications, disconnected: gone };
}
