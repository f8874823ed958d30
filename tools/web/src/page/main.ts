/**
 * The page: an image file, a device chosen in the browser's chooser, and `updateDevice()` over
 * Web Bluetooth with its events rendered. Every message a person reads about the image, the
 * device or a refusal comes from the protocol package, as the command-line tool's do.
 */
import {
  type AppImageInfo,
  deviceSecurityLines,
  hasV2,
  ImageFormatError,
  parseAppImage,
  protocolChoiceText,
  readDeviceInformation,
  readSignatures,
  readV2Info,
  resumingText,
  type SignatureSectorInfo,
  signatureProblem,
  signatureText,
  UpdateError,
  type UpdateEvent,
  updateDevice,
} from '@esp-ble-ota/protocol';
import { type WebFoundDevice, webBluetoothAccess } from '../web-bluetooth.ts';

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`the page has no #${id}`);
  return found as T;
}

const ui = {
  file: element<HTMLInputElement>('image-file'),
  imageInfo: element<HTMLDListElement>('image-info'),
  name: element<HTMLInputElement>('device-name'),
  connect: element<HTMLButtonElement>('connect'),
  deviceInfo: element<HTMLDListElement>('device-info'),
  update: element<HTMLButtonElement>('update'),
  cancel: element<HTMLButtonElement>('cancel'),
  progress: element<HTMLProgressElement>('progress'),
  rate: element<HTMLParagraphElement>('rate'),
  status: element<HTMLParagraphElement>('status'),
  error: element<HTMLParagraphElement>('error'),
  log: element<HTMLOListElement>('log'),
};

interface LoadedImage {
  name: string;
  bytes: Uint8Array;
  info: AppImageInfo;
  signatures: SignatureSectorInfo | undefined;
}

let image: LoadedImage | undefined;
let chosen: WebFoundDevice | undefined;
let running: AbortController | undefined;

