/**
 * One v2 session against the fake v2 device of @esp-ble-ota/testing, recorded as the bytes that crossed
 * the link. `browser-parity.test.ts` runs it under Node and, bundled, in Chromium: the same
 * image must give the same frames, so the page's SHA-256, deflate, CRC-32 and signature checks
 * are the ones the command-line tool runs. Nothing here may need Node.
 */
import { readSignatures, uploadV2 } from '@esp-ble-ota/protocol';
import { FakeDeviceRegistry, FakeTransport, FakeV2Device } from '@esp-ble-ota/testing';

const hex = (data: Uint8Array) => Array.from(data, (b) => b.toString(16).padStart(2, '0')).join('');

export interface RecordedSession {
  /** What went over the link after connecting, one line an event, data in hex. */
  frames: string[];
  /** `readSignatures` of the image: validity of each block (Web Crypto's verdict). */
  signatures: { scheme: string; keyDigest: string; valid: boolean }[] | undefined;
  deflated: boolean;
}

export async function recordSession(image: Uint8Array): Promise<RecordedSession> {
  const registry = new FakeDeviceRegistry();
  const device = registry.add(
    new FakeV2Device({
      restartDelayMs: 1,
      deflate: true,
      resume: true,
      window: 4096,
      security: {
        signedOnly: true,
        antiRollback: true,
        minSecureVersion: 0,
        allowDowngrade: false,
        linkSecurity: 'open',
      },
    }),
  );
  const transport = new FakeTransport(device.address, { registry, mtu: 247 });
  await transport.connect();
  const result = await uploadV2(transport, image, { compression: 'always' });
  await transport.close();
  const frames = transport.recording.flatMap((r) => {
    switch (r.kind) {
      case 'write':
        return [`write${r.withResponse ? '' : '-cmd'} ${r.characteristic} ${hex(r.data)}`];
      case 'notification':
        return [`notify ${r.characteristic} ${hex(r.data)}`];
      case 'connect':
        return [];
      default:
        return [r.kind];
    }
  });
  const signatures = (await readSignatures(image))?.blocks.map((b) => ({
    scheme: b.scheme,
    keyDigest: b.keyDigest,
    valid: b.valid,
  }));
  return { frames, signatures, deflated: result.compression.used };
}
