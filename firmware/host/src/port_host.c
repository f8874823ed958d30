#include "port_host.h"
#include "sbv2.h"

#include "image.h"
#include "io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TAG_OTA "esp_ota_ops" /* what esp_ota_ops itself logs */
#define TAG_PORT "ble_ota"    /* what the IDF port (ble_ota_esp_ota.c) logs on top */

static ble_ota_slot_state_t prv_state(uint32_t s)
{
    switch (s) {
    case ESP_OTA_IMG_NEW:
        return BLE_OTA_SLOT_STATE_NEW;
    case ESP_OTA_IMG_PENDING_VERIFY:
        return BLE_OTA_SLOT_STATE_PENDING_VERIFY;
    case ESP_OTA_IMG_VALID:
        return BLE_OTA_SLOT_STATE_VALID;
    case ESP_OTA_IMG_INVALID:
        return BLE_OTA_SLOT_STATE_INVALID;
    case ESP_OTA_IMG_ABORTED:
        return BLE_OTA_SLOT_STATE_ABORTED;
    default:
        return BLE_OTA_SLOT_STATE_UNDEFINED;
    }
}

static void prv_fill_info(host_port_t *hp, int slot, ble_ota_slot_info_t *out)
{
    const host_part_t *p = host_ptable_ota(&hp->dev.table, slot);
    memset(out, 0, sizeof(*out));
    snprintf(out->label, sizeof(out->label), "%s", p->label);
    out->address = p->offset;
    out->size = p->size;
    uint32_t st;
    out->state = host_ota_get_state(&hp->dev, slot, &st) == 0 ? prv_state(st) : BLE_OTA_SLOT_STATE_UNDEFINED;
}

/* esp_ota_get_next_update_partition: the OTA slot after the running one. */
static int prv_next_slot(host_port_t *hp)
{
    if (hp->dev.ota_count < 2) {
        return -1;
    }
    return (hp->running_slot + 1) % hp->dev.ota_count;
}

static int prv_slot_begin(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target)
{
    host_port_t *hp = ctx;
    int slot = prv_next_slot(hp);
    if (slot < 0) {
        host_log('E', TAG_PORT, "no OTA update partition: the partition table needs ota_0 and ota_1");
        return BLE_OTA_ERR_NO_SLOT;
    }
    const host_part_t *p = host_ptable_ota(&hp->dev.table, slot);
    uint32_t st;
    if (image_size != BLE_OTA_IMAGE_SIZE_UNKNOWN && image_size > p->size) {
        host_log('E', TAG_PORT, "image of %lu bytes does not fit %s (%lu bytes)", (unsigned long)image_size, p->label,
                 (unsigned long)p->size);
        return BLE_OTA_ERR_TOO_LARGE;
    }
    if (host_ota_get_state(&hp->dev, hp->running_slot, &st) == 0 && st == ESP_OTA_IMG_PENDING_VERIFY) {
        host_log('E', TAG_OTA, "Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)");
        host_log('E', TAG_PORT, "esp_ota_begin on %s failed: %s", p->label, "ESP_ERR_OTA_ROLLBACK_INVALID_STATE");
        return BLE_OTA_ERR_STATE;
    }
    hp->need_erase = image_size == BLE_OTA_IMAGE_SIZE_UNKNOWN;
    if (!hp->need_erase) {
        uint32_t erase = image_size == 0 ? p->size : (image_size + ESP_FLASH_SECTOR_SIZE - 1) & ~(ESP_FLASH_SECTOR_SIZE - 1);
        if (host_flash_erase(hp->dev.flash, p->offset, erase) != 0) {
            host_log('E', TAG_PORT, "esp_ota_begin on %s failed: ESP_ERR_FLASH_OP_FAIL (%s)", p->label,
                     hp->dev.flash->error);
            return BLE_OTA_ERR_FLASH;
        }
    }
    /* esp_ota_begin with rollback enabled forgets the older image's otadata entry */
    if (host_ota_invalidate_inactive(&hp->dev, hp->running_slot) < 0) {
        host_log('E', TAG_PORT, "esp_ota_begin on %s failed: ESP_ERR_FLASH_OP_FAIL (%s)", p->label,
                 hp->dev.flash->error);
        return BLE_OTA_ERR_FLASH;
    }
    hp->open = true;
    hp->target_slot = slot;
    hp->wrote = 0;
    hp->finished_slot = -1;
    prv_fill_info(hp, slot, target);
    return BLE_OTA_OK;
}

