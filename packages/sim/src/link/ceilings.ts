/**
 * Analytic throughput ceilings of one LE link (LINK-MODEL.md "Ceilings that follow"): pure
 * arithmetic over the air-time formulas and the controller's end-of-event rule, no scheduler.
 * kB = 1000 bytes, attribute value bytes only, one direction, as in the LINK-MODEL.md table.
 */
import { ATT_MTU_MIN } from '@esp-ble-ota/protocol';
import { attFragments, attValueBytes, DATA_LENGTH_MAX, pduAirUs, T_IFS_US } from './air.ts';
import { flashCeilingKBps } from './flash.ts';
import { DEFAULT_MODEL_OPTIONS, type ModelOptions } from './modeled-scheduler.ts';
import type { LinkProfile } from './profiles.ts';
import type { LinkParams } from './types.ts';

export type TransferMode = 'stream' | 'write-request';

export type CeilingOptions = Pick<ModelOptions, 'ceMarginUs' | 'maxCeLenUs' | 'rxReserve'> & {
  /** Most data PDUs the sender puts in one event (controller limit); default none. */
  maxDataPdusPerEvent?: number | undefined;
};

function resolve(options: Partial<CeilingOptions>): CeilingOptions {
  return {
    ceMarginUs: options.ceMarginUs ?? DEFAULT_MODEL_OPTIONS.ceMarginUs,
    maxCeLenUs: options.maxCeLenUs ?? DEFAULT_MODEL_OPTIONS.maxCeLenUs,
    rxReserve: options.rxReserve ?? DEFAULT_MODEL_OPTIONS.rxReserve,
    maxDataPdusPerEvent: options.maxDataPdusPerEvent,
  };
}

/**
 * How many of the fragments `frags` (cycled from index `start`) one connection event carries
 * when the sender always has data and the peer answers each with an empty PDU.
 */
function fragmentsInOneEvent(
  params: LinkParams,
  frags: readonly number[],
  start: number,
  o: CeilingOptions,
): number {
  const { phy, encrypted, dataLength } = params;
  const ciUs = Math.round(params.connIntervalMs * 1000);
  const limit = Math.min(ciUs - o.ceMarginUs, o.maxCeLenUs ?? Number.POSITIVE_INFINITY);
  const empty = pduAirUs(0, phy, encrypted);
  const reserve =
    o.rxReserve === 'reply'
      ? empty
      : pduAirUs(Math.min(dataLength, DATA_LENGTH_MAX), phy, encrypted);
  const cap = o.maxDataPdusPerEvent ?? Number.POSITIVE_INFINITY;
  let t = 0;
  let n = 0;
  for (;;) {
    const bytes = frags[(start + n) % frags.length] as number;
    // The anchor PDU always goes; later ones only if NimBLE's rule lets them.
    if (
      n > 0 &&
      (n >= cap || t - T_IFS_US + pduAirUs(bytes, phy, encrypted) + 2 * T_IFS_US + reserve >= limit)
    ) {
      return n;
    }
    t += pduAirUs(bytes, phy, encrypted) + T_IFS_US + empty + T_IFS_US;
    n += 1;
  }
}

/**
 * Steady-state stream of ATT PDUs of the full MTU (Write Commands or notifications): value bytes
 * per second. Follows the fragment pattern across events until it repeats, so ATT PDUs that
 * straddle events are counted exactly.
 */
export function streamCeilingKBps(
  params: LinkParams,
  options: Partial<CeilingOptions> = {},
): number {
  const o = resolve(options);
  const frags = attFragments(params.attMtu, params.dataLength);
  const seen = new Map<number, { event: number; sent: number }>();
  let start = 0;
  let sent = 0;
  for (let event = 0; ; event++) {
    const phase = start % frags.length;
    const prior = seen.get(phase);
    if (prior) {
      const fragsPerCycle = sent - prior.sent;
      const events = event - prior.event;
      const attPdus = fragsPerCycle / frags.length;
      const bytes = attPdus * attValueBytes(params.attMtu);
      return bytes / (events * params.connIntervalMs);
    }
    seen.set(phase, { event, sent });
    const n = fragmentsInOneEvent(params, frags, phase, o);
    sent += n;
    start += n;
  }
}

