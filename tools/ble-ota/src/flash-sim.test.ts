/**
 * End to end on the lead's virtual rig: the firmware's host build on a flash file behind the
 * virtual HCI controller, the real noble, the CLI as a user runs it. The new version is
 * checked twice: by the CLI's own verification and, independently, on the board's serial
 * console, where the bootloader-started app prints its version.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SerialConsole } from '@esp-ble-ota/serial';
import { rigSigningKey, startVirtualRig as startSimRig } from '@esp-ble-ota/sim';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import type { VirtualRig } from './io.ts';
import { adaptRig, startVirtualRig } from './rig.ts';
import { hostAppElf, hostImage, run, writeImage } from './test/harness.ts';

const appElf = hostAppElf;

describe('ble-ota on the virtual rig (firmware host build)', () => {
  it('has the firmware host build', () => {
    expect(
      existsSync(appElf),
      `${appElf}: run pnpm --filter @esp-ble-ota/firmware-host build`,
    ).toBe(true);
  });

  it('scan --sim finds the simulated board', async () => {
    const result = await run(['scan', '--sim', '--timeout', '1s', '--json'], {
      startRig: startVirtualRig,
    });
    expect(result.code).toBe(ExitCode.OK);
    expect(JSON.parse(result.stdout)).toEqual([
      expect.objectContaining({ name: 'esp32', address: '24:0a:c4:00:00:01', ota: true }),
    ]);
  });

  /** The key the rig's boards trust by default (the firmware's secure default). */
  const rigKey = async () => (await rigSigningKey()).path;

  /** A rig of the firmware's host build, lent to the CLI (which would close the rig it gets). */
  async function lentRig(boards?: Parameters<typeof startSimRig>[0]) {
    const rig = await startSimRig(boards);
    const board = rig.boards[0];
    if (board === undefined) throw new Error('the rig has no board');
    const lent: VirtualRig = { ...adaptRig(rig), close: async () => {} };
    return { rig, board, startRig: async () => lent };
  }

  it('flash --sim uploads a new version with protocol v2 and the board boots it', async () => {
    const image = hostImage('9.9.9');
    const { rig, board, startRig } = await lentRig();
    const console = await SerialConsole.open(board.serialPath);
    try {
      const result = await run(['flash', image, '--sim', '--json', '--key', await rigKey()], {
        startRig,
      });
      const events = result.out.jsonLines();
      expect(result.stderr).toBe('');
      expect(result.code).toBe(ExitCode.OK);
      expect(events.find((e) => e.event === 'connected')).toMatchObject({
        model: 'ESP32',
        firmwareRevision: '1.0.0',
      });
      expect(events.find((e) => e.event === 'protocol')).toEqual({
        event: 'protocol',
        protocol: 'v2',
        choice: 'v2-offered',
      });
      expect(events.filter((e) => e.event === 'progress').at(-1)).toMatchObject({ percent: 100 });
      const uploaded = events.find((e) => e.event === 'uploaded');
      expect(uploaded).toMatchObject({
        protocol: 'v2',
        outcome: 'installed',
        compressed: true,
        resumes: 0,
        restarted: true,
        clock: 'modeled',
        linkModel: 'linux-noble-esp32',
      });
      // The host app deflates well, so it arrives faster than the link's ~98 kB/s ceiling and
      // far faster than the baseline's one Write Request per packet (~16 kB/s here).
      expect(uploaded?.bytesPerSecond).toBeGreaterThan(60_000);
      expect(Number(uploaded?.streamBytes)).toBeLessThan(Number(uploaded?.bytes));
      expect(events.find((e) => e.event === 'verified')).toMatchObject({ version: '9.9.9' });
      await console.expect(/App version:\s+9\.9\.9/, { timeout: 10_000 });
    } finally {
      await console.close();
      await rig.close();
    }
  });

  it('flash --sim --protocol baseline still updates the firmware with the baseline exchange', async () => {
    const image = hostImage('9.9.6');
    const { rig, startRig } = await lentRig();
    try {
      const result = await run(
        ['flash', image, '--sim', '--json', '--protocol', 'baseline', '--key', await rigKey()],
        {
          startRig,
        },
      );
      const events = result.out.jsonLines();
      expect(result.code).toBe(ExitCode.OK);
      expect(events.find((e) => e.event === 'protocol')).toMatchObject({ choice: 'forced' });
      // Timings in the link model's time: one Write Request per packet on a Linux central
      // (7.5 ms interval) is bounded by LINK-MODEL.md's ~16 kB/s, far below real time here.
      const uploaded = events.find((e) => e.event === 'uploaded');
      expect(uploaded).toMatchObject({ restarted: true, clock: 'modeled', packetSize: 253 });
      expect(uploaded?.bytesPerSecond).toBeGreaterThan(5_000);
      expect(uploaded?.bytesPerSecond).toBeLessThan(17_000);
      expect(uploaded?.wallMs).toBeLessThan(Number(uploaded?.transferMs));
      expect(events.find((e) => e.event === 'verified')).toMatchObject({ version: '9.9.6' });
    } finally {
      await rig.close();
    }
  });

  it('resumes after the link drops mid-transfer: reconnects, sends the rest, verifies', async () => {
    const image = hostImage('9.9.5');
    const { rig, startRig } = await lentRig({
      boards: [
        {
          faults: [
            { kind: 'drop-link-after-bytes', name: 'drop', bytes: 150_000, direction: 'c2p' },
          ],
        },
      ],
    });
    try {
      const result = await run(
        ['flash', image, '--sim', '--compression', 'never', '--key', await rigKey()],
        {
          startRig,
        },
      );
      expect(result.code).toBe(ExitCode.OK);
      expect(result.stderr).toMatch(
        /^link lost with \d+ of \d+ bytes confirmed by the device; reconnecting to resume from there \(attempt 1 of 3\)$/m,
      );
      const [, from] = result.stdout.match(/resumed 1x, last from byte (\d+)/) ?? [];
      expect(result.stdout).toMatch(
        /for the last part; [\d.]+ s modeled in all, reconnects included/,
      );
      expect(Number(from)).toBeGreaterThan(100_000);
      expect(result.stdout).toMatch(/^verified: the device runs 9\.9\.5$/m);
      expect(result.stdout).toMatch(/^ {2}reconnect\s+[\d.]+ (ms|s)$/m);
      expect(rig.faultNames()).toEqual(['drop']);
    } finally {
      await rig.close();
    }
  });

  it('--resume-attempts 0 gives up on a lost link with exit code 6', async () => {
    const { rig, startRig } = await lentRig({
      boards: [
        {
          faults: [
            { kind: 'drop-link-after-bytes', name: 'drop', bytes: 150_000, direction: 'c2p' },
          ],
        },
      ],
    });
    try {
      const result = await run(
        [
          'flash',
          hostImage('9.9.4'),
          '--sim',
          '--compression',
          'never',
          '--resume-attempts',
          '0',
          '--key',
          await rigKey(),
        ],
        { startRig },
      );
      expect(result.code).toBe(ExitCode.LINK_LOST);
      expect(result.stderr).toMatch(/error: .*link/i);
      expect(result.stderr).not.toMatch(/reconnecting/);
    } finally {
      await rig.close();
    }
  });

  it('sends nothing when the board already runs the image, and says so', async () => {
    // Signed once: a signature is new each time it is made, and so would be the image's SHA-256.
    const image = hostImage('9.9.3').replace(/\.bin$/, '-signed.bin');
    expect(
      (await run(['sign', hostImage('9.9.3'), '--key', await rigKey(), '-o', image])).code,
    ).toBe(ExitCode.OK);
    const { rig, startRig } = await lentRig();
    try {
      expect((await run(['flash', image, '--sim'], { startRig })).code).toBe(ExitCode.OK);
      const again = await run(['flash', image, '--sim'], { startRig });
      expect(again.code).toBe(ExitCode.OK);
      expect(again.stdout).toMatch(
        /^already installed: the device runs this image \(same SHA-256\); nothing sent$/m,
      );
      expect(again.stdout).not.toMatch(/^progress +[1-9]/m);
    } finally {
      await rig.close();
    }
  });

  it('takes an image larger than the baseline 1 MB slot (v2 knows the real slot) and maps TOO_LARGE to exit 9', async () => {
    const { rig, startRig } = await lentRig({ profile: 'immediate' });
    try {
      const big = writeImage('big.bin', { version: '9.9.2', payload: new Uint8Array(2_100_000) });
      const result = await run(['flash', big, '--sim', '--no-verify'], { startRig });
      expect(result.code).toBe(ExitCode.IMAGE_MISMATCH);
      expect(result.stderr).toMatch(/image is larger than the update slot \(TOO_LARGE\) at BEGIN/);
      expect(result.stdout).not.toMatch(/^progress/m);
    } finally {
      await rig.close();
    }
  });

  it("checks a baseline upload against the device's real slot (v2 INFO), not the baseline's 1 MB", async () => {
    const { rig, board, startRig } = await lentRig({ profile: 'immediate' });
    try {
      const big = writeImage('big2.bin', { version: '9.9.4', payload: new Uint8Array(2_100_000) });
      const refused = await run(['flash', big, '--sim', '--protocol', 'baseline', '--no-verify'], {
        startRig,
      });
      expect(refused.code).toBe(ExitCode.IMAGE_MISMATCH);
      expect(refused.stderr).toMatch(
        /it holds 1\.94 MiB, from the device's v2 INFO; --slot-size if the device has larger slots/,
      );
      expect(refused.stdout).not.toMatch(/^progress/m);

      // 1.5 MB fits the firmware's 1.94 MB slots: the baseline's 1 MB guess refused it. The
      // image is a valid ESP app image with no program in it: on a board the app faults, the
      // panic handler restarts it and the bootloader rolls the unconfirmed image back.
      const console = await SerialConsole.open(board.serialPath);
      try {
        const fits = writeImage('fits.bin', {
          version: '9.9.3',
          payload: new Uint8Array(1_500_000),
        });
        const ok = await run(
          [
            'flash',
            fits,
            '--sim',
            '--protocol',
            'baseline',
            '--no-verify',
            '--key',
            await rigKey(),
          ],
          {
            startRig,
          },
        );
        expect(ok.stderr).not.toMatch(/error/);
        expect(ok.code).toBe(ExitCode.OK);
        await console.expect(/Guru Meditation Error: Core {2}0 panic'ed \(IllegalInstruction\)/, {
          timeout: 20_000,
        });
        await console.expect('Rebooting...', { timeout: 20_000 });
        await console.expect('rst:0xc (SW_CPU_RESET)', { timeout: 20_000 });
        // ota_1 never confirmed itself: the bootloader goes back to ota_0 and its version.
        await console.expect('Loaded app from partition at offset 0x10000', { timeout: 20_000 });
        await console.expect(/App version:\s+1\.0\.0/, { timeout: 20_000 });
        await console.expect('Running partition: ota_0', { timeout: 20_000 });
        await rig.boards[0]?.waitReady();
        expect(rig.boards[0]?.device.state).toBe('running');
      } finally {
        await console.close();
      }
    } finally {
      await rig.close();
    }
  }, 120_000);

  it('says "image larger than the update slot" when a baseline upload fills the slot', async () => {
    const { rig, startRig } = await lentRig({ profile: 'immediate' });
    try {
      const big = writeImage('big3.bin', { version: '9.9.5', payload: new Uint8Array(2_040_000) });
      const result = await run(
        ['flash', big, '--sim', '--protocol', 'baseline', '--slot-size', '4M', '--no-verify'],
        { startRig },
      );
      expect(result.code).toBe(ExitCode.IMAGE_MISMATCH);
      expect(result.stderr).toMatch(
        /device refused image data at byte \d+ of \d+: image larger than the update slot/,
      );
      expect(result.stderr).not.toMatch(/0x0e|UNLIKELY/);
    } finally {
      await rig.close();
    }
  }, 120_000);

  it('flash --sim --baseline-writes: REQUEST and DONE as Write Commands, as the Python client sends them', async () => {
    const { path: key } = await rigSigningKey();
    const result = await run(
      [
        'flash',
        hostImage('9.9.8'),
        '--sim',
        '--sim-profile',
        'immediate',
        '--baseline-writes',
        '--key',
        key,
      ],
      { startRig: startVirtualRig },
    );
    expect(result.stderr).not.toMatch(/error/);
    expect(result.code).toBe(ExitCode.OK);
    expect(result.stdout).toMatch(/^verified: the device runs 9\.9\.8$/m);
  });

  it("flash --sim runs the secure default: an unsigned image is refused with the rig's key named, --key signs it, --sim-insecure takes anything", async () => {
    const { path: key } = await rigSigningKey();
    const immediate = ['--sim', '--sim-profile', 'immediate', '--no-verify'];
    const unsigned = await run(['flash', hostImage('9.8.1'), ...immediate], {
      startRig: startVirtualRig,
    });
    expect(unsigned.code).toBe(ExitCode.DEVICE_REFUSED);
    expect(unsigned.stderr).toMatch(/\(UNSIGNED\)/);
    expect(unsigned.stderr).toMatch(
      /The simulated board takes images signed by the rig's key only: add --key \S*\.ble-ota\/rig-signing-key\.pem, or --sim-insecure/,
    );
    const baseline = await run(
      ['flash', hostImage('9.8.1'), ...immediate, '--protocol', 'baseline'],
      { startRig: startVirtualRig },
    );
    expect(baseline.code).toBe(ExitCode.DEVICE_REFUSED);
    expect(baseline.stderr).toMatch(
      /DONE_NAK.*the image is not signed, and the simulated board takes images signed by the rig's key only .*add --key \S*rig-signing-key\.pem/,
    );
    const signed = await run(['flash', hostImage('9.8.2'), ...immediate, '--key', key], {
      startRig: startVirtualRig,
    });
    expect(signed.stderr).not.toMatch(/error/);
    expect(signed.code).toBe(ExitCode.OK);
    const insecure = await run(['flash', hostImage('9.8.3'), ...immediate, '--sim-insecure'], {
      startRig: startVirtualRig,
    });
    expect(insecure.code).toBe(ExitCode.OK);
  }, 120_000);

  it('refuses unknown --sim-profile and --sim-chip values as usage errors', async () => {
    const profile = await run(['scan', '--sim', '--sim-profile', 'windows'], {
      startRig: startVirtualRig,
    });
    expect(profile.code).toBe(ExitCode.USAGE);
    expect(profile.stderr).toMatch(
      /unknown --sim-profile "windows"; use one of .*linux-noble-esp32/,
    );
    const chip = await run(['scan', '--sim', '--sim-chip', 'esp8266'], {
      startRig: startVirtualRig,
    });
    expect(chip.code).toBe(ExitCode.USAGE);
    expect(chip.stderr).toMatch(/unknown --sim-chip "esp8266"/);
    // The ESP32-S2 is simulated for its bootloader, but it has no Bluetooth LE: said, not pretended.
    const s2 = await run(['scan', '--sim', '--sim-chip', 'esp32s2'], {
      startRig: startVirtualRig,
    });
    expect(s2.code).toBe(ExitCode.USAGE);
    expect(s2.stderr).toMatch(
      /--sim-chip esp32s2: the ESP32-S2 has no Bluetooth LE radio, so it cannot run this firmware or be updated over BLE; the simulated board can be esp32, esp32c3/,
    );
  });

  it("Ctrl-C during an upload stops it cleanly with exit code 130 (before noble's own SIGINT exit)", async () => {
    const bin = fileURLToPath(new URL('../bin/ble-ota.js', import.meta.url));
    // Signed with the rig's key: an unsigned image is refused from INFO before any progress.
    const key = await rigKey();
    const child = spawn(
      process.execPath,
      [bin, 'flash', hostImage('9.9.7'), '--sim', '--key', key],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/progress\s+\d+%/.test(stdout) && !child.killed) child.kill('SIGINT');
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(stderr).toMatch(/error: upload aborted/);
    expect(code).toBe(ExitCode.INTERRUPTED);
  });

  it('monitor --sim shows the simulated board booting', async () => {
    const result = await run(['monitor', '--sim', '--until', 'App version', '--timeout', '10s'], {
      startRig: startVirtualRig,
    });
    expect(result.code).toBe(ExitCode.OK);
    expect(result.stdout).toMatch(/rst:0x[0-9a-f]+ \([A-Z_]+\)/);
    expect(result.stdout).toMatch(/App version:\s+\d+\.\d+\.\d+/);
  });

  it('refuses an image for another chip than the simulated board, before sending it', async () => {
    const image = hostImage('9.9.9', 'esp32');
    const result = await run(['flash', image, '--sim', '--sim-chip', 'esp32s3'], {
      startRig: startVirtualRig,
    });
    expect(result.code).toBe(ExitCode.IMAGE_MISMATCH);
    expect(result.stderr).toMatch(/image is for ESP32 but the device is an ESP32-S3/);
    expect(result.stdout).not.toMatch(/progress/);
  });
});
