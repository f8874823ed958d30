/*
 * libFuzzer target: ble_ota_boot_check (ble_ota_boot.c) over arbitrary otadata and slot states.
 *
 * The flash is the host build's NOR emulation with the real partition table; otadata is read
 * and written by the host's esp_ota_ops model (otadata.c), images are real ESP app images
 * (image.c) that the bootloader emulation below verifies. An input is the state the factory,
 * earlier updates or a power cut left (two otadata entries, what each slot holds, the
 * secure_version eFuse), then steps: a boot (the 2nd stage bootloader, then the app's boot
 * check with self-test failures and a power cut chosen by the input) or the install of a new
 * image into the slot that is not running, as esp_ota_* does it. README.md, "Boot target".
 *
 * Invariants: every boot finds a bootable slot (the boot check never leaves none); the boot
 * check confirms only a PENDING_VERIFY image whose self-test passed, rolls back only one whose
 * self-test failed, returns what it did, and touches neither the update slot nor the radio.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ble_ota.h"
#include "chip.h"
#include "esp_format.h"
#include "flash.h"
#include "fuzz_common.h"
#include "image.h"
#include "otadata.h"
#include "parttable.h"

#define SECTOR 4096u
#define HEADER_LEN 12u
#define STEP_LEN 3u
#define MAX_STEPS 16u
#define SLOTS 2

enum { IMG_BLANK = 0, IMG_CORRUPT = 1, IMG_GOOD = 2 };

/* Step a (boot): bit 0 force the self-test to fail, bits 1-3 SHA-256 fault (1 start fails,
 * 2 update fails, 3 finish fails, 4 wrong digest), bit 4 empty app version, bit 5 empty chip
 * name, bits 6-7 get_running_slot fails (1 first call, 2 the self-test's call, 3 always).
 * Step b (boot): bit 0 confirm_running fails, bits 1-3 power cut at that flash operation of
 * this boot (0 none), bit 4 the cut tears the operation, bit 5 ble_ota_init refused the app's
 * configuration (a malformed CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS) before the boot check. */
#define A_FORCE_FAIL 0x01u
#define A_EMPTY_VERSION 0x10u
#define A_EMPTY_CHIP 0x20u
#define B_CONFIRM_FAILS 0x01u
#define B_TORN 0x10u
#define B_INIT_REFUSED 0x20u

static struct {
    bool ready;
    host_flash_t flash;
    host_dev_t dev;
    const host_chip_t *chip;
    ble_ota_port_t port;

    bool anti_rollback;
    uint32_t efuse_min;
    int running; /* the slot the last boot started, -1 before the first */

    /* this boot's faults and what the boot check did */
    uint8_t a;
    uint8_t b;
    bool expect_pass;
    ble_ota_slot_state_t state_at_boot;
    uint32_t get_running_calls;
    uint32_t confirm_calls;
    int confirm_rc;
    uint32_t reject_calls;
    bool sha_running;
    uint8_t sha_buf[64];
    size_t sha_len;
    jmp_buf power_jmp;
    jmp_buf reboot_jmp;
} s;

/* --- images and the bootloader ---------------------------------------------- */

static const host_part_t *prv_part(int slot)
{
    return host_ptable_ota(&s.dev.table, slot);
}

/* A real ESP app image (header, segment, esp_app_desc_t, checksum, SHA-256) for the chip, in
 * out (one sector); its length. Built before any flash operation, so a power cut that jumps
 * out of one leaves nothing allocated. */
static size_t prv_build_image(uint32_t secure_version, uint8_t out[SECTOR])
{
    static const uint8_t exec[64] = { 0x7f, 'E', 'L', 'F' };
    host_app_image_params_t p;
    uint8_t *img = NULL;
    size_t len = 0;
    char err[200];

    memset(&p, 0, sizeof(p));
    p.chip = s.chip;
    p.version = "1.0.0";
    p.project_name = "esp_ble_ota";
    p.idf_ver = "v5.3.1";
    p.date = "Jan  1 2025";
    p.time = "00:00:00";
    p.secure_version = secure_version;
    p.exec = exec;
    p.exec_len = sizeof(exec);
    FZ_CHECK(host_app_image_build(&p, &img, &len, err, sizeof(err)) == 0, "image builder: %s", err);
    FZ_CHECK(len <= SECTOR, "the test image outgrew one sector (%zu bytes)", len);
    memcpy(out, img, len);
    free(img);
    return len;
}

