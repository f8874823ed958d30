import { advertisesOta, scan } from '@esp-ble-ota/noble';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { type CliIo, json, line } from '../io.ts';
import { openRadio, simOptions } from '../rig.ts';

export interface ScanCommandOptions {
  timeout: number;
  sim?: boolean;
  simProfile?: string;
  simChip?: string;
  json?: boolean;
  /** List every advertiser, not only those offering the OTA service. */
  all?: boolean;
}

export async function scanCommand(options: ScanCommandOptions, io: CliIo): Promise<ExitCodeValue> {
  const radio = await openRadio(io, simOptions(options));
  try {
    if (!options.json) {
      line(
        io.stderr,
        `scanning for ${options.timeout / 1000} s${options.sim ? ' on the virtual rig' : ''}...`,
      );
    }
    const devices = await scan(radio.noble, {
      timeoutMs: options.timeout,
      signal: io.signal,
      match: options.all ? undefined : advertisesOta,
    });
    const rows = devices.map((d) => ({
      name: d.name ?? null,
      address: d.address,
      rssi: d.rssi,
      ota: advertisesOta(d),
      connectable: d.connectable,
    }));
    if (options.json) {
      json(io.stdout, rows);
    } else if (rows.length === 0) {
      line(
        io.stderr,
        options.all
          ? 'no devices found'
          : 'no device offering the OTA service found (try --all to list every advertiser, or a longer --timeout)',
      );
    } else {
      const nameWidth = Math.max(4, ...rows.map((r) => (r.name ?? '').length));
      line(io.stdout, `${'NAME'.padEnd(nameWidth)}  ${'ADDRESS'.padEnd(17)}  RSSI`);
      for (const r of rows) {
        line(
          io.stdout,
          `${(r.name ?? '').padEnd(nameWidth)}  ${r.address.padEnd(17)}  ${String(r.rssi).padStart(4)} dBm${options.all && r.ota ? '  (OTA)' : ''}`,
        );
      }
    }
    return rows.length === 0 ? ExitCode.DEVICE_NOT_FOUND : ExitCode.OK;
  } finally {
    await radio.close();
  }
}
