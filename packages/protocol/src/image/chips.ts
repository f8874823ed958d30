/**
 * Chips that ESP app images can name in `esp_image_header_t.chip_id`, with the facts needed to
 * read and write their images. Ids, names, flash-mapped address ranges and flash-frequency codes
 * follow Espressif's esptool (`IMAGE_CHIP_ID`, `CHIP_NAME`, `IROM_MAP_*`/`DROM_MAP_*`,
 * `FLASH_FREQUENCY` of each target), so `ble-ota info` and `esptool image-info` agree.
 */

/** ESP-IDF target names (`idf.py set-target <target>`). */
export type ChipTarget =
  | 'esp32'
  | 'esp32s2'
  | 'esp32s3'
  | 'esp32c3'
  | 'esp32c2'
  | 'esp32c6'
  | 'esp32h2'
  | 'esp32p4'
  | 'esp32c61'
  | 'esp32c5'
  | 'esp32h21'
  | 'esp32h4'
  | 'esp32e22'
  | 'esp32s31';

/** Marketing names as esptool and the ESP-IDF bootloader print them. */
export type ChipName =
  | 'ESP32'
  | 'ESP32-S2'
  | 'ESP32-S3'
  | 'ESP32-C3'
  | 'ESP32-C2'
  | 'ESP32-C6'
  | 'ESP32-H2'
  | 'ESP32-P4'
  | 'ESP32-C61'
  | 'ESP32-C5'
  | 'ESP32-H21'
  | 'ESP32-H4'
  | 'ESP32-E22'
  | 'ESP32-S31';

export interface ChipInfo {
  readonly id: number;
  readonly name: ChipName;
  readonly target: ChipTarget;
  /**
   * Flash frequency names by header nibble, in esptool's order. The same nibble means different
   * clocks on different chips; where two names share a code (ESP32-C6 writes 0 for both 80m and
   * 40m because of a ROM quirk) the first one is what esptool reports.
   */
  readonly flashFrequencies: readonly (readonly [name: string, code: number])[];
  /** Flash-mapped instruction range [start, end). Segments here are mapped, not loaded. */
  readonly irom: readonly [number, number];
  /** Flash-mapped data range [start, end). */
  readonly drom: readonly [number, number];
  /** MMU page sizes elf2image accepts for this chip; the first entry of a fixed chip is 64 KB. */
  readonly mmuPageSizes: readonly number[];
  /**
   * The legacy `min_chip_rev` byte holds the minor revision on ESP32-C3 and the major revision
   * everywhere else (esp_app_format.h).
   */
  readonly legacyMinRevIsMinor: boolean;
}

const ESP32_FREQ = [
  ['80m', 0xf],
  ['40m', 0x0],
  ['26m', 0x1],
  ['20m', 0x2],
] as const;
const C5_FREQ = [
  ['80m', 0xf],
  ['40m', 0x0],
  ['20m', 0x2],
] as const;
const H2_FREQ = [
  ['48m', 0xf],
  ['24m', 0x0],
  ['16m', 0x1],
  ['12m', 0x2],
] as const;

const KB = 1024;
const FIXED_64K = [64 * KB] as const;
const C6_PAGES = [8 * KB, 16 * KB, 32 * KB, 64 * KB] as const;
const C6_IROM = [0x42000000, 0x42800000] as const;
const C6_DROM = [0x42800000, 0x43000000] as const;

function chip(info: Omit<ChipInfo, 'legacyMinRevIsMinor'> & { legacyMinRevIsMinor?: boolean }) {
  return { legacyMinRevIsMinor: false, ...info } satisfies ChipInfo;
}

