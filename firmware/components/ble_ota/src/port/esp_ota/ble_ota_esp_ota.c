/*
 * ESP-IDF port: flash slots through esp_ota_ops, the writer task, time, logs,
 * restart, SHA-256 through mbedtls. Notifications come from the NimBLE port.
 */
#include <ctype.h> /* toupper */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sdkconfig.h"

#include <stdlib.h>

#include "esp_app_desc.h"
#include "esp_chip_info.h"
#include "esp_err.h"
#include "esp_flash_partitions.h"
#include "esp_image_format.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "esp_rom_crc.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "miniz.h" /* the ROM's tinfl (esp_rom/include/miniz.h) */
#include "nvs.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "mbedtls/sha256.h"
#if CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
#include "esp_efuse.h" /* esp_efuse_read_secure_version */
#endif
#include "mbedtls/ecdsa.h"
#include "mbedtls/ecp.h"
#include "mbedtls/rsa.h"
#if CONFIG_SECURE_BOOT_V2_ENABLED
#include "esp_efuse.h" /* esp_secure_boot_read_key_digests */
#endif
#if CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT
#include "esp_secure_boot.h" /* esp_secure_boot_get_signature_blocks_for_running_app */
#endif

#include "ble_ota.h"
#include "ble_ota_idf.h"
#include "ble_ota_idf_priv.h"
#include "ble_ota_sbv2.h" /* the Secure Boot v2 layout the primitives read */

static const char *TAG = "ble_ota";

#if CONFIG_BLE_OTA_WRITER_TASK_CORE_0
#define WRITER_CORE 0
#elif CONFIG_BLE_OTA_WRITER_TASK_CORE_1
#define WRITER_CORE 1
#else
#define WRITER_CORE tskNO_AFFINITY
#endif

#ifdef CONFIG_BLE_OTA_SELF_TEST_FORCE_FAIL
#define FORCE_SELF_TEST_FAIL true
#else
#define FORCE_SELF_TEST_FAIL false
#endif

typedef struct {
    esp_ota_handle_t handle;
    const esp_partition_t *target;
    bool slot_open;
    /* Slot that passed esp_ota_end and may become the boot slot. */
    const esp_partition_t *finished;
    SemaphoreHandle_t mutex;
    StaticSemaphore_t mutex_storage;
    TaskHandle_t writer;
    esp_timer_handle_t restart_timer;
    mbedtls_sha256_context sha;
    bool sha_running;
    char chip_name[16];
    /* protocol v2 */
    uint8_t running_sha256[BLE_OTA_SHA256_LEN];
    bool running_sha256_ok;
    const esp_partition_t *running;  /* the running app's partition: a delta update's base */
    uint32_t running_len;            /* bytes running_sha256 covers */
    tinfl_decompressor *inflater; /* heap, only while a compressed transfer runs */
    uint8_t *dict;                /* TINFL_LZ_DICT_SIZE bytes, the inflater's output window */
    size_t dict_ofs;
} idf_port_t;

static idf_port_t s_idf;

static void prv_fill_slot_info(const esp_partition_t *part, ble_ota_slot_info_t *out)
{
    esp_ota_img_states_t state;

    memset(out, 0, sizeof(*out));
    strncpy(out->label, part->label, sizeof(out->label) - 1);
    out->address = part->address;
    out->size = part->size;
    out->state = BLE_OTA_SLOT_STATE_UNDEFINED;
    /* Fails for a slot without otadata entry (flashed over serial): "undefined". */
    if (esp_ota_get_state_partition(part, &state) != ESP_OK) {
        return;
    }
    switch (state) {
    case ESP_OTA_IMG_NEW:
        out->state = BLE_OTA_SLOT_STATE_NEW;
        break;
    case ESP_OTA_IMG_PENDING_VERIFY:
        out->state = BLE_OTA_SLOT_STATE_PENDING_VERIFY;
        break;
    case ESP_OTA_IMG_VALID:
        out->state = BLE_OTA_SLOT_STATE_VALID;
        break;
    case ESP_OTA_IMG_INVALID:
        out->state = BLE_OTA_SLOT_STATE_INVALID;
        break;
    case ESP_OTA_IMG_ABORTED:
        out->state = BLE_OTA_SLOT_STATE_ABORTED;
        break;
    case ESP_OTA_IMG_UNDEFINED:
    default:
        out->state = BLE_OTA_SLOT_STATE_UNDEFINED;
        break;
    }
}

/* --- Flash slot (writer task) ------------------------------------------ */

/* Picks the update slot, checks that image_size fits (BLE_OTA_IMAGE_SIZE_UNKNOWN
 * always does) and opens it with esp_ota_begin(slot, begin_size): what that
 * erases up front depends on begin_size (see the callers). */
static int prv_open_slot(idf_port_t *p, uint32_t image_size, size_t begin_size, ble_ota_slot_info_t *target)
{
    esp_err_t err;

    p->finished = NULL;
    p->target = esp_ota_get_next_update_partition(NULL);
    if (p->target == NULL) {
        ESP_LOGE(TAG, "no OTA update partition: the partition table needs ota_0 and ota_1");
        return BLE_OTA_ERR_NO_SLOT;
    }
    if (image_size != BLE_OTA_IMAGE_SIZE_UNKNOWN && image_size > p->target->size) {
        ESP_LOGE(TAG, "image of %lu bytes does not fit %s (%lu bytes)", (unsigned long)image_size,
                 p->target->label, (unsigned long)p->target->size);
        return BLE_OTA_ERR_TOO_LARGE;
    }
    err = esp_ota_begin(p->target, begin_size, &p->handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_begin on %s failed: %s", p->target->label, esp_err_to_name(err));
        switch (err) {
        case ESP_ERR_OTA_ROLLBACK_INVALID_STATE:
            return BLE_OTA_ERR_STATE; /* the running image is not confirmed yet */
        case ESP_ERR_NO_MEM:
            return BLE_OTA_ERR_NO_MEM;
        case ESP_ERR_OTA_PARTITION_CONFLICT:
        case ESP_ERR_NOT_FOUND:
            return BLE_OTA_ERR_NO_SLOT;
        default:
            return BLE_OTA_ERR_FLASH;
        }
    }
    p->slot_open = true;
    prv_fill_slot_info(p->target, target);
    return BLE_OTA_OK;
}

