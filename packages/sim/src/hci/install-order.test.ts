import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import { installVirtualHci, loadNoble } from './install.ts';
import { VirtualRadio } from './radio.ts';
import { ImmediateTestScheduler } from './test-support.ts';

it('refuses to install after noble loaded its HCI stack, and to load noble before installing', () => {
  expect(() => loadNoble()).toThrow(/call installVirtualHci\(radio\) before loading noble/);
  // Loading hci.js first binds it to the real native socket module for good.
  const require = createRequire(import.meta.url);
  const nobleDir = require.resolve('@abandonware/noble/package.json').replace(/package\.json$/, '');
  require(`${nobleDir}lib/hci-socket/hci.js`);
  const radio = new VirtualRadio({ createLink: () => new ImmediateTestScheduler() });
  expect(() => installVirtualHci(radio)).toThrow(/was loaded before installVirtualHci\(\)/);
});