/**
 * The best stream any sender can make of this link: Write Commands of whatever size up to the
 * MTU (values of 20 bytes, the default MTU's, to ATT_MTU - 3) carry the most value bytes per
 * second. Every size is tried, because two effects pick it and neither is only about whole
 * link-layer PDUs:
 * - a full-MTU PDU can overshoot a link-layer PDU: with MTU 256 and data length 251 its 260
 *   bytes of L2CAP need a second, 9-byte link-layer PDU that costs almost a whole exchange,
 *   while 244 value bytes fill exactly one (LINK-MODEL.md "an ATT PDU of MTU M");
 * - a shorter PDU can fit one more exchange into a connection event: at MTU 185, 1M and 15 ms,
 *   182-byte values (189-byte link-layer PDUs) fit 7 exchanges, 171-byte ones (178) fit 8, and
 *   8 x 171 B per 15 ms is 91.2 kB/s against 84.9.
 * Ties go to the larger write (fewer PDUs for the host to handle).
 */
export function bestStreamCeilingKBps(
  params: LinkParams,
  options: Partial<CeilingOptions> = {},
): { kBps: number; attPduBytes: number; writeBytes: number } {
  let best = { kBps: streamCeilingKBps(params, options), attPduBytes: params.attMtu };
  for (let attPduBytes = params.attMtu - 1; attPduBytes >= ATT_MTU_MIN; attPduBytes--) {
    const kBps = streamCeilingKBps({ ...params, attMtu: attPduBytes }, options);
    if (kBps > best.kBps) best = { kBps, attPduBytes };
  }
  return { ...best, writeBytes: attValueBytes(best.attPduBytes) };
}

/**
 * One Write Request of the full MTU at a time: its fragments take ceil(f / per-event) events,
 * the Write Response comes in the next event (it cannot be produced while the request is on
 * air, LINK-MODEL.md "Write Request"), and the next request goes in the event after that.
 */
export function writeRequestCeilingKBps(
  params: LinkParams,
  options: Partial<CeilingOptions> = {},
): number {
  const o = resolve(options);
  const frags = attFragments(params.attMtu, params.dataLength);
  let events = 0;
  let i = 0;
  while (i < frags.length) {
    const remaining = frags.slice(i);
    i += Math.min(remaining.length, fragmentsInOneEvent(params, remaining, 0, o));
    events += 1;
  }
  return attValueBytes(params.attMtu) / ((events + 1) * params.connIntervalMs);
}

/** `ceilingKBps(params)`: the streaming ceiling, or the Write-Request-per-packet one. */
export function ceilingKBps(
  params: LinkParams,
  mode: TransferMode = 'stream',
  options: Partial<CeilingOptions> = {},
): number {
  return mode === 'stream'
    ? streamCeilingKBps(params, options)
    : writeRequestCeilingKBps(params, options);
}

export interface ProfileCeiling {
  /** Streaming ceiling of the link alone, with the best ATT PDU size up to the MTU. */
  linkKBps: number;
  /** The ATT PDU size (MTU or less) that reaches `linkKBps`. */
  linkAttPduBytes: number;
  /** The Write Command value size that reaches `linkKBps`: `linkAttPduBytes` - 3. */
  linkWriteBytes: number;
  /** What the flash alone can take (erase + program), the radio idle. */
  flashKBps: number;
  /** The lesser of the two: no protocol can beat it on this profile. */
  ceilingKBps: number;
}

/**
 * A profile's ceiling for an OTA transfer (issue 7's "the lesser of link and flash"). With 4 KB
 * sector erases (`OTA_WITH_SEQUENTIAL_WRITES`) the flash is the limit on fast links; erasing 64 KB
 * blocks ahead lifts it. The link is taken as `profile.params` says, its MIC included when
 * `params.encrypted` (a link that paired).
 */
export function profileCeilingKBps(
  profile: Pick<LinkProfile, 'params' | 'model' | 'flash'>,
  eraseUnit: 'sector' | 'block' = 'sector',
): ProfileCeiling {
  const { ceMarginUs, maxCeLenUs, rxReserve, maxDataPdusPerEvent } = profile.model;
  const link = bestStreamCeilingKBps(profile.params, {
    ceMarginUs,
    maxCeLenUs,
    rxReserve,
    maxDataPdusPerEvent: maxDataPdusPerEvent?.c2p,
  });
  const flashKBps = flashCeilingKBps(eraseUnit, profile.flash);
  return {
    linkKBps: link.kBps,
    linkAttPduBytes: link.attPduBytes,
    linkWriteBytes: link.writeBytes,
    flashKBps,
    ceilingKBps: Math.min(link.kBps, flashKBps),
  };
}
