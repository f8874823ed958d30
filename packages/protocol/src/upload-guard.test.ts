import { describe, expect, it } from 'vitest';
import { BadArgumentError } from './errors.ts';
import { UploadGuard, uploadOnce } from './upload-guard.ts';

describe('UploadGuard.run', () => {
  it("hands the body the uploader's options with the signals combined", async () => {
    const guard = new UploadGuard();
    const uploaderAbort = new AbortController();
    const callAbort = new AbortController();
    const options = { signal: uploaderAbort.signal, maxFrame: 100 };
    let seen: typeof options | undefined;
    await guard.run(options, callAbort.signal, async (o) => {
      seen = o;
      callAbort.abort('call');
      expect(o.signal.aborted).toBe(true);
      expect(o.signal.reason).toBe('call');
    });
    expect(seen?.maxFrame).toBe(100);
    expect(seen?.signal).not.toBe(uploaderAbort.signal);
    // The caller's options object is left as it was.
    expect(options.signal).toBe(uploaderAbort.signal);
  });

  it('passes one signal through and leaves options without one alone', async () => {
    const guard = new UploadGuard();
    const call = new AbortController().signal;
    await guard.run({}, call, async (o: { signal?: AbortSignal }) => {
      expect(o.signal).toBe(call);
    });
    await guard.run({}, undefined, async (o: { signal?: AbortSignal }) => {
      expect('signal' in o).toBe(false);
    });
  });

  it('refuses a second upload while one runs, and takes one after it settled', async () => {
    const guard = new UploadGuard();
    let release = () => {};
    const first = guard.run({}, undefined, () => new Promise<void>((r) => (release = r)));
    await expect(guard.run({}, undefined, async () => {})).rejects.toBeInstanceOf(BadArgumentError);
    release();
    await first;
    await expect(guard.run({}, undefined, async () => 'again')).resolves.toBe('again');
  });
});

describe('uploadOnce', () => {
  it('registers only the listeners given, then uploads', async () => {
    const registered: string[] = [];
    const image = new Uint8Array([0xe9]);
    const uploader = {
      on(event: 'progress' | 'phase', _listener: (value: number) => void) {
        registered.push(event);
      },
      upload: async (bytes: Uint8Array) => bytes.length,
    };
    await expect(uploadOnce(uploader, image, { onPhase: () => {} })).resolves.toBe(1);
    expect(registered).toEqual(['phase']);
  });
});
