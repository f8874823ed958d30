#include "bootloader.h"

#include "io.h"

#include <stdio.h>
#include <string.h>

#define TAG "boot"

int host_bootloader_detect(host_flash_t *f, host_bl_info_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    static const uint32_t offsets[] = {0x1000u, 0x0u};
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        const uint8_t *h = host_flash_peek(f, offsets[i], sizeof(esp_image_header_t));
        if (h == NULL || h[0] != ESP_IMAGE_HEADER_MAGIC) {
            continue;
        }
        esp_image_header_t hdr;
        memcpy(&hdr, h, sizeof(hdr));
        const host_chip_t *chip = host_chip_by_id(hdr.chip_id);
        if (chip == NULL || chip->bootloader_offset != offsets[i]) {
            continue;
        }
        char verr[200];
        if (host_image_verify(f, offsets[i], ESP_PARTITION_TABLE_OFFSET - offsets[i], chip,
                              HOST_IMAGE_VERIFY_SILENT | HOST_IMAGE_VERIFY_BOOTLOADER, &out->image, verr,
                              sizeof(verr)) != 0) {
            snprintf(err, errlen, "2nd stage bootloader at 0x%x is corrupt: %s", offsets[i], verr);
            return -1;
        }
        const uint8_t *d = host_flash_peek(f, out->image.segment_data_addr[0], sizeof(out->desc));
        if (d == NULL || out->image.segments[0].data_len < sizeof(out->desc)) {
            snprintf(err, errlen, "2nd stage bootloader at 0x%x has no esp_bootloader_desc_t", offsets[i]);
            return -1;
        }
        memcpy(&out->desc, d, sizeof(out->desc));
        out->chip = chip;
        out->bootloader_offset = offsets[i];
        return 0;
    }
    snprintf(err, errlen, "no 2nd stage bootloader at 0x1000 or 0x0: the flash is blank (create it with --create)");
    return -1;
}

static void prv_print_rom(const host_chip_t *chip, bool sw_reset, const host_bl_info_t *bl)
{
    host_io_printf("%s%s\r\n%s", chip->rom_banner, sw_reset ? chip->rst_sw : chip->rst_poweron, chip->rom_after_rst);
    for (int i = 0; i < bl->image.segment_count; i++) {
        host_io_printf("load:0x%08x,len:%u\r\n", bl->image.segments[i].load_addr, bl->image.segments[i].data_len);
    }
    host_io_printf("entry 0x%08x\r\n", bl->image.header.entry_addr);
}

static void prv_print_table(const host_ptable_t *t)
{
    host_log('I', TAG, "Partition Table:");
    host_log('I', TAG, "## Label            Usage          Type ST Offset   Length");
    for (int i = 0; i < t->count; i++) {
        const host_part_t *p = &t->p[i];
        host_log('I', TAG, "%2d %-16s %-16s %02x %02x %08x %08x", i, p->label, host_ptable_usage(p), p->type,
                 p->subtype, p->offset, p->size);
    }
    host_log('I', TAG, "End of partition table");
}

/* index_to_partition: -1 is factory, 0.. are OTA slots. */
static const host_part_t *prv_index_part(const host_dev_t *dev, int index)
{
    if (index == -1) {
        return host_ptable_find(&dev->table, PART_TYPE_APP, PART_SUBTYPE_FACTORY);
    }
    if (index >= 0 && index < dev->ota_count) {
        return host_ptable_ota(&dev->table, index);
    }
    return NULL;
}

static bool prv_try_load(host_flash_t *f, const host_chip_t *chip, const host_part_t *p, host_image_info_t *img)
{
    char err[200];
    if (p == NULL || p->size == 0) {
        return false;
    }
    if (host_image_verify(f, p->offset, p->size, chip, 0, img, err, sizeof(err)) != 0) {
        return false;
    }
    host_log('I', TAG, "Loaded app from partition at offset 0x%x", p->offset);
    return true;
}

