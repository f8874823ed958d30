/**
 * Named link profiles: a central (the phone or computer running the client) against a chip.
 * Every number says where it comes from: a line of LINK-MODEL.md, or "assumption" when
 * LINK-MODEL.md has no figure for it.
 */
import { DATA_LENGTH_MAX } from './air.ts';
import { DEVICE_CPU, type DeviceCpuProfile } from './device-cpu.ts';
import { FLASH_TYPICAL, type FlashTiming } from './flash.ts';
import {
  DEFAULT_MODEL_OPTIONS,
  ModeledAirScheduler,
  type ModelOptions,
} from './modeled-scheduler.ts';
import type { LinkParams, Phy } from './types.ts';

export type CentralName = 'linux-noble' | 'macos' | 'android';
export type ChipName = 'esp32' | 'esp32s3' | 'esp32c3';

/**
 * LINK-MODEL.md "ESP32 facts": "NimBLE defaults in ESP-IDF: preferred MTU 256, ATT MTU at most
 * 527". A firmware that raises its preferred MTU can reach 527; the baseline keeps 256.
 */
export const NIMBLE_MAX_MTU = 527;
export const NIMBLE_DEFAULT_PREFERRED_MTU = 256;

interface CentralFacts {
  connIntervalMs: number;
  /** The shortest interval the central grants when a peripheral asks for one. */
  minConnIntervalMs: number;
  /** Whether its controller does LE 2M PHY. */
  supports2M: boolean;
  /** The ATT MTU the central asks for in its Exchange MTU Request. */
  requestMtu: number;
  /** LE ACL buffers its controller reports (LE Read Buffer Size): host-to-controller credits. */
  aclBuffers: number;
  sources: Record<string, string>;
}

const CENTRALS: Record<CentralName, CentralFacts> = {
  'linux-noble': {
    connIntervalMs: 7.5,
    minConnIntervalMs: 7.5,
    supports2M: true,
    requestMtu: 256,
    aclBuffers: 8,
    sources: {
      minConnIntervalMs: 'LINK-MODEL.md Air time: "connection interval 7.5 ms to 4 s"',
      supports2M: 'assumption: a Bluetooth 5 USB adapter (the virtual controller reports 2M)',
      connIntervalMs:
        'LINK-MODEL.md Centrals: "Linux with noble\'s HCI stack: connection request 7.5-22.5 ms" (the virtual controller grants the minimum; a real adapter may pick more)',
      requestMtu: 'LINK-MODEL.md Centrals: "desired MTU 256 by default"',
      aclBuffers:
        'assumption: LINK-MODEL.md says credits come from LE Read Buffer Size but gives no count; 8 x 251 is a common USB adapter figure',
    },
  },
  macos: {
    connIntervalMs: 15,
    minConnIntervalMs: 15,
    supports2M: true,
    requestMtu: 185,
    aclBuffers: 8,
    sources: {
      minConnIntervalMs:
        'LINK-MODEL.md Centrals: "macOS / iOS: connection interval at least 15 ms"',
      supports2M: 'assumption: LINK-MODEL.md gives no PHY figure for Apple centrals',
      connIntervalMs:
        'LINK-MODEL.md Centrals: "macOS / iOS: connection interval at least 15 ms (a multiple of 15 ms)"',
      requestMtu: 'LINK-MODEL.md Centrals: "ATT MTU 185 typical"',
      aclBuffers:
        'assumption: CoreBluetooth paces Write Without Response by canSendWriteWithoutResponse (LINK-MODEL.md) and publishes no buffer count',
    },
  },
  android: {
    connIntervalMs: 11.25,
    minConnIntervalMs: 11.25,
    supports2M: true,
    requestMtu: 517,
    aclBuffers: 8,
    sources: {
      minConnIntervalMs:
        'LINK-MODEL.md Centrals: "Android: CONNECTION_PRIORITY_HIGH gives 11.25-15 ms" (the low end)',
      supports2M: 'assumption: no PHY figure in LINK-MODEL.md',
      connIntervalMs:
        'LINK-MODEL.md Centrals: "Android: CONNECTION_PRIORITY_HIGH gives 11.25-15 ms on Android 6+" (the low end)',
      requestMtu: 'LINK-MODEL.md Centrals: "MTU up to 517"',
      aclBuffers: 'assumption: no figure in LINK-MODEL.md',
    },
  },
};

