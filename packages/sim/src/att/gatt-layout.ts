import { z } from 'zod';
import type { LinkSecurityLevel } from './smp.ts';
import { normalizeUuid, uuidToBytes } from './uuid.ts';

/**
 * The GATT layout as the device program prints it with `--gatt-json` (Contract B).
 * Characteristic ids are the firmware's `ble_ota_chr_id_t` values.
 */
export interface GattLayout {
  services: GattServiceDef[];
  /** What the firmware's configuration says about its side of the radio (absent: IDF defaults). */
  controller?: DeviceControllerConfig;
}

export interface DeviceControllerConfig {
  /**
   * ACL packets from the controller that the NimBLE host can hold before it takes them
   * (`CONFIG_BT_NIMBLE_TRANSPORT_ACL_FROM_LL_COUNT` in firmware/sdkconfig.defaults). While a flash
   * operation stalls the host they are what keeps the link going.
   */
  aclRxBuffers: number;
  /** NimBLE's preferred ATT MTU (`CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU`); IDF's default is 256. */
  preferredMtu?: number;
}

export interface GattServiceDef {
  uuid: string;
  characteristics: GattCharacteristicDef[];
}

export type GattProperty =
  | 'broadcast'
  | 'read'
  | 'writeWithoutResponse'
  | 'write'
  | 'notify'
  | 'indicate'
  | 'authenticatedSignedWrites'
  | 'extendedProperties';

export interface GattCharacteristicDef {
  id: number;
  uuid: string;
  properties: GattProperty[];
  /**
   * Link security a write needs (NimBLE's BLE_GATT_CHR_F_WRITE_ENC / _AUTHEN): the firmware's
   * CONFIG_BLE_OTA_LINK_SECURITY on its OTA characteristics. Absent: open.
   */
  writeSecurity?: LinkSecurityLevel;
}

/** Bit values of the characteristic declaration's properties octet (Core Vol 3 Part G 3.3.1.1). */
export const PROPERTY_BITS: Record<GattProperty, number> = {
  broadcast: 0x01,
  read: 0x02,
  writeWithoutResponse: 0x04,
  write: 0x08,
  notify: 0x10,
  indicate: 0x20,
  authenticatedSignedWrites: 0x40,
  extendedProperties: 0x80,
};

/** The property names `--gatt-json` may use: those with a bit in the declaration. */
const PROPERTY_NAMES = Object.keys(PROPERTY_BITS) as [GattProperty, ...GattProperty[]];

const gattLayoutSchema = z.object({
  services: z.array(
    z.object({
      uuid: z.string().min(4),
      characteristics: z.array(
        z.object({
          id: z.number().int().nonnegative(),
          uuid: z.string().min(4),
          properties: z.array(z.enum(PROPERTY_NAMES)),
          writeSecurity: z.enum(['open', 'encrypted', 'authenticated']).optional(),
        }),
      ),
    }),
  ),
  controller: z
    .object({
      // A NimBLE ACL pool of 0 cannot receive anything; above 1000 is a typo in sdkconfig.
      aclRxBuffers: z.number().int().min(1).max(1000),
      // ATT's minimum to NimBLE's most (BLE_ATT_MTU_MAX 527).
      preferredMtu: z.number().int().min(23).max(527).optional(),
    })
    .optional(),
});

/**
 * Checks what a device program printed for `--gatt-json`; `source` names the program in the
 * error, which says what was wrong and where.
 */
export function parseGattLayout(json: string, source: string): GattLayout {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (error) {
    throw new Error(
      `${source} --gatt-json printed something that is not JSON (${(error as Error).message}); rebuild the device program`,
    );
  }
  const parsed = gattLayoutSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') || 'the top level';
    throw new Error(
      `${source} --gatt-json does not describe a GATT layout: ${where}: ${issue?.message}; rebuild the device program`,
    );
  }
  const { services, controller } = parsed.data;
  return controller ? { services, controller } : { services };
}

export const UUID_PRIMARY_SERVICE = 0x2800;
export const UUID_SECONDARY_SERVICE = 0x2801;
export const UUID_INCLUDE = 0x2802;
export const UUID_CHARACTERISTIC = 0x2803;
export const UUID_CCCD = 0x2902;

/** What an attribute is, so the server knows where its value comes from. */
export type AttributeKind =
  | { type: 'service'; service: number }
  | { type: 'characteristic'; chr: CharacteristicEntry }
  | { type: 'value'; chr: CharacteristicEntry }
  | { type: 'cccd'; chr: CharacteristicEntry };

export interface Attribute {
  handle: number;
  /** Attribute type, normalised (e.g. "2800", or a dashed 128-bit UUID). */
  type: string;
  typeBytes: Buffer;
  kind: AttributeKind;
  /** Fixed value for declarations; undefined for values served by the app or per connection. */
  value?: Buffer;
}

