export { DEFAULT_SLOT_SIZE, type FlashOptions, flashCommand } from './commands/flash.ts';
export { infoCommand } from './commands/info.ts';
export { type MonitorOptions, monitorCommand } from './commands/monitor.ts';
export { type ScanCommandOptions, scanCommand } from './commands/scan.ts';
export { CliError, exitCodeFor } from './errors.ts';
export {
  EXIT_CODE_HELP,
  ExitCode,
  type ExitCodeName,
  type ExitCodeValue,
  exitCodeHelp,
} from './exit-codes.ts';
export type { CliIo, OutputStream, VirtualRig, VirtualRigBoard } from './io.ts';
export { main } from './main.ts';
