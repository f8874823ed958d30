#!/usr/bin/env node
/**
 * A stand-in for the firmware's host build that speaks the v2 host frames
 * (docs/protocol-v2.md, "The host build's frames for v2"), for the rig's own tests: it asks for
 * link tuning on CONNECT, answers every input frame with FRAME_DONE after a random real-time
 * delay (so a test can show that modeled time does not depend on it), and echoes every
 * LINK_UPDATE on its console as `link_update conn=.. interval=.. data_length=.. phy=..`.
 *
 * Environment: FAKE_LINK_REQUESTS (default "1,2,3": which LINK_REQUEST kinds to send on CONNECT),
 * FAKE_FRAME_DONE=0 (behave like a baseline build: no FRAME_DONE, Write Commands answered by
 * nothing), FAKE_MAX_DELAY_MS (default 3), FAKE_FLASH_EVERY (a FLASH_OP write of 4096 bytes after
 * every Nth Write Command, default 4; 0 = never), FAKE_V2_LAYOUT=1 (declare the v2 characteristics).
 */
import { setTimeout as sleep } from 'node:timers/promises';

const env = process.env;
const sendsFrameDone = env.FAKE_FRAME_DONE !== '0';
const maxDelayMs = Number(env.FAKE_MAX_DELAY_MS ?? '3');
const flashEvery = Number(env.FAKE_FLASH_EVERY ?? '4');
const kinds = (env.FAKE_LINK_REQUESTS ?? '1,2,3').split(',').filter(Boolean).map(Number);

const ota = {
  uuid: 'd6f1d96d-594c-4c53-b1c6-144a1dfde6d8',
  characteristics: [
    {
      id: 0,
      uuid: '7ad671aa-21c0-46a4-b722-270e3ae3d830',
      properties: ['read', 'write', 'notify'],
    },
    {
      id: 1,
      uuid: '23408888-1f40-4cd8-9b89-ca8d45f8a5b0',
      properties: ['write', 'writeWithoutResponse'],
    },
  ],
};
if (env.FAKE_V2_LAYOUT === '1') {
  ota.characteristics.push(
    {
      id: 5,
      uuid: '44d90618-0f1a-4804-b9c7-a5ae29118ffa',
      properties: ['read', 'write', 'notify'],
    },
    {
      id: 6,
      uuid: 'fe4a130e-1430-449c-bc25-1c299d409db4',
      properties: ['writeWithoutResponse', 'write'],
    },
  );
}

if (process.argv.includes('--gatt-json')) {
  process.stdout.write(`${JSON.stringify({ services: [ota] })}\n`);
  process.exit(0);
}

const nameAt = process.argv.indexOf('--name');
const name = nameAt > 0 ? process.argv[nameAt + 1] : 'esp32';

function frame(type, payload) {
  const out = Buffer.alloc(3 + payload.length);
  out[0] = type;
  out.writeUInt16LE(payload.length, 1);
  Buffer.from(payload).copy(out, 3);
  process.stdout.write(out);
}

const hello = (advertising) =>
  frame(0x80, Buffer.concat([Buffer.from([advertising]), Buffer.from(name)]));
const consoleLine = (text) => frame(0x83, Buffer.from(`${text}\r\n`));

function linkRequest(kind, conn) {
  const b = Buffer.alloc(kind === 1 ? 11 : kind === 2 ? 7 : 5);
  b[0] = kind;
  b.writeUInt16LE(conn, 1);
  if (kind === 1) {
    // 7.5-15 ms, latency 0, supervision timeout 4 s.
    b.writeUInt16LE(6, 3);
    b.writeUInt16LE(12, 5);
    b.writeUInt16LE(0, 7);
    b.writeUInt16LE(400, 9);
  } else if (kind === 2) {
    b.writeUInt16LE(251, 3);
    b.writeUInt16LE(2120, 5);
  } else {
    b[3] = 0x03;
    b[4] = 0x03;
  }
  frame(0x89, b);
}

let writes = 0;

async function handle(type, p) {
  // The device's own speed: whatever it is, modeled time must not show it.
  await sleep(Math.random() * maxDelayMs);
  switch (type) {
    case 0x01: {
      const conn = p.readUInt16LE(0);
      hello(0);
      for (const kind of kinds) linkRequest(kind, conn);
      break;
    }
    case 0x02:
      hello(1);
      break;
    case 0x04: {
      const withResponse = p[4] === 1;
      writes += 1;
      if (withResponse) frame(0x84, Buffer.concat([p.subarray(0, 4), Buffer.from([0])]));
      else if (flashEvery > 0 && writes % flashEvery === 0) {
        const op = Buffer.alloc(9);
        op[0] = 2;
        op.writeUInt32LE(0x110000 + writes * 64, 1);
        op.writeUInt32LE(4096, 5);
        frame(0x88, op);
      }
      break;
    }
    case 0x05:
      frame(0x85, Buffer.concat([p.subarray(0, 4), Buffer.from([0]), Buffer.from('fake')]));
      break;
    case 0x07:
      consoleLine(
        `link_update conn=${p.readUInt16LE(0)} interval=${p.readUInt16LE(2)} data_length=${p.readUInt16LE(4)} phy=${p[6]}`,
      );
      break;
    default:
      break;
  }
  if (sendsFrameDone) frame(0x8a, Buffer.from([type]));
}

consoleLine('I (0) fake: fake device program up');
hello(1);

let pending = Buffer.alloc(0);
let chain = Promise.resolve();
process.stdin.on('data', (chunk) => {
  pending = Buffer.concat([pending, chunk]);
  while (pending.length >= 3) {
    const len = pending.readUInt16LE(1);
    if (pending.length < 3 + len) break;
    const type = pending[0];
    const payload = Buffer.from(pending.subarray(3, 3 + len));
    pending = pending.subarray(3 + len);
    // One frame at a time, in order, as the host build's I/O loop does.
    chain = chain.then(() => handle(type, payload));
  }
});
process.stdin.on('end', () => process.exit(0));
