export {
  type BuildAppImageOptions,
  buildAppImage,
  type SegmentInput,
  withAppVersion,
  withSecureVersion,
} from './build.ts';
export {
  CHIPS,
  type ChipInfo,
  type ChipName,
  type ChipTarget,
  chipById,
  flashFrequencyName,
  formatRevision,
  hasBleRadio,
  isFlashMapped,
  noBleRadioReason,
  resolveChip,
} from './chips.ts';
export { ImageFormatError, type ImageFormatErrorCode } from './errors.ts';
export {
  APP_DESC as APP_DESC_LAYOUT,
  APP_DESC_MAGIC,
  FLASH_MODES,
  FLASH_SIZES,
  type FlashModeName,
  type FlashSizeName,
  HEADER as IMAGE_HEADER_LAYOUT,
  IMAGE_MAGIC,
  MAX_SEGMENTS,
  SEGMENT_HEADER as SEGMENT_HEADER_LAYOUT,
} from './layout.ts';
export { parseAppImage } from './parse.ts';
export {
  findSignatureSector,
  MAX_SIG_BLOCKS,
  readSignatures,
  SIG_BLOCK_SIZE,
  SIG_SECTOR_SIZE,
  type SignatureBlockInfo,
  SignatureError,
  type SignatureScheme,
  type SignatureSectorInfo,
} from './signature.ts';
export type { AppImageInfo, AppImageSegment } from './types.ts';
