import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BluetoothUnavailableError } from './errors.ts';
import { describeLoadError, loadNoble } from './load.ts';

// This file runs in its own worker without the virtual HCI hook, so it meets the real
// @abandonware/bluetooth-hci-socket, as the CLI does on a machine.
const hasAdapter =
  existsSync('/sys/class/bluetooth') && readdirSync('/sys/class/bluetooth').length > 0;

describe('loadNoble', () => {
  it.skipIf(hasAdapter)(
    'turns the load-time socket failure into a clear error with the capability hint',
    async () => {
      const error = await loadNoble().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BluetoothUnavailableError);
      const message = (error as Error).message;
      expect(message).toMatch(/^no Bluetooth adapter: /);
      expect(message).toContain('cap_net_raw,cap_net_admin');
      expect((error as BluetoothUnavailableError).code).toBe('NO_ADAPTER');
      // A second attempt tries again instead of returning the cached failure.
      await expect(loadNoble()).rejects.toBeInstanceOf(BluetoothUnavailableError);
    },
  );

  it('explains the errno values noble meets when opening the HCI socket', () => {
    expect(describeLoadError({ code: 'EAFNOSUPPORT', message: 'x' })).toMatch(
      /no Bluetooth support/,
    );
    expect(describeLoadError({ code: 'EPERM', message: 'x' })).toMatch(/not allowed/);
    expect(describeLoadError({ code: 'ENODEV', message: 'x' })).toMatch(/hciconfig hci0 up/);
    expect(describeLoadError(new Error('odd'))).toBe('odd');
  });
});