static int prv_slot_write(void *ctx, const uint8_t *data, size_t len)
{
    host_port_t *hp = ctx;
    if (!hp->open) {
        return BLE_OTA_ERR_STATE;
    }
    if (len == 0) {
        return BLE_OTA_OK;
    }
    const host_part_t *p = host_ptable_ota(&hp->dev.table, hp->target_slot);
    if ((uint64_t)hp->wrote + len > p->size) {
        host_log('E', TAG_PORT, "esp_ota_write failed: %s (the image is larger than %s)", "ESP_ERR_INVALID_SIZE",
                 p->label);
        return BLE_OTA_ERR_TOO_LARGE;
    }
    if (hp->wrote == 0 && data[0] != ESP_IMAGE_HEADER_MAGIC) {
        host_log('E', TAG_OTA, "OTA image has invalid magic byte (expected 0xE9, saw 0x%02x)", data[0]);
        host_log('E', TAG_PORT, "esp_ota_write failed: %s", "ESP_ERR_OTA_VALIDATE_FAILED");
        return BLE_OTA_ERR_INVALID_IMAGE;
    }
    if (hp->need_erase) {
        uint32_t first = hp->wrote / ESP_FLASH_SECTOR_SIZE;
        uint32_t last = (uint32_t)((hp->wrote + len - 1) / ESP_FLASH_SECTOR_SIZE);
        int rc = 0;
        if (hp->wrote % ESP_FLASH_SECTOR_SIZE == 0) {
            rc = host_flash_erase(hp->dev.flash, p->offset + first * ESP_FLASH_SECTOR_SIZE,
                                  (last - first + 1) * ESP_FLASH_SECTOR_SIZE);
        } else if (first != last) {
            rc = host_flash_erase(hp->dev.flash, p->offset + (first + 1) * ESP_FLASH_SECTOR_SIZE,
                                  (last - first) * ESP_FLASH_SECTOR_SIZE);
        }
        if (rc != 0) {
            host_log('E', TAG_PORT, "esp_ota_write failed: ESP_ERR_FLASH_OP_FAIL (%s)", hp->dev.flash->error);
            return BLE_OTA_ERR_FLASH;
        }
    }
    if (host_flash_write(hp->dev.flash, p->offset + hp->wrote, data, len) != 0) {
        host_log('E', TAG_PORT, "esp_ota_write failed: ESP_ERR_FLASH_OP_FAIL (%s)", hp->dev.flash->error);
        return BLE_OTA_ERR_FLASH;
    }
    hp->wrote += (uint32_t)len;
    return BLE_OTA_OK;
}

static int prv_verify_slot(host_port_t *hp, int slot)
{
    const host_part_t *p = host_ptable_ota(&hp->dev.table, slot);
    host_image_info_t info;
    char err[200];
    /* esp_image_verify(ESP_IMAGE_VERIFY) in the app prints the segment lines too */
    int rc = host_image_verify(hp->dev.flash, p->offset, p->size, hp->chip, 0, &info, err, sizeof(err));
    /* esp_image_verify hashes the image it reads back (SHA-256 over all but the digest) */
    host_io_cpu_work(HOST_CPU_SHA256, rc == 0 && info.image_len > 32 ? info.image_len - 32 : 0);
    return rc;
}

uint32_t host_port_min_secure_version(const host_port_t *hp)
{
    unsigned v = 0;
    FILE *f = hp->sec.efuse_path[0] != '\0' ? fopen(hp->sec.efuse_path, "r") : NULL;

    if (f != NULL) {
        if (fscanf(f, "secure_version %u", &v) != 1) {
            v = 0;
        }
        fclose(f);
    }
    return (uint32_t)v;
}

static void prv_raise_min_secure_version(host_port_t *hp, uint32_t v)
{
    FILE *f;

    if (!hp->sec.anti_rollback || hp->sec.efuse_path[0] == '\0' || v <= host_port_min_secure_version(hp)) {
        return;
    }
    f = fopen(hp->sec.efuse_path, "w");
    if (f != NULL) {
        fprintf(f, "secure_version %u\n", (unsigned)v);
        fclose(f);
        host_log('I', "efuse", "secure_version raised to %u (the device no longer accepts images below it)",
                 (unsigned)v);
    }
}