/* What the slot holds; the flash operations count (power cuts) when counted is set. */
static void prv_put_image(int slot, int kind, uint32_t secure_version)
{
    const host_part_t *p = prv_part(slot);
    uint8_t img[SECTOR];
    size_t len = kind == IMG_BLANK ? 0u : prv_build_image(secure_version, img);

    if (kind == IMG_CORRUPT) {
        img[len / 2u] ^= 0x5Au; /* magic still there, the SHA-256 no longer holds */
    }
    FZ_CHECK(host_flash_erase(&s.flash, p->offset, SECTOR) == 0, "%s", s.flash.error);
    if (len > 0u) {
        FZ_CHECK(host_flash_write(&s.flash, p->offset, img, len) == 0, "%s", s.flash.error);
    }
}

static uint32_t prv_secure_version(int slot)
{
    const uint8_t *d = host_flash_peek(&s.flash, prv_part(slot)->offset + 32u + 4u, 4u);

    return d == NULL ? 0u : fz_u32(d);
}

/* esp_image_verify, then IDF's check_anti_rollback (the host bootloader has none). */
static bool prv_loadable(int slot)
{
    const host_part_t *p = prv_part(slot);
    host_image_info_t info;
    char err[200];

    if (p == NULL || host_image_verify(&s.flash, p->offset, p->size, s.chip, HOST_IMAGE_VERIFY_SILENT, &info, err,
                                       sizeof(err)) != 0) {
        return false;
    }
    return !s.anti_rollback || info.app_desc.secure_version >= s.efuse_min;
}

static bool prv_any_loadable(void)
{
    for (int i = 0; i < s.dev.ota_count; i++) {
        if (prv_loadable(i)) {
            return true;
        }
    }
    return false;
}

/* bootloader_utility_get_selected_boot_partition and _load_boot_image with
 * CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, as firmware/host/src/bootloader.c runs them (no
 * factory app in this partition table). Returns the slot it loads, or -1. */
static int prv_bootloader(void)
{
    esp_ota_select_entry_t two[2];
    int boot_index = 0;
    bool initial_contents = false;
    int loaded = -1;

    FZ_CHECK(host_otadata_read(&s.dev, two) == 0, "%s", s.flash.error);
    for (int i = 0; i < 2; i++) {
        if (two[i].ota_state == ESP_OTA_IMG_PENDING_VERIFY) {
            two[i].ota_state = ESP_OTA_IMG_ABORTED; /* booted once, never confirmed: rollback */
            (void)host_otadata_write(&s.dev, i, &two[i]);
        }
    }
    if (host_ota_select_invalid(&two[0]) && host_ota_select_invalid(&two[1])) {
        boot_index = 0; /* "No factory image, trying OTA 0" */
        initial_contents = (two[0].ota_seq == UINT32_MAX || two[0].crc != host_ota_select_crc(&two[0])) &&
                           (two[1].ota_seq == UINT32_MAX || two[1].crc != host_ota_select_crc(&two[1]));
    } else {
        int active = host_ota_active_entry(two);
        if (active != -1) {
            boot_index = (int)((two[active].ota_seq - 1u) % (uint32_t)s.dev.ota_count);
            if (two[active].ota_state == ESP_OTA_IMG_NEW) {
                two[active].ota_state = ESP_OTA_IMG_PENDING_VERIFY;
                (void)host_otadata_write(&s.dev, active, &two[active]);
            }
        } else {
            boot_index = -1; /* "ota data partition invalid and no factory, will try all partitions" */
        }
    }
    for (int index = boot_index; index >= 0 && loaded < 0; index--) {
        if (prv_loadable(index)) {
            loaded = index;
        }
    }
    for (int index = boot_index + 1; index < s.dev.ota_count && loaded < 0; index++) {
        if (prv_loadable(index)) {
            loaded = index;
        }
    }
    if (loaded >= 0 && initial_contents) {
        esp_ota_select_entry_t e;
        memset(&e, 0xFF, sizeof(e));
        e.ota_seq = (uint32_t)loaded + 1u;
        e.ota_state = ESP_OTA_IMG_VALID;
        e.crc = host_ota_select_crc(&e);
        (void)host_otadata_write(&s.dev, 0, &e);
    }
    return loaded;
}