static int prv_slot_begin(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target)
{
    /* Sequential writes erase sector by sector as data arrives, instead of
     * erasing the whole slot up front (seconds of blocking). */
    return prv_open_slot(ctx, image_size, OTA_WITH_SEQUENTIAL_WRITES, target);
}

static int prv_slot_write(void *ctx, const uint8_t *data, size_t len)
{
    idf_port_t *p = ctx;
    esp_err_t err;

    if (!p->slot_open) {
        return BLE_OTA_ERR_STATE;
    }
    err = esp_ota_write(p->handle, data, len);
    if (err == ESP_OK) {
        return BLE_OTA_OK;
    }
    ESP_LOGE(TAG, "esp_ota_write failed: %s", esp_err_to_name(err));
    switch (err) {
    case ESP_ERR_OTA_VALIDATE_FAILED:
        return BLE_OTA_ERR_INVALID_IMAGE; /* first byte is not the image magic 0xE9 */
    case ESP_ERR_INVALID_SIZE:
        return BLE_OTA_ERR_TOO_LARGE;
    case ESP_ERR_OTA_SMALL_SEC_VER:
        return BLE_OTA_ERR_DOWNGRADE; /* CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK: secure_version below the eFuse */
    default:
        return BLE_OTA_ERR_FLASH;
    }
}

/*
 * Signed updates only (CONFIG_BLE_OTA_REQUIRE_SIGNED, the default) rest on ESP-IDF's own check:
 * with Secure Boot v2, or with "Require signed app images" and "Verify app signature on update"
 * (CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT, CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT),
 * esp_ota_end verifies the new app's Secure Boot v2 signature block against the eFuse key
 * digests (Secure Boot) or the key that signed the running app (no Secure Boot) before the boot
 * partition can change. Without either, IDF checks nothing, so the build stops here.
 */
#if CONFIG_BLE_OTA_REQUIRE_SIGNED && !CONFIG_SECURE_SIGNED_ON_UPDATE
#error "CONFIG_BLE_OTA_REQUIRE_SIGNED (the default) needs ESP-IDF to verify signed apps on update: enable Secure Boot v2, or CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT with CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT and a signing key (docs/security.md); or turn CONFIG_BLE_OTA_REQUIRE_SIGNED off to take any image (any BLE central in range can then install one)"
#endif

static int prv_slot_end(void *ctx)
{
    idf_port_t *p = ctx;
    esp_err_t err;

    if (!p->slot_open) {
        return BLE_OTA_ERR_STATE;
    }
    /* esp_ota_end releases the handle whatever it returns. Under CONFIG_SECURE_SIGNED_ON_UPDATE it
     * checks the signature again with ESP-IDF's own code, after the core's check (ble_ota_sbv2.c)
     * passed: a refusal here is IDF disagreeing with the core, reported as an invalid image. */
    p->slot_open = false;
    err = esp_ota_end(p->handle);
    if (err == ESP_OK) {
        p->finished = p->target;
        return BLE_OTA_OK;
    }
    ESP_LOGE(TAG, "esp_ota_end failed: %s", esp_err_to_name(err));
    return err == ESP_ERR_OTA_VALIDATE_FAILED ? BLE_OTA_ERR_INVALID_IMAGE : BLE_OTA_ERR_FLASH;
}

static void prv_slot_abort(void *ctx)
{
    idf_port_t *p = ctx;

    if (!p->slot_open) {
        return;
    }
    p->slot_open = false;
    (void)esp_ota_abort(p->handle);
}

