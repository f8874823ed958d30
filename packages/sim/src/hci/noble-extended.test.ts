import { expect, it } from 'vitest';
import { createNoble, installVirtualHci } from './install.ts';
import { VirtualRadio } from './radio.ts';
import {
  BASELINE_LAYOUT,
  BaselineTestApp,
  ImmediateTestScheduler,
  poweredOn,
  scanFor,
} from './test-support.ts';

it("noble's extended mode: extended scanning and create connection, enhanced connection complete", async () => {
  const radio = new VirtualRadio({
    createLink: (req) => new ImmediateTestScheduler({ connIntervalMs: req.maxIntervalMs }),
  });
  const app = new BaselineTestApp();
  app.peripheral = radio.addPeripheral({
    address: '24:0a:c4:00:00:01',
    name: 'esp32',
    gatt: BASELINE_LAYOUT,
    app,
  });
  installVirtualHci(radio);
  // A separate instance (not the singleton), with its own controller, in extended mode.
  const noble = createNoble({ extended: true });
  const controller = radio.controllers[0];
  if (!controller) throw new Error('noble opened no socket');
  controller.traceEnabled = true;
  await poweredOn(noble);
  const p = await scanFor(noble);
  expect(p.advertisement.localName).toBe('esp32');
  await p.connectAsync();
  const { characteristics } = await p.discoverSomeServicesAndCharacteristicsAsync(
    ['180a'],
    ['2a29'],
  );
  expect((await characteristics[0]?.readAsync())?.toString()).toBe('Company 42');
  await p.disconnectAsync();
  const sent = controller.trace
    .filter(([d]) => d === 'host->controller')
    .map(([, b]) => b.readUInt16LE(1));
  expect(sent).toEqual(expect.arrayContaining([0x2031, 0x2041, 0x2042, 0x2043]));
  const le = controller.trace
    .filter(([d, b]) => d === 'controller->host' && b[1] === 0x3e)
    .map(([, b]) => b[3]);
  expect(le).toContain(0x0d);
  expect(le).toContain(0x0a);
  expect(le).not.toContain(0x01);
  expect(app.events).toEqual(['connect 1 23', 'mtu 1 256', 'disconnect 1 0x13']);
});
