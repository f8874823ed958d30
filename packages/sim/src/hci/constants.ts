/** HCI packet indicators (UART/socket framing) and the codes this controller speaks. */
export const HCI_COMMAND_PKT = 0x01;
export const HCI_ACLDATA_PKT = 0x02;
export const HCI_EVENT_PKT = 0x04;

export const PB_CONT = 0x01;
export const PB_START = 0x02;

export const L2CAP_CID_ATT = 0x0004;
export const L2CAP_CID_LE_SIGNALING = 0x0005;
export const L2CAP_CID_SMP = 0x0006;

export const EVT_DISCONN_COMPLETE = 0x05;
export const EVT_ENCRYPT_CHANGE = 0x08;
export const EVT_CMD_COMPLETE = 0x0e;
export const EVT_CMD_STATUS = 0x0f;
export const EVT_NUM_COMPLETED_PACKETS = 0x13;
export const EVT_DATA_BUFFER_OVERFLOW = 0x1a;
export const EVT_LE_META = 0x3e;

export const LE_CONN_COMPLETE = 0x01;
export const LE_ADVERTISING_REPORT = 0x02;
export const LE_CONN_UPDATE_COMPLETE = 0x03;
export const LE_DATA_LENGTH_CHANGE = 0x07;
export const LE_ENHANCED_CONN_COMPLETE = 0x0a;
export const LE_PHY_UPDATE_COMPLETE = 0x0c;
export const LE_EXTENDED_ADVERTISING_REPORT = 0x0d;

const op = (ogf: number, ocf: number) => (ogf << 10) | ocf;

export const Op = {
  Disconnect: op(0x01, 0x0006),
  SetEventMask: op(0x03, 0x0001),
  Reset: op(0x03, 0x0003),
  ReadLeHostSupported: op(0x03, 0x006c),
  WriteLeHostSupported: op(0x03, 0x006d),
  ReadLocalVersion: op(0x04, 0x0001),
  ReadLocalSupportedFeatures: op(0x04, 0x0003),
  ReadBufferSize: op(0x04, 0x0005),
  ReadBdAddr: op(0x04, 0x0009),
  ReadRssi: op(0x05, 0x0005),
  LeSetEventMask: op(0x08, 0x0001),
  LeReadBufferSize: op(0x08, 0x0002),
  LeReadLocalSupportedFeatures: op(0x08, 0x0003),
  LeSetRandomAddress: op(0x08, 0x0005),
  LeSetScanParameters: op(0x08, 0x000b),
  LeSetScanEnable: op(0x08, 0x000c),
  LeCreateConnection: op(0x08, 0x000d),
  LeCreateConnectionCancel: op(0x08, 0x000e),
  LeConnectionUpdate: op(0x08, 0x0013),
  LeStartEncryption: op(0x08, 0x0019),
  LeSetDataLength: op(0x08, 0x0022),
  LeReadSuggestedDefaultDataLength: op(0x08, 0x0023),
  LeWriteSuggestedDefaultDataLength: op(0x08, 0x0024),
  LeReadMaximumDataLength: op(0x08, 0x002f),
  LeReadPhy: op(0x08, 0x0030),
  LeSetDefaultPhy: op(0x08, 0x0031),
  LeSetPhy: op(0x08, 0x0032),
  LeSetExtendedScanParameters: op(0x08, 0x0041),
  LeSetExtendedScanEnable: op(0x08, 0x0042),
  LeExtendedCreateConnection: op(0x08, 0x0043),
  LeReadBufferSizeV2: op(0x08, 0x0060),
} as const;

/** HCI error codes (Core Vol 1 Part F). */
export const Status = {
  Success: 0x00,
  UnknownCommand: 0x01,
  UnknownConnectionId: 0x02,
  PinOrKeyMissing: 0x06,
  ConnectionTimeout: 0x08,
  CommandDisallowed: 0x0c,
  InvalidParameters: 0x12,
  RemoteUserTerminated: 0x13,
  LocalHostTerminated: 0x16,
  UnsupportedRemoteFeature: 0x1a,
  MicFailure: 0x3d,
} as const;

/** Maximum LE data channel PDU payload and its time on LE 1M (Core Vol 6 Part B 4.5.10). */
export const MAX_DATA_LENGTH = 251;
export const MAX_DATA_TIME_1M = 2120;
export const MIN_DATA_LENGTH = 27;
export const MIN_DATA_TIME = 328;
