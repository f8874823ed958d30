/**
 * The ATT MTU noble asks for, and the MTU it then uses. Two things in noble's HCI stack
 * (lib/hci-socket/gatt.js, 1.9.2-26) need this hook, the one place that touches them:
 * - it asks for `_desired_mtu`, set to 256 in the Gatt constructor with no option, in an
 *   Exchange MTU Request sent at once on every new link;
 * - it then takes the server's Rx MTU from the response as the link's MTU. ATT says the MTU is
 *   the lesser of both (Core Vol 3 Part F 3.4.2.2). Against a device that prefers more than
 *   noble asked for (this firmware: CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU=517), noble believes
 *   517 while the device uses 256. It would then write up to 514 bytes where the device takes
 *   253, and NimBLE drops such a PDU unanswered.
 *
 * `Gatt.prototype.exchangeMtu` is replaced by the same request, asking for the MTU set here,
 * and keeping the lesser of both values. It holds for every noble in the process, as the module
 * is shared. It is installed when this package opens a transport or sets the MTU. NimBLE takes
 * up to 527; 517 is the most a value ever needs (512 + 5).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface GattInternals {
  exchangeMtu(): void;
  _desired_mtu: number;
  _mtu: number;
  _address: string;
  _queueCommand(request: Buffer, callback: (data: Buffer) => void): void;
  mtuRequest(mtu: number): Buffer;
  emit(event: 'mtu', address: string, mtu: number): boolean;
}

interface GattModule {
  prototype: GattInternals;
}

const ATT_OP_MTU_RESP = 0x03;
const ATT_MTU_MIN = 23;

export const NOBLE_DEFAULT_MTU = 256;
export const MAX_REQUESTED_MTU = 517;

let requested = NOBLE_DEFAULT_MTU;
let installed = false;

/** Puts the hook in place (once per process); safe on a machine without Bluetooth. */
export function installNobleMtuHook(): void {
  if (installed) return;
  const Gatt = require('@abandonware/noble/lib/hci-socket/gatt.js') as GattModule;
  Gatt.prototype.exchangeMtu = function exchangeMtu(this: GattInternals): void {
    this._desired_mtu = requested;
    this._queueCommand(this.mtuRequest(this._desired_mtu), (data) => {
      if (data[0] === ATT_OP_MTU_RESP && data.length >= 3) {
        this._mtu = Math.max(ATT_MTU_MIN, Math.min(this._desired_mtu, data.readUInt16LE(1)));
      }
      this.emit('mtu', this._address, this._mtu);
    });
  };
  installed = true;
}

/** Makes every new noble link ask for `mtu` (23..517); returns the value it replaces. */
export function setRequestedMtu(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < ATT_MTU_MIN || mtu > MAX_REQUESTED_MTU) {
    throw new RangeError(
      `the ATT MTU to ask for must be a whole number from 23 to ${MAX_REQUESTED_MTU}, got ${mtu}`,
    );
  }
  installNobleMtuHook();
  const before = requested;
  requested = mtu;
  return before;
}

/** The ATT MTU new noble links ask for. */
export function requestedMtu(): number {
  return requested;
}
