import { describe, expect, it } from 'vitest';
import { AbortError, OtaError, TimeoutError } from './errors.ts';
import type { Clock } from './progress.ts';
import {
  type LinkStep,
  PhaseRecorder,
  requireImageBytes,
  SessionLink,
  type SessionPhaseEvent,
} from './session-link.ts';
import type { DisconnectInfo, NotificationListener, Transport } from './transport.ts';

/** A clock whose timers fire only when the test advances it. */
function timerClock() {
  let t = 0;
  let nextId = 0;
  const timers = new Map<number, { at: number; callback: () => void }>();
  return {
    now: () => t,
    setTimeout(callback: () => void, ms: number) {
      const id = nextId++;
      timers.set(id, { at: t + ms, callback });
      return id;
    },
    clearTimeout(handle: unknown) {
      timers.delete(handle as number);
    },
    advance(ms: number) {
      t += ms;
      for (const [id, timer] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
        if (timer.at > t) break;
        timers.delete(id);
        timer.callback();
      }
    },
    get pending() {
      return timers.size;
    },
  } satisfies Clock & Record<string, unknown>;
}

/** The part of a Transport the link uses: the disconnect event, `connected`, `unsubscribe`. */
function linkTransport() {
  const listeners = new Set<(info: DisconnectInfo) => void>();
  const unsubscribed: string[] = [];
  const stand = {
    connected: true,
    unsubscribeFails: false,
    on(_event: string, listener: (info: DisconnectInfo) => void) {
      listeners.add(listener);
    },
    off(_event: string, listener: (info: DisconnectInfo) => void) {
      listeners.delete(listener);
    },
    async unsubscribe(characteristic: string, _listener: NotificationListener) {
      unsubscribed.push(characteristic);
      if (stand.unsubscribeFails) throw new Error('CCCD write failed');
    },
    drop(info: DisconnectInfo) {
      stand.connected = false;
      for (const listener of [...listeners]) listener(info);
    },
    get listening() {
      return listeners.size;
    },
    unsubscribed,
  };
  return stand;
}

class StepLost extends Error {}

const remote: DisconnectInfo = {
  initiator: 'remote',
  reason: 0x08,
  message: 'supervision timeout',
};

function setup(signal?: AbortSignal) {
  const clock = timerClock();
  const transport = linkTransport();
  const link = new SessionLink<LinkStep>({
    transport: transport as unknown as Transport,
    clock,
    signal,
    linkLost: (step, info) => new StepLost(`lost ${step.during} (${info.message})`),
    explain: (step, error) =>
      new Error(`${typeof step.during === 'string' ? step.during : step.during()}: ${error}`),
  });
  link.attach();
  return { clock, transport, link };
}

const step: LinkStep = { timeoutMs: 100, waitingFor: 'waiting for X', during: 'while doing X' };
const never = () => new Promise<never>(() => {});

describe('SessionLink.step', () => {
  it("resolves with the body's value and leaves no timer behind", async () => {
    const { clock, link } = setup();
    await expect(link.step(step, async () => 42)).resolves.toBe(42);
    expect(clock.pending).toBe(0);
  });

  it('times out with the step text read when the timer fires, and aborts the body', async () => {
    const { clock, link } = setup();
    let phase = 'the Write Response';
    let bodySignal: AbortSignal | undefined;
    const running = link.step({ ...step, waitingFor: () => `waiting for ${phase}` }, (signal) => {
      bodySignal = signal;
      return never();
    });
    phase = 'the answer';
    clock.advance(99);
    clock.advance(1);
    const error = await running.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).message).toBe('timed out after 100 ms waiting for the answer');
    expect(bodySignal?.aborted).toBe(true);
    expect(bodySignal?.reason).toBe(error);
  });

  it("fails with AbortError naming the step when the upload's signal fires", async () => {
    const controller = new AbortController();
    const { clock, link } = setup(controller.signal);
    const running = link.step(step, never);
    controller.abort('user pressed ^C');
    const error = await running.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
    expect((error as AbortError).message).toBe('upload aborted while doing X');
    expect((error as AbortError).cause).toBe('user pressed ^C');
    expect(clock.pending).toBe(0);
  });

  it('does not start the body when the signal has fired already', async () => {
    const controller = new AbortController();
    controller.abort();
    const { link } = setup(controller.signal);
    let started = false;
    await expect(
      link.step(step, async () => {
        started = true;
      }),
    ).rejects.toBeInstanceOf(AbortError);
    expect(started).toBe(false);
    expect(() => link.throwIfAborted()).toThrow('upload aborted before it started');
  });

  it("fails the running and every later step with the session's link-lost error", async () => {
    const { transport, link } = setup();
    const running = link.step(step, never);
    transport.drop(remote);
    await expect(running).rejects.toThrow(new StepLost('lost while doing X (supervision timeout)'));
    expect(link.lost).toBe(remote);
    let started = false;
    await expect(
      link.step({ ...step, during: 'later' }, async () => {
        started = true;
      }),
    ).rejects.toThrow(new StepLost('lost later (supervision timeout)'));
    expect(started).toBe(false);
  });

  it("hands the body's rejection to the session to explain", async () => {
    const { link } = setup();
    await expect(
      link.step(step, () => Promise.reject(new OtaError('ATT_ERROR', 'write failed'))),
    ).rejects.toThrow('while doing X: OtaError: write failed');
  });
});

