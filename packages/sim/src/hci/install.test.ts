import { describe, expect, it } from 'vitest';
import { ImmediateAirScheduler } from '../link/immediate-scheduler.ts';
import { createNoble, installVirtualHci, releaseNoble } from './install.ts';
import { VirtualRadio } from './radio.ts';
import { poweredOn } from './test-support.ts';

describe('releaseNoble', () => {
  it("takes a created noble's SIGINT and exit handlers off the process, so rigs do not pile them up", async () => {
    installVirtualHci(new VirtualRadio({ createLink: () => new ImmediateAirScheduler() }));
    const before = {
      SIGINT: process.listenerCount('SIGINT'),
      exit: process.listenerCount('exit'),
    };
    const nobles = [createNoble(), createNoble(), createNoble()];
    await Promise.all(nobles.map((n) => poweredOn(n)));
    // noble's bindings add one of each when they start...
    expect(process.listenerCount('SIGINT')).toBe(before.SIGINT + 3);
    expect(process.listenerCount('exit')).toBe(before.exit + 3);
    // ...and each release takes exactly its own off, once.
    releaseNoble(nobles[1] as (typeof nobles)[number]);
    releaseNoble(nobles[1] as (typeof nobles)[number]);
    expect(process.listenerCount('SIGINT')).toBe(before.SIGINT + 2);
    for (const n of nobles) releaseNoble(n);
    expect(process.listenerCount('SIGINT')).toBe(before.SIGINT);
    expect(process.listenerCount('exit')).toBe(before.exit);
  });
});
