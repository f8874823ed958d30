/**
 * What the device's CPU costs in modeled time: the NimBLE host's work per received ATT PDU, and
 * the OTA writer's CRC32, SHA-256, inflate and signature checks (the device program reports the
 * writer's work in CPU_WORK frames, firmware/host/README.md).
 *
 * Two lanes, as on the chip:
 * - the NimBLE host task takes each received PDU out of the controller's buffers and runs the
 *   GATT access callback: while it does, it takes no other PDU (the same stall a flash operation
 *   causes, without freezing the other core);
 * - the OTA writer task does CRC32, inflate and SHA-256 and writes the flash. Its answers
 *   (v2 window acks, END) wait for it, so a writer slower than the link closes the window.
 *   On a dual-core chip it runs beside the host task; on a single-core chip (C3) every
 *   microsecond the host task spends is a microsecond the writer waits.
 *
 * NO FIGURE HERE WAS MEASURED ON A CHIP. They are estimates from cycle counts, each with its
 * reasoning in `sources`, because no ESP32 and no published measurement of these paths was at
 * hand when they were written. `pnpm bench` prints what they are worth (device CPU zero and x2
 * in the sensitivity table); replace them with a bench measurement when one exists
 * (esp_timer_get_time around the calls in the IDF port gives each one).
 */

export type CpuWorkKind = 'crc32' | 'sha256' | 'inflate' | 'rsa3072-verify' | 'ecdsa-p256-verify';

export const CPU_WORK_KINDS: Record<number, CpuWorkKind> = {
  1: 'crc32',
  2: 'sha256',
  3: 'inflate',
  4: 'rsa3072-verify',
  5: 'ecdsa-p256-verify',
};

export interface DeviceCpuProfile {
  readonly name: string;
  /** Cores: 2 lets the writer run beside the NimBLE host task, 1 makes them share. */
  readonly cores: 1 | 2;
  readonly cpuMhz: number;
  /** NimBLE host: one received ATT PDU from the controller to the end of the access callback. */
  readonly nimbleRxPduUs: number;
  readonly crc32NsPerByte: number;
  /** SHA-256 through mbedTLS with the SHA accelerator (CONFIG_MBEDTLS_HARDWARE_SHA, IDF's default). */
  readonly sha256NsPerByte: number;
  /** Inflate (miniz's tinfl in ROM), per byte out. */
  readonly inflateNsPerByte: number;
  /** One RSA-3072-PSS signature check, e = 65537, on the image digest. */
  readonly rsa3072VerifyUs: number;
  /** One ECDSA P-256 signature check on the image digest. */
  readonly ecdsaP256VerifyUs: number;
  readonly sources: Readonly<Record<string, string>>;
}

/** Cycle-count reasoning shared by the chips; each chip scales it by its clock. */
const CYCLES = {
  nimbleRxPdu: 7_200,
  crc32PerByte: 10,
  inflatePerByte: 40,
  rsa3072Verify: 1_700_000,
  ecdsaP256Verify: 24_000_000,
};

const COMMON_SOURCES = {
  nimbleRxPduUs:
    'estimate, not measured: ~7200 cycles per ATT write PDU (mbuf from the controller, L2CAP, ATT, GATT access callback, the copy into the OTA ring) scaled by the clock; no published NimBLE per-PDU figure was at hand',
  crc32NsPerByte:
    'estimate: esp_rom_crc32_le is a byte-wise table loop, ~10 cycles a byte, scaled by the clock',
  inflateNsPerByte:
    'estimate: miniz tinfl, ~40 cycles per output byte on code-like data, scaled by the clock',
  rsa3072VerifyUs:
    'estimate: e = 65537 is 17 modular multiplications of 3072 bits, ~100k cycles each in mbedTLS bignum (the RSA accelerator, where used, is faster), scaled by the clock',
  ecdsaP256VerifyUs:
    'estimate: two P-256 scalar multiplications in software mbedTLS (no ECC accelerator on these chips), ~24 M cycles, scaled by the clock',
};