static ble_ota_slot_state_t prv_state(int slot)
{
    uint32_t st;

    if (host_ota_get_state(&s.dev, slot, &st) != 0) {
        return BLE_OTA_SLOT_STATE_UNDEFINED;
    }
    switch (st) {
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

/* --- the port the app's boot check runs on ------------------------------------ */

static void prv_power_cut(void *ctx)
{
    (void)ctx;
    longjmp(s.power_jmp, 1);
}

static int prv_get_running_slot(void *ctx, ble_ota_slot_info_t *out)
{
    unsigned mode = s.a >> 6;

    (void)ctx;
    s.get_running_calls++;
    if (mode == 3u || (mode == 1u && s.get_running_calls == 1u) || (mode == 2u && s.get_running_calls == 2u)) {
        return BLE_OTA_ERR_NO_SLOT;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->label, sizeof(out->label), "%s", prv_part(s.running)->label);
    out->address = prv_part(s.running)->offset;
    out->size = prv_part(s.running)->size;
    out->state = prv_state(s.running);
    return BLE_OTA_OK;
}

static int prv_confirm_running(void *ctx)
{
    char err[200];

    (void)ctx;
    s.confirm_calls++;
    FZ_CHECK(s.state_at_boot == BLE_OTA_SLOT_STATE_PENDING_VERIFY, "confirm_running for an image in state %s (only "
             "PENDING_VERIFY is confirmed)", ble_ota_slot_state_name(s.state_at_boot));
    FZ_CHECK(s.expect_pass, "confirm_running although the self-test failed");
    if ((s.b & B_CONFIRM_FAILS) != 0u || host_ota_mark_valid(&s.dev, err, sizeof(err)) != 0) {
        s.confirm_rc = BLE_OTA_ERR_FLASH;
        return s.confirm_rc;
    }
    /* IDF's anti-rollback: the minimum rises once the new image confirmed itself. */
    if (s.anti_rollback && prv_secure_version(s.running) > s.efuse_min) {
        s.efuse_min = prv_secure_version(s.running);
    }
    s.confirm_rc = BLE_OTA_OK;
    return s.confirm_rc;
}

/* esp_ota_mark_app_invalid_rollback_and_reboot: returns only when no rollback is possible. */
static int prv_reject_running(void *ctx)
{
    char err[200];

    (void)ctx;
    s.reject_calls++;
    FZ_CHECK(s.state_at_boot == BLE_OTA_SLOT_STATE_PENDING_VERIFY, "reject_running for an image in state %s (only "
             "PENDING_VERIFY is rolled back)", ble_ota_slot_state_name(s.state_at_boot));
    FZ_CHECK(!s.expect_pass, "reject_running although the self-test passed");
    if (host_ota_mark_invalid(&s.dev, err, sizeof(err)) != 0) {
        return BLE_OTA_ERR_NO_SLOT;
    }
    longjmp(s.reboot_jmp, 1);
}

static const char *prv_app_version(void *ctx)
{
    (void)ctx;
    return (s.a & A_EMPTY_VERSION) != 0u ? "" : "1.0.0";
}

static const char *prv_chip_name(void *ctx)
{
    (void)ctx;
    return (s.a & A_EMPTY_CHIP) != 0u ? "" : s.chip->model;
}

/* 1 start fails, 2 update fails, 3 finish fails, 4 wrong digest; 0 and 5-7 none. */
static unsigned prv_sha_fault(void)
{
    return (s.a >> 1) & 7u;
}

static int prv_sha256_start(void *ctx)
{
    (void)ctx;
    if (prv_sha_fault() == 1u) {
        return BLE_OTA_ERR_NO_MEM;
    }
    FZ_CHECK(!s.sha_running, "sha256_start while a digest runs");
    s.sha_running = true;
    s.sha_len = 0;
    return BLE_OTA_OK;
}

static int prv_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    FZ_CHECK(s.sha_running, "sha256_update without sha256_start");
    if (prv_sha_fault() == 2u) {
        return BLE_OTA_ERR_FLASH;
    }
    FZ_CHECK(s.sha_len + len <= sizeof(s.sha_buf), "the self-test hashes more than it should");
    memcpy(&s.sha_buf[s.sha_len], data, len);
    s.sha_len += len;
    return BLE_OTA_OK;
}

static int prv_sha256_finish(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    FZ_CHECK(s.sha_running, "sha256_finish without sha256_start");
    s.sha_running = false;
    if (prv_sha_fault() == 3u) {
        return BLE_OTA_ERR_FLASH;
    }
    fz_sha256(s.sha_buf, s.sha_len, out);
    if (prv_sha_fault() == 4u) {
        out[7] ^= 0x01u;
    }
    return BLE_OTA_OK;
}

static int prv_no_slot_begin(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target)
{
    (void)ctx;
    (void)image_size;
    (void)target;
    fz_fail("the boot check opened the update slot");
}

static int prv_no_slot_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    fz_fail("the boot check wrote to the update slot");
}

