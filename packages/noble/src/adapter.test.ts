import type { VirtualHciSocket } from '@esp-ble-ota/sim';
import { afterEach, describe, expect, it } from 'vitest';
import { waitForPoweredOn } from './adapter.ts';
import { BluetoothUnavailableError } from './errors.ts';
import type { Noble } from './noble-types.ts';
import { releaseVirtualNobles, setupVirtual } from './test/virtual-radio.ts';

afterEach(() => releaseVirtualNobles());

/** The virtual adapter under a noble instance, to switch it off as `hciconfig hci0 down` does. */
function adapter(noble: Noble): VirtualHciSocket {
  const socket = (noble._bindings?._hci as { _socket?: unknown } | undefined)?._socket;
  if (socket === undefined) throw new Error('noble has no HCI socket');
  return socket as VirtualHciSocket;
}

describe('waitForPoweredOn', () => {
  it('says how to switch on an adapter that stays powered off', async () => {
    const { noble } = setupVirtual({ address: '24:0a:c4:00:02:01' });
    adapter(noble).setPowered(false);
    const error = await waitForPoweredOn(noble, { timeoutMs: 1500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BluetoothUnavailableError);
    expect((error as Error).message).toMatch(
      /^no Bluetooth adapter: the adapter is powered off \(switch it on: bluetoothctl power on/,
    );
  });

  it('waits for an adapter that comes up', async () => {
    const { noble } = setupVirtual({ address: '24:0a:c4:00:02:02' });
    const socket = adapter(noble);
    socket.setPowered(false);
    setTimeout(() => socket.setPowered(true), 300);
    await expect(waitForPoweredOn(noble, { timeoutMs: 5000 })).resolves.toBeUndefined();
    expect(noble.state).toBe('poweredOn');
  });

  it('stops waiting when aborted', async () => {
    const { noble } = setupVirtual({ address: '24:0a:c4:00:02:03' });
    adapter(noble).setPowered(false);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(
      waitForPoweredOn(noble, { timeoutMs: 5000, signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'ABORTED' });
  });
});
