/**
 * Why an input was refused by {@link parseAppImage}. A wrong checksum or a wrong appended
 * SHA-256 is not among them: those are reported in the result, because the structure is
 * still readable and a tool should be able to show what the image claims to be.
 */
export type ImageFormatErrorCode =
  /** Zero bytes of input. */
  | 'EMPTY'
  /** First byte is not 0xE9. */
  | 'BAD_MAGIC'
  /** The input ends inside the header, a segment header, the checksum block or the hash. */
  | 'TRUNCATED'
  /** More segments than ESP_IMAGE_MAX_SEGMENTS (16). */
  | 'TOO_MANY_SEGMENTS'
  /** segment_count is 0, so there is no segment to carry esp_app_desc_t. */
  | 'NO_SEGMENTS'
  /** A segment's data runs past the end of the input. */
  | 'SEGMENT_PAST_END'
  /** A segment length the ESP-IDF bootloader refuses (not a multiple of 4, or 16 MB or more). */
  | 'BAD_SEGMENT_LENGTH'
  /** hash_appended is neither 0 nor 1. */
  | 'BAD_HASH_FLAG'
  /** The first segment does not start with esp_app_desc_t (magic 0xABCD5432). */
  | 'NO_APP_DESC';

/** The one error type the image parser throws. `code` is stable; `message` is for people. */
export class ImageFormatError extends Error {
  override readonly name = 'ImageFormatError';
  readonly code: ImageFormatErrorCode;
  /** Byte offset in the input where the problem was found, when there is one. */
  readonly offset: number | undefined;

  constructor(code: ImageFormatErrorCode, message: string, offset?: number) {
    super(message);
    this.code = code;
    this.offset = offset;
  }
}