int host_bootloader_run(host_flash_t *f, bool sw_reset, host_boot_t *out)
{
    memset(out, 0, sizeof(*out));
    host_bl_info_t bl;
    char err[256];
    if (host_bootloader_detect(f, &bl, err, sizeof(err)) != 0) {
        /* What the ROM prints when there is no valid bootloader: it retries forever. */
        host_io_printf("ets Jun  8 2016 00:22:57\r\n\r\n%s\r\ninvalid header: 0xffffffff\r\n",
                       sw_reset ? "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"
                                : "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)");
        fprintf(stderr, "ble-ota-device: %s\n", err);
        return -1;
    }
    const host_chip_t *chip = bl.chip;
    prv_print_rom(chip, sw_reset, &bl);

    host_log('I', TAG, "ESP-IDF %s 2nd stage bootloader", bl.desc.idf_ver);
    host_log('I', TAG, "compile time %s", bl.desc.date_time);
    if (chip->cores > 1) {
        host_log('I', TAG, "Multicore bootloader");
    }
    host_log('I', TAG, "chip revision: v%d.%d", chip->chip_rev_full / 100, chip->chip_rev_full % 100);
    char chip_tag[24];
    snprintf(chip_tag, sizeof(chip_tag), "boot.%s", chip->name);
    host_log('I', chip_tag, "SPI Speed      : %s", chip->spi_speed);
    host_log('I', chip_tag, "SPI Mode       : DIO");
    host_log('I', chip_tag, "SPI Flash Size : %uMB", (unsigned)(f->size / (1024u * 1024u)));
    host_log('I', TAG, "Enabling RNG early entropy source...");

    host_dev_t dev;
    if (host_dev_load(&dev, f, err, sizeof(err)) != 0) {
        host_log('E', "flash_parts", "%s", err);
        host_log('E', TAG, "Failed to verify partition table");
        host_log('E', TAG, "load partition table error!");
        return -1;
    }
    prv_print_table(&dev.table);

    /* bootloader_utility_get_selected_boot_partition */
    int boot_index = -1;
    bool initial_contents = false;
    if (dev.otadata != NULL) {
        esp_ota_select_entry_t two[2];
        if (host_otadata_read(&dev, two) != 0) {
            host_log('E', TAG, "%s", f->error);
            return -1;
        }
        for (int i = 0; i < 2; i++) {
            if (two[i].ota_state == ESP_OTA_IMG_PENDING_VERIFY) {
                /* an app that booted once and never confirmed itself: rollback */
                two[i].ota_state = ESP_OTA_IMG_ABORTED;
                if (host_otadata_write(&dev, i, &two[i]) != 0) {
                    host_log('E', TAG, "Error in write_otadata operation. err = 0x%x", 0x103);
                }
            }
        }
        if ((host_ota_select_invalid(&two[0]) && host_ota_select_invalid(&two[1])) || dev.ota_count == 0) {
            if (host_ptable_find(&dev.table, PART_TYPE_APP, PART_SUBTYPE_FACTORY) != NULL) {
                host_log('I', TAG, "Defaulting to factory image");
                boot_index = -1;
            } else {
                host_log('I', TAG, "No factory image, trying OTA 0");
                boot_index = 0;
                if ((two[0].ota_seq == UINT32_MAX || two[0].crc != host_ota_select_crc(&two[0])) &&
                    (two[1].ota_seq == UINT32_MAX || two[1].crc != host_ota_select_crc(&two[1]))) {
                    initial_contents = true;
                }
            }
        } else {
            int active = host_ota_active_entry(two);
            if (active != -1) {
                boot_index = (int)((two[active].ota_seq - 1) % (uint32_t)dev.ota_count);
                if (two[active].ota_state == ESP_OTA_IMG_NEW) {
                    two[active].ota_state = ESP_OTA_IMG_PENDING_VERIFY;
                    if (host_otadata_write(&dev, active, &two[active]) != 0) {
                        host_log('E', TAG, "Error in write_otadata operation. err = 0x%x", 0x103);
                    }
                }
            } else if (host_ptable_find(&dev.table, PART_TYPE_APP, PART_SUBTYPE_FACTORY) != NULL) {
                host_log('E', TAG, "ota data partition invalid, falling back to factory");
                boot_index = -1;
            } else {
                host_log('E', TAG, "ota data partition invalid and no factory, will try all partitions");
                boot_index = -1;
            }
        }
    }

    /* bootloader_utility_load_boot_image: backwards to factory, then forwards */
    int loaded = -2;
    for (int index = boot_index; index >= -1 && loaded == -2; index--) {
        const host_part_t *p = prv_index_part(&dev, index);
        if (p == NULL || p->size == 0) {
            continue;
        }
        if (prv_try_load(f, chip, p, &out->image)) {
            loaded = index;
            break;
        }
        if (index == -1) {
            host_log('E', TAG, "Factory app partition is not bootable");
        } else {
            host_log('E', TAG, "OTA app partition slot %d is not bootable", index);
        }
    }
    for (int index = boot_index + 1; index < dev.ota_count && loaded == -2; index++) {
        const host_part_t *p = prv_index_part(&dev, index);
        if (p == NULL || p->size == 0) {
            continue;
        }
        if (prv_try_load(f, chip, p, &out->image)) {
            loaded = index;
            break;
        }
        host_log('E', TAG, "OTA app partition slot %d is not bootable", index);
    }
    if (loaded == -2) {
        host_log('E', TAG, "No bootable app partitions in the partition table");
        return -1;
    }
    if (loaded > -1 && initial_contents) {
        /* set_actual_ota_seq */
        esp_ota_select_entry_t e;
        memset(&e, 0xFF, sizeof(e));
        e.ota_seq = (uint32_t)loaded + 1;
        e.ota_state = ESP_OTA_IMG_VALID;
        e.crc = host_ota_select_crc(&e);
        if (host_otadata_write(&dev, 0, &e) == 0) {
            host_log('I', TAG, "Set actual ota_seq=%u in otadata[0]", e.ota_seq);
        }
    }
    host_log('I', TAG, "Disabling RNG early entropy source...");
    out->slot = loaded;
    out->part = *prv_index_part(&dev, loaded);
    return 0;
}
