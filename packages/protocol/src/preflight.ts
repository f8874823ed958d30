/**
 * Checks that an image suits a device before a single image byte is sent: the chip the image
 * was built for against the chip the device reports (Device Information Model Number), and the
 * image size against the device's OTA slot.
 */
import { BadImageError } from './errors.ts';
import type { AppImageInfo } from './image/types.ts';
import type { DeviceInformation } from './transport.ts';

/** Raised when the image does not suit the device it would be sent to. */
export class ImageMismatchError extends BadImageError {
  constructor(
    message: string,
    readonly reason: 'chip' | 'size',
  ) {
    super(message);
    this.name = 'ImageMismatchError';
  }
}

/** Chip names compared the way people write them: "ESP32-S3", "esp32s3", "ESP32 S3" agree. */
export function chipKey(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '');
}

export interface PreflightOptions {
  /** Size of the device's OTA slot in bytes. */
  slotSize: number;
  /** Compare the image's chip with the device's (default true). */
  checkChip?: boolean;
}

export interface PreflightNote {
  check: 'chip' | 'size';
  note: string;
}

/**
 * Throws {@link ImageMismatchError} when the image is for another chip than the device reports,
 * or larger than its slot. Returns notes on what could not be checked (a device that reports
 * no model, or a model that names no ESP chip, such as the baseline's "ESP32" is fine).
 */
export function checkImageForDevice(
  image: Pick<AppImageInfo, 'chip' | 'size'>,
  device: DeviceInformation,
  options: PreflightOptions,
): PreflightNote[] {
  const notes: PreflightNote[] = [];
  const model = device.model;
  if (options.checkChip === false) {
    // The caller overrides the chip check on purpose; nothing to note.
  } else if (model === undefined || model === '') {
    notes.push({
      check: 'chip',
      note: 'the device reports no model (no DIS Model Number); chip not checked',
    });
  } else if (!chipKey(model).startsWith('ESP')) {
    notes.push({
      check: 'chip',
      note: `the device reports model "${model}", which names no ESP chip; chip not checked`,
    });
  } else if (chipKey(model) !== chipKey(image.chip)) {
    throw new ImageMismatchError(
      `image is for ${image.chip} but the device is an ${model}; build the firmware for the device's target (idf.py set-target ${model.toLowerCase().replace(/[^a-z0-9]/g, '')}) or pick the right device`,
      'chip',
    );
  }
  if (image.size > options.slotSize) {
    throw new ImageMismatchError(
      `image is ${image.size} bytes but the device's OTA slot holds ${options.slotSize} bytes; shrink the app or use a partition table with larger OTA slots`,
      'size',
    );
  }
  return notes;
}