interface ChipFacts {
  phy: Phy;
  dataLength: number;
  sources: Record<string, string>;
}

const CHIPS: Record<ChipName, ChipFacts> = {
  esp32: {
    phy: '1M',
    dataLength: DATA_LENGTH_MAX,
    sources: {
      phy: 'LINK-MODEL.md ESP32 facts: "Classic ESP32 (BLE 4.2): Data Length Extension yes, 2M PHY no"',
      dataLength: 'same line (DLE yes); 251 is the most DLE allows (LINK-MODEL.md Air time)',
    },
  },
  esp32s3: {
    phy: '2M',
    dataLength: DATA_LENGTH_MAX,
    sources: {
      phy: 'LINK-MODEL.md ESP32 facts: "ESP32-C2/C3/C6/H2/S3: 2M PHY yes" (assumption: the central supports 2M too)',
      dataLength: 'LINK-MODEL.md Air time: "up to 251 with it" (assumption: both sides do DLE)',
    },
  },
  esp32c3: {
    phy: '2M',
    dataLength: DATA_LENGTH_MAX,
    sources: {
      phy: 'LINK-MODEL.md ESP32 facts: "ESP32-C2/C3/C6/H2/S3: 2M PHY yes" (assumption: the central supports 2M too)',
      dataLength: 'LINK-MODEL.md Air time: "up to 251 with it" (assumption: both sides do DLE)',
    },
  },
};

export interface LinkProfile {
  /** `${central}-${chip}`, e.g. `macos-esp32`. */
  readonly name: string;
  readonly central: CentralName;
  readonly chip: ChipName;
  /** Link parameters once everything is negotiated, against a device that accepts the largest MTU. */
  readonly params: Readonly<LinkParams>;
  /** The ATT MTU the central asks for; the device's preferred MTU may lower it. */
  readonly centralMtu: number;
  /** Host-to-controller ACL credits of the central's controller. */
  readonly centralAclBuffers: number;
  /** The shortest connection interval the central grants a peripheral that asks for it. */
  readonly centralMinIntervalMs: number;
  /** Whether the central's controller does LE 2M PHY. */
  readonly centralSupports2M: boolean;
  readonly model: Readonly<ModelOptions>;
  readonly flash: FlashTiming;
  /** What the chip's CPU costs per PDU and per byte (device-cpu.ts); undefined: nothing. */
  readonly deviceCpu?: DeviceCpuProfile;
  /** Where each number comes from. */
  readonly sources: Readonly<Record<string, string>>;
}

