/*
 * Emulation of the ESP-IDF 2nd stage bootloader (v5.x, CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE):
 * ROM banner, partition table listing, otadata selection with the rollback bookkeeping,
 * image verification with fall back to other slots, and the console lines it prints.
 */
#ifndef HOST_BOOTLOADER_H
#define HOST_BOOTLOADER_H

#include "chip.h"
#include "image.h"
#include "otadata.h"

#include <stdbool.h>

typedef struct {
    const host_chip_t *chip;
    uint32_t bootloader_offset;
    esp_bootloader_desc_t desc;
    host_image_info_t image;
} host_bl_info_t;

/* Finds the 2nd stage bootloader image (0x1000 on ESP32/S2, 0x0 on the others) and its chip. */
int host_bootloader_detect(host_flash_t *f, host_bl_info_t *out, char *err, size_t errlen);

typedef struct {
    int slot;          /* OTA slot that was loaded, -1 for factory */
    host_part_t part;  /* its partition */
    host_image_info_t image;
} host_boot_t;

/*
 * Runs one boot up to the jump into the app. Returns 0 with *out filled, or -1 when the
 * ROM or the bootloader would stop (no bootloader, bad partition table, no bootable app);
 * the console then shows why.
 */
int host_bootloader_run(host_flash_t *f, bool sw_reset, host_boot_t *out);

#endif
