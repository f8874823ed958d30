import { createRequire } from 'node:module';
import { sep } from 'node:path';
import type { Noble } from '@esp-ble-ota/noble-types';
import type { VirtualRadio } from './radio.ts';
import { setControllerSource, VirtualHciSocket } from './socket.ts';

export type { Noble };

const HCI_SOCKET_REQUEST = '@abandonware/bluetooth-hci-socket';
/** A file name that cannot exist on disk, so the real native module is never touched. */
const VIRTUAL_ID = `${sep}virtual${sep}@esp-ble-ota${sep}sim${sep}bluetooth-hci-socket.js`;
const NOBLE_DIR = `${sep}@abandonware${sep}noble${sep}`;

const require = createRequire(import.meta.url);

interface ModuleInternals {
  _resolveFilename(
    request: string,
    parent: { filename?: string | null } | undefined,
    ...rest: unknown[]
  ): string;
  _cache: Record<string, unknown>;
  new (
    id: string,
  ): { id: string; filename: string; loaded: boolean; exports: unknown; paths: string[] };
}

let hooked = false;

/**
 * Makes every copy of noble's Linux HCI stack (lib/hci-socket/hci.js) get a
 * {@link VirtualHciSocket} on `radio` instead of the native @abandonware/bluetooth-hci-socket,
 * which throws EAFNOSUPPORT on a machine without Bluetooth. Call it before noble is first
 * required; calling it again points sockets opened afterwards at another radio.
 *
 * The mechanism is scoped to one request from one package: only `require('@abandonware/bluetooth-hci-socket')`
 * issued by a file inside an `@abandonware/noble` directory resolves to the virtual module;
 * noble's own files load unmodified from node_modules.
 */
export function installVirtualHci(radio: VirtualRadio): void {
  if (!hooked) {
    const loaded = Object.keys(require.cache).find(
      (k) => k.includes(NOBLE_DIR) && k.endsWith(`hci-socket${sep}hci.js`),
    );
    if (loaded) {
      throw new Error(
        `noble's HCI stack (${loaded}) was loaded before installVirtualHci(); it holds the real socket now. ` +
          'Install the virtual HCI first and load noble lazily (loadNoble()) in that process.',
      );
    }
    const Module = require('node:module') as unknown as ModuleInternals;
    const m = new Module(VIRTUAL_ID);
    m.filename = VIRTUAL_ID;
    m.loaded = true;
    m.exports = VirtualHciSocket;
    m.paths = [];
    Module._cache[VIRTUAL_ID] = m;
    const original = Module._resolveFilename;
    Module._resolveFilename = function resolveVirtualHci(request, parent, ...rest) {
      if (request === HCI_SOCKET_REQUEST && parent?.filename?.includes(NOBLE_DIR))
        return VIRTUAL_ID;
      return original.call(this, request, parent, ...rest);
    };
    hooked = true;
  }
  setControllerSource(radio);
}

/**
 * noble's process-wide singleton (what `import noble from '@abandonware/noble'` gives every
 * module), running its own lib/hci-socket stack on the virtual radio. Only on Linux does
 * noble pick that stack for the singleton; elsewhere use {@link createNoble}.
 */
export function loadNoble(): Noble {
  assertInstalled();
  return require('@abandonware/noble') as Noble;
}

/**
 * A separate noble instance with its own HCI bindings, socket and virtual controller (its own
 * central address). Works on any platform, and lets one process run several centrals.
 */
export function createNoble(options: { extended?: boolean } = {}): Noble {
  assertInstalled();
  const withBindings = require('@abandonware/noble/with-bindings') as (bindings: unknown) => Noble;
  const HciBindings = require('@abandonware/noble/lib/hci-socket/bindings') as new (
    options: object,
  ) => { init(...args: unknown[]): unknown };
  const bindings = new HciBindings(options);
  // noble's bindings add a 'SIGINT' and an 'exit' handler to the process when they start and
  // never take them off; a process that makes one noble per rig (tests, the bench) would pile
  // them up. Note which handlers this instance added, for releaseNoble().
  const added: Array<[event: string, listener: (...args: unknown[]) => void]> = [];
  const emitter = process as NodeJS.EventEmitter;
  const init = bindings.init;
  bindings.init = function (this: unknown, ...args: unknown[]) {
    const before = new Map(
      NOBLE_PROCESS_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]),
    );
    try {
      return init.apply(this, args);
    } finally {
      for (const event of NOBLE_PROCESS_EVENTS) {
        for (const listener of emitter.listeners(event)) {
          if (!before.get(event)?.has(listener)) {
            added.push([event, listener as (...args: unknown[]) => void]);
          }
        }
      }
    }
  };
  const noble = withBindings(bindings);
  releases.set(noble, () => {
    for (const [event, listener] of added.splice(0)) emitter.removeListener(event, listener);
  });
  return noble;
}

const releases = new WeakMap<object, () => void>();
/** The process events noble's hci-socket bindings listen to (bindings.js init()). */
const NOBLE_PROCESS_EVENTS = ['SIGINT', 'exit'];

/**
 * Takes the process handlers that a {@link createNoble} instance added (noble's own 'SIGINT'
 * and 'exit' cleanup) off the process again, once whoever made it is done with it. A no-op for
 * the singleton and for an instance released before.
 */
export function releaseNoble(noble: Noble): void {
  releases.get(noble)?.();
}

function assertInstalled(): void {
  if (!hooked) {
    throw new Error(
      'call installVirtualHci(radio) before loading noble: on this machine noble would open a real HCI socket',
    );
  }
}