static int prv_no_slot_call(void *ctx)
{
    (void)ctx;
    fz_fail("the boot check ended or switched the update slot");
}

static void prv_no_slot_abort(void *ctx)
{
    (void)ctx;
    fz_fail("the boot check aborted an update");
}

static int prv_no_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)conn;
    (void)chr;
    (void)data;
    (void)len;
    fz_fail("the boot check sent a notification");
}

static void prv_no_restart(void *ctx, uint32_t delay_ms)
{
    (void)ctx;
    (void)delay_ms;
    fz_fail("the boot check scheduled a restart (a rollback restarts through reject_running)");
}

static uint32_t prv_now_ms(void *ctx)
{
    (void)ctx;
    return 0u;
}

static void prv_log(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap)
{
    char line[512];

    (void)ctx;
    (void)level;
    (void)tag;
    vsnprintf(line, sizeof(line), fmt, ap); /* a bad argument list is a sanitizer report */
}

static void prv_nothing(void *ctx)
{
    (void)ctx;
}

static void prv_wait(void *ctx, uint32_t timeout_ms)
{
    (void)ctx;
    (void)timeout_ms;
}

static void prv_setup_once(void)
{
    char err[256];

    if (s.ready) {
        return;
    }
    s.flash.fd = -1;
    s.flash.journal_fd = -1;
    s.flash.size = HOST_FLASH_SIZE_4MB;
    s.flash.mem = malloc(s.flash.size);
    FZ_CHECK(s.flash.mem != NULL, "out of memory");
    memset(s.flash.mem, 0xFF, s.flash.size);
    s.flash.on_power_cut = prv_power_cut;
    s.dev.flash = &s.flash;
    FZ_CHECK(host_ptable_parse_csv(host_partitions_csv, &s.dev.table, err, sizeof(err)) == 0, "partitions.csv: %s",
             err);
    s.dev.otadata = host_ptable_find(&s.dev.table, PART_TYPE_DATA, PART_SUBTYPE_DATA_OTA);
    s.dev.ota_count = host_ptable_ota_count(&s.dev.table);
    FZ_CHECK(s.dev.otadata != NULL && s.dev.ota_count == SLOTS, "partitions.csv needs otadata and two OTA slots");
    s.chip = host_chip_by_name("esp32");
    s.port = (ble_ota_port_t){
        .slot_begin = prv_no_slot_begin,
        .slot_write = prv_no_slot_write,
        .slot_end = prv_no_slot_call,
        .slot_abort = prv_no_slot_abort,
        .slot_set_boot = prv_no_slot_call,
        .get_running_slot = prv_get_running_slot,
        .confirm_running = prv_confirm_running,
        .reject_running = prv_reject_running,
        .app_version = prv_app_version,
        .chip_name = prv_chip_name,
        .notify = prv_no_notify,
        .now_ms = prv_now_ms,
        .log = prv_log,
        .schedule_restart = prv_no_restart,
        .lock = prv_nothing,
        .unlock = prv_nothing,
        .writer_wake = prv_nothing,
        .writer_wait = prv_wait,
        .sha256_start = prv_sha256_start,
        .sha256_update = prv_sha256_update,
        .sha256_finish = prv_sha256_finish,
    };
    s.ready = true;
}

/* One otadata entry from 3 input bytes: seq (0xFF: erased), state, CRC (0 right, 1 wrong, 2 the
 * whole entry erased). */
