/*
 * ble-ota-flash: the esptool of the virtual rig. Creates a flash file as a new board
 * leaves the factory, writes app images into partitions, and shows what is on a flash.
 */
#include "bootloader.h"
#include "chip.h"
#include "factory.h"
#include "image.h"
#include "io.h"
#include "otadata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void prv_usage(FILE *out)
{
    fprintf(out,
            "usage: ble-ota-flash create <flash.bin> [--chip CHIP] [--app <app.bin>]\n"
            "       ble-ota-flash write <flash.bin> <partition-label> <app.bin>\n"
            "       ble-ota-flash info <flash.bin>\n"
            "chips: %s (default esp32)\n",
            host_chip_names());
}

static void prv_print_desc(const esp_app_desc_t *d)
{
    char sha[65];
    for (int i = 0; i < 32; i++) {
        snprintf(sha + 2 * i, 3, "%02x", d->app_elf_sha256[i]);
    }
    printf("    project %.32s, version %.32s, secure_version %u\n", d->project_name, d->version, d->secure_version);
    printf("    compiled %.16s %.16s with ESP-IDF %.32s\n", d->date, d->time, d->idf_ver);
    printf("    ELF SHA-256 %s\n", sha);
}

static int prv_info(const char *path)
{
    char err[256];
    host_flash_t f;
    if (host_flash_open(&f, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "ble-ota-flash: %s\n", err);
        return 1;
    }
    host_bl_info_t bl;
    const host_chip_t *chip = NULL;
    if (host_bootloader_detect(&f, &bl, err, sizeof(err)) != 0) {
        printf("bootloader: none (%s)\n", err);
    } else {
        chip = bl.chip;
        printf("bootloader: %s at 0x%x, ESP-IDF %.32s, built %.24s\n", chip->model, bl.bootloader_offset,
               bl.desc.idf_ver, bl.desc.date_time);
    }
    host_dev_t dev;
    if (host_dev_load(&dev, &f, err, sizeof(err)) != 0) {
        printf("partition table: %s\n", err);
        host_flash_close(&f);
        return 1;
    }
    printf("partition table at 0x%x (MD5 ok):\n", ESP_PARTITION_TABLE_OFFSET);
    printf("  ## Label            Usage          Type ST Offset   Length\n");
    for (int i = 0; i < dev.table.count; i++) {
        const host_part_t *p = &dev.table.p[i];
        printf("  %2d %-16s %-16s %02x %02x %08x %08x\n", i, p->label, host_ptable_usage(p), p->type, p->subtype,
               p->offset, p->size);
    }
    if (dev.otadata != NULL) {
        esp_ota_select_entry_t two[2];
        if (host_otadata_read(&dev, two) == 0) {
            printf("otadata at 0x%x:\n", dev.otadata->offset);
            for (int i = 0; i < 2; i++) {
                if (two[i].ota_seq == UINT32_MAX) {
                    printf("  [%d] erased\n", i);
                    continue;
                }
                bool crc_ok = two[i].crc == host_ota_select_crc(&two[i]);
                printf("  [%d] seq %u -> ota_%u, state %s, crc 0x%08x (%s)%s\n", i, two[i].ota_seq,
                       dev.ota_count ? (two[i].ota_seq - 1) % (uint32_t)dev.ota_count : 0,
                       host_ota_state_name(two[i].ota_state), two[i].crc, crc_ok ? "ok" : "BAD",
                       host_ota_select_valid(&two[i]) ? "" : ", not selectable");
            }
            /* what the bootloader will do with it: an unconfirmed image is aborted first */
            for (int i = 0; i < 2; i++) {
                if (two[i].ota_state == ESP_OTA_IMG_PENDING_VERIFY) {
                    printf("  [%d] was booted and never confirmed: the next boot marks it ABORTED (rollback)\n", i);
                    two[i].ota_state = ESP_OTA_IMG_ABORTED;
                }
            }
            int slot = host_ota_selected_slot(&dev, two);
            if (slot >= 0) {
                printf("next boot tries: ota_%d (then falls back to the other slots if its image is invalid)\n",
                       slot);
            } else {
                printf("next boot tries: ota_0 (otadata has no valid entry)\n");
            }
        }
    }
    for (int s = 0; s < dev.ota_count; s++) {
        const host_part_t *p = host_ptable_ota(&dev.table, s);
        host_image_info_t info;
        printf("%s at 0x%x:\n", p->label, p->offset);
        if (host_image_verify(&f, p->offset, p->size, chip, HOST_IMAGE_VERIFY_SILENT, &info, err, sizeof(err)) != 0) {
            printf("    no valid image: %s\n", err);
            if (info.has_app_desc) {
                prv_print_desc(&info.app_desc);
            }
            continue;
        }
        printf("    valid image, %u bytes, %d segment(s)\n", info.image_len, info.segment_count);
        if (info.has_app_desc) {
            prv_print_desc(&info.app_desc);
        }
    }
    host_flash_close(&f);
    return 0;
}

int main(int argc, char **argv)
{
    char err[256];
    host_io_init(HOST_IO_TEXT, 2); /* quiet: verification messages go to stderr */
    if (argc >= 3 && strcmp(argv[1], "create") == 0) {
        const host_chip_t *chip = host_chip_by_name("esp32");
        const char *app_path = NULL;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--chip") == 0 && i + 1 < argc) {
                chip = host_chip_by_name(argv[++i]);
                if (chip == NULL) {
                    fprintf(stderr, "ble-ota-flash: unknown chip '%s'; use one of: %s\n", argv[i], host_chip_names());
                    return 2;
                }
            } else if (strcmp(argv[i], "--app") == 0 && i + 1 < argc) {
                app_path = argv[++i];
            } else {
                prv_usage(stderr);
                return 2;
            }
        }
        uint8_t *app = NULL;
        size_t app_len = 0;
        if (app_path != NULL && (app = host_read_file(app_path, &app_len, err, sizeof(err))) == NULL) {
            fprintf(stderr, "ble-ota-flash: %s\n", err);
            return 1;
        }
        int rc = host_factory_create(argv[2], chip, app, app_len, err, sizeof(err));
        free(app);
        if (rc != 0) {
            fprintf(stderr, "ble-ota-flash: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "write") == 0) {
        size_t len = 0;
        uint8_t *app = host_read_file(argv[4], &len, err, sizeof(err));
        if (app == NULL) {
            fprintf(stderr, "ble-ota-flash: %s\n", err);
            return 1;
        }
        int rc = host_factory_write_app(argv[2], argv[3], app, len, err, sizeof(err));
        free(app);
        if (rc != 0) {
            fprintf(stderr, "ble-ota-flash: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "info") == 0) {
        return prv_info(argv[2]);
    }
    prv_usage(argc > 1 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
    return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