describe('SessionLink.watch', () => {
  it('guards many runs, each with its own timer, until the link drops', async () => {
    const { clock, transport, link } = setup();
    const watch = link.watch(step);
    await expect(watch.run(async () => 'a')).resolves.toBe('a');
    await expect(watch.run(async () => 'b')).resolves.toBe('b');
    const slow = watch.run(never);
    clock.advance(100);
    await expect(slow).rejects.toBeInstanceOf(TimeoutError);
    const stuck = watch.run(never);
    transport.drop(remote);
    await expect(stuck).rejects.toBeInstanceOf(StepLost);
    await expect(watch.run(async () => 'c')).rejects.toBeInstanceOf(StepLost);
    watch.dispose();
  });
});

describe('SessionLink, the restart after the final answer', () => {
  it('takes a disconnect after restartDue() for the restart, not a lost link', async () => {
    const { clock, transport, link } = setup();
    clock.advance(1000);
    link.restartDue();
    const waiting = link.awaitRestart(step, true);
    clock.advance(30);
    transport.drop(remote);
    await expect(waiting).resolves.toEqual({ observed: true, afterMs: 30, disconnect: remote });
    expect(link.lost).toBeUndefined();
  });

  it('reports a restart that came before the wait began', async () => {
    const { clock, transport, link } = setup();
    link.restartDue();
    clock.advance(5);
    transport.drop(remote);
    clock.advance(50);
    await expect(link.awaitRestart(step, true)).resolves.toEqual({
      observed: true,
      afterMs: 5,
      disconnect: remote,
    });
  });

  it('does not count a device that stays up as a failure', async () => {
    const { clock, link } = setup();
    link.restartDue();
    const waiting = link.awaitRestart(step, true);
    clock.advance(100);
    await expect(waiting).resolves.toEqual({ observed: false, reason: 'timeout' });
    await expect(link.awaitRestart(step, false)).resolves.toEqual({
      observed: false,
      reason: 'not-waited',
    });
  });

  it('still fails on an abort while waiting', async () => {
    const controller = new AbortController();
    const { link } = setup(controller.signal);
    link.restartDue();
    const waiting = link.awaitRestart(step, true);
    controller.abort();
    await expect(waiting).rejects.toBeInstanceOf(AbortError);
  });

  it('stops listening on detach()', () => {
    const { transport, link } = setup();
    expect(transport.listening).toBe(1);
    link.detach();
    expect(transport.listening).toBe(0);
  });
});

describe('SessionLink.unsubscribeQuietly', () => {
  it('swallows a failing unsubscribe and skips a link that is down', async () => {
    const { transport, link } = setup();
    transport.unsubscribeFails = true;
    await expect(link.unsubscribeQuietly('ctl', () => {}, 100)).resolves.toBeUndefined();
    transport.drop(remote);
    await link.unsubscribeQuietly('ctl2', () => {}, 100);
    expect(transport.unsubscribed).toEqual(['ctl']);
  });
});

describe('PhaseRecorder', () => {
  it('emits start and end with the timing, and fail with the error', async () => {
    const clock = timerClock();
    const events: SessionPhaseEvent<'a' | 'b'>[] = [];
    const phases = new PhaseRecorder<'a' | 'b'>(clock, (e) => events.push(e));
    await phases.run('a', async () => clock.advance(7));
    const boom = new Error('boom');
    await expect(
      phases.run('b', async () => {
        clock.advance(3);
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(events).toEqual([
      { phase: 'a', state: 'start', at: 0 },
      { phase: 'a', state: 'end', at: 7, durationMs: 7 },
      { phase: 'b', state: 'start', at: 7 },
      { phase: 'b', state: 'fail', at: 10, durationMs: 3, error: boom },
    ]);
    expect(phases.timings).toEqual([{ phase: 'a', startedAt: 0, endedAt: 7, durationMs: 7 }]);
  });
});

describe('requireImageBytes', () => {
  it('refuses what is not an image before anything is sent', () => {
    expect(() => requireImageBytes('fw.bin' as unknown as Uint8Array)).toThrow(
      'the image must be a Uint8Array',
    );
    expect(() => requireImageBytes(new Uint8Array(0))).toThrow('the image is empty');
    expect(() => requireImageBytes(new Uint8Array(1))).not.toThrow();
  });
});