static void prv_put_entry(int index, const uint8_t *in)
{
    static const uint32_t states[] = { ESP_OTA_IMG_NEW,     ESP_OTA_IMG_PENDING_VERIFY, ESP_OTA_IMG_VALID,
                                       ESP_OTA_IMG_INVALID, ESP_OTA_IMG_ABORTED,        ESP_OTA_IMG_UNDEFINED };
    esp_ota_select_entry_t e;

    memset(&e, 0xFF, sizeof(e));
    if (in[2] % 3u != 2u) {
        e.ota_seq = in[0] == 0xFFu ? UINT32_MAX : in[0];
        e.ota_state = in[1] < 6u ? states[in[1]] : in[1];
        e.crc = host_ota_select_crc(&e) ^ (in[2] % 3u == 1u ? 0x1u : 0x0u);
    }
    FZ_CHECK(host_otadata_write(&s.dev, index, &e) == 0, "%s", s.flash.error);
}

/* After a boot check, and whatever it did: the next boot must find an app. */
static void prv_check_bootable(const char *after)
{
    FZ_CHECK(prv_any_loadable(), "no bootable slot left after %s", after);
}

static void prv_boot(uint8_t a, uint8_t b)
{
    static volatile bool cut;
    int slot;
    ble_ota_boot_result_t result;
    unsigned at = (b >> 1) & 7u;

    s.a = a;
    s.b = b;
    cut = false;
    s.flash.power_cut_at = at != 0u ? s.flash.ops + at : 0u;
    s.flash.power_cut_torn = (b & B_TORN) != 0u;
    if (setjmp(s.power_jmp) != 0) {
        cut = true; /* the boot ended mid-way: the next one starts from this flash */
    }
    if (cut) {
        s.flash.power_cut_at = 0;
        s.sha_running = false;
        return;
    }
    slot = prv_bootloader();
    FZ_CHECK(slot >= 0, "no bootable slot at boot (the previous boot check left none)");
    s.running = slot;
    s.state_at_boot = prv_state(slot);
    s.get_running_calls = 0;
    s.confirm_calls = 0;
    s.reject_calls = 0;
    s.confirm_rc = BLE_OTA_OK;
    s.sha_running = false;
    s.expect_pass = (a & (A_FORCE_FAIL | A_EMPTY_VERSION | A_EMPTY_CHIP)) == 0u &&
                    (prv_sha_fault() == 0u || prv_sha_fault() > 4u) && (a >> 6) == 0u;
    if ((b & B_INIT_REFUSED) != 0u) {
        ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;
        cfg.trusted_key_digests = "not a key digest";
        FZ_CHECK(ble_ota_init(&s.port, &cfg) != BLE_OTA_OK, "ble_ota_init took a malformed key digest list");
        result = ble_ota_boot_check((a & A_FORCE_FAIL) != 0u);
        s.flash.power_cut_at = 0;
        FZ_CHECK(result == BLE_OTA_BOOT_ERROR && s.get_running_calls == 0u, "the boot check ran on a core that "
                 "ble_ota_init refused (result %d)", (int)result);
        prv_check_bootable("a boot check on a refused core");
        return;
    }
    FZ_CHECK(ble_ota_init(&s.port, NULL) == BLE_OTA_OK, "ble_ota_init refused the boot port");
    if (setjmp(s.reboot_jmp) != 0) {
        /* reject_running rolled back and restarted the chip */
        FZ_CHECK(s.reject_calls == 1u, "rolled back %u times", (unsigned)s.reject_calls);
        s.flash.power_cut_at = 0;
        prv_check_bootable("a rollback");
        return;
    }
    result = ble_ota_boot_check((a & A_FORCE_FAIL) != 0u);
    s.flash.power_cut_at = 0;

    FZ_CHECK(!s.sha_running, "the self-test left a SHA-256 digest running");
    switch (result) {
    case BLE_OTA_BOOT_ERROR:
        FZ_CHECK((a >> 6) == 1u || (a >> 6) == 3u, "BOOT_ERROR, yet the running slot could be read");
        break;
    case BLE_OTA_BOOT_NOT_PENDING:
        FZ_CHECK(s.state_at_boot != BLE_OTA_SLOT_STATE_PENDING_VERIFY, "a PENDING_VERIFY image was left unverified "
                 "(NOT_PENDING)");
        break;
    case BLE_OTA_BOOT_CONFIRMED:
        FZ_CHECK(s.confirm_calls == 1u && s.confirm_rc == BLE_OTA_OK, "CONFIRMED without a successful confirm");
        FZ_CHECK(prv_state(s.running) == BLE_OTA_SLOT_STATE_VALID, "CONFIRMED, yet otadata says %s for the running "
                 "slot", ble_ota_slot_state_name(prv_state(s.running)));
        break;
    case BLE_OTA_BOOT_CONFIRM_FAILED:
        FZ_CHECK(s.confirm_calls == 1u && s.confirm_rc != BLE_OTA_OK, "CONFIRM_FAILED without a failed confirm");
        break;
    case BLE_OTA_BOOT_ROLLBACK_FAILED:
        FZ_CHECK(s.reject_calls == 1u, "ROLLBACK_FAILED without a rollback attempt");
        FZ_CHECK(prv_state(s.running) == BLE_OTA_SLOT_STATE_PENDING_VERIFY, "a failed rollback changed the running "
                 "image's state to %s", ble_ota_slot_state_name(prv_state(s.running)));
        break;
    default:
        fz_fail("ble_ota_boot_check returned %d", (int)result);
    }
    if (result != BLE_OTA_BOOT_CONFIRMED && result != BLE_OTA_BOOT_CONFIRM_FAILED) {
        FZ_CHECK(s.confirm_calls == 0u, "confirm_running called, yet the result is %d", (int)result);
    }
    if (result != BLE_OTA_BOOT_ROLLBACK_FAILED) {
        FZ_CHECK(s.reject_calls == 0u, "reject_running called, yet the result is %d", (int)result);
    }
    if (s.state_at_boot == BLE_OTA_SLOT_STATE_PENDING_VERIFY && result != BLE_OTA_BOOT_ERROR) {
        FZ_CHECK(s.confirm_calls + s.reject_calls == 1u, "a PENDING_VERIFY image was neither confirmed nor rejected");
    }
    prv_check_bootable("the boot check");
}