function makeProfile(central: CentralName, chip: ChipName): LinkProfile {
  const c = CENTRALS[central];
  const k = CHIPS[chip];
  return {
    name: `${central}-${chip}`,
    central,
    chip,
    params: {
      phy: k.phy,
      dataLength: k.dataLength,
      connIntervalMs: c.connIntervalMs,
      attMtu: Math.min(c.requestMtu, NIMBLE_MAX_MTU),
      encrypted: false,
    },
    centralMtu: c.requestMtu,
    centralAclBuffers: c.aclBuffers,
    centralMinIntervalMs: c.minConnIntervalMs,
    centralSupports2M: c.supports2M,
    model: { ...DEFAULT_MODEL_OPTIONS },
    flash: FLASH_TYPICAL,
    ...(DEVICE_CPU[chip] ? { deviceCpu: DEVICE_CPU[chip] } : {}),
    sources: {
      ...c.sources,
      ...k.sources,
      attMtu:
        'min(central request, NimBLE maximum 527: LINK-MODEL.md ESP32 facts "ATT MTU at most 527")',
      encrypted:
        "a new link is not encrypted (the baseline never pairs); the virtual controller marks it encrypted when LE Start Encryption succeeds (the firmware's secure default makes the central pair), and from then on every data PDU with a payload carries a 4-byte MIC (LINK-MODEL.md Air time)",
      peripheralRxBuffers:
        'LINK-MODEL.md ESP32 facts: "ACL buffers 24 x 255"; on the rig a firmware that declares its own count (--gatt-json controller.aclRxBuffers) replaces it',
      ceRule:
        'LINK-MODEL.md Air time: "the next PDU is sent only if PDU(next) + 2 T_IFS + max RX time fits before min(anchor + interval - margin, anchor + max_ce_len)"',
      flash: 'LINK-MODEL.md ESP32 facts: W25Q32JV-class typical values',
      deviceCpu: 'device-cpu.ts: estimates from cycle counts, not measured (each says why)',
    },
  };
}

export const CENTRAL_NAMES: readonly CentralName[] = ['linux-noble', 'macos', 'android'];
export const CHIP_NAMES: readonly ChipName[] = ['esp32', 'esp32s3'];

/**
 * Every central against the classic ESP32 and the S3, and noble against the single-core C3
 * (where the NimBLE host and the OTA writer share one core).
 */
export const PROFILES: readonly LinkProfile[] = [
  ...CENTRAL_NAMES.flatMap((central) => CHIP_NAMES.map((chip) => makeProfile(central, chip))),
  makeProfile('linux-noble', 'esp32c3'),
];

export function getProfile(name: string): LinkProfile {
  const found = PROFILES.find((p) => p.name === name);
  if (!found) {
    throw new Error(
      `unknown link profile '${name}'; choose one of ${PROFILES.map((p) => p.name).join(', ')}`,
    );
  }
  return found;
}

/**
 * A new connection's link before anything is negotiated: the central's interval, but the link
 * layer's defaults for data length (27) and PHY (1M), and no encryption. Data Length Extension and
 * 2M come only when one side asks for them, encryption once the central pairs or uses a bond (the firmware does, protocol-v2.md "Link tuning");
 * `profile.params` is where a link ends up when everything is asked for and granted.
 */
export function connectionStartParams(profile: LinkProfile): LinkParams {
  return { ...profile.params, dataLength: 27, phy: '1M', encrypted: false };
}

/**
 * The interval a profile's central picks when a peripheral asks for [minMs, maxMs]: the current
 * one if it is allowed and in range, else the nearest allowed one in range; the current one
 * (a refusal) when the range lies below what the central grants.
 */
export function centralChooseInterval(
  profile: Pick<LinkProfile, 'centralMinIntervalMs'>,
  minMs: number,
  maxMs: number,
  currentMs: number,
): number {
  const lo = Math.max(minMs, profile.centralMinIntervalMs);
  if (lo > maxMs) return currentMs;
  return Math.min(maxMs, Math.max(lo, currentMs));
}

/** The MTU an Exchange MTU procedure ends with: the lesser of both sides' values. */
export function negotiatedMtu(profile: LinkProfile, devicePreferredMtu: number): number {
  return Math.min(profile.centralMtu, devicePreferredMtu, NIMBLE_MAX_MTU);
}

/**
 * The modeled link of a new connection on this profile; `overrides` for what the connection
 * negotiates later (MTU, data length, PHY, interval) or a fault.
 */
export function createProfileLink(
  profile: LinkProfile,
  overrides: Partial<LinkParams> = {},
  model: Partial<ModelOptions> = {},
): ModeledAirScheduler {
  return new ModeledAirScheduler(
    { ...profile.params, ...overrides },
    { ...profile.model, ...model },
  );
}