/** Every chip id this package knows, in chip-id order. */
export const CHIPS: readonly ChipInfo[] = [
  chip({
    id: 0,
    name: 'ESP32',
    target: 'esp32',
    flashFrequencies: ESP32_FREQ,
    irom: [0x400d0000, 0x40400000],
    drom: [0x3f400000, 0x3f800000],
    mmuPageSizes: FIXED_64K,
  }),
  chip({
    id: 2,
    name: 'ESP32-S2',
    target: 'esp32s2',
    flashFrequencies: ESP32_FREQ,
    irom: [0x40080000, 0x40b80000],
    drom: [0x3f000000, 0x3f3f0000],
    mmuPageSizes: FIXED_64K,
  }),
  chip({
    id: 5,
    name: 'ESP32-C3',
    target: 'esp32c3',
    flashFrequencies: ESP32_FREQ,
    irom: [0x42000000, 0x42800000],
    drom: [0x3c000000, 0x3c800000],
    mmuPageSizes: FIXED_64K,
    legacyMinRevIsMinor: true,
  }),
  chip({
    id: 9,
    name: 'ESP32-S3',
    target: 'esp32s3',
    flashFrequencies: ESP32_FREQ,
    irom: [0x42000000, 0x44000000],
    drom: [0x3c000000, 0x3e000000],
    mmuPageSizes: FIXED_64K,
  }),
  chip({
    id: 12,
    name: 'ESP32-C2',
    target: 'esp32c2',
    flashFrequencies: [
      ['60m', 0xf],
      ['30m', 0x0],
      ['20m', 0x1],
      ['15m', 0x2],
    ],
    irom: [0x42000000, 0x42400000],
    drom: [0x3c000000, 0x3c400000],
    mmuPageSizes: [16 * KB, 32 * KB, 64 * KB],
  }),
  chip({
    id: 13,
    name: 'ESP32-C6',
    target: 'esp32c6',
    flashFrequencies: [
      ['80m', 0x0],
      ['40m', 0x0],
      ['20m', 0x2],
    ],
    irom: C6_IROM,
    drom: C6_DROM,
    mmuPageSizes: C6_PAGES,
  }),
  chip({
    id: 16,
    name: 'ESP32-H2',
    target: 'esp32h2',
    flashFrequencies: H2_FREQ,
    irom: C6_IROM,
    drom: C6_DROM,
    mmuPageSizes: C6_PAGES,
  }),
  chip({
    id: 18,
    name: 'ESP32-P4',
    target: 'esp32p4',
    flashFrequencies: ESP32_FREQ,
    irom: [0x40000000, 0x4c000000],
    drom: [0x40000000, 0x4c000000],
    mmuPageSizes: FIXED_64K,
  }),
  chip({
    id: 20,
    name: 'ESP32-C61',
    target: 'esp32c61',
    flashFrequencies: C5_FREQ,
    irom: C6_IROM,
    drom: C6_DROM,
    mmuPageSizes: C6_PAGES,
  }),
  chip({
    id: 23,
    name: 'ESP32-C5',
    target: 'esp32c5',
    flashFrequencies: C5_FREQ,
    irom: [0x42000000, 0x44000000],
    drom: [0x42000000, 0x44000000],
    mmuPageSizes: FIXED_64K,
  }),
  chip({
    id: 25,
    name: 'ESP32-H21',
    target: 'esp32h21',
    flashFrequencies: H2_FREQ,
    irom: C6_IROM,
    drom: C6_DROM,
    mmuPageSizes: C6_PAGES,
  }),
  chip({
    id: 28,
    name: 'ESP32-H4',
    target: 'esp32h4',
    flashFrequencies: H2_FREQ,
    irom: C6_IROM,
    drom: C6_DROM,
    mmuPageSizes: C6_PAGES,
  }),
  chip({
    id: 31,
    name: 'ESP32-E22',
    target: 'esp32e22',
    flashFrequencies: ESP32_FREQ,
    irom: [0x3c000000, 0x40000000],
    drom: [0x3c000000, 0x40000000],
    mmuPageSizes: FIXED_64K,
  }),
  chip({
    id: 32,
    name: 'ESP32-S31',
    target: 'esp32s31',
    flashFrequencies: C5_FREQ,
    irom: [0x40000000, 0x54000000],
    drom: [0x40000000, 0x54000000],
    mmuPageSizes: [32 * KB, 64 * KB, 128 * KB, 256 * KB],
  }),
];

/**
 * Targets without a Bluetooth LE radio (ESP32-S2: Wi-Fi only; ESP32-P4: no radio at all). NimBLE
 * does not build for them, so they can never be BLE OTA targets, whatever their images say.
 */
const NO_BLE_RADIO: ReadonlySet<ChipTarget> = new Set<ChipTarget>(['esp32s2', 'esp32p4']);

/** True when the chip has a Bluetooth LE radio, so this firmware can run on it. */
export function hasBleRadio(target: ChipTarget | string): boolean {
  return !NO_BLE_RADIO.has(target as ChipTarget);
}

/** Why a chip without a BLE radio cannot be updated over BLE, for an error message. */
export function noBleRadioReason(target: ChipTarget | string): string {
  const name = CHIPS.find((c) => c.target === target)?.name ?? target;
  return `the ${name} has no Bluetooth LE radio, so it cannot run this firmware or be updated over BLE`;
}

/** The chip an image header's `chip_id` names, or undefined for an id no known chip uses. */
export function chipById(id: number): ChipInfo | undefined {
  return CHIPS.find((c) => c.id === id);
}

/**
 * Looks a chip up by ESP-IDF target (`esp32s3`), name (`ESP32-S3`, any case, dashes optional)
 * or id. Throws a RangeError listing the known chips when nothing matches.
 */
export function resolveChip(chipRef: ChipTarget | ChipName | string | number): ChipInfo {
  const found =
    typeof chipRef === 'number'
      ? chipById(chipRef)
      : CHIPS.find((c) => c.target === chipRef.toLowerCase().replace(/[-_ ]/g, ''));
  if (found === undefined) {
    const known = CHIPS.map((c) => `${c.target} (${c.id})`).join(', ');
    throw new RangeError(`unknown chip ${JSON.stringify(chipRef)}; known chips: ${known}`);
  }
  return found;
}

/** True when `address` is in a range the cache maps from flash rather than one loaded into RAM. */
export function isFlashMapped(chipInfo: ChipInfo, address: number): boolean {
  const [iromStart, iromEnd] = chipInfo.irom;
  const [dromStart, dromEnd] = chipInfo.drom;
  return (address >= iromStart && address < iromEnd) || (address >= dromStart && address < dromEnd);
}

/** The flash frequency a header nibble means on `chipInfo`, as esptool names it (`40m`). */
export function flashFrequencyName(chipInfo: ChipInfo, code: number): string | undefined {
  return chipInfo.flashFrequencies.find(([, c]) => c === code)?.[0];
}

/** Formats a `major * 100 + minor` chip or eFuse-block revision the way esptool does: `v3.1`. */
export function formatRevision(full: number): string {
  return `v${Math.floor(full / 100)}.${full % 100}`;
}