static int prv_slot_set_boot(void *ctx)
{
    idf_port_t *p = ctx;
    esp_err_t err;

    if (p->finished == NULL) {
        return BLE_OTA_ERR_STATE;
    }
    err = esp_ota_set_boot_partition(p->finished);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_set_boot_partition failed: %s", esp_err_to_name(err));
        return err == ESP_ERR_OTA_VALIDATE_FAILED ? BLE_OTA_ERR_INVALID_IMAGE : BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

/* --- Running image ------------------------------------------------------ */

static int prv_get_running_slot(void *ctx, ble_ota_slot_info_t *out)
{
    const esp_partition_t *running = esp_ota_get_running_partition();

    (void)ctx;
    if (running == NULL) {
        return BLE_OTA_ERR_NO_SLOT;
    }
    prv_fill_slot_info(running, out);
    return BLE_OTA_OK;
}

static int prv_confirm_running(void *ctx)
{
    esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();

    (void)ctx;
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_mark_app_valid_cancel_rollback failed: %s", esp_err_to_name(err));
        return BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static int prv_reject_running(void *ctx)
{
    /* Reboots into the previous image; returns only if there is none. */
    esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();

    (void)ctx;
    ESP_LOGE(TAG, "esp_ota_mark_app_invalid_rollback_and_reboot failed: %s", esp_err_to_name(err));
    return BLE_OTA_ERR_NO_SLOT;
}

static const char *prv_app_version(void *ctx)
{
    (void)ctx;
    return esp_app_get_description()->version;
}

/* "ESP32-S3" from the chip model; targets newer than this file fall back to
 * the build target name ("esp32c6" -> "ESP32-C6"). */
static void prv_compute_chip_name(char *out, size_t cap)
{
    esp_chip_info_t info;
    const char *target = CONFIG_IDF_TARGET;
    size_t i;
    size_t o = 0;

    esp_chip_info(&info);
    switch (info.model) {
    case CHIP_ESP32:
        snprintf(out, cap, "ESP32");
        return;
    case CHIP_ESP32S2:
        snprintf(out, cap, "ESP32-S2");
        return;
    case CHIP_ESP32S3:
        snprintf(out, cap, "ESP32-S3");
        return;
    case CHIP_ESP32C3:
        snprintf(out, cap, "ESP32-C3");
        return;
    default:
        break;
    }
    for (i = 0; target[i] != '\0' && o + 1 < cap; i++) {
        if (i == 5 && o + 2 < cap) {
            out[o++] = '-';
        }
        out[o++] = (char)toupper((unsigned char)target[i]);
    }
    out[o] = '\0';
}

static const char *prv_chip_name(void *ctx)
{
    idf_port_t *p = ctx;

    return p->chip_name;
}

/* --- System ------------------------------------------------------------- */

static uint32_t prv_now_ms(void *ctx)
{
    (void)ctx;
    return (uint32_t)(esp_timer_get_time() / 1000);
}

static void prv_log(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap)
{
    char line[200];

    (void)ctx;
    vsnprintf(line, sizeof(line), fmt, ap);
    /* Through the ESP_LOGx macros so lines get the usual colour, level letter
     * and timestamp: "I (1234) ble_ota: ...". */
    switch (level) {
    case BLE_OTA_LOG_ERROR:
        ESP_LOGE(tag, "%s", line);
        break;
    case BLE_OTA_LOG_WARN:
        ESP_LOGW(tag, "%s", line);
        break;
    case BLE_OTA_LOG_INFO:
        ESP_LOGI(tag, "%s", line);
        break;
    case BLE_OTA_LOG_DEBUG:
        ESP_LOGD(tag, "%s", line);
        break;
    case BLE_OTA_LOG_VERBOSE:
    default:
        ESP_LOGV(tag, "%s", line);
        break;
    }
}

static void prv_restart_cb(void *arg)
{
    (void)arg;
    ESP_LOGI(TAG, "restarting into the new image");
    esp_restart();
}

static void prv_schedule_restart(void *ctx, uint32_t delay_ms)
{
    idf_port_t *p = ctx;
    esp_err_t err = esp_timer_start_once(p->restart_timer, (uint64_t)delay_ms * 1000u);

    if (err != ESP_OK) {
        /* The new slot is already the boot slot: restarting now is still right. */
        ESP_LOGW(TAG, "restart timer failed (%s), restarting now", esp_err_to_name(err));
        esp_restart();
    }
}

static void prv_lock(void *ctx)
{
    idf_port_t *p = ctx;

    (void)xSemaphoreTake(p->mutex, portMAX_DELAY);
}

static void prv_unlock(void *ctx)
{
    idf_port_t *p = ctx;

    (void)xSemaphoreGive(p->mutex);
}

static void prv_writer_wake(void *ctx)
{
    idf_port_t *p = ctx;

    if (p->writer != NULL) {
        xTaskNotifyGive(p->writer);
    }
}

static void prv_writer_wait(void *ctx, uint32_t timeout_ms)
{
    (void)ctx;
    (void)ulTaskNotifyTake(pdTRUE, pdMS_TO_TICKS(timeout_ms));
}

/* --- SHA-256 ---------------------------------------------------------- */

static int prv_sha256_start(void *ctx)
{
    idf_port_t *p = ctx;

    if (p->sha_running) {
        mbedtls_sha256_free(&p->sha);
    }
    mbedtls_sha256_init(&p->sha);
    p->sha_running = true;
    if (mbedtls_sha256_starts(&p->sha, 0) != 0) {
        mbedtls_sha256_free(&p->sha);
        p->sha_running = false;
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    return BLE_OTA_OK;
}

static int prv_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    idf_port_t *p = ctx;

    if (!p->sha_running) {
        return BLE_OTA_ERR_STATE;
    }
    return mbedtls_sha256_update(&p->sha, data, len) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_UNSUPPORTED;
}

static int prv_sha256_finish(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    idf_port_t *p = ctx;
    int rc;

    if (!p->sha_running) {
        return BLE_OTA_ERR_STATE;
    }
    rc = mbedtls_sha256_finish(&p->sha, out);
    mbedtls_sha256_free(&p->sha);
    p->sha_running = false;
    return rc == 0 ? BLE_OTA_OK : BLE_OTA_ERR_UNSUPPORTED;
}


/* --- Protocol v2 ------------------------------------------------------- */

/*
 * SHA-256 of the running image as a client's .bin file has it: every byte up to
 * and including the appended digest (esp_image_get_metadata's image_len), and for
 * a signed image its padding and signature sector.
 * esp_partition_get_sha256 returns the appended digest itself, which is the
 * SHA-256 of the bytes before it, so it never equals the file's hash.
 * Computed once at init, before the BLE host runs.
 */
static void prv_hash_running_image(idf_port_t *p)
{
    static uint8_t buf[512];
    const esp_partition_t *running = esp_ota_get_running_partition();
    esp_partition_pos_t pos;
    esp_image_metadata_t md;
    mbedtls_sha256_context sha;
    uint32_t off;
    bool ok = true;

    p->running_sha256_ok = false;
    if (running == NULL) {
        return;
    }
    pos.offset = running->address;
    pos.size = running->size;
    if (esp_image_get_metadata(&pos, &md) != ESP_OK) {
        ESP_LOGW(TAG, "running image unreadable: v2 clients cannot be told it is already installed");
        return;
    }
    /* A file signed for Secure Boot v2 goes on: 0xFF up to a 4 KB sector, then the signature
     * sector (ets_secure_boot_sig_block_t: magic 0xE7, version 2 RSA or 3 ECDSA). */
    uint32_t len = md.image_len;
    uint32_t sig_at = (md.image_len + BLE_OTA_SBV2_SECTOR - 1u) & ~(BLE_OTA_SBV2_SECTOR - 1u);
    uint8_t sig_head[2];
    if (sig_at + BLE_OTA_SBV2_SECTOR <= running->size &&
        esp_partition_read(running, sig_at, sig_head, sizeof(sig_head)) == ESP_OK && sig_head[0] == BLE_OTA_SBV2_MAGIC &&
        (sig_head[1] == BLE_OTA_SBV2_VERSION_RSA || sig_head[1] == BLE_OTA_SBV2_VERSION_ECDSA)) {
        len = sig_at + BLE_OTA_SBV2_SECTOR;
    }
    mbedtls_sha256_init(&sha);
    ok = mbedtls_sha256_starts(&sha, 0) == 0;
    for (off = 0; ok && off < len; off += sizeof(buf)) {
        size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);
        ok = esp_partition_read(running, off, buf, n) == ESP_OK && mbedtls_sha256_update(&sha, buf, n) == 0;
    }
    ok = ok && mbedtls_sha256_finish(&sha, p->running_sha256) == 0;
    mbedtls_sha256_free(&sha);
    p->running_sha256_ok = ok;
    p->running = ok ? running : NULL;
    p->running_len = ok ? len : 0u;
}

static uint32_t prv_running_size(void *ctx)
{
    idf_port_t *p = ctx;

    return p->running_sha256_ok ? p->running_len : 0u;
}

/* A delta update's COPY: bytes of the running image, read while the update slot is written. */
static int prv_running_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    idf_port_t *p = ctx;
    esp_err_t err;

    if (p->running == NULL || (uint64_t)offset + len > p->running_len) {
        return BLE_OTA_ERR_INVALID_ARG;
    }
    err = esp_partition_read(p->running, offset, buf, len);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "reading the running image %s at 0x%lx failed: %s", p->running->label, (unsigned long)offset,
                 esp_err_to_name(err));
        return BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static int prv_running_sha256(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    idf_port_t *p = ctx;

    if (!p->running_sha256_ok) {
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    memcpy(out, p->running_sha256, BLE_OTA_SHA256_LEN);
    return BLE_OTA_OK;
}

static uint16_t prv_chip_id(void *ctx)
{
    (void)ctx;
    return (uint16_t)CONFIG_IDF_FIRMWARE_CHIP_ID;
}

static uint32_t prv_slot_size(void *ctx)
{
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);

    (void)ctx;
    return next != NULL ? (uint32_t)next->size : 0u;
}

