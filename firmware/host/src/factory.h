/* What the factory (esptool + idf.py flash) puts on a new board. */
#ifndef HOST_FACTORY_H
#define HOST_FACTORY_H

#include "chip.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Creates a 4 MB flash file with the 2nd stage bootloader for `chip`, the partition table
 * from firmware/partitions.csv at 0x8000, blank otadata, and `app` (may be NULL) in ota_0.
 * These writes are not device flash operations: nothing is counted or announced.
 */
int host_factory_create(const char *path, const host_chip_t *chip, const uint8_t *app, size_t app_len, char *err,
                        size_t errlen);

/* Writes an app image into a partition of an existing flash file (esptool write_flash). */
int host_factory_write_app(const char *path, const char *label, const uint8_t *app, size_t app_len, char *err,
                           size_t errlen);

/* Reads a whole file; caller frees. */
uint8_t *host_read_file(const char *path, size_t *len, char *err, size_t errlen);

#endif
