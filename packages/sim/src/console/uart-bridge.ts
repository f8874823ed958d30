import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
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
  private constructor(
    private readonly child: ResultPromise<typeof bridgeOptions>,
    /** The tty to open, e.g. /dev/pts/7. */
    readonly path: string,
  ) {}

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
    lines.close();
    return new UartBridge(child, first.trim());
  }

  /** Bytes the device sends on its TX line. */
  write(bytes: Uint8Array | string): void {
    if (!this.child.stdin.writable) return;
    this.child.stdin.write(bytes);
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    await this.child;
  }
}
