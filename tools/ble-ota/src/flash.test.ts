import { buildAppImage } from '@esp-ble-ota/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.ts';
import { type BaselineBehaviour, type BaselineRig, startBaselineRig } from './test/baseline-rig.ts';
import { run, writeImage } from './test/harness.ts';

const rigs: BaselineRig[] = [];
afterEach(async () => {
  for (const rig of rigs.splice(0)) await rig.close();
});

function rig(behaviour: BaselineBehaviour = {}): BaselineRig {
  const r = startBaselineRig(behaviour);
  rigs.push(r);
  return r;
}

/** An image of a few dozen packets, so progress has steps to show. */
const payload = new Uint8Array(20_000).map((_, i) => (i * 7) & 0xff);

function flash(r: BaselineRig, image: string, ...extra: string[]) {
  return run(['flash', image, '--sim', '--timeout', '2s', '--verify-timeout', '5s', ...extra], {
    startRig: async () => r,
  });
}

describe('ble-ota flash --sim against a baseline device', () => {
  it('uploads, shows progress and phase timings, and verifies the new version', async () => {
    const r = rig({ version: '1.0.0' });
    const image = writeImage('v2.bin', { version: '2.0.0', payload });
    const result = await flash(r, image);
    expect(result.stderr).not.toMatch(/error/);
    expect(result.code).toBe(ExitCode.OK);
    expect(result.stdout).toMatch(/^image: blink 2\.0\.0 for ESP32/m);
    expect(result.stdout).toMatch(/^found: esp32 24:0a:c4:aa/m);
    expect(result.stdout).toMatch(/^connected: MTU 256; device: ESP32, firmware 1\.0\.0/m);
    expect(result.stdout).toMatch(/^progress\s+0% /m);
    expect(result.stdout).toMatch(/^progress 100% \d+\/\d+ bytes [\d.]+ kB\/s ETA 0 ms$/m);
    expect(result.stdout).toMatch(
      /^uploaded \d+ bytes in \d+ packets of 253 bytes: .*; device restarted$/m,
    );
    expect(result.stdout).toMatch(/^verified: the device runs 2\.0\.0$/m);
    for (const phase of ['scan', 'connect', 'request', 'data', 'done', 'verify']) {
      expect(result.stdout).toMatch(new RegExp(`^  ${phase}\\s+[\\d.]+ (ms|s)$`, 'm'));
    }
    expect(r.app.version).toBe('2.0.0');
    expect(r.app.receivedBytes).toBe(
      buildAppImage({ chip: 'esp32', project: 'blink', version: '2.0.0', payload }).length,
    );
  });

  it('reads the new version again when the link drops while verifying it (the image is in)', async () => {
    const r = rig({ version: '1.0.0', dropVersionReadsAfterRestart: 2 });
    const result = await flash(r, writeImage('verify-drop.bin', { version: '2.0.2', payload }));
    expect(result.code).toBe(ExitCode.OK);
    expect(r.app.droppedVersionReads).toBe(2);
    expect(result.stderr).toMatch(
      /^link lost while reading the new version; reconnecting to read it again \(attempt 2 of 3\)$/m,
    );
    expect(result.stdout).toMatch(/^verified: the device runs 2\.0\.2$/m);
  });

  it('says the image is in and what to do when the verification loses the link every time', async () => {
    const r = rig({ version: '1.0.0', dropVersionReadsAfterRestart: 9 });
    const result = await flash(
      r,
      writeImage('verify-lost.bin', { version: '2.0.3', payload }),
      '--resume-attempts',
      '1',
    );
    expect(result.code).toBe(ExitCode.LINK_LOST);
    expect(r.app.version).toBe('2.0.3');
    expect(result.stderr).toMatch(
      /^error: .*the image was sent and the device restarted, but its version could not be read.*\(the update failed at: verify\)$/m,
    );
  });

  it('prints one JSON event per line with --json', async () => {
    const r = rig();
    const result = await flash(r, writeImage('json.bin', { version: '2.0.1', payload }), '--json');
    expect(result.code).toBe(ExitCode.OK);
    const events = result.out.jsonLines();
    const kinds = events.map((e) => e.event);
    expect(kinds[0]).toBe('image');
    expect(kinds).toEqual(
      expect.arrayContaining([
        'found',
        'connected',
        'phase',
        'progress',
        'uploaded',
        'verified',
        'timings',
      ]),
    );
    expect(events.find((e) => e.event === 'connected')).toMatchObject({ mtu: 256, model: 'ESP32' });
    expect(events.filter((e) => e.event === 'progress').at(-1)).toMatchObject({ percent: 100 });
    expect(events.find((e) => e.event === 'verified')).toMatchObject({ version: '2.0.1' });
    // Nothing but JSON on stdout.
    expect(
      result.stdout
        .trim()
        .split('\n')
        .every((l) => l.startsWith('{')),
    ).toBe(true);
  });

  it('draws a progress bar on a terminal', async () => {
    const r = rig();
    const image = writeImage('tty.bin', { version: '2.0.2', payload });
    const { main } = await import('./main.ts');
    const { Sink } = await import('./test/harness.ts');
    const stdout = Object.assign(new Sink(), { isTTY: true, columns: 120 });
    const stderr = new Sink();
    const code = await main(['flash', image, '--sim', '--timeout', '2s', '--no-verify'], {
      stdout,
      stderr,
      startRig: async () => r,
    });
    expect(stderr.text).toBe(
      'scanning for a device offering the OTA service on the virtual rig...\n',
    );
    expect(code).toBe(ExitCode.OK);
    expect(stdout.text).toMatch(/[█░]{30} 100% \| \d+\/\d+ B \| [\d.]+ kB\/s \| ETA 0 ms/);
  });

  it('refuses an image for another chip right after connecting, before sending it', async () => {
    const r = rig({ model: 'ESP32' });
    const result = await flash(r, writeImage('s3.bin', { chip: 'esp32s3' }));
    expect(result.code).toBe(ExitCode.IMAGE_MISMATCH);
    expect(result.stderr).toMatch(
      /image is for ESP32-S3 but the device is an ESP32; build the firmware for the device's target/,
    );
    expect(r.app.requests).toBe(0);
    expect(r.app.receivedBytes).toBe(0);
  });

  it('refuses an image larger than the OTA slot, before sending it', async () => {
    const r = rig();
    const result = await flash(r, writeImage('big.bin', { payload }), '--slot-size', '16K');
    expect(result.code).toBe(ExitCode.IMAGE_MISMATCH);
    expect(result.stderr).toMatch(/image is \d+ bytes but the device's OTA slot holds 16384 bytes/);
    expect(r.app.requests).toBe(0);
  });

  it('reports REQUEST_NAK as device refused', async () => {
    const r = rig({ nakRequest: true });
    const result = await flash(r, writeImage('nak.bin'));
    expect(result.code).toBe(ExitCode.DEVICE_REFUSED);
    expect(result.stderr).toMatch(/REQUEST_NAK/);
    expect(r.app.receivedBytes).toBe(0);
  });

  it('reports a link drop in the middle of the transfer as link lost', async () => {
    const r = rig({ dropAfterBytes: 5000 });
    const result = await flash(r, writeImage('drop.bin', { payload }));
    expect(result.code).toBe(ExitCode.LINK_LOST);
    expect(result.stderr).toMatch(/supervision timeout/);
    // The timings still show how far the upload got.
    expect(result.stdout).toMatch(/^ {2}data \(failed\)\s+[\d.]+ (ms|s)$/m);
  });

  it('reports a device that never acknowledges as a timeout', async () => {
    const r = rig({ silentRequest: true });
    const result = await flash(r, writeImage('silent.bin'), '--step-timeout', '300ms');
    expect(result.code).toBe(ExitCode.TIMEOUT);
    expect(result.stderr).toMatch(/REQUEST/);
  });

  it('reports a device that comes back with its old version as verify failed', async () => {
    const r = rig({ version: '1.0.0', rollBack: true });
    const result = await flash(r, writeImage('rollback.bin', { version: '2.0.0' }));
    expect(result.code).toBe(ExitCode.VERIFY_FAILED);
    expect(result.stderr).toMatch(/the device runs version 1\.0\.0 after the update, not 2\.0\.0/);
  });

  it('stops on Ctrl-C in the middle of the transfer with exit code 130', async () => {
    const r = rig();
    const controller = new AbortController();
    const watch = setInterval(() => {
      if (r.app.receivedBytes > 4000) controller.abort(new Error('interrupted (Ctrl-C)'));
    }, 1);
    try {
      const result = await run(
        ['flash', writeImage('abort.bin', { payload }), '--sim', '--timeout', '2s'],
        { startRig: async () => r, signal: controller.signal },
      );
      expect(result.code).toBe(ExitCode.INTERRUPTED);
      expect(result.stderr).toMatch(/abort/i);
      expect(r.app.receivedBytes).toBeLessThan(payload.length);
    } finally {
      clearInterval(watch);
    }
  });

  it('reports a device that is not there as not found', async () => {
    const r = rig();
    const result = await run(
      ['flash', writeImage('nobody.bin'), '--sim', '--name', 'nobody', '--timeout', '300ms'],
      { startRig: async () => r },
    );
    expect(result.code).toBe(ExitCode.DEVICE_NOT_FOUND);
    expect(result.stderr).toMatch(/no device named "nobody" found within 300 ms/);
  });
});

describe('ble-ota scan --sim', () => {
  it('lists the device with name, address and RSSI', async () => {
    const r = rig();
    const text = await run(['scan', '--sim', '--timeout', '300ms'], { startRig: async () => r });
    expect(text.code).toBe(ExitCode.OK);
    expect(text.stdout).toMatch(new RegExp(`^esp32\\s+${r.address}\\s+-\\d+ dBm$`, 'm'));
    // The CLI closes the rig at the end of each command: a second command needs a new one.
    const r2 = rig();
    const json = await run(['scan', '--sim', '--timeout', '300ms', '--json'], {
      startRig: async () => r2,
    });
    expect(json.code).toBe(ExitCode.OK);
    expect(JSON.parse(json.stdout)).toEqual([
      {
        name: 'esp32',
        address: r2.address,
        rssi: expect.any(Number),
        ota: true,
        connectable: true,
      },
    ]);
  });
});