function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function showFacts(list: HTMLDListElement, rows: [string, string][]): void {
  list.replaceChildren(
    ...rows.flatMap(([term, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  list.hidden = rows.length === 0;
}

function say(text: string): void {
  ui.status.textContent = text;
}

function log(text: string): void {
  const item = document.createElement('li');
  item.textContent = text;
  ui.log.append(item);
}

function showError(text: string | undefined): void {
  ui.error.textContent = text ?? '';
  ui.error.hidden = text === undefined;
}

function refreshButtons(): void {
  const busy = running !== undefined;
  ui.update.disabled = busy || image === undefined || chosen === undefined;
  ui.connect.disabled = busy;
  ui.file.disabled = busy;
  ui.cancel.disabled = !busy;
}

async function onFile(): Promise<void> {
  image = undefined;
  showError(undefined);
  showFacts(ui.imageInfo, []);
  refreshButtons();
  const file = ui.file.files?.[0];
  if (file === undefined) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  let info: AppImageInfo;
  let signatures: SignatureSectorInfo | undefined;
  try {
    info = parseAppImage(bytes);
    signatures = await readSignatures(bytes);
  } catch (error) {
    if (!(error instanceof ImageFormatError)) throw error;
    showError(`${file.name}: ${error.message}`);
    say('That file is not an app image this page can send.');
    return;
  }
  const rows: [string, string][] = [
    ['Chip', `${info.chip} (chip id ${info.chipId})`],
    ['Project', info.project],
    ['Version', info.version],
    ['Secure version', String(info.secureVersion)],
    ['Size', `${info.size} bytes`],
    ['Checksum', info.checksumValid ? 'valid' : 'INVALID'],
    ['Hash', info.hashValid === null ? 'not appended' : info.hashValid ? 'valid' : 'INVALID'],
    ...(signatures === undefined
      ? [['Signature', 'none (not signed for Secure Boot v2)'] as [string, string]]
      : signatures.blocks.map((b): [string, string] => [
          `Signature ${b.index + 1}`,
          signatureText(b),
        ])),
  ];
  showFacts(ui.imageInfo, rows);
  const bad = signatures?.blocks.find((b) => signatureProblem(b) !== undefined);
  if (!info.checksumValid || info.hashValid === false) {
    showError(
      `${file.name} is corrupt (${!info.checksumValid ? 'checksum' : 'SHA-256'} mismatch); the bootloader would reject it`,
    );
    return;
  }
  if (bad !== undefined) {
    showError(
      `${file.name}: signature ${bad.index + 1} is invalid: ${signatureProblem(bad)}; a device that checks signatures refuses it`,
    );
  }
  image = { name: file.name, bytes, info, signatures };
  say(
    chosen === undefined
      ? `${info.project} ${info.version} for ${info.chip} loaded; connect to a device.`
      : `${info.project} ${info.version} for ${info.chip} loaded; ready to update.`,
  );
  refreshButtons();
}

function access() {
  const name = ui.name.value.trim();
  return webBluetoothAccess({
    bluetooth: navigator.bluetooth,
    ...(name === '' ? {} : { name }),
  });
}

/** Choose a device (the browser's chooser), then read what it is and what it enforces. */
async function onConnect(): Promise<void> {
  showError(undefined);
  if (navigator.bluetooth === undefined) {
    showError(
      'this browser has no Web Bluetooth: use Chrome, Edge or Opera on desktop or Android, over https or localhost (on Linux, start Chrome with --enable-features=WebBluetooth, or turn on chrome://flags/#enable-experimental-web-platform-features)',
    );
    return;
  }
  const a = access();
  let device: WebFoundDevice;
  try {
    say('Choose the device in the browser window…');
    device = await a.find({});
  } catch (error) {
    showError(error instanceof Error ? error.message : String(error));
    say('No device chosen.');
    return;
  }
  chosen = device;
  say(`Connecting to ${device.name ?? 'the device'}…`);
  const transport = a.transport(device);
  try {
    await transport.connect();
    const info = await readDeviceInformation(transport);
    const rows: [string, string][] = [
      ['Name', device.name ?? '(no name)'],
      ['Model', info.model ?? 'unknown'],
      ['Firmware', info.firmwareRevision ?? 'not reported'],
      ['Manufacturer', info.manufacturer ?? 'not reported'],
    ];
    if (hasV2(transport)) {
      const v2 = await readV2Info(transport);
      rows.push(['Protocol', `v2 (${protocolChoiceText('v2-offered')})`]);
      rows.push(['Slot', `${v2.slotSize} bytes`]);
      if (v2.security !== undefined) {
        for (const line of deviceSecurityLines(v2.security)) rows.push(['Enforces', line]);
      } else rows.push(['Enforces', 'not reported (firmware before v2 INFO said it)']);
    } else {
      rows.push(['Protocol', `baseline (${protocolChoiceText('no-v2-characteristics')})`]);
    }
    showFacts(ui.deviceInfo, rows);
    say(
      image === undefined
        ? `Connected to ${device.name ?? 'the device'}; pick an image file.`
        : `Connected to ${device.name ?? 'the device'}; ready to update.`,
    );
  } catch (error) {
    showError(error instanceof Error ? error.message : String(error));
    say('Could not read the device.');
  } finally {
    await transport.close();
    refreshButtons();
  }
}

function render(event: UpdateEvent, total: number): void {
  switch (event.type) {
    case 'connected':
      log(
        `connected: ${event.device.model ?? 'model unknown'}${event.device.firmwareRevision === undefined ? '' : `, firmware ${event.device.firmwareRevision}`}`,
      );
      return;
    case 'protocol':
      log(`protocol: ${event.protocol} (${protocolChoiceText(event.choice)})`);
      return;
    case 'preflight':
      for (const n of event.notes) log(n.note);
      return;
    case 'phase':
      if (event.state === 'start') {
        if (event.phase === 'data') say('Sending the image…');
        else if (event.phase === 'end' || event.phase === 'done')
          say('The device checks the image…');
        else if (event.phase === 'restart') say('The device restarts into the new image…');
      }
      return;
    case 'progress': {
      const s = event.snapshot;
      ui.progress.max = s.total || total;
      ui.progress.value = s.bytes;
      const rate =
        s.bytesPerSecond === undefined ? '-- kB/s' : `${(s.bytesPerSecond / 1000).toFixed(1)} kB/s`;
      const eta = s.etaMs === undefined ? '--' : formatMs(s.etaMs);
      ui.rate.textContent = `${s.percent.toFixed(0)} % · ${s.bytes} of ${s.total} bytes · ${rate} · ${eta} left`;
      return;
    }
    case 'resuming': {
      const text = resumingText(event);
      say(text);
      log(text);
      return;
    }
    case 'uploaded': {
      const r = event.upload;
      if (r.protocol === 'v2' && r.result.outcome === 'already-installed') {
        log('already installed: the device runs this image (same SHA-256); nothing sent');
      } else {
        // A v2 device that held an earlier session's bytes (a cancel, a closed page) takes the
        // stream from where it had committed: say so, as the second Update after Cancel does.
        const from =
          r.protocol === 'v2' && r.result.resumedFrom > 0
            ? `, from stream byte ${r.result.resumedFrom} on (the device kept what came before)`
            : '';
        log(
          `uploaded ${total} bytes with protocol ${r.protocol}${event.resumes > 0 ? `, resumed ${event.resumes}x` : ''}${from} in ${formatMs(event.wallMs)}`,
        );
      }
      return;
    }
    case 'note':
      log(event.message);
      say(event.message);
      return;
    case 'verified':
      if (event.version !== undefined) log(`verified: the device runs ${event.version}`);
      return;
    case 'found':
      return;
  }
}

async function onUpdate(): Promise<void> {
  if (image === undefined || chosen === undefined) return;
  showError(undefined);
  ui.log.replaceChildren();
  ui.progress.value = 0;
  ui.rate.textContent = '\u00a0';
  running = new AbortController();
  refreshButtons();
  const loaded = image;
  say(`Updating ${chosen.name ?? 'the device'} to ${loaded.info.version}…`);
  try {
    const result = await updateDevice(access(), {
      image: loaded.bytes,
      imageInfo: loaded.info,
      device: chosen,
      signal: running.signal,
      onEvent: (event) => render(event, loaded.bytes.length),
    });
    if (result.verify.verified) {
      ui.progress.value = ui.progress.max;
      say(`Done: the device runs ${result.verify.version}.`);
    } else if (result.verify.reason === 'already-installed') {
      say('Nothing to do: the device already runs this image.');
    } else {
      say('Sent; the device did not confirm its new version (see the log).');
    }
  } catch (error) {
    const message =
      error instanceof UpdateError || error instanceof Error ? error.message : String(error);
    if (running?.signal.aborted) {
      // The person asked for it: not an error. Nothing is installed before END, and a v2
      // device holds what it has received for a while (protocol-v2.md, "Sessions and resume").
      say(
        'Cancelled: nothing was installed, the device runs its old image. Update again to continue where this stopped.',
      );
      log(`cancelled (${message})`);
    } else {
      showError(message);
      say('The update did not go through.');
      log(`error: ${message}`);
    }
  } finally {
    running = undefined;
    refreshButtons();
  }
}

ui.file.addEventListener('change', () => void onFile());
ui.connect.addEventListener('click', () => void onConnect());
ui.update.addEventListener('click', () => void onUpdate());
ui.cancel.addEventListener('click', () => running?.abort(new Error('cancelled on the page')));
refreshButtons();
