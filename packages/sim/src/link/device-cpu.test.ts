import { describe, expect, it } from 'vitest';
import { DeviceFrame, FrameDecoder } from '../device/frames.ts';
import { cpuWorkUs, DEVICE_CPU, scaleDeviceCpu, zeroDeviceCpu } from './device-cpu.ts';

describe('device CPU cost model', () => {
  it('has the three chips, the C3 on one core at 160 MHz, and says where every figure comes from', () => {
    expect(Object.keys(DEVICE_CPU)).toEqual(['esp32', 'esp32s3', 'esp32c3']);
    const c3 = DEVICE_CPU.esp32c3;
    const esp32 = DEVICE_CPU.esp32;
    expect(c3?.cores).toBe(1);
    expect(esp32?.cores).toBe(2);
    // The same code costs 1.5x the time at 160 MHz as at 240 MHz.
    expect((c3?.inflateNsPerByte ?? 0) / (esp32?.inflateNsPerByte ?? 1)).toBeCloseTo(1.5);
    for (const cpu of Object.values(DEVICE_CPU)) {
      for (const key of [
        'cores',
        'cpuMhz',
        'nimbleRxPduUs',
        'crc32NsPerByte',
        'sha256NsPerByte',
        'inflateNsPerByte',
        'rsa3072VerifyUs',
        'ecdsaP256VerifyUs',
      ]) {
        expect(cpu.sources[key], `${cpu.name}.${key}`).toBeTruthy();
      }
    }
  });

  it('charges the work the device reports', () => {
    const cpu = DEVICE_CPU.esp32 as NonNullable<(typeof DEVICE_CPU)['esp32']>;
    expect(cpuWorkUs(cpu, 'sha256', 1_000_000)).toBeCloseTo(100_000); // 1 MB at 10 MB/s
    expect(cpuWorkUs(cpu, 'crc32', 240)).toBeCloseTo(10);
    expect(cpuWorkUs(cpu, 'rsa3072-verify', 2)).toBeCloseTo(2 * cpu.rsa3072VerifyUs);
    expect(cpuWorkUs(zeroDeviceCpu(cpu), 'inflate', 1e6)).toBe(0);
    expect(cpuWorkUs(scaleDeviceCpu(cpu, 2), 'inflate', 1000)).toBeCloseTo(
      2 * cpuWorkUs(cpu, 'inflate', 1000),
    );
  });

  it('decodes the CPU_WORK frame and refuses an unknown kind', () => {
    const frame = (kind: number) =>
      Uint8Array.of(DeviceFrame.CPU_WORK, 5, 0, kind, 0x00, 0x10, 0, 0);
    expect(new FrameDecoder().push(frame(2))).toEqual([
      { type: 'cpuWork', kind: 'sha256', amount: 4096 },
    ]);
    expect(() => new FrameDecoder().push(frame(9))).toThrow(/unknown CPU work kind 9/);
  });
});
