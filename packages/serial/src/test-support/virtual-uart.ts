// Test-only: the virtual rig's USB-UART bridge (packages/sim/build/uart-bridge), a real
// pseudo-terminal that SerialConsole opens exactly like /dev/ttyUSB0. packages/sim does not
// export its own wrapper, so this spawns the same program.
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const uartBridgePath = fileURLToPath(
  new URL('../../../sim/build/uart-bridge', import.meta.url),
);

export class VirtualUart {
  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, null>,
    readonly path: string,
  ) {}

  static async open(): Promise<VirtualUart> {
    if (!existsSync(uartBridgePath)) {
      throw new Error(
        `${uartBridgePath} is missing: build the virtual rig's UART bridge with \`pnpm --filter @esp-ble-ota/sim build\``,
      );
    }
    const child = spawn(uartBridgePath, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    while (!out.includes('\n')) {
      const [chunk] = (await Promise.race([
        once(child.stdout, 'data'),
        once(child, 'exit').then(([code]) => {
          throw new Error(`uart-bridge exited (${code}) before printing its pty path`);
        }),
      ])) as [Buffer];
      out += chunk.toString();
    }
    return new VirtualUart(child, out.trim());
  }

  /** Bytes the "device" sends; resolves once the pipe to the bridge accepted them. */
  async send(bytes: string | Uint8Array): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.child.stdin.write(bytes, (err) => (err ? reject(err) : resolve())),
    );
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.stdin.end();
    await exited;
  }
}