export interface CharacteristicEntry {
  /** The app's characteristic id, or a negative id for the built-in GAP/GATT characteristics. */
  id: number;
  uuid: string;
  properties: number;
  /** Link security a write of the value needs. */
  writeSecurity: LinkSecurityLevel;
  declHandle: number;
  valueHandle: number;
  cccdHandle?: number;
  service: ServiceEntry;
}

export interface ServiceEntry {
  uuid: string;
  startHandle: number;
  endHandle: number;
  characteristics: CharacteristicEntry[];
}

/** Ids of the characteristics that the ATT server answers itself, as NimBLE's GAP/GATT services do. */
export const BUILTIN_DEVICE_NAME = -1;
export const BUILTIN_APPEARANCE = -2;
export const BUILTIN_SERVICE_CHANGED = -3;

const BUILTIN_SERVICES: GattServiceDef[] = [
  {
    uuid: '1800',
    characteristics: [
      { id: BUILTIN_DEVICE_NAME, uuid: '2a00', properties: ['read'] },
      { id: BUILTIN_APPEARANCE, uuid: '2a01', properties: ['read'] },
    ],
  },
  {
    uuid: '1801',
    characteristics: [{ id: BUILTIN_SERVICE_CHANGED, uuid: '2a05', properties: ['indicate'] }],
  },
];

/**
 * The attribute table, with handles assigned the way NimBLE assigns them: services in order,
 * each as service declaration, then per characteristic its declaration, value and (for notify or
 * indicate) a CCCD. NimBLE registers the GAP and GATT services first, so they come first here too.
 */
export class AttributeDb {
  readonly attributes: Attribute[] = [];
  readonly services: ServiceEntry[] = [];
  private readonly byId = new Map<number, CharacteristicEntry>();

  constructor(layout: GattLayout, options: { builtinServices?: boolean } = {}) {
    const defs = [
      ...((options.builtinServices ?? true) ? BUILTIN_SERVICES : []),
      ...layout.services,
    ];
    let handle = 1;
    for (const svcDef of defs) {
      const svc: ServiceEntry = {
        uuid: normalizeUuid(svcDef.uuid),
        startHandle: handle,
        endHandle: handle,
        characteristics: [],
      };
      this.push(
        handle++,
        UUID_PRIMARY_SERVICE,
        { type: 'service', service: this.services.length },
        uuidToBytes(svc.uuid),
      );
      for (const chrDef of svcDef.characteristics) {
        let properties = 0;
        for (const p of chrDef.properties) {
          const bit = PROPERTY_BITS[p];
          if (bit === undefined) {
            throw new Error(
              `characteristic ${chrDef.uuid} has unknown property "${p}"; use one of ${Object.keys(PROPERTY_BITS).join(', ')}`,
            );
          }
          properties |= bit;
        }
        if (this.byId.has(chrDef.id)) {
          throw new Error(
            `characteristic id ${chrDef.id} appears twice in the GATT layout; ids must be unique`,
          );
        }
        const chr: CharacteristicEntry = {
          id: chrDef.id,
          uuid: normalizeUuid(chrDef.uuid),
          properties,
          writeSecurity: chrDef.writeSecurity ?? 'open',
          declHandle: handle,
          valueHandle: handle + 1,
          service: svc,
        };
        const decl = Buffer.alloc(3);
        decl.writeUInt8(properties, 0);
        decl.writeUInt16LE(chr.valueHandle, 1);
        this.push(
          handle++,
          UUID_CHARACTERISTIC,
          { type: 'characteristic', chr },
          Buffer.concat([decl, uuidToBytes(chr.uuid)]),
        );
        this.push(handle++, chr.uuid, { type: 'value', chr });
        if (properties & (PROPERTY_BITS.notify | PROPERTY_BITS.indicate)) {
          chr.cccdHandle = handle;
          this.push(handle++, UUID_CCCD, { type: 'cccd', chr });
        }
        svc.characteristics.push(chr);
        this.byId.set(chr.id, chr);
      }
      svc.endHandle = handle - 1;
      this.services.push(svc);
    }
  }

  get lastHandle(): number {
    return this.attributes.length;
  }

  /** Attribute by handle (handles are dense and start at 1). */
  get(handle: number): Attribute | undefined {
    return handle >= 1 ? this.attributes[handle - 1] : undefined;
  }

  characteristic(id: number): CharacteristicEntry | undefined {
    return this.byId.get(id);
  }

  private push(handle: number, type: number | string, kind: AttributeKind, value?: Buffer): void {
    const typeStr = typeof type === 'number' ? type.toString(16).padStart(4, '0') : type;
    const attr: Attribute = { handle, type: typeStr, typeBytes: uuidToBytes(typeStr), kind };
    if (value) attr.value = value;
    this.attributes.push(attr);
  }
}