function scaled(
  name: string,
  cores: 1 | 2,
  cpuMhz: number,
  sha256NsPerByte: number,
  sources: Record<string, string>,
): DeviceCpuProfile {
  const us = (cycles: number) => cycles / cpuMhz;
  return {
    name,
    cores,
    cpuMhz,
    nimbleRxPduUs: us(CYCLES.nimbleRxPdu),
    crc32NsPerByte: (CYCLES.crc32PerByte * 1000) / cpuMhz,
    sha256NsPerByte,
    inflateNsPerByte: (CYCLES.inflatePerByte * 1000) / cpuMhz,
    rsa3072VerifyUs: us(CYCLES.rsa3072Verify),
    ecdsaP256VerifyUs: us(CYCLES.ecdsaP256Verify),
    sources: { ...COMMON_SOURCES, ...sources },
  };
}

/** Per chip, at IDF's default clocks for these chips' BLE examples. */
export const DEVICE_CPU: Readonly<Record<string, DeviceCpuProfile>> = {
  esp32: scaled('esp32', 2, 240, 100, {
    cores:
      'ESP32: dual-core Xtensa LX6; the writer task may run on the other core (CONFIG_BLE_OTA_WRITER_TASK_CORE)',
    cpuMhz: 'CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ 240 (sdkconfig.defaults.esp32)',
    sha256NsPerByte:
      'estimate: the ESP32 SHA accelerator has no DMA; mbedTLS feeds it 64-byte blocks word by word and waits, ~10 MB/s',
  }),
  esp32s3: scaled('esp32s3', 2, 240, 60, {
    cores: 'ESP32-S3: dual-core Xtensa LX7',
    cpuMhz: 'CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ 240 (sdkconfig.defaults.esp32s3)',
    sha256NsPerByte:
      'estimate: the S3 SHA accelerator with DMA for long inputs, ~16 MB/s through mbedTLS',
  }),
  esp32c3: scaled('esp32c3', 1, 160, 80, {
    cores: 'ESP32-C3: one RISC-V core; the NimBLE host and the writer share it',
    cpuMhz: 'ESP32-C3 maximum and IDF default CPU clock: 160 MHz',
    sha256NsPerByte: 'estimate: the C3 SHA accelerator with DMA, ~12 MB/s through mbedTLS',
  }),
};

/** A device whose CPU costs nothing: what every figure assumed before this model. */
export function zeroDeviceCpu(base: DeviceCpuProfile): DeviceCpuProfile {
  return {
    ...base,
    name: `${base.name}-zero`,
    nimbleRxPduUs: 0,
    crc32NsPerByte: 0,
    sha256NsPerByte: 0,
    inflateNsPerByte: 0,
    rsa3072VerifyUs: 0,
    ecdsaP256VerifyUs: 0,
  };
}

/** Every cost multiplied by `factor` (the sensitivity table's "x2"). */
export function scaleDeviceCpu(base: DeviceCpuProfile, factor: number): DeviceCpuProfile {
  return {
    ...base,
    name: `${base.name}-x${factor}`,
    nimbleRxPduUs: base.nimbleRxPduUs * factor,
    crc32NsPerByte: base.crc32NsPerByte * factor,
    sha256NsPerByte: base.sha256NsPerByte * factor,
    inflateNsPerByte: base.inflateNsPerByte * factor,
    rsa3072VerifyUs: base.rsa3072VerifyUs * factor,
    ecdsaP256VerifyUs: base.ecdsaP256VerifyUs * factor,
  };
}

export function deviceCpuFor(chip: string): DeviceCpuProfile | undefined {
  return DEVICE_CPU[chip];
}

/** Modeled microseconds of one piece of the writer's work. */
export function cpuWorkUs(cpu: DeviceCpuProfile, kind: CpuWorkKind, amount: number): number {
  switch (kind) {
    case 'crc32':
      return (amount * cpu.crc32NsPerByte) / 1000;
    case 'sha256':
      return (amount * cpu.sha256NsPerByte) / 1000;
    case 'inflate':
      return (amount * cpu.inflateNsPerByte) / 1000;
    case 'rsa3072-verify':
      return amount * cpu.rsa3072VerifyUs;
    case 'ecdsa-p256-verify':
      return amount * cpu.ecdsaP256VerifyUs;
  }
}