/* esp_app_desc_t.secure_version of the image in `slot` (after the image and segment headers). */
static uint32_t prv_slot_secure_version(const host_port_t *hp, int slot)
{
    const host_part_t *p = host_ptable_ota(&hp->dev.table, slot);
    const uint8_t *d = host_flash_peek(hp->dev.flash,
                                       p->offset + (uint32_t)(sizeof(esp_image_header_t) +
                                                              sizeof(esp_image_segment_header_t) +
                                                              offsetof(esp_app_desc_t, secure_version)),
                                       4);
    return d == NULL ? 0u : (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static int prv_slot_end(void *ctx)
{
    host_port_t *hp = ctx;
    if (!hp->open) {
        return BLE_OTA_ERR_STATE;
    }
    hp->open = false;
    if (hp->wrote == 0) {
        host_log('E', TAG_PORT, "esp_ota_end failed: %s", "ESP_ERR_INVALID_ARG");
        return BLE_OTA_ERR_FLASH;
    }
    if (prv_verify_slot(hp, hp->target_slot) != 0) {
        host_log('E', TAG_OTA, "New image failed verification");
        host_log('E', TAG_PORT, "esp_ota_end failed: %s", "ESP_ERR_OTA_VALIDATE_FAILED");
        return BLE_OTA_ERR_INVALID_IMAGE;
    }
    /* The signature and the secure_version were the core's to check (ble_ota_sbv2.c,
     * ble_ota_image.c), before this call, as on the chip. */
    hp->finished_slot = hp->target_slot;
    return BLE_OTA_OK;
}

static void prv_slot_abort(void *ctx)
{
    host_port_t *hp = ctx;
    hp->open = false;
}

static int prv_slot_set_boot(void *ctx)
{
    host_port_t *hp = ctx;
    char err[200];
    if (hp->finished_slot < 0) {
        return BLE_OTA_ERR_STATE;
    }
    if (prv_verify_slot(hp, hp->finished_slot) != 0) {
        host_log('E', TAG_PORT, "esp_ota_set_boot_partition failed: %s", "ESP_ERR_OTA_VALIDATE_FAILED");
        return BLE_OTA_ERR_INVALID_IMAGE;
    }
    if (host_ota_set_boot(&hp->dev, hp->finished_slot, err, sizeof(err)) != 0) {
        host_log('E', TAG_PORT, "esp_ota_set_boot_partition failed: ESP_ERR_FLASH_OP_FAIL (%s)", err);
        return BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static int prv_get_running_slot(void *ctx, ble_ota_slot_info_t *out)
{
    host_port_t *hp = ctx;
    if (hp->running_slot < 0 || hp->running_slot >= hp->dev.ota_count) {
        return BLE_OTA_ERR_NO_SLOT;
    }
    prv_fill_info(hp, hp->running_slot, out);
    return BLE_OTA_OK;
}

static int prv_confirm_running(void *ctx)
{
    host_port_t *hp = ctx;
    char err[200];
    if (host_ota_mark_valid(&hp->dev, err, sizeof(err)) != 0) {
        host_log('E', TAG_OTA, "%s", err);
        host_log('E', TAG_PORT, "esp_ota_mark_app_valid_cancel_rollback failed: %s", "ESP_FAIL");
        return BLE_OTA_ERR_FLASH;
    }
    /* As IDF's anti-rollback: the minimum rises only once the new image confirmed itself. */
    if (hp->running_slot >= 0) {
        prv_raise_min_secure_version(hp, prv_slot_secure_version(hp, hp->running_slot));
    }
    return BLE_OTA_OK;
}

static int prv_reject_running(void *ctx)
{
    host_port_t *hp = ctx;
    char err[200];
    if (host_ota_mark_invalid(&hp->dev, err, sizeof(err)) != 0) {
        host_log('E', TAG_OTA, "%s", err);
        host_log('E', TAG_PORT, "esp_ota_mark_app_invalid_rollback_and_reboot failed: %s",
                 "ESP_ERR_OTA_ROLLBACK_FAILED");
        return BLE_OTA_ERR_NO_SLOT;
    }
    host_log('I', TAG_OTA, "Rollback to previously worked partition.");
    host_port_restart_now(hp, HOST_RESET_ROLLBACK);
    return BLE_OTA_OK; /* only reached when a test intercepts the restart */
}

static const char *prv_app_version(void *ctx)
{
    return ((host_port_t *)ctx)->version;
}

static const char *prv_chip_name(void *ctx)
{
    return ((host_port_t *)ctx)->chip->model;
}

static int prv_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    (void)ctx;
    uint8_t hdr[4];
    uint16_t c = (uint16_t)chr;
    memcpy(hdr, &conn, 2);
    memcpy(hdr + 2, &c, 2);
    return host_io_frame(HOST_FRAME_NOTIFY, hdr, sizeof(hdr), data, len) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_UNSUPPORTED;
}

static uint32_t prv_now_ms(void *ctx)
{
    (void)ctx;
    return host_uptime_ms();
}

static void prv_log(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap)
{
    (void)ctx;
    static const char letters[] = "?EWIDV";
    char l = (level >= BLE_OTA_LOG_ERROR && level <= BLE_OTA_LOG_VERBOSE) ? letters[level] : 'I';
    host_logv(l, tag, fmt, ap);
}

static void prv_schedule_restart(void *ctx, uint32_t delay_ms)
{
    host_port_t *hp = ctx;
    hp->restart_pending = true;
    hp->restart_at_ns = host_clock_now_ns() + (uint64_t)delay_ms * 1000000ull;
}

/* One thread does both sides on the host, so the queue needs no lock and no wake-up. */
static void prv_noop(void *ctx)
{
    (void)ctx;
}

static void prv_writer_wait(void *ctx, uint32_t timeout_ms)
{
    (void)ctx;
    (void)timeout_ms;
}

static int prv_sha_start(void *ctx)
{
    host_port_t *hp = ctx;
    if (hp->sha == NULL) {
        hp->sha = EVP_MD_CTX_new();
    }
    return hp->sha != NULL && EVP_DigestInit_ex(hp->sha, EVP_sha256(), NULL) == 1 ? BLE_OTA_OK : BLE_OTA_ERR_NO_MEM;
}

static int prv_sha_update(void *ctx, const uint8_t *data, size_t len)
{
    host_port_t *hp = ctx;
    host_io_cpu_work(HOST_CPU_SHA256, (uint32_t)len);
    return hp->sha != NULL && EVP_DigestUpdate(hp->sha, data, len) == 1 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

static int prv_sha_finish(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    host_port_t *hp = ctx;
    unsigned int n = BLE_OTA_SHA256_LEN;
    return hp->sha != NULL && EVP_DigestFinal_ex(hp->sha, out, &n) == 1 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

int host_port_init(host_port_t *hp, ble_ota_port_t *port, host_flash_t *flash, const host_chip_t *chip,
                   int running_slot, char *err, size_t errlen)
{
    memset(hp, 0, sizeof(*hp));
    hp->finished_slot = -1;
    hp->chip = chip;
    hp->running_slot = running_slot;
    if (host_dev_load(&hp->dev, flash, err, errlen) != 0) {
        return -1;
    }
    const host_part_t *p = host_ptable_ota(&hp->dev.table, running_slot);
    if (p == NULL) {
        snprintf(err, errlen, "there is no ota_%d partition to run from", running_slot);
        return -1;
    }
    /* esp_app_get_description(): the descriptor at the start of the mapped DROM segment */
    const uint8_t *d = host_flash_peek(flash, p->offset + sizeof(esp_image_header_t) + sizeof(esp_image_segment_header_t),
                                       sizeof(esp_app_desc_t));
    esp_app_desc_t desc;
    if (d == NULL || (memcpy(&desc, d, sizeof(desc)), desc.magic_word != ESP_APP_DESC_MAGIC_WORD)) {
        snprintf(err, errlen, "no esp_app_desc_t at the start of %s", p->label);
        return -1;
    }
    memcpy(hp->version, desc.version, sizeof(desc.version));
    hp->version[32] = '\0';

    memset(port, 0, sizeof(*port));
    port->ctx = hp;
    port->slot_begin = prv_slot_begin;
    port->slot_write = prv_slot_write;
    port->slot_end = prv_slot_end;
    port->slot_abort = prv_slot_abort;
    port->slot_set_boot = prv_slot_set_boot;
    port->get_running_slot = prv_get_running_slot;
    port->confirm_running = prv_confirm_running;
    port->reject_running = prv_reject_running;
    port->app_version = prv_app_version;
    port->chip_name = prv_chip_name;
    port->notify = prv_notify;
    port->now_ms = prv_now_ms;
    port->log = prv_log;
    port->schedule_restart = prv_schedule_restart;
    port->lock = prv_noop;
    port->unlock = prv_noop;
    port->writer_wake = prv_noop;
    port->writer_wait = prv_writer_wait;
    port->sha256_start = prv_sha_start;
    port->sha256_update = prv_sha_update;
    port->sha256_finish = prv_sha_finish;
    return 0;
}

/* --- protocol v2 ------------------------------------------------------------ */

static int prv_running_sha256(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    host_port_t *hp = ctx;
    if (!hp->running_sha256_ok) {
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    memcpy(out, hp->running_sha256, BLE_OTA_SHA256_LEN);
    return BLE_OTA_OK;
}

static uint16_t prv_chip_id(void *ctx)
{
    return ((host_port_t *)ctx)->chip->chip_id;
}

static uint32_t prv_slot_size(void *ctx)
{
    host_port_t *hp = ctx;
    int slot = prv_next_slot(hp);
    return slot < 0 ? 0 : host_ptable_ota(&hp->dev.table, slot)->size;
}

/* As the IDF port opens the slot for v2: esp_ota_resume(next, 0, 0), IDF's "already erased" mode
 * without erasing anything, and esp_ota_invalidate_inactive_ota_data_slot(), what esp_ota_begin
 * adds under rollback. The core erases the first block itself once BEGIN is answered, and the rest
 * ahead of its writes (esp_ota_write_with_offset). */
static int prv_slot_open(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target, uint32_t *erased)
{
    host_port_t *hp = ctx;
    int slot = prv_next_slot(hp);
    uint32_t st;
    if (slot < 0) {
        host_log('E', TAG_PORT, "no OTA update partition: the partition table needs ota_0 and ota_1");
        return BLE_OTA_ERR_NO_SLOT;
    }
    const host_part_t *p = host_ptable_ota(&hp->dev.table, slot);
    if (image_size > p->size) {
        host_log('E', TAG_PORT, "image of %lu bytes does not fit %s (%lu bytes)", (unsigned long)image_size, p->label,
                 (unsigned long)p->size);
        return BLE_OTA_ERR_TOO_LARGE;
    }
    if (host_ota_get_state(&hp->dev, hp->running_slot, &st) == 0 && st == ESP_OTA_IMG_PENDING_VERIFY) {
        host_log('E', TAG_OTA, "Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)");
        host_log('E', TAG_PORT, "opening %s failed: %s", p->label, "ESP_ERR_OTA_ROLLBACK_INVALID_STATE");
        return BLE_OTA_ERR_STATE;
    }
    if (host_ota_invalidate_inactive(&hp->dev, hp->running_slot) < 0) {
        host_log('E', TAG_PORT, "esp_ota_invalidate_inactive_ota_data_slot failed: ESP_ERR_FLASH_OP_FAIL (%s)",
                 hp->dev.flash->error);
        return BLE_OTA_ERR_FLASH;
    }
    hp->open = true;
    hp->need_erase = false;
    hp->target_slot = slot;
    hp->wrote = 0;
    hp->finished_slot = -1;
    prv_fill_info(hp, slot, target);
    *erased = 0u;
    return BLE_OTA_OK;
}

/* esp_partition_erase_range on OTA slot `slot`: the session's (slot_erase) or the idle one's. */
static int prv_erase_in_slot(host_port_t *hp, int slot, uint32_t offset, uint32_t len)
{
    const host_part_t *p = host_ptable_ota(&hp->dev.table, slot);
    if ((uint64_t)offset + len > p->size) {
        host_log('E', TAG_PORT, "esp_partition_erase_range failed: %s", "ESP_ERR_INVALID_SIZE");
        return BLE_OTA_ERR_TOO_LARGE;
    }
    if (host_flash_erase(hp->dev.flash, p->offset + offset, len) != 0) {
        host_log('E', TAG_PORT, "esp_partition_erase_range failed: ESP_ERR_FLASH_OP_FAIL (%s)", hp->dev.flash->error);
        return BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static int prv_slot_erase(void *ctx, uint32_t offset, uint32_t len)
{
    host_port_t *hp = ctx;
    if (!hp->open) {
        return BLE_OTA_ERR_STATE;
    }
    return prv_erase_in_slot(hp, hp->target_slot, offset, len);
}

static int prv_slot_write_at(void *ctx, uint32_t offset, const uint8_t *data, size_t len)
{
    host_port_t *hp = ctx;
    if (!hp->open) {
        return BLE_OTA_ERR_STATE;
    }
    const host_part_t *p = host_ptable_ota(&hp->dev.table, hp->target_slot);
    if ((uint64_t)offset + len > p->size) {
        host_log('E', TAG_PORT, "esp_ota_write_with_offset failed: %s", "ESP_ERR_INVALID_SIZE");
        return BLE_OTA_ERR_TOO_LARGE;
    }
    if (host_flash_write(hp->dev.flash, p->offset + offset, data, len) != 0) {
        host_log('E', TAG_PORT, "esp_ota_write_with_offset failed: ESP_ERR_FLASH_OP_FAIL (%s)", hp->dev.flash->error);
        return BLE_OTA_ERR_FLASH;
    }
    hp->wrote += (uint32_t)len;
    return BLE_OTA_OK;
}

static uint32_t prv_crc32(void *ctx, uint32_t crc, const uint8_t *data, size_t len)
{
    (void)ctx;
    host_io_cpu_work(HOST_CPU_CRC32, (uint32_t)len);
    return (uint32_t)crc32(crc, data, (uInt)len);
}

static void prv_inflate_finish(void *ctx)
{
    host_port_t *hp = ctx;
    if (hp->zs_running) {
        inflateEnd(&hp->zs);
        hp->zs_running = false;
    }
}

static int prv_inflate_start(void *ctx)
{
    host_port_t *hp = ctx;
    prv_inflate_finish(hp);
    memset(&hp->zs, 0, sizeof(hp->zs));
    if (inflateInit(&hp->zs) != Z_OK) {
        return BLE_OTA_ERR_NO_MEM;
    }
    hp->zs_running = true;
    return BLE_OTA_OK;
}

static int prv_inflate_update(void *ctx, const uint8_t **in, size_t *in_len, const uint8_t **out, size_t *out_len)
{
    host_port_t *hp = ctx;
    if (!hp->zs_running) {
        return BLE_OTA_ERR_STATE;
    }
    hp->zs.next_in = (Bytef *)*in;
    hp->zs.avail_in = (uInt)*in_len;
    hp->zs.next_out = hp->zout;
    hp->zs.avail_out = sizeof(hp->zout);
    int zrc = inflate(&hp->zs, Z_NO_FLUSH);
    *in += *in_len - hp->zs.avail_in;
    *in_len = hp->zs.avail_in;
    *out = hp->zout;
    *out_len = sizeof(hp->zout) - hp->zs.avail_out;
    host_io_cpu_work(HOST_CPU_INFLATE, (uint32_t)*out_len);
    if (zrc == Z_STREAM_END) {
        return BLE_OTA_INFLATE_DONE;
    }
    /* Z_BUF_ERROR without output only means "give me more input" */
    if (zrc == Z_OK || (zrc == Z_BUF_ERROR && *out_len == 0)) {
        return BLE_OTA_OK;
    }
    host_log('E', TAG_PORT, "inflate failed: %s", hp->zs.msg ? hp->zs.msg : "corrupt stream");
    return BLE_OTA_ERR_INVALID_ARG;
}

/* LINK_REQUEST frames: the virtual rig models what the controller and the central make of them. */
static int prv_link_request(void *ctx, uint16_t conn, const ble_ota_link_request_t *req)
{
    host_port_t *hp = ctx;
    uint8_t f[11];
    size_t n = 3;
    f[0] = (uint8_t)req->kind;
    memcpy(f + 1, &conn, 2);
    switch (req->kind) {
    case BLE_OTA_LINK_CONN_PARAMS:
        memcpy(f + 3, &req->min_interval, 2);
        memcpy(f + 5, &req->max_interval, 2);
        memcpy(f + 7, &req->latency, 2);
        memcpy(f + 9, &req->timeout, 2);
        n = 11;
        break;
    case BLE_OTA_LINK_DATA_LENGTH:
        memcpy(f + 3, &req->tx_octets, 2);
        memcpy(f + 5, &req->tx_time_us, 2);
        n = 7;
        break;
    case BLE_OTA_LINK_PHY:
        /* the ESP32's controller is Bluetooth 4.2: no 2M PHY (the S2 has no Bluetooth at all) */
        if (hp->chip->chip_id == 0 || hp->chip->chip_id == 2) {
            return BLE_OTA_ERR_UNSUPPORTED;
        }
        f[3] = req->tx_phys;
        f[4] = req->rx_phys;
        n = 5;
        break;
    default:
        return BLE_OTA_ERR_INVALID_ARG;
    }
    return host_io_frame(HOST_FRAME_LINK_REQUEST, f, n, NULL, 0) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

static void prv_security(void *ctx, ble_ota_security_t *out)
{
    host_port_t *hp = ctx;

    memset(out, 0, sizeof(*out));
    out->signed_only = hp->sec.require_signed;
    out->anti_rollback = hp->sec.anti_rollback;
    out->min_secure_version = hp->sec.anti_rollback ? host_port_min_secure_version(hp) : 0u;
    out->allow_downgrade = hp->sec.allow_downgrade;
    out->link_security = hp->sec.link_security;
}

/* The rig's trusted keys stand for the eFuse key digests of a chip with Secure Boot v2, whose
 * esp_ota_end reads all three signature blocks. */
static int prv_trusted_keys(void *ctx, ble_ota_trust_t *out)
{
    host_port_t *hp = ctx;

    memset(out, 0, sizeof(*out));
    for (int k = 0; k < hp->sec.n_trusted && k < 3; k++) {
        memcpy(out->digests[k], hp->sec.trusted[k], BLE_OTA_SHA256_LEN);
        out->count++;
    }
    out->blocks_checked = 3;
    return BLE_OTA_OK;
}

static int prv_sha256_buf(void *ctx, const uint8_t *data, size_t len, uint8_t out[32])
{
    (void)ctx;
    host_sha256(data, len, out);
    host_io_cpu_work(HOST_CPU_SHA256, (uint32_t)len);
    return BLE_OTA_OK;
}

static int prv_verify_block(void *ctx, const uint8_t *block, const uint8_t digest[32])
{
    (void)ctx;
    if (block[1] != 0x02u && block[1] != 0x03u) {
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    return host_sbv2_verify_block(block, digest) ? BLE_OTA_OK : BLE_OTA_ERR_BAD_SIGNATURE;
}

static int prv_slot_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    host_port_t *hp = ctx;
    const host_part_t *p;

    if (!hp->open) {
        return BLE_OTA_ERR_STATE;
    }
    p = host_ptable_ota(&hp->dev.table, hp->target_slot);
    if ((uint64_t)offset + len > p->size) {
        return BLE_OTA_ERR_INVALID_ARG;
    }
    return host_flash_read(hp->dev.flash, p->offset + offset, buf, len) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_FLASH;
}

/* --- Background erase (CONFIG_BLE_OTA_PRE_ERASE) ----------------------------------------------
 *
 * The IDF port keeps the erase record in an NVS blob, whose commits are atomic. Here it lives in
 * the emulated flash, so that the power cuts of the rig and of the tests hit it as they hit NVS:
 * an append log of 32-byte entries {magic, seq, slot_address, erased_to, crc32} in the last 4 KB
 * sector of the nvs partition (nothing else of the host build uses that partition). The valid
 * entry with the highest seq wins; a torn entry fails its CRC and the one before it counts. A full
 * sector is erased and the log starts again at its first entry; a torn erase clears the first
 * half first, so what survives is the newest half. */
#define PRE_LOG_MAGIC 0x52455250u /* "PRER" */
#define PRE_LOG_ENTRY 32u
#define PRE_LOG_ENTRIES (ESP_FLASH_SECTOR_SIZE / PRE_LOG_ENTRY)

static int prv_pre_log_base(host_port_t *hp, uint32_t *base)
{
    const host_part_t *nvs = host_ptable_find(&hp->dev.table, PART_TYPE_DATA, PART_SUBTYPE_DATA_WIFI);
    if (nvs == NULL || nvs->size < ESP_FLASH_SECTOR_SIZE) {
        return -1;
    }
    *base = nvs->offset + nvs->size - ESP_FLASH_SECTOR_SIZE;
    return 0;
}

static uint32_t prv_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void prv_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Newest valid entry (*found false if none) and the index after the last used one. */
static int prv_pre_log_scan(host_port_t *hp, ble_ota_erase_record_t *rec, uint32_t *seq, bool *found,
                            uint32_t *next)
{
    uint32_t base;
    if (prv_pre_log_base(hp, &base) != 0) {
        return -1;
    }
    const uint8_t *log = host_flash_peek(hp->dev.flash, base, ESP_FLASH_SECTOR_SIZE);
    *found = false;
    *next = 0;
    memset(rec, 0, sizeof(*rec));
    for (uint32_t i = 0; i < PRE_LOG_ENTRIES; i++) {
        const uint8_t *e = log + i * PRE_LOG_ENTRY;
        bool blank = true;
        for (uint32_t k = 0; k < PRE_LOG_ENTRY; k++) {
            blank = blank && e[k] == 0xFF;
        }
        if (blank) {
            continue;
        }
        *next = i + 1;
        if (prv_get32(e) != PRE_LOG_MAGIC || (uint32_t)crc32(0, e, 16) != prv_get32(e + 16)) {
            continue; /* torn */
        }
        if (!*found || prv_get32(e + 4) > *seq) {
            *found = true;
            *seq = prv_get32(e + 4);
            rec->slot_address = prv_get32(e + 8);
            rec->erased_to = prv_get32(e + 12);
        }
    }
    return 0;
}

static int prv_erase_record_load(void *ctx, ble_ota_erase_record_t *out)
{
    host_port_t *hp = ctx;
    uint32_t seq = 0, next;
    bool found;
    return prv_pre_log_scan(hp, out, &seq, &found, &next) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_FLASH;
}

static int prv_erase_record_store(void *ctx, const ble_ota_erase_record_t *rec)
{
    host_port_t *hp = ctx;
    ble_ota_erase_record_t old;
    uint32_t seq = 0, next, base;
    bool found;
    uint8_t e[PRE_LOG_ENTRY];
    if (prv_pre_log_scan(hp, &old, &seq, &found, &next) != 0 || prv_pre_log_base(hp, &base) != 0) {
        return BLE_OTA_ERR_FLASH;
    }
    if (next >= PRE_LOG_ENTRIES) {
        if (host_flash_erase(hp->dev.flash, base, ESP_FLASH_SECTOR_SIZE) != 0) {
            return BLE_OTA_ERR_FLASH;
        }
        next = 0;
    }
    memset(e, 0xFF, sizeof(e));
    prv_put32(e, PRE_LOG_MAGIC);
    prv_put32(e + 4, found ? seq + 1 : 1);
    prv_put32(e + 8, rec->slot_address);
    prv_put32(e + 12, rec->erased_to);
    prv_put32(e + 16, (uint32_t)crc32(0, e, 16));
    if (host_flash_write(hp->dev.flash, base + next * PRE_LOG_ENTRY, e, sizeof(e)) != 0) {
        host_log('E', TAG_PORT, "nvs_commit failed: ESP_ERR_FLASH_OP_FAIL (%s)", hp->dev.flash->error);
        return BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static int prv_next_slot_info(void *ctx, ble_ota_slot_info_t *out)
{
    host_port_t *hp = ctx;
    int slot = prv_next_slot(hp);
    if (slot < 0) {
        return BLE_OTA_ERR_NO_SLOT;
    }
    prv_fill_info(hp, slot, out);
    return BLE_OTA_OK;
}

static int prv_idle_erase(void *ctx, uint32_t offset, uint32_t len)
{
    host_port_t *hp = ctx;
    int slot = prv_next_slot(hp);
    if (slot < 0 || hp->open) {
        return BLE_OTA_ERR_STATE;
    }
    return prv_erase_in_slot(hp, slot, offset, len);
}

static int prv_idle_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    host_port_t *hp = ctx;
    int slot = prv_next_slot(hp);
    if (slot < 0) {
        return BLE_OTA_ERR_STATE;
    }
    const host_part_t *p = host_ptable_ota(&hp->dev.table, slot);
    if ((uint64_t)offset + len > p->size) {
        return BLE_OTA_ERR_TOO_LARGE;
    }
    return host_flash_read(hp->dev.flash, p->offset + offset, buf, len) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_FLASH;
}

/* --- Delta updates: the running image is the patch's base ---------------------------------- */

static uint32_t prv_running_size(void *ctx)
{
    host_port_t *hp = ctx;
    return hp->running_sha256_ok ? hp->running_len : 0u;
}

static int prv_running_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    host_port_t *hp = ctx;
    const host_part_t *p = host_ptable_ota(&hp->dev.table, hp->running_slot);

    if (p == NULL || !hp->running_sha256_ok || (uint64_t)offset + len > hp->running_len) {
        return BLE_OTA_ERR_INVALID_ARG;
    }
    return host_flash_read(hp->dev.flash, p->offset + offset, buf, len) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_FLASH;
}

void host_port_v2(host_port_t *hp, ble_ota_port_v2_t *v2)
{
    const host_part_t *p = host_ptable_ota(&hp->dev.table, hp->running_slot);
    const uint8_t *img = p != NULL ? host_flash_peek(hp->dev.flash, p->offset, p->size) : NULL;
    host_image_info_t info;
    char err[200];
    /* What a client's SHA-256 of the .bin file gives: every image byte, the appended digest included. */
    hp->running_sha256_ok = img != NULL && host_image_verify_buffer(img, p->size, p->offset, hp->chip,
                                                                    HOST_IMAGE_VERIFY_SILENT, &info, err,
                                                                    sizeof(err)) == 0;
    if (hp->running_sha256_ok) {
        /* A signed image's file goes on, past the 0xFF padding to a 4 KB sector, with its
         * Secure Boot v2 signature sector: hash that too, or a signed image that runs would
         * never be "already installed". */
        size_t signed_len = ((size_t)info.image_len + HOST_SBV2_SECTOR - 1u) / HOST_SBV2_SECTOR * HOST_SBV2_SECTOR +
                            HOST_SBV2_SECTOR;
        size_t len = signed_len <= p->size && host_sbv2_sector_offset(img, signed_len) != 0 ? signed_len
                                                                                          : info.image_len;
        host_sha256(img, len, hp->running_sha256);
        hp->running_len = (uint32_t)len;
    }
    memset(v2, 0, sizeof(*v2));
    v2->running_sha256 = prv_running_sha256;
    v2->chip_id = prv_chip_id;
    v2->slot_size = prv_slot_size;
    v2->slot_open = prv_slot_open;
    v2->slot_erase = prv_slot_erase;
    v2->slot_write_at = prv_slot_write_at;
    v2->crc32 = prv_crc32;
    v2->inflate_start = prv_inflate_start;
    v2->inflate_update = prv_inflate_update;
    v2->inflate_finish = prv_inflate_finish;
    v2->link_request = prv_link_request;
    v2->security = prv_security;
    v2->trusted_keys = prv_trusted_keys;
    v2->sha256_buf = prv_sha256_buf;
    v2->verify_block = prv_verify_block;
    v2->slot_read = prv_slot_read;
    v2->next_slot = prv_next_slot_info;
    v2->idle_erase = prv_idle_erase;
    v2->erase_record_load = prv_erase_record_load;
    v2->erase_record_store = prv_erase_record_store;
    v2->idle_read = prv_idle_read;
    v2->running_size = prv_running_size;
    v2->running_read = prv_running_read;
}

void host_port_deinit(host_port_t *hp)
{
    prv_inflate_finish(hp);
    EVP_MD_CTX_free(hp->sha);
    hp->sha = NULL;
}

void host_port_restart_now(host_port_t *hp, uint8_t reason)
{
    if (hp->on_restart) {
        hp->on_restart(hp, reason);
        return;
    }
    (void)host_io_frame(HOST_FRAME_RESET, &reason, 1, NULL, 0);
    host_flash_close(hp->dev.flash);
    exit(0);
}

int host_port_restart_wait_ms(const host_port_t *hp)
{
    if (!hp->restart_pending) {
        return -1;
    }
    uint64_t now = host_clock_now_ns();
    if (now >= hp->restart_at_ns) {
        return 0;
    }
    return (int)((hp->restart_at_ns - now + 999999ull) / 1000000ull);
}