/* esp_ota_begin/write/end/set_boot_partition into the slot that is not running. */
static void prv_install(uint8_t a, uint8_t b)
{
    static volatile bool cut;
    int kind = (a & 3u) == 3u ? IMG_GOOD : (int)(a & 3u);
    unsigned at = (a >> 2) & 7u;
    int target;
    char err[200];

    if (s.running < 0 || prv_state(s.running) == BLE_OTA_SLOT_STATE_PENDING_VERIFY) {
        return; /* esp_ota_begin refuses while the running image is unconfirmed */
    }
    target = s.running ^ 1;
    cut = false;
    s.flash.power_cut_at = at != 0u ? s.flash.ops + at : 0u;
    s.flash.power_cut_torn = (a & 0x20u) != 0u;
    if (setjmp(s.power_jmp) != 0) {
        cut = true;
    }
    if (!cut) {
        (void)host_ota_invalidate_inactive(&s.dev, s.running);
        prv_put_image(target, kind, b);
        /* esp_ota_set_boot_partition verifies the image first: only a loadable one is set. */
        if (kind == IMG_GOOD) {
            (void)host_ota_set_boot(&s.dev, target, err, sizeof(err));
        }
    }
    s.flash.power_cut_at = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t h[HEADER_LEN] = { 0 };

    prv_setup_once();
    memcpy(h, data, size < HEADER_LEN ? size : HEADER_LEN);
    s.anti_rollback = (h[0] & 1u) != 0u;
    s.efuse_min = h[1];
    s.running = -1;
    s.flash.power_cut_at = 0;
    for (int slot = 0; slot < SLOTS; slot++) {
        prv_put_image(slot, h[2 + 2 * slot] % 3u, h[3 + 2 * slot]);
    }
    prv_put_entry(0, &h[6]);
    prv_put_entry(1, &h[9]);
    if (!prv_any_loadable()) {
        return 0; /* a device with nothing to boot is not a boot-check case */
    }
    for (size_t pos = HEADER_LEN, n = 0; pos + STEP_LEN <= size && n < MAX_STEPS; pos += STEP_LEN, n++) {
        if (data[pos] % 2u == 0u) {
            prv_boot(data[pos + 1u], data[pos + 2u]);
        } else {
            prv_install(data[pos + 1u], data[pos + 2u]);
        }
    }
    return 0;
}