/*
 * Opens the update slot for v2 without erasing anything, so that BEGIN is answered before the
 * first 64 KB block erase (150-430 ms with the cache off) and that erase overlaps the client's
 * first window: esp_ota_resume(slot, 0, 0) gives IDF's "already erased" mode that
 * esp_ota_write_with_offset needs, at image offset 0, and esp_ota_invalidate_inactive_ota_data_slot()
 * does what esp_ota_begin adds under rollback (the older image's otadata entry is forgotten). The
 * core then erases block by block ahead of its writes (slot_erase), the first block right after
 * BEGIN's answer. Both calls are ESP-IDF v5.5 API; esp_ota_begin's own checks are made here.
 */
static int prv_slot_open(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target, uint32_t *erased)
{
    idf_port_t *p = ctx;
    const esp_partition_t *running = esp_ota_get_running_partition();
    esp_ota_img_states_t state;
    esp_err_t err;

    if (image_size == 0u || image_size == BLE_OTA_IMAGE_SIZE_UNKNOWN) {
        ESP_LOGE(TAG, "refusing to open the update slot for an image of %lu bytes", (unsigned long)image_size);
        return image_size == 0u ? BLE_OTA_ERR_INVALID_ARG : BLE_OTA_ERR_TOO_LARGE;
    }
    p->finished = NULL;
    p->target = esp_ota_get_next_update_partition(NULL);
    if (p->target == NULL) {
        ESP_LOGE(TAG, "no OTA update partition: the partition table needs ota_0 and ota_1");
        return BLE_OTA_ERR_NO_SLOT;
    }
    if (image_size > p->target->size) {
        ESP_LOGE(TAG, "image of %lu bytes does not fit %s (%lu bytes)", (unsigned long)image_size, p->target->label,
                 (unsigned long)p->target->size);
        return BLE_OTA_ERR_TOO_LARGE;
    }
#if CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    if (running != NULL && esp_ota_get_state_partition(running, &state) == ESP_OK &&
        state == ESP_OTA_IMG_PENDING_VERIFY) {
        ESP_LOGE(TAG, "the running app has not confirmed itself yet (ESP_OTA_IMG_PENDING_VERIFY)");
        return BLE_OTA_ERR_STATE;
    }
#else
    (void)running;
    (void)state;
