/*
 * otadata and the OTA bookkeeping that esp_ota_ops and the bootloader do on it,
 * with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE semantics.
 */
#ifndef HOST_OTADATA_H
#define HOST_OTADATA_H

#include "esp_format.h"
#include "flash.h"
#include "parttable.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* zlib/binascii crc32 semantics, which is what esp_rom_crc32_le computes. */
uint32_t host_crc32_le(uint32_t crc, const uint8_t *buf, size_t len);
/* bootloader_common_ota_select_crc: esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4) */
uint32_t host_ota_select_crc(const esp_ota_select_entry_t *s);
bool host_ota_select_invalid(const esp_ota_select_entry_t *s);
bool host_ota_select_valid(const esp_ota_select_entry_t *s);
/* bootloader_common_get_active_otadata: index of the valid entry with the highest seq, or -1 */
int host_ota_active_entry(const esp_ota_select_entry_t two[2]);
const char *host_ota_state_name(uint32_t state);
/* Smallest seq > current_seq with (seq - 1) % count == slot. */
uint32_t host_ota_seq_for_slot(uint32_t current_seq, uint32_t slot, uint32_t count);

/* A flash with its partition table loaded. */
typedef struct {
    host_flash_t *flash;
    host_ptable_t table;
    const host_part_t *otadata;
    int ota_count;
} host_dev_t;

int host_dev_load(host_dev_t *dev, host_flash_t *flash, char *err, size_t errlen);
int host_otadata_read(host_dev_t *dev, esp_ota_select_entry_t two[2]);
/* Erases the entry's sector and writes the 32-byte entry, like write_otadata/rewrite_ota_seq. */
int host_otadata_write(host_dev_t *dev, int index, const esp_ota_select_entry_t *e);

/* The slot the bootloader will try first (before image validation), -1 if otadata is blank. */
int host_ota_selected_slot(const host_dev_t *dev, const esp_ota_select_entry_t two[2]);

/* esp_ota_set_boot_partition (after validation): new seq for `slot`, state NEW. */
int host_ota_set_boot(host_dev_t *dev, int slot, char *err, size_t errlen);
/* esp_ota_mark_app_valid_cancel_rollback for the running slot. */
int host_ota_mark_valid(host_dev_t *dev, char *err, size_t errlen);
/* esp_ota_mark_app_invalid_rollback (no reboot): state INVALID, refused if nothing to roll back to. */
int host_ota_mark_invalid(host_dev_t *dev, char *err, size_t errlen);
/* esp_ota_get_state_partition: state of the otadata entry that points at `slot`. */
int host_ota_get_state(host_dev_t *dev, int slot, uint32_t *state);
/* esp_ota_invalidate_inactive_ota_data_slot, done by esp_ota_begin with rollback enabled. */
int host_ota_invalidate_inactive(host_dev_t *dev, int running_slot);

#endif
