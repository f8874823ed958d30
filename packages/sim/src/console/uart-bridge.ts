import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where `pnpm --filter @esp-ble-ota/sim build` puts the bridge. */
export const uartBridgePath = join(packageRoot, 'build', 'uart-bridge');

const bridgeOptions = {
  stdin: 'pipe',
  stdout: 'pipe',
  stderr: 'inherit',
  buffer: false,
  reject: false,
} as const;

/**
 * The virtual board's USB-UART bridge: a pseudo-terminal whose slave path readers open with
 * serialport, exactly like /dev/ttyUSB0 on a bench. It outlives device reboots, as the
 * bridge chip on a dev board does.
 */
export class UartBridge {
  private written = 0;
  private handled = 0;
  private idleWaiters: Array<() => void> = [];

  private constructor(
    private readonly child: ResultPromise<typeof bridgeOptions>,
    lines: Interface,
    /** The tty to open, e.g. /dev/pts/7. */
    readonly path: string,
  ) {
    // After the path, the bridge reports how many bytes it has delivered or dropped.
    lines.on('line', (line) => {
      this.handled += Number(line) || 0;
      if (this.handled >= this.written) for (const w of this.idleWaiters.splice(0)) w();
    });
    void child.then(() => {
      for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  static async open(): Promise<UartBridge> {
    if (!existsSync(uartBridgePath)) {
      throw new Error(
        `the virtual rig's UART bridge is not built (${uartBridgePath} missing): run \`pnpm --filter @esp-ble-ota/sim build\``,
      );
    }
    const child = execa(uartBridgePath, [], bridgeOptions);
    const lines = createInterface({ input: child.stdout });
    const first = await Promise.race([
      once(lines, 'line').then(([line]) => String(line)),
      child.then((r) => {
        throw new Error(`uart-bridge exited before opening a pseudo-terminal (${r.exitCode})`);
      }),
    ]);
    return new UartBridge(child, lines, first.trim());
  }

  /** Bytes the device sends on its TX line. */
  write(bytes: Uint8Array | string): void {
    if (!this.child.stdin.writable) return;
    this.written += typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
    this.child.stdin.write(bytes);
  }

  /**
   * Resolves once everything written so far has left the bridge (delivered to a reader, or
   * dropped for want of one): output from before a power cycle cannot then reach a reader
   * that opens the port for the next boot.
   */
  idle(): Promise<void> {
    if (this.handled >= this.written || this.child.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    await this.child;
  }
}