#endif
    err = esp_ota_resume(p->target, 0, 0, &p->handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_resume on %s failed: %s", p->target->label, esp_err_to_name(err));
        return err == ESP_ERR_NO_MEM                                             ? BLE_OTA_ERR_NO_MEM
               : err == ESP_ERR_OTA_PARTITION_CONFLICT || err == ESP_ERR_NOT_FOUND ? BLE_OTA_ERR_NO_SLOT
                                                                                 : BLE_OTA_ERR_FLASH;
    }
    p->slot_open = true;
#if CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    err = esp_ota_invalidate_inactive_ota_data_slot();
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_invalidate_inactive_ota_data_slot failed: %s", esp_err_to_name(err));
        p->slot_open = false;
        (void)esp_ota_abort(p->handle);
        return BLE_OTA_ERR_FLASH;
    }
#endif
    prv_fill_slot_info(p->target, target);
    *erased = 0u;
    return BLE_OTA_OK;
}

static int prv_slot_erase(void *ctx, uint32_t offset, uint32_t len)
{
    idf_port_t *p = ctx;
    esp_err_t err;

    if (!p->slot_open) {
        return BLE_OTA_ERR_STATE;
    }
    err = esp_partition_erase_range(p->target, offset, len);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "erasing %s at 0x%lx failed: %s", p->target->label, (unsigned long)offset,
                 esp_err_to_name(err));
        return err == ESP_ERR_INVALID_SIZE ? BLE_OTA_ERR_TOO_LARGE : BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static int prv_slot_write_at(void *ctx, uint32_t offset, const uint8_t *data, size_t len)
{
    idf_port_t *p = ctx;
    esp_err_t err;

    if (!p->slot_open) {
        return BLE_OTA_ERR_STATE;
    }
    err = esp_ota_write_with_offset(p->handle, data, len, offset);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_write_with_offset at 0x%lx failed: %s", (unsigned long)offset, esp_err_to_name(err));
        return err == ESP_ERR_INVALID_SIZE       ? BLE_OTA_ERR_TOO_LARGE
               : err == ESP_ERR_OTA_SMALL_SEC_VER ? BLE_OTA_ERR_DOWNGRADE
                                                  : BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static uint32_t prv_crc32(void *ctx, uint32_t crc, const uint8_t *data, size_t len)
{
    (void)ctx;
    /* Same convention as zlib's crc32(): ~crc in, ~crc out. */
    return esp_rom_crc32_le(crc, data, (uint32_t)len);
}

static void prv_inflate_finish(void *ctx)
{
    idf_port_t *p = ctx;

    free(p->inflater);
    free(p->dict);
    p->inflater = NULL;
    p->dict = NULL;
}

static int prv_inflate_start(void *ctx)
{
    idf_port_t *p = ctx;

    prv_inflate_finish(p);
    p->inflater = malloc(sizeof(*p->inflater));
    p->dict = malloc(TINFL_LZ_DICT_SIZE);
    if (p->inflater == NULL || p->dict == NULL) {
        prv_inflate_finish(p);
        ESP_LOGE(TAG, "no heap for the inflater (%u bytes)",
                 (unsigned)(sizeof(tinfl_decompressor) + TINFL_LZ_DICT_SIZE));
        return BLE_OTA_ERR_NO_MEM;
    }
    tinfl_init(p->inflater);
    p->dict_ofs = 0;
    return BLE_OTA_OK;
}

static int prv_inflate_update(void *ctx, const uint8_t **in, size_t *in_len, const uint8_t **out, size_t *out_len)
{
    idf_port_t *p = ctx;
    size_t in_bytes = *in_len;
    size_t out_bytes = TINFL_LZ_DICT_SIZE - p->dict_ofs;
    tinfl_status st;

    if (p->inflater == NULL) {
        return BLE_OTA_ERR_STATE;
    }
    /* The dictionary doubles as the output buffer (wrapping mode): what it
     * decoded is handed out before the next call overwrites it. */
    st = tinfl_decompress(p->inflater, *in, &in_bytes, p->dict, p->dict + p->dict_ofs, &out_bytes,
                          TINFL_FLAG_PARSE_ZLIB_HEADER | TINFL_FLAG_HAS_MORE_INPUT);
    *in += in_bytes;
    *in_len -= in_bytes;
    *out = p->dict + p->dict_ofs;
    *out_len = out_bytes;
    p->dict_ofs = (p->dict_ofs + out_bytes) & (TINFL_LZ_DICT_SIZE - 1);
    if (st == TINFL_STATUS_DONE) {
        return BLE_OTA_INFLATE_DONE;
    }
    if (st == TINFL_STATUS_NEEDS_MORE_INPUT || st == TINFL_STATUS_HAS_MORE_OUTPUT) {
        return BLE_OTA_OK;
    }
    ESP_LOGE(TAG, "tinfl_decompress failed (status %d)", (int)st);
    return BLE_OTA_ERR_INVALID_ARG;
}

/* --- Update security --------------------------------------------------- */

static void prv_security(void *ctx, ble_ota_security_t *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
#if CONFIG_BLE_OTA_REQUIRE_SIGNED /* a bool option set to n is not defined at all in sdkconfig.h */
    out->signed_only = true;
#endif
#if CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
    out->anti_rollback = true;
    out->min_secure_version = esp_efuse_read_secure_version();
#endif
#if CONFIG_BLE_OTA_ALLOW_DOWNGRADE
    out->allow_downgrade = true;
#endif
    out->link_security = (ble_ota_link_security_t)CONFIG_BLE_OTA_LINK_SECURITY;
}

/*
 * The primitives of the core's signature policy (ble_ota_sbv2.c). Which keys the platform trusts
 * is ESP-IDF's answer, as esp_ota_end uses it: the eFuse key digests that are not revoked under
 * Secure Boot v2 (all three blocks of an image read), or without Secure Boot the keys of the
 * running app's signature blocks (only an image's first block read).
 */
static int prv_trusted_keys(void *ctx, ble_ota_trust_t *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
#if CONFIG_SECURE_BOOT_V2_ENABLED
    esp_secure_boot_key_digests_t efuse;
    out->blocks_checked = BLE_OTA_SIG_MAX_BLOCKS;
    if (esp_secure_boot_read_key_digests(&efuse) != ESP_OK) {
        return BLE_OTA_OK; /* none: nothing is trusted */
    }
    for (size_t i = 0; i < SOC_EFUSE_SECURE_BOOT_KEY_DIGESTS && out->count < BLE_OTA_SIG_MAX_BLOCKS; i++) {
        if (efuse.key_digests[i] != NULL) {
            memcpy(out->digests[out->count++], efuse.key_digests[i], BLE_OTA_SHA256_LEN);
        }
    }
#elif CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT
    esp_image_sig_public_key_digests_t running;
    out->blocks_checked = 1u; /* esp_secure_boot_verify_sbv2_signature_block without Secure Boot */
    memset(&running, 0, sizeof(running));
    if (esp_secure_boot_get_signature_blocks_for_running_app(true, &running) != ESP_OK) {
        return BLE_OTA_OK;
    }
    for (size_t i = 0; i < running.num_digests && out->count < BLE_OTA_SIG_MAX_BLOCKS; i++) {
        memcpy(out->digests[out->count++], running.key_digests[i], BLE_OTA_SHA256_LEN);
    }
#else
    out->blocks_checked = 1u; /* no signed apps in this build: no key is trusted */
#endif
    return BLE_OTA_OK;
}

static int prv_sha256_buf(void *ctx, const uint8_t *data, size_t len, uint8_t out[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    return mbedtls_sha256(data, len, out, 0) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_UNSUPPORTED;
}

static void prv_reverse(uint8_t *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = in[n - 1u - i];
    }
}

/* RSA-3072-PSS (SHA-256, MGF1, any salt length) with the block's n and e, as IDF's
 * verify_rsa_signature_block does it; the block stores n, e and the signature little-endian. */
static int prv_verify_rsa(const uint8_t *block, const uint8_t digest[BLE_OTA_SHA256_LEN])
{
    const uint8_t *key = block + BLE_OTA_SBV2_KEY_AT;
    uint8_t *buf = malloc(3u * BLE_OTA_SBV2_RSA_SIG_LEN);
    mbedtls_rsa_context rsa;
    int rc;

    if (buf == NULL) {
        return BLE_OTA_ERR_NO_MEM;
    }
    uint8_t *n_be = buf;
    uint8_t *sig_be = buf + BLE_OTA_SBV2_RSA_SIG_LEN;
    uint8_t e_be[4];
    prv_reverse(n_be, key, BLE_OTA_SBV2_RSA_SIG_LEN);
    prv_reverse(e_be, key + BLE_OTA_SBV2_RSA_SIG_LEN, sizeof(e_be));
    prv_reverse(sig_be, block + BLE_OTA_SBV2_RSA_SIG_AT, BLE_OTA_SBV2_RSA_SIG_LEN);
    mbedtls_rsa_init(&rsa);
    rc = mbedtls_rsa_set_padding(&rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
    if (rc == 0) {
        rc = mbedtls_rsa_import_raw(&rsa, n_be, BLE_OTA_SBV2_RSA_SIG_LEN, NULL, 0, NULL, 0, NULL, 0, e_be, sizeof(e_be));
    }
    if (rc == 0) {
        rc = mbedtls_rsa_complete(&rsa);
    }
    if (rc == 0) {
        rc = mbedtls_rsa_rsassa_pss_verify(&rsa, MBEDTLS_MD_SHA256, BLE_OTA_SHA256_LEN, digest, sig_be);
    }
    mbedtls_rsa_free(&rsa);
    free(buf);
    return rc == 0 ? BLE_OTA_OK : BLE_OTA_ERR_BAD_SIGNATURE;
}

/* ECDSA P-256 with the block's point, as IDF's verify_ecdsa_signature_block does it; the block
 * stores x, y, r and s little-endian. */
static int prv_verify_ecdsa(const uint8_t *block, const uint8_t digest[BLE_OTA_SHA256_LEN])
{
    const uint8_t *key = block + BLE_OTA_SBV2_KEY_AT;
    const uint8_t *sig = block + BLE_OTA_SBV2_ECDSA_SIG_AT;
    uint8_t point[65];
    uint8_t be[32];
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi r;
    mbedtls_mpi s;
    int rc;

    point[0] = 0x04u; /* uncompressed: x then y, big-endian */
    prv_reverse(&point[1], key + 1, 32);
    prv_reverse(&point[33], key + 33, 32);
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    rc = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    if (rc == 0) {
        rc = mbedtls_ecp_point_read_binary(&grp, &q, point, sizeof(point));
    }
    if (rc == 0) {
        prv_reverse(be, sig, 32);
        rc = mbedtls_mpi_read_binary(&r, be, 32);
    }
    if (rc == 0) {
        prv_reverse(be, sig + 32, 32);
        rc = mbedtls_mpi_read_binary(&s, be, 32);
    }
    if (rc == 0) {
        rc = mbedtls_ecdsa_verify(&grp, digest, BLE_OTA_SHA256_LEN, &q, &r, &s);
    }
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return rc == 0 ? BLE_OTA_OK : BLE_OTA_ERR_BAD_SIGNATURE;
}

static int prv_verify_block(void *ctx, const uint8_t *block, const uint8_t digest[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    switch (block[1]) {
    case BLE_OTA_SBV2_VERSION_RSA:
        return prv_verify_rsa(block, digest);
    case BLE_OTA_SBV2_VERSION_ECDSA:
        return block[BLE_OTA_SBV2_KEY_AT] == BLE_OTA_SBV2_ECDSA_P256 ? prv_verify_ecdsa(block, digest)
                                                                    : BLE_OTA_ERR_UNSUPPORTED;
    default:
        return BLE_OTA_ERR_UNSUPPORTED;
    }
}

static int prv_slot_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    idf_port_t *p = ctx;
    esp_err_t err;

    if (!p->slot_open || p->target == NULL) {
        return BLE_OTA_ERR_STATE;
    }
    err = esp_partition_read(p->target, offset, buf, len);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "reading %s at 0x%lx back failed: %s", p->target->label, (unsigned long)offset,
                 esp_err_to_name(err));
        return BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

/* --- Background erase of the update slot (CONFIG_BLE_OTA_PRE_ERASE) -------------------------- */

/* The erase record: one NVS blob {u32 slot address, u32 erased_to}. NVS commits are atomic (a
 * power cut leaves the old value or the new one), and the core stores it after each block erase
 * and clears it before any write into the slot, so it is never ahead of the flash. */
#define PRE_ERASE_NVS_NAMESPACE "ble_ota"
#define PRE_ERASE_NVS_KEY "pre_erase"

static int prv_next_slot(void *ctx, ble_ota_slot_info_t *out)
{
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);

    (void)ctx;
    if (next == NULL) {
        return BLE_OTA_ERR_NO_SLOT;
    }
    prv_fill_slot_info(next, out);
    return BLE_OTA_OK;
}

static int prv_idle_erase(void *ctx, uint32_t offset, uint32_t len)
{
    idf_port_t *p = ctx;
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
    esp_err_t err;

    if (p->slot_open || next == NULL) {
        return BLE_OTA_ERR_STATE;
    }
    err = esp_partition_erase_range(next, offset, len);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "erasing %s at 0x%lx in the background failed: %s", next->label, (unsigned long)offset,
                 esp_err_to_name(err));
        return err == ESP_ERR_INVALID_SIZE ? BLE_OTA_ERR_TOO_LARGE : BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static int prv_idle_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);

    (void)ctx;
    if (next == NULL) {
        return BLE_OTA_ERR_STATE;
    }
    return esp_partition_read(next, offset, buf, len) == ESP_OK ? BLE_OTA_OK : BLE_OTA_ERR_FLASH;
}

