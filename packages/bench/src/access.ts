/**
 * The bench's transfers go through the update flow every front end uses (`updateDevice`), over
 * its own DeviceAccess: the rig's noble, one board found by its address, the board's modeled
 * clock.
 */
import { nobleAccess, OTA_CHARACTERISTICS, type ScannedDevice } from '@esp-ble-ota/noble';
import {
  type DeviceAccess,
  hasV2,
  parseAppImage,
  type Transport,
  type UpdateEvent,
  type UpdateResult,
  type UploadProtocol,
  updateDevice,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  type V2Compression,
} from '@esp-ble-ota/protocol';
import type { VirtualBoard, VirtualRig } from '@esp-ble-ota/sim';

/** What the transport discovers: the baseline's characteristics and v2's. */
export const CHARACTERISTICS = [...OTA_CHARACTERISTICS, V2_CONTROL_UUID, V2_DATA_UUID];

export interface RigAccess extends DeviceAccess<ScannedDevice> {
  /** Whether the latest connection discovered v2's characteristics; undefined before one. */
  readonly offersV2: boolean | undefined;
  /** Called by {@link updateOnRig} once the update's connection is up. */
  connected(): void;
}

/** One board of the rig through the rig's noble; figures on the board's modeled clock. */
export function rigAccess(rig: VirtualRig, board: VirtualBoard): RigAccess {
  const inner = nobleAccess(rig.noble, {
    filter: { address: board.address },
    transport: { characteristics: CHARACTERISTICS },
    clock: () => board.modeledClock,
  });
  let last: Transport | undefined;
  let offersV2: boolean | undefined;
  return {
    ...inner,
    transport: (device) => {
      last = inner.transport(device);
      return last;
    },
    get offersV2() {
      return offersV2;
    },
    connected: () => {
      if (last) offersV2 = hasV2(last);
    },
  };
}

export interface RigUpdateOptions {
  protocol: UploadProtocol;
  compression?: V2Compression;
  findTimeoutMs?: number;
  onEvent?: (event: UpdateEvent) => void;
}

/**
 * One update of the board as the bench measures it: the protocol forced, no resume (a lost link
 * is a failed transfer), and no reconnect to verify (the next transfer waits for the board, and
 * the realistic image cannot boot on it).
 */
export function updateOnRig(
  access: RigAccess,
  image: Uint8Array,
  options: RigUpdateOptions,
): Promise<UpdateResult<ScannedDevice>> {
  const info = parseAppImage(image);
  return updateDevice(access, {
    image,
    imageInfo: info,
    protocol: options.protocol,
    ...(options.compression === undefined ? {} : { compression: options.compression }),
    findTimeoutMs: options.findTimeoutMs ?? 20_000,
    resumeAttempts: 0,
    verify: false,
    onEvent: (event) => {
      if (event.type === 'connected') access.connected();
      options.onEvent?.(event);
    },
  });
}
