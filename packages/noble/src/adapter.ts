import { withDeadline } from './deadline.ts';
import { BluetoothUnavailableError } from './errors.ts';
import type { Noble, NobleState } from './noble-types.ts';

export interface PoweredOnOptions {
  signal?: AbortSignal | undefined;
  /** How long to wait for the adapter to report poweredOn (default 10 s). */
  timeoutMs?: number | undefined;
}

/**
 * Wait until noble's adapter is poweredOn. 'unauthorized' and 'unsupported' fail at once, since
 * waiting cannot change them; 'poweredOff' waits (someone may switch the adapter on) until the
 * timeout, then says how to switch it on.
 */
export async function waitForPoweredOn(
  noble: Noble,
  options: PoweredOnOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  let current: NobleState;
  try {
    // Reading `state` makes noble initialise its bindings (opens the adapter) if nothing has yet.
    current = noble.state;
  } catch (error) {
    throw new BluetoothUnavailableError(`opening the adapter failed: ${String(error)}`, {
      cause: error,
    });
  }
  const final = stateError(current);
  if (current === 'poweredOn') return;
  if (final !== undefined) throw final;

  let last: NobleState = current;
  try {
    await withDeadline<void>(
      { signal: options.signal, timeoutMs, what: 'waiting for the Bluetooth adapter' },
      (resolve, reject) => {
        const onState = (state: NobleState) => {
          last = state;
          if (state === 'poweredOn') resolve();
          else {
            const error = stateError(state);
            if (error !== undefined) reject(error);
          }
        };
        noble.on('stateChange', onState);
        return () => noble.removeListener('stateChange', onState);
      },
    );
  } catch (error) {
    if ((error as { code?: unknown }).code === 'TIMEOUT') {
      throw new BluetoothUnavailableError(
        last === 'poweredOff'
          ? `the adapter is powered off (switch it on: bluetoothctl power on, or rfkill unblock bluetooth)`
          : `the adapter did not become ready within ${timeoutMs} ms (state ${last})`,
        { cause: error },
      );
    }
    throw error;
  }
}

function stateError(state: NobleState): BluetoothUnavailableError | undefined {
  if (state === 'unauthorized') {
    return new BluetoothUnavailableError('the adapter refused access (state unauthorized)');
  }
  if (state === 'unsupported') {
    return new BluetoothUnavailableError(
      'the adapter does not support Bluetooth Low Energy or could not be initialised (state unsupported)',
    );
  }
  return undefined;
}