static int prv_erase_record_load(void *ctx, ble_ota_erase_record_t *out)
{
    nvs_handle_t h;
    uint32_t v[2] = {0u, 0u};
    size_t len = sizeof(v);
    esp_err_t err;

    (void)ctx;
    memset(out, 0, sizeof(*out));
    err = nvs_open(PRE_ERASE_NVS_NAMESPACE, NVS_READONLY, &h);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        return BLE_OTA_OK; /* the namespace does not exist yet: nothing recorded */
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_open(\"%s\") failed: %s (is NVS initialised?)", PRE_ERASE_NVS_NAMESPACE,
                 esp_err_to_name(err));
        return BLE_OTA_ERR_FLASH;
    }
    err = nvs_get_blob(h, PRE_ERASE_NVS_KEY, v, &len);
    nvs_close(h);
    if (err == ESP_ERR_NVS_NOT_FOUND || (err == ESP_OK && len != sizeof(v))) {
        return BLE_OTA_OK;
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_get_blob(\"%s\") failed: %s", PRE_ERASE_NVS_KEY, esp_err_to_name(err));
        return BLE_OTA_ERR_FLASH;
    }
    out->slot_address = v[0];
    out->erased_to = v[1];
    return BLE_OTA_OK;
}

static int prv_erase_record_store(void *ctx, const ble_ota_erase_record_t *rec)
{
    nvs_handle_t h;
    uint32_t v[2] = {rec->slot_address, rec->erased_to};
    esp_err_t err;

    (void)ctx;
    err = nvs_open(PRE_ERASE_NVS_NAMESPACE, NVS_READWRITE, &h);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_open(\"%s\") failed: %s (is NVS initialised?)", PRE_ERASE_NVS_NAMESPACE,
                 esp_err_to_name(err));
        return BLE_OTA_ERR_FLASH;
    }
    err = nvs_set_blob(h, PRE_ERASE_NVS_KEY, v, sizeof(v));
    if (err == ESP_OK) {
        err = nvs_commit(h);
    }
    nvs_close(h);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "storing the erase record in NVS failed: %s", esp_err_to_name(err));
        return BLE_OTA_ERR_FLASH;
    }
    return BLE_OTA_OK;
}

