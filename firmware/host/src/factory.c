#include "factory.h"

#include "build_config.h"
#include "flash.h"
#include "image.h"
#include "otadata.h"
#include "parttable.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t *host_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "out of memory reading %s", path);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "cannot read %s", path);
        return NULL;
    }
    *len = n;
    return buf;
}

static int prv_write_region(host_flash_t *f, uint32_t addr, const uint8_t *data, size_t len)
{
    size_t erase = (len + ESP_FLASH_SECTOR_SIZE - 1) & ~(size_t)(ESP_FLASH_SECTOR_SIZE - 1);
    if (host_flash_erase(f, addr, erase) != 0) {
        return -1;
    }
    return host_flash_write(f, addr, data, len);
}

int host_factory_write_app(const char *path, const char *label, const uint8_t *app, size_t app_len, char *err,
                           size_t errlen)
{
    host_flash_t f;
    if (host_flash_open(&f, path, err, errlen) != 0) {
        return -1;
    }
    host_dev_t dev;
    int rc = -1;
    if (host_dev_load(&dev, &f, err, errlen) != 0) {
        goto out;
    }
    const host_part_t *p = host_ptable_find_label(&dev.table, label);
    if (p == NULL || p->type != PART_TYPE_APP) {
        snprintf(err, errlen, "no app partition named '%s' in the partition table", label);
        goto out;
    }
    if (app_len > p->size) {
        snprintf(err, errlen, "image of %zu bytes does not fit %s (%u bytes)", app_len, label, p->size);
        goto out;
    }
    if (prv_write_region(&f, p->offset, app, app_len) != 0) {
        snprintf(err, errlen, "%s", f.error);
        goto out;
    }
    rc = 0;
out:
    host_flash_close(&f);
    return rc;
}

int host_factory_create(const char *path, const host_chip_t *chip, const uint8_t *app, size_t app_len, char *err,
                        size_t errlen)
{
    host_ptable_t table;
    if (host_ptable_parse_csv(host_partitions_csv, &table, err, errlen) != 0) {
        return -1;
    }
    if (host_flash_create_file(path, HOST_FLASH_SIZE_4MB, err, errlen) != 0) {
        return -1;
    }
    host_flash_t f;
    if (host_flash_open(&f, path, err, errlen) != 0) {
        return -1;
    }
    int rc = -1;
    uint8_t *bl = NULL;
    size_t bl_len = 0;
    char date_time[24];
    snprintf(date_time, sizeof(date_time), "%s %s", BLE_OTA_BUILD_DATE, BLE_OTA_BUILD_TIME);
    if (host_bootloader_image_build(chip, BLE_OTA_IDF_VER, date_time, &bl, &bl_len, err, errlen) != 0) {
        goto out;
    }
    uint8_t ptable[ESP_PARTITION_TABLE_MAX_LEN];
    host_ptable_to_binary(&table, ptable);
    if (prv_write_region(&f, chip->bootloader_offset, bl, bl_len) != 0 ||
        prv_write_region(&f, ESP_PARTITION_TABLE_OFFSET, ptable, sizeof(ptable)) != 0) {
        snprintf(err, errlen, "%s", f.error);
        goto out;
    }
    host_flash_close(&f);
    free(bl);
    if (app != NULL) {
        return host_factory_write_app(path, "ota_0", app, app_len, err, errlen);
    }
    return 0;
out:
    free(bl);
    host_flash_close(&f);
    return rc;
}
