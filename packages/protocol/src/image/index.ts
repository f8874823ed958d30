export { type BuildAppImageOptions, buildAppImage, type SegmentInput } from './build.ts';
export {
  CHIPS,
  type ChipInfo,
  type ChipName,
  type ChipTarget,
  chipById,
  flashFrequencyName,
  formatRevision,
  isFlashMapped,
  resolveChip,
} from './chips.ts';
export { ImageFormatError, type ImageFormatErrorCode } from './errors.ts';
export {
  APP_DESC,
  APP_DESC_MAGIC,
  FLASH_MODES,
  FLASH_SIZES,
  type FlashModeName,
  type FlashSizeName,
  HEADER,
  IMAGE_MAGIC,
  MAX_SEGMENTS,
  SEGMENT_HEADER,
} from './layout.ts';
export { parseAppImage } from './parse.ts';
export type { AppImageInfo, AppImageSegment } from './types.ts';