static const ble_ota_port_v2_t s_port_v2 = {
    .running_sha256 = prv_running_sha256,
    .chip_id = prv_chip_id,
    .slot_size = prv_slot_size,
    .slot_open = prv_slot_open,
    .slot_erase = prv_slot_erase,
    .slot_write_at = prv_slot_write_at,
    .crc32 = prv_crc32,
    .inflate_start = prv_inflate_start,
    .inflate_update = prv_inflate_update,
    .inflate_finish = prv_inflate_finish,
    .link_request = ble_ota_nimble_link_request,
    .security = prv_security,
    .trusted_keys = prv_trusted_keys,
    .sha256_buf = prv_sha256_buf,
    .verify_block = prv_verify_block,
    .slot_read = prv_slot_read,
    .next_slot = prv_next_slot,
    .idle_erase = prv_idle_erase,
    .erase_record_load = prv_erase_record_load,
    .erase_record_store = prv_erase_record_store,
    .idle_read = prv_idle_read,
    .running_size = prv_running_size,
    .running_read = prv_running_read,
};

/* --- Wiring ------------------------------------------------------------- */

static const ble_ota_port_t s_port = {
    .ctx = &s_idf,
    .slot_begin = prv_slot_begin,
    .slot_write = prv_slot_write,
    .slot_end = prv_slot_end,
    .slot_abort = prv_slot_abort,
    .slot_set_boot = prv_slot_set_boot,
    .get_running_slot = prv_get_running_slot,
    .confirm_running = prv_confirm_running,
    .reject_running = prv_reject_running,
    .app_version = prv_app_version,
    .chip_name = prv_chip_name,
    .notify = ble_ota_nimble_notify,
    .now_ms = prv_now_ms,
    .log = prv_log,
    .schedule_restart = prv_schedule_restart,
    .lock = prv_lock,
    .unlock = prv_unlock,
    .writer_wake = prv_writer_wake,
    .writer_wait = prv_writer_wait,
    .sha256_start = prv_sha256_start,
    .sha256_update = prv_sha256_update,
    .sha256_finish = prv_sha256_finish,
    .disconnect = ble_ota_nimble_disconnect,
};

static const ble_ota_config_t s_config = {
    .device_name = CONFIG_BLE_OTA_DEVICE_NAME,
    .manufacturer = CONFIG_BLE_OTA_MANUFACTURER,
    .restart_delay_ms = CONFIG_BLE_OTA_RESTART_DELAY_MS,
#if CONFIG_BLE_OTA_BASELINE_PROTOCOL
    .disable_baseline = false,
#else
    .disable_baseline = true,
#endif
#ifdef CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS /* only with CONFIG_BLE_OTA_REQUIRE_SIGNED */
    .trusted_key_digests = CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS,
#else
    .trusted_key_digests = NULL,
#endif
    .idle_timeout_ms = CONFIG_BLE_OTA_IDLE_TIMEOUT_S * 1000u,
    .session_hold_ms = CONFIG_BLE_OTA_SESSION_HOLD_S * 1000u,
    .refusal_backoff_max_ms = CONFIG_BLE_OTA_REFUSAL_BACKOFF_MAX_S * 1000u,
#if CONFIG_BLE_OTA_PRE_ERASE_IDLE
    .pre_erase = BLE_OTA_PRE_ERASE_IDLE,
#elif CONFIG_BLE_OTA_PRE_ERASE_DISCONNECTED
    .pre_erase = BLE_OTA_PRE_ERASE_DISCONNECTED,
#else
    .pre_erase = BLE_OTA_PRE_ERASE_OFF,
#endif
#if CONFIG_BLE_OTA_PRE_ERASE_IDLE || CONFIG_BLE_OTA_PRE_ERASE_DISCONNECTED
    .pre_erase_delay_ms = CONFIG_BLE_OTA_PRE_ERASE_DELAY_S * 1000u,
    .pre_erase_pause_ms = CONFIG_BLE_OTA_PRE_ERASE_PAUSE_MS,
#endif
};

static void prv_writer_task(void *arg)
{
    (void)arg;
    for (;;) {
        (void)ble_ota_writer_run_once(1000);
    }
}

esp_err_t ble_ota_idf_init(void)
{
    const esp_timer_create_args_t timer_args = {
        .callback = prv_restart_cb,
        .arg = NULL,
        .dispatch_method = ESP_TIMER_TASK,
        .name = "ble_ota_restart",
        .skip_unhandled_events = false,
    };
    esp_err_t err;

    if (s_idf.mutex != NULL) {
        return ESP_ERR_INVALID_STATE;
    }
    esp_log_level_set(TAG, (esp_log_level_t)CONFIG_BLE_OTA_LOG_LEVEL);
    s_idf.mutex = xSemaphoreCreateMutexStatic(&s_idf.mutex_storage);
    err = esp_timer_create(&timer_args, &s_idf.restart_timer);
    if (err != ESP_OK) {
        return err;
    }
    prv_compute_chip_name(s_idf.chip_name, sizeof(s_idf.chip_name));
    prv_hash_running_image(&s_idf);
    /* ble_ota_init logs why it refused CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS, if that was it. */
    if (ble_ota_init(&s_port, &s_config) != BLE_OTA_OK || ble_ota_v2_attach(&s_port_v2) != BLE_OTA_OK) {
        return ESP_ERR_INVALID_ARG;
    }
    return ESP_OK;
}

ble_ota_boot_result_t ble_ota_idf_boot_check(void)
{
    return ble_ota_boot_check(FORCE_SELF_TEST_FAIL);
}

esp_err_t ble_ota_idf_start(void)
{
    BaseType_t ok;

    if (s_idf.mutex == NULL) {
        return ESP_ERR_INVALID_STATE; /* ble_ota_idf_init() first */
    }
    ok = xTaskCreatePinnedToCore(prv_writer_task, "ble_ota_writer", CONFIG_BLE_OTA_WRITER_TASK_STACK_SIZE,
                                 NULL, CONFIG_BLE_OTA_WRITER_TASK_PRIORITY, &s_idf.writer, WRITER_CORE);
    if (ok != pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    return ble_ota_nimble_start(s_config.device_name);
}
