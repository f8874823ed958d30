/*
 * The GATT fuzz harness (gatt_harness.h): a fake port on the host's NOR flash emulation, the
 * replay of a recorded session, and the invariants (README.md) checked while it runs.
 *
 * The fake port checks nothing of security on its own (no signature or secure_version check in
 * slot_end, unlike esp_ota_end and the host port): every refusal the fuzzer meets is the
 * core's, and the oracles below judge the core alone.
 */
#include "gatt_harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <openssl/evp.h>

#include "ble_ota.h"
#include "ble_ota_port.h"
#include "esp_format.h"
#include "flash.h"
#include "fuzz_common.h"
#include "image.h"
#include "chip.h"
#include "otadata.h"
#include "parttable.h"

#define SECTOR 4096u
#define BLOCK 65536u
#define CONNS 4u
#define MAX_NOTES 256u
#define MAX_BEGINS 64u
#define DRAIN_LIMIT 100000u
#define SIG_BLOCK_LEN 1216u
#define UPDATE_SLOT 1 /* the device runs from ota_0 and updates ota_1 */

static const char *const k_versions[] = { "1.2.0", "1.2.0-rc1", "abc", "0.1" };

typedef struct {
    uint16_t conn;
    uint8_t flags;
    uint32_t image_size;
    uint8_t sha[32];
} begin_t;

static struct {
    bool ready;
    host_flash_t flash;
    host_dev_t dev;
    const host_part_t *slot;
    uint8_t otadata0[2 * SECTOR]; /* otadata as every input starts with it */
    bool *erased;                 /* per sector of the slot: erased since the slot was opened */
    uint8_t *programmed;          /* per byte of the slot (bit): written since its sector was erased */
    uint8_t *bl_stream;           /* the baseline image bytes the core took since the last REQUEST */
    uint32_t touched_lo;
    uint32_t touched_hi;
    EVP_MD_CTX *sha;

    /* configuration of this input */
    uint8_t header[FZ_HEADER_LEN];
    ble_ota_port_t port;
    ble_ota_port_v2_t v2;
    ble_ota_config_t cfg;
    char pin[65];
    ble_ota_security_t sec;
    const host_chip_t *chip;
    const char *version;
    uint32_t fault_calls[FZ_FAULT_COUNT];

    /* the device */
    bool in_writer;
    int lock_depth;
    uint32_t now;
    bool restart_pending;
    uint32_t restart_at;      /* the clock the scheduled restart happens at */
    bool installed;           /* an image was made the boot image; the restart is pending */
    uint32_t restarts;
    bool connected[CONNS];
    uint32_t progress_ms[CONNS]; /* connect, or the core last took image data from the link */
    bool dropping[CONNS];        /* the core asked the port to drop the link */

    /* the slot as the port sees it */
    bool open;
    bool v2_mode;             /* opened by slot_open (random access), not slot_begin */
    uint32_t image_size;      /* slot_open's, or the slot size for the baseline */
    uint32_t wrote;           /* baseline: sequential write position */
    uint32_t extent;          /* end of the furthest write since the slot was opened */
    bool short_written;       /* a write of less than 16 bytes: the image's last */
    bool finished;            /* slot_end succeeded, slot_set_boot may follow */
    uint32_t finished_extent;
    bool sha_running;
    z_stream zs;
    bool zs_running;
    uint8_t zout[4096];

    /* what the oracles follow */
    bool manifest_ok;         /* this writer step verified a manifest block an oracle trusts */
    uint32_t v2_opens;        /* successful slot_open calls in this writer step */
    bool boot_set_step;       /* slot_set_boot succeeded in this writer step */
    ble_ota_v2_status_t st_before; /* v2 status when this writer step began */
    begin_t begins[MAX_BEGINS]; /* BEGINs queued for the writer, oldest first */
    uint32_t n_begins;
    bool model_exists;        /* the v2 session, as the BEGIN_RSP OKs say */
    begin_t model;
    uint32_t bl_len;

    fz_note_t notes[MAX_NOTES];
    uint32_t n_notes;
    uint8_t read_value[520];
    size_t read_len;
    int last_att;
} g;

/* --- helpers ------------------------------------------------------------ */

static bool prv_fault(int kind)
{
    uint8_t at = g.header[5];

    if (g.header[4] != kind) {
        return false;
    }
    g.fault_calls[kind]++;
    return at != 0u && g.fault_calls[kind] == at;
}

static void prv_writer_only(const char *what)
{
    FZ_CHECK(g.in_writer, "%s was called from the BLE context; only ble_ota_writer_run_once may call it", what);
    FZ_CHECK(g.lock_depth == 0, "%s was called with the port lock held (the lock is never held across flash work)",
             what);
}

static void prv_touch(uint32_t off, uint32_t len)
{
    if (off < g.touched_lo) {
        g.touched_lo = off;
    }
    if (off + len > g.touched_hi) {
        g.touched_hi = off + len;
    }
}

static bool prv_programmed(uint32_t i)
{
    return (g.programmed[i / 8u] >> (i % 8u)) & 1u;
}

/* Erases [off, off + len) of the slot; the caller checked the range. */
static void prv_erase(uint32_t off, uint32_t len)
{
    FZ_CHECK(host_flash_erase(&g.flash, g.slot->offset + off, len) == 0, "flash emulation refused an erase: %s",
             g.flash.error);
    for (uint32_t s = off / SECTOR; s < (off + len) / SECTOR; s++) {
        g.erased[s] = true;
    }
    memset(&g.programmed[off / 8u], 0, len / 8u);
    prv_touch(off, len);
}

/* NOR rules as the core must respect them: only bytes erased since the slot was opened and not
 * written since, all inside the slot. */
static void prv_write(uint32_t off, const uint8_t *data, size_t len)
{
    FZ_CHECK((uint64_t)off + len <= g.slot->size, "write of %zu bytes at slot offset %u runs past the %u-byte slot",
             len, (unsigned)off, (unsigned)g.slot->size);
    for (size_t i = 0; i < len; i++) {
        uint32_t at = off + (uint32_t)i;
        FZ_CHECK(g.erased[at / SECTOR], "NOR: write at slot offset %u into sector %u, which was not erased since the "
                 "slot was opened", (unsigned)at, (unsigned)(at / SECTOR));
        FZ_CHECK(!prv_programmed(at), "NOR: slot offset %u written twice without an erase between", (unsigned)at);
    }
    FZ_CHECK(host_flash_write(&g.flash, g.slot->offset + off, data, len) == 0, "flash emulation refused a write: %s",
             g.flash.error);
    for (size_t i = 0; i < len; i++) {
        uint32_t at = off + (uint32_t)i;
        g.programmed[at / 8u] |= (uint8_t)(1u << (at % 8u));
    }
    if (off + len > g.extent) {
        g.extent = off + (uint32_t)len;
    }
    prv_touch(off, (uint32_t)len);
}

static void prv_open_slot(bool v2_mode, uint32_t image_size)
{
    g.open = true;
    g.v2_mode = v2_mode;
    g.image_size = image_size;
    g.wrote = 0;
    g.extent = 0;
    g.short_written = false;
    g.finished = false;
    memset(g.erased, 0, g.slot->size / SECTOR);
}

static void prv_fill_target(ble_ota_slot_info_t *target)
{
    memset(target, 0, sizeof(*target));
    snprintf(target->label, sizeof(target->label), "%s", g.slot->label);
    target->address = g.slot->offset;
    target->size = g.slot->size;
    target->state = BLE_OTA_SLOT_STATE_UNDEFINED;
}

static bool prv_key_trusted(const uint8_t key_digest[32])
{
    uint8_t d[32];

    if ((g.header[3] & 0x20u) != 0u) {
        return false; /* trusted_keys() fails: nothing is trusted */
    }
    for (int k = 0; k < FZ_KEY_COUNT; k++) {
        if ((g.header[3] & (1u << k)) == 0u) {
            continue;
        }
        fz_key_digest(k, d);
        if (memcmp(d, key_digest, 32) == 0) {
            int pin = g.header[0] >> FZ_F_PIN_SHIFT;
            return pin == 0 || (pin == 1 && k == FZ_KEY_A) || (pin == 2 && k == FZ_KEY_B);
        }
    }
    return false;
}

/* What the oracle takes of one signature block, the digest check aside: Secure Boot v2 magic,
 * a P-256 key for ECDSA, a trusted (and pinned) key, a CRC that holds, a fake signature. */
static bool prv_block_acceptable(const uint8_t *block, const uint8_t digest[32])
{
    uint8_t key_digest[32];
    size_t key_len;

    if (block[0] != 0xE7u || (block[1] != 0x02u && block[1] != 0x03u)) {
        return false;
    }
    if (block[1] == 0x03u && block[36] != 2u) {
        return false;
    }
    key_len = block[1] == 0x02u ? FZ_RSA_KEY_LEN : FZ_ECDSA_KEY_LEN;
    fz_sha256(block + 36, key_len, key_digest);
    return prv_key_trusted(key_digest) && fz_u32(block + 1196) == (uint32_t)crc32(0u, block, 1196) &&
           fz_fake_signature_holds(block, digest);
}

/* Whether the first len bytes of the slot are an image signed as Secure Boot v2 wants it: a
 * last 4 KB sector whose blocks (as many as the platform reads) hold one by a trusted key over
 * the SHA-256 of everything before the sector. */
static bool prv_oracle_signed(uint32_t len)
{
    const uint8_t *img = host_flash_peek(&g.flash, g.slot->offset, len);
    uint32_t limit = (g.header[3] >> 3) & 3u;
    uint8_t digest[32];

    if (img == NULL || len < 2u * SECTOR || len % SECTOR != 0u) {
        return false;
    }
    fz_sha256(img, len - SECTOR, digest);
    if (limit == 0u) {
        limit = 3u;
    }
    for (uint32_t i = 0; i < limit; i++) {
        const uint8_t *block = img + len - SECTOR + i * SIG_BLOCK_LEN;
        if (block[0] != 0xE7u) {
            break;
        }
        if (memcmp(block + 4, digest, 32) == 0 && prv_block_acceptable(block, digest)) {
            return true;
        }
    }
    return false;
}

/* The checks the core owes before an image may boot, made again on what lies in flash. */
static void prv_oracle_boot(uint32_t len, bool downgrade_asked)
{
    const uint8_t *desc = host_flash_peek(&g.flash, g.slot->offset + 32u, 48u);
    int order = 0;

    if (g.sec.signed_only) {
        FZ_CHECK(prv_oracle_signed(len), "signed updates only, yet a %u-byte image without a trusted signature was "
                 "made the boot image", (unsigned)len);
    }
    if (desc == NULL || fz_u32(desc) != ESP_APP_DESC_MAGIC_WORD) {
        return; /* slot_end's image check refused it before this could matter */
    }
    FZ_CHECK(!g.sec.anti_rollback || fz_u32(desc + 4) >= g.sec.min_secure_version,
             "anti-rollback: an image with secure_version %u (minimum %u) was made the boot image",
             (unsigned)fz_u32(desc + 4), (unsigned)g.sec.min_secure_version);
    if (ble_ota_version_compare((const char *)desc + 16, 32u, g.version, strlen(g.version), &order) && order < 0) {
        FZ_CHECK(g.sec.allow_downgrade && downgrade_asked, "app version %.32s, older than the running %s, was made "
                 "the boot image without the downgrade being allowed and asked for", (const char *)desc + 16,
                 g.version);
    }
}

/* --- the fake port ------------------------------------------------------ */

static int prv_slot_begin(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target)
{
    (void)ctx;
    prv_writer_only("slot_begin");
    FZ_CHECK(!g.open, "slot_begin while the update slot is still open (no slot_end or slot_abort since)");
    FZ_CHECK(!g.installed, "slot_begin after an image was installed in the update slot, before the restart: it "
             "erases the image the device was told to boot (DONE_ACK / END_RSP OK were sent)");
    FZ_CHECK((g.header[0] & FZ_F_NO_BASELINE) == 0u, "slot_begin on a firmware built without the baseline protocol");
    if (prv_fault(FZ_FAULT_OPEN)) {
        return BLE_OTA_ERR_FLASH;
    }
    (void)image_size;
    prv_open_slot(false, g.slot->size);
    prv_fill_target(target);
    return BLE_OTA_OK;
}

/* esp_ota_write with OTA_WITH_SEQUENTIAL_WRITES: the first byte must be the image magic, each
 * sector is erased when the writes reach it. */
static int prv_slot_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    prv_writer_only("slot_write");
    FZ_CHECK(g.open && !g.v2_mode, "slot_write without a slot opened by slot_begin");
    FZ_CHECK(len >= 1u && len <= BLE_OTA_MAX_PACKET, "slot_write of %zu bytes (1..%u allowed)", len,
             (unsigned)BLE_OTA_MAX_PACKET);
    if (g.wrote == 0u && data[0] != 0xE9u) {
        return BLE_OTA_ERR_INVALID_IMAGE;
    }
    if ((uint64_t)g.wrote + len > g.slot->size) {
        return BLE_OTA_ERR_TOO_LARGE;
    }
    for (uint32_t s = g.wrote / SECTOR; s <= (g.wrote + (uint32_t)len - 1u) / SECTOR; s++) {
        if (!g.erased[s]) {
            if (prv_fault(FZ_FAULT_ERASE)) {
                return BLE_OTA_ERR_FLASH;
            }
            prv_erase(s * SECTOR, SECTOR);
        }
    }
    if (prv_fault(FZ_FAULT_WRITE)) {
        return BLE_OTA_ERR_FLASH;
    }
    prv_write(g.wrote, data, len);
    g.wrote += (uint32_t)len;
    return BLE_OTA_OK;
}

static int prv_slot_end(void *ctx)
{
    host_image_info_t info;
    char err[200];

    (void)ctx;
    prv_writer_only("slot_end");
    FZ_CHECK(g.open, "slot_end without an open slot");
    g.open = false;
    if (prv_fault(FZ_FAULT_END)) {
        return BLE_OTA_ERR_FLASH;
    }
    if (g.extent == 0u) {
        return BLE_OTA_ERR_FLASH; /* esp_ota_end: ESP_ERR_INVALID_ARG */
    }
    if (host_image_verify(&g.flash, g.slot->offset, g.slot->size, g.chip, HOST_IMAGE_VERIFY_SILENT, &info, err,
                          sizeof(err)) != 0) {
        return BLE_OTA_ERR_INVALID_IMAGE;
    }
    g.finished = true;
    g.finished_extent = g.extent;
    return BLE_OTA_OK;
}

static void prv_slot_abort(void *ctx)
{
    (void)ctx;
    prv_writer_only("slot_abort");
    g.open = false;
}

static int prv_slot_set_boot(void *ctx)
{
    char err[200];

    (void)ctx;
    prv_writer_only("slot_set_boot");
    FZ_CHECK(g.finished, "slot_set_boot without a successful slot_end before it");
    g.finished = false;
    if (prv_fault(FZ_FAULT_SET_BOOT)) {
        return BLE_OTA_ERR_FLASH;
    }
    prv_oracle_boot(g.finished_extent, !g.v2_mode || (g.model_exists && (g.model.flags & BLE_OTA_V2_BEGIN_ALLOW_DOWNGRADE)));
    FZ_CHECK(host_ota_set_boot(&g.dev, UPDATE_SLOT, err, sizeof(err)) == 0, "otadata: %s", err);
    g.boot_set_step = true;
    g.installed = true;
    return BLE_OTA_OK;
}

static int prv_get_running_slot(void *ctx, ble_ota_slot_info_t *out)
{
    const host_part_t *p = host_ptable_ota(&g.dev.table, 0);

    (void)ctx;
    memset(out, 0, sizeof(*out));
    snprintf(out->label, sizeof(out->label), "%s", p->label);
    out->address = p->offset;
    out->size = p->size;
    out->state = BLE_OTA_SLOT_STATE_VALID;
    return BLE_OTA_OK;
}

static int prv_confirm_running(void *ctx)
{
    (void)ctx;
    fz_fail("confirm_running called outside the boot check");
}

static int prv_reject_running(void *ctx)
{
    (void)ctx;
    fz_fail("reject_running called outside the boot check");
}

static const char *prv_app_version(void *ctx)
{
    (void)ctx;
    return g.version;
}

static const char *prv_chip_name(void *ctx)
{
    (void)ctx;
    return g.chip->model;
}

static void prv_on_notify(uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len);

static int prv_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    (void)ctx;
    FZ_CHECK(chr == BLE_OTA_CHR_OTA_CONTROL || chr == BLE_OTA_CHR_V2_CONTROL,
             "notification on characteristic %d, which has no notify property", (int)chr);
    FZ_CHECK(len >= 1u && len <= 512u, "notification of %zu bytes", len);
    if (g.n_notes < MAX_NOTES) {
        fz_note_t *n = &g.notes[g.n_notes++];
        n->conn = conn;
        n->chr = (uint8_t)chr;
        n->len = (uint8_t)(len < 255u ? len : 255u);
        memcpy(n->data, data, len < sizeof(n->data) ? len : sizeof(n->data));
    }
    prv_on_notify(conn, chr, data, len);
    return prv_fault(FZ_FAULT_NOTIFY) ? BLE_OTA_ERR_STATE : BLE_OTA_OK;
}

static uint32_t prv_now_ms(void *ctx)
{
    (void)ctx;
    return g.now;
}

static void prv_log(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap)
{
    static int verbose = -1;
    char line[512];

    (void)ctx;
    /* Formatted always, so that a bad argument list is a sanitizer report. */
    vsnprintf(line, sizeof(line), fmt, ap);
    if (verbose < 0) {
        verbose = getenv("FZ_LOG") != NULL;
    }
    if (verbose) {
        fprintf(stderr, "%c %s: %s\n", "?EWIDV"[level <= 5 ? level : 0], tag, line);
    }
}

static void prv_schedule_restart(void *ctx, uint32_t delay_ms)
{
    (void)ctx;
    prv_writer_only("schedule_restart");
    g.restart_pending = true;
    g.restart_at = g.now + delay_ms;
    g.restarts++;
}

static void prv_lock(void *ctx)
{
    (void)ctx;
    FZ_CHECK(g.lock_depth == 0, "the port lock was taken twice (a FreeRTOS mutex deadlocks there)");
    g.lock_depth++;
}

static void prv_unlock(void *ctx)
{
    (void)ctx;
    FZ_CHECK(g.lock_depth == 1, "the port lock was released without being held");
    g.lock_depth--;
}

static void prv_writer_wake(void *ctx)
{
    (void)ctx;
}

static void prv_writer_wait(void *ctx, uint32_t timeout_ms)
{
    (void)ctx;
    g.now += timeout_ms;
}

static int prv_sha256_start(void *ctx)
{
    (void)ctx;
    prv_writer_only("sha256_start");
    FZ_CHECK(!g.sha_running, "sha256_start while another digest runs (the port has one digest at a time)");
    if (prv_fault(FZ_FAULT_SHA_START)) {
        return BLE_OTA_ERR_NO_MEM;
    }
    FZ_CHECK(EVP_DigestInit_ex(g.sha, EVP_sha256(), NULL) == 1, "OpenSSL SHA-256 init failed");
    g.sha_running = true;
    return BLE_OTA_OK;
}

static int prv_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    prv_writer_only("sha256_update");
    FZ_CHECK(g.sha_running, "sha256_update without sha256_start");
    FZ_CHECK(EVP_DigestUpdate(g.sha, data, len) == 1, "OpenSSL SHA-256 update failed");
    return BLE_OTA_OK;
}

static int prv_sha256_finish(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    unsigned int n = 32;

    (void)ctx;
    prv_writer_only("sha256_finish");
    FZ_CHECK(g.sha_running, "sha256_finish without sha256_start");
    FZ_CHECK(EVP_DigestFinal_ex(g.sha, out, &n) == 1, "OpenSSL SHA-256 final failed");
    g.sha_running = false;
    return BLE_OTA_OK;
}

/* NimBLE's ble_gap_terminate: the disconnect event follows (prv_step delivers it). */
static int prv_disconnect(void *ctx, uint16_t conn)
{
    uint32_t i = (uint32_t)conn - 1u;

    (void)ctx;
    prv_writer_only("disconnect");
    FZ_CHECK(conn >= 1u && conn <= CONNS && g.connected[i], "disconnect of connection %u, which is not up",
             (unsigned)conn);
    FZ_CHECK(!g.dropping[i], "disconnect of connection %u twice", (unsigned)conn);
    FZ_CHECK(g.cfg.idle_timeout_ms != 0u && g.now - g.progress_ms[i] >= g.cfg.idle_timeout_ms,
             "connection %u dropped as idle after %u ms without progress (idle timeout %u ms)", (unsigned)conn,
             (unsigned)(g.now - g.progress_ms[i]), (unsigned)g.cfg.idle_timeout_ms);
    if (prv_fault(FZ_FAULT_DISCONNECT)) {
        return BLE_OTA_ERR_STATE;
    }
    g.dropping[i] = true;
    return BLE_OTA_OK;
}

/* --- v2 ----------------------------------------------------------------- */

static int prv_running_sha256(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    fz_gatt_running_sha256(out);
    return BLE_OTA_OK;
}

static uint16_t prv_chip_id(void *ctx)
{
    (void)ctx;
    return g.chip->chip_id;
}

static uint32_t prv_slot_size(void *ctx)
{
    (void)ctx;
    return g.slot->size;
}

/* esp_ota_begin(slot, min(image_size, 64 KB)) as the IDF port calls it. */
static int prv_slot_open(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target, uint32_t *erased)
{
    uint32_t first = (image_size + SECTOR - 1u) & ~(SECTOR - 1u);

    (void)ctx;
    prv_writer_only("slot_open");
    FZ_CHECK(!g.open, "slot_open while the update slot is still open (no slot_end or slot_abort since)");
    FZ_CHECK(!g.installed, "slot_open after an image was installed in the update slot, before the restart: it "
             "erases the image the device was told to boot (DONE_ACK / END_RSP OK were sent)");
    FZ_CHECK(!g.sec.signed_only || g.manifest_ok, "signed updates only, yet slot_open (which erases the slot) ran "
             "without a manifest block by a trusted key verified for this BEGIN");
    if (prv_fault(FZ_FAULT_OPEN)) {
        return BLE_OTA_ERR_FLASH;
    }
    if (image_size == 0u || image_size > g.slot->size) {
        return BLE_OTA_ERR_TOO_LARGE;
    }
    if (first > BLOCK) {
        first = BLOCK;
    }
    prv_open_slot(true, image_size);
    prv_erase(0, first);
    prv_fill_target(target);
    *erased = first;
    g.v2_opens++;
    return BLE_OTA_OK;
}

static int prv_slot_erase(void *ctx, uint32_t offset, uint32_t len)
{
    uint32_t image_end;

    (void)ctx;
    prv_writer_only("slot_erase");
    FZ_CHECK(g.open && g.v2_mode, "slot_erase without a slot opened by slot_open");
    FZ_CHECK((len == SECTOR && offset % SECTOR == 0u) || (len == BLOCK && offset % BLOCK == 0u),
             "slot_erase of %u bytes at %u: the core erases one 4 KB sector or one aligned 64 KB block",
             (unsigned)len, (unsigned)offset);
    image_end = (g.image_size + SECTOR - 1u) & ~(SECTOR - 1u);
    FZ_CHECK((uint64_t)offset + len <= image_end, "slot_erase of [%u, %u) goes past the image's last sector (%u)",
             (unsigned)offset, (unsigned)(offset + len), (unsigned)image_end);
    if (prv_fault(FZ_FAULT_ERASE)) {
        return BLE_OTA_ERR_FLASH;
    }
    prv_erase(offset, len);
    return BLE_OTA_OK;
}

static int prv_slot_write_at(void *ctx, uint32_t offset, const uint8_t *data, size_t len)
{
    (void)ctx;
    prv_writer_only("slot_write_at");
    FZ_CHECK(g.open && g.v2_mode, "slot_write_at without a slot opened by slot_open");
    FZ_CHECK(len > 0u && offset % 16u == 0u, "slot_write_at of %zu bytes at %u: writes start on 16 bytes", len,
             (unsigned)offset);
    FZ_CHECK(!g.short_written, "slot_write_at after a write of less than 16 bytes (only the image's last may be)");
    FZ_CHECK((uint64_t)offset + len <= g.image_size, "slot_write_at of [%u, %u) goes past the image (%u bytes)",
             (unsigned)offset, (unsigned)(offset + len), (unsigned)g.image_size);
    if (prv_fault(FZ_FAULT_WRITE)) {
        return BLE_OTA_ERR_FLASH;
    }
    prv_write(offset, data, len);
    g.short_written = len % 16u != 0u;
    return BLE_OTA_OK;
}

static uint32_t prv_crc32(void *ctx, uint32_t crc, const uint8_t *data, size_t len)
{
    (void)ctx;
    return (uint32_t)crc32(crc, data, (uInt)len);
}

static void prv_inflate_finish(void *ctx)
{
    (void)ctx;
    if (g.zs_running) {
        inflateEnd(&g.zs);
        g.zs_running = false;
    }
}

static int prv_inflate_start(void *ctx)
{
    (void)ctx;
    prv_writer_only("inflate_start");
    FZ_CHECK(!g.zs_running, "inflate_start while a stream is running (one at a time)");
    if (prv_fault(FZ_FAULT_INFLATE)) {
        return BLE_OTA_ERR_NO_MEM;
    }
    memset(&g.zs, 0, sizeof(g.zs));
    FZ_CHECK(inflateInit(&g.zs) == Z_OK, "zlib inflateInit failed");
    g.zs_running = true;
    return BLE_OTA_OK;
}

/* As the host port does it (port_host.c), over zlib. */
static int prv_inflate_update(void *ctx, const uint8_t **in, size_t *in_len, const uint8_t **out, size_t *out_len)
{
    int zrc;

    (void)ctx;
    prv_writer_only("inflate_update");
    FZ_CHECK(g.zs_running, "inflate_update without inflate_start");
    g.zs.next_in = (Bytef *)*in;
    g.zs.avail_in = (uInt)*in_len;
    g.zs.next_out = g.zout;
    g.zs.avail_out = sizeof(g.zout);
    zrc = inflate(&g.zs, Z_NO_FLUSH);
    *in += *in_len - g.zs.avail_in;
    *in_len = g.zs.avail_in;
    *out = g.zout;
    *out_len = sizeof(g.zout) - g.zs.avail_out;
    if (zrc == Z_STREAM_END) {
        return BLE_OTA_INFLATE_DONE;
    }
    if (zrc == Z_OK || (zrc == Z_BUF_ERROR && *out_len == 0u)) {
        return BLE_OTA_OK;
    }
    return BLE_OTA_ERR_INVALID_ARG;
}

static int prv_link_request(void *ctx, uint16_t conn, const ble_ota_link_request_t *req)
{
    (void)ctx;
    FZ_CHECK(!g.in_writer, "link_request from the writer (it belongs to the BLE context)");
    FZ_CHECK(conn >= 1u && conn <= CONNS && g.connected[conn - 1u], "link_request for connection %u, which is not up",
             (unsigned)conn);
    if (req->kind == BLE_OTA_LINK_PHY && g.chip->chip_id == 0u) {
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    return BLE_OTA_OK;
}

static void prv_security(void *ctx, ble_ota_security_t *out)
{
    (void)ctx;
    *out = g.sec;
}

static int prv_trusted_keys(void *ctx, ble_ota_trust_t *out)
{
    (void)ctx;
    prv_writer_only("trusted_keys");
    memset(out, 0, sizeof(*out));
    if ((g.header[3] & 0x20u) != 0u) {
        return BLE_OTA_ERR_FLASH;
    }
    for (int k = 0; k < FZ_KEY_COUNT; k++) {
        if ((g.header[3] & (1u << k)) != 0u) {
            fz_key_digest(k, out->digests[out->count++]);
        }
    }
    out->blocks_checked = (g.header[3] >> 3) & 3u;
    return BLE_OTA_OK;
}

static int prv_sha256_buf(void *ctx, const uint8_t *data, size_t len, uint8_t out[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    prv_writer_only("sha256_buf");
    fz_sha256(data, len, out);
    return BLE_OTA_OK;
}

static int prv_verify_block(void *ctx, const uint8_t *block, const uint8_t digest[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    prv_writer_only("verify_block");
    if (block[1] != 0x02u && block[1] != 0x03u) {
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    if (!fz_fake_signature_holds(block, digest)) {
        return BLE_OTA_ERR_BAD_SIGNATURE;
    }
    /* The core asks only for blocks it has found trusted, pinned and undamaged: if this one is
     * not, the core is about to take a signature it must not. */
    FZ_CHECK(prv_block_acceptable(block, digest), "the core had a signature block verified that is by an untrusted "
             "or unpinned key, or damaged (magic %02x, version %02x): it would be taken", block[0], block[1]);
    g.manifest_ok = true;
    return BLE_OTA_OK;
}

static int prv_slot_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    (void)ctx;
    prv_writer_only("slot_read");
    FZ_CHECK(g.open, "slot_read without an open slot");
    FZ_CHECK((uint64_t)offset + len <= g.slot->size, "slot_read of [%u, %zu) past the slot", (unsigned)offset,
             (size_t)offset + len);
    if (prv_fault(FZ_FAULT_READ)) {
        return BLE_OTA_ERR_FLASH;
    }
    FZ_CHECK(host_flash_read(&g.flash, g.slot->offset + offset, buf, len) == 0, "%s", g.flash.error);
    return BLE_OTA_OK;
}

/* --- oracles on what the core notifies ------------------------------------ */

static void prv_on_notify(uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    if (chr == BLE_OTA_CHR_OTA_CONTROL) {
        if (data[0] == BLE_OTA_OP_REQUEST_ACK) {
            FZ_CHECK(g.in_writer && g.open, "REQUEST_ACK without an open slot");
        }
        if (data[0] == BLE_OTA_OP_DONE_ACK) {
            const uint8_t *img = host_flash_peek(&g.flash, g.slot->offset, g.bl_len);
            ble_ota_status_t st;
            FZ_CHECK(g.in_writer && g.boot_set_step, "DONE_ACK without the boot slot set in the same step");
            ble_ota_get_status(&st);
            FZ_CHECK(st.bytes_written == g.bl_len, "DONE_ACK after %u image bytes written; the core took %u from "
                     "OTA Data since REQUEST", (unsigned)st.bytes_written, (unsigned)g.bl_len);
            FZ_CHECK(img != NULL && memcmp(img, g.bl_stream, g.bl_len) == 0, "DONE_ACK, but the update slot does not "
                     "hold the bytes written to OTA Data since REQUEST");
        }
        return;
    }
    if (!g.in_writer || len < 2u) {
        return; /* BLE-context answers (bad length, queue full) are followed in fz_gatt_apply */
    }
    switch (data[0]) {
    case BLE_OTA_V2_OP_BEGIN_RSP: {
        begin_t b;
        FZ_CHECK(g.n_begins > 0u, "BEGIN_RSP from the writer with no BEGIN queued");
        b = g.begins[0];
        memmove(&g.begins[0], &g.begins[1], (g.n_begins - 1u) * sizeof(begin_t));
        g.n_begins--;
        FZ_CHECK(conn == b.conn, "BEGIN_RSP to connection %u for a BEGIN of connection %u", (unsigned)conn,
                 (unsigned)b.conn);
        if (data[1] != BLE_OTA_V2_OK && data[1] != BLE_OTA_V2_FLASH_ERROR) {
            FZ_CHECK(g.v2_opens == 0u, "BEGIN refused (%s) after slot_open had erased the update slot",
                     ble_ota_v2_status_name(data[1]));
        }
        if (data[1] == BLE_OTA_V2_OK) {
            FZ_CHECK(!(g.st_before.session_held && g.st_before.owner != BLE_OTA_CONN_NONE &&
                       g.st_before.owner != conn),
                     "session lock: BEGIN_RSP OK to connection %u while connection %u owns the session",
                     (unsigned)conn, (unsigned)g.st_before.owner);
            FZ_CHECK(!g.sec.signed_only || g.manifest_ok, "signed updates only, yet BEGIN was accepted without a "
                     "manifest block by a trusted key");
            g.model = b;
            g.model_exists = true;
        }
        break;
    }
    case BLE_OTA_V2_OP_END_RSP:
        if (data[1] == BLE_OTA_V2_OK) {
            const uint8_t *img;
            uint8_t digest[32];
            FZ_CHECK(g.model_exists, "END_RSP OK with no session begun");
            FZ_CHECK(g.st_before.owner == conn, "session lock: END_RSP OK to connection %u, the session's owner is %u",
                     (unsigned)conn, (unsigned)g.st_before.owner);
            FZ_CHECK(g.boot_set_step, "END_RSP OK without the boot slot set");
            img = host_flash_peek(&g.flash, g.slot->offset, g.model.image_size);
            FZ_CHECK(img != NULL, "image larger than the flash");
            fz_sha256(img, g.model.image_size, digest);
            FZ_CHECK(memcmp(digest, g.model.sha, 32) == 0, "END_RSP OK, but the update slot does not hold the image "
                     "BEGIN named (SHA-256 differs)");
            g.model_exists = false;
        }
        break;
    case BLE_OTA_V2_OP_ABORT_RSP:
        if (data[1] == BLE_OTA_V2_OK) {
            FZ_CHECK(!(g.st_before.session_held && g.st_before.owner != conn), "session lock: ABORT_RSP OK to "
                     "connection %u dropped the session of %u", (unsigned)conn, (unsigned)g.st_before.owner);
        }
        break;
    default:
        break;
    }
}

/* --- the device ------------------------------------------------------------ */

static bool prv_step(void)
{
    ble_ota_v2_status_t st;
    bool did;

    ble_ota_v2_get_status(&g.st_before);
    g.manifest_ok = false;
    g.v2_opens = 0;
    g.boot_set_step = false;
    g.in_writer = true;
    did = ble_ota_writer_run_once(0);
    g.in_writer = false;
    FZ_CHECK(g.lock_depth == 0, "the writer returned with the port lock held");
    for (uint32_t i = 0; i < CONNS; i++) {
        if (g.dropping[i]) {
            g.dropping[i] = false;
            g.connected[i] = false;
            ble_ota_on_disconnect((uint16_t)(i + 1u));
            ble_ota_v2_get_status(&st);
            FZ_CHECK(st.owner != i + 1u, "connection %u still owns the session after its disconnect", (unsigned)(i + 1u));
        }
    }
    ble_ota_v2_get_status(&st);
    if (!st.session_held) {
        g.model_exists = false;
    }
    return did;
}

static void prv_check_idle(void)
{
    ble_ota_status_t bl;
    ble_ota_v2_status_t v2;

    ble_ota_get_status(&bl);
    ble_ota_v2_get_status(&v2);
    if (g.open) {
        FZ_CHECK(bl.slot_open || (v2.session_held && v2.failed_status == 0u), "the update slot stays open with no "
                 "session that could close it (baseline slot_open %d, v2 session %d, failed %u)", bl.slot_open,
                 v2.session_held, v2.failed_status);
    }
    FZ_CHECK(!g.sha_running || bl.slot_open || (v2.session_held && v2.failed_status == 0u),
             "a SHA-256 digest stays running with no session");
    FZ_CHECK(v2.owner == BLE_OTA_CONN_NONE || (v2.owner >= 1u && v2.owner <= CONNS && g.connected[v2.owner - 1u]),
             "session lock: connection %u owns the v2 session but is not connected", (unsigned)v2.owner);
}

static void prv_drain(void)
{
    for (uint32_t i = 0; i < DRAIN_LIMIT; i++) {
        if (!prv_step()) {
            prv_check_idle();
            return;
        }
    }
    fz_fail("the writer never goes idle (%u steps in a row did work)", (unsigned)DRAIN_LIMIT);
}

static bool prv_boot(void)
{
    int pin = g.header[0] >> FZ_F_PIN_SHIFT;

    g.cfg = (ble_ota_config_t)BLE_OTA_CONFIG_DEFAULT_INIT;
    g.cfg.disable_baseline = (g.header[0] & FZ_F_NO_BASELINE) != 0u;
    g.cfg.idle_timeout_ms = (g.header[6] & FZ_C_NO_IDLE_TIMEOUT) != 0u ? 0u : g.cfg.idle_timeout_ms;
    g.cfg.session_hold_ms = (g.header[6] & FZ_C_NO_SESSION_HOLD) != 0u ? 0u : g.cfg.session_hold_ms;
    g.cfg.refusal_backoff_max_ms = (g.header[6] & FZ_C_NO_BACKOFF) != 0u ? 0u : g.cfg.refusal_backoff_max_ms;
    if (pin == 1 || pin == 2) {
        fz_key_digest_hex(pin == 1 ? FZ_KEY_A : FZ_KEY_B, g.pin);
        g.cfg.trusted_key_digests = g.pin;
    } else if (pin == 3) {
        g.cfg.trusted_key_digests = "not-a-digest";
    }
    if (ble_ota_init(&g.port, &g.cfg) != BLE_OTA_OK) {
        FZ_CHECK(pin == 3, "ble_ota_init refused a valid configuration");
        return false;
    }
    FZ_CHECK(pin != 3, "ble_ota_init took a malformed CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS");
    if ((g.header[0] & FZ_F_V2) != 0u) {
        FZ_CHECK(ble_ota_v2_attach(&g.v2) == BLE_OTA_OK, "ble_ota_v2_attach refused the fake port");
    }
    memset(g.connected, 0, sizeof(g.connected));
    memset(g.dropping, 0, sizeof(g.dropping));
    g.open = false;
    g.finished = false;
    g.sha_running = false;
    prv_inflate_finish(NULL);
    g.n_begins = 0;
    g.model_exists = false;
    g.bl_len = 0;
    g.restart_pending = false;
    g.installed = false;
    return true;
}

static void prv_setup_once(void)
{
    char err[256];

    if (g.ready) {
        return;
    }
    g.flash.fd = -1;
    g.flash.journal_fd = -1;
    g.flash.size = HOST_FLASH_SIZE_4MB;
    g.flash.mem = malloc(g.flash.size);
    FZ_CHECK(g.flash.mem != NULL, "out of memory");
    memset(g.flash.mem, 0xFF, g.flash.size);
    g.dev.flash = &g.flash;
    FZ_CHECK(host_ptable_parse_csv(host_partitions_csv, &g.dev.table, err, sizeof(err)) == 0, "partitions.csv: %s",
             err);
    g.dev.otadata = host_ptable_find(&g.dev.table, PART_TYPE_DATA, PART_SUBTYPE_DATA_OTA);
    g.dev.ota_count = host_ptable_ota_count(&g.dev.table);
    FZ_CHECK(g.dev.otadata != NULL && g.dev.ota_count >= 2, "partitions.csv needs otadata and two OTA slots");
    g.slot = host_ptable_ota(&g.dev.table, UPDATE_SLOT);
    /* An old image in the update slot: never 0xFF, so a write the core did not erase for shows. */
    memset(g.flash.mem + g.slot->offset, 0x00, g.slot->size);
    /* otadata: the device booted ota_0, confirmed. */
    FZ_CHECK(host_ota_set_boot(&g.dev, 0, err, sizeof(err)) == 0 && host_ota_mark_valid(&g.dev, err, sizeof(err)) == 0,
             "otadata: %s", err);
    memcpy(g.otadata0, g.flash.mem + g.dev.otadata->offset, sizeof(g.otadata0));
    g.erased = calloc(g.slot->size / SECTOR, 1);
    g.programmed = calloc(g.slot->size / 8u, 1);
    g.bl_stream = malloc(g.slot->size);
    g.sha = EVP_MD_CTX_new();
    FZ_CHECK(g.erased != NULL && g.programmed != NULL && g.bl_stream != NULL && g.sha != NULL, "out of memory");
    g.touched_lo = g.slot->size;
    g.touched_hi = 0;

    g.port = (ble_ota_port_t){
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
        .notify = prv_notify,
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
    };
    g.ready = true;
}

bool fz_gatt_start(const uint8_t header[FZ_HEADER_LEN])
{
    prv_setup_once();
    /* The previous input's slot contents go back to the old image, otadata to its start. */
    if (g.touched_hi > g.touched_lo) {
        memset(g.flash.mem + g.slot->offset + g.touched_lo, 0x00, g.touched_hi - g.touched_lo);
        memset(&g.programmed[g.touched_lo / 8u], 0, (g.touched_hi - g.touched_lo + 7u) / 8u);
    }
    g.touched_lo = g.slot->size;
    g.touched_hi = 0;
    memcpy(g.flash.mem + g.dev.otadata->offset, g.otadata0, sizeof(g.otadata0));

    memcpy(g.header, header, FZ_HEADER_LEN);
    memset(g.fault_calls, 0, sizeof(g.fault_calls));
    memset(&g.sec, 0, sizeof(g.sec));
    g.sec.signed_only = (header[1] & FZ_S_SIGNED_ONLY) != 0u;
    g.sec.anti_rollback = (header[1] & FZ_S_ANTI_ROLLBACK) != 0u;
    g.sec.allow_downgrade = (header[1] & FZ_S_ALLOW_DOWNGRADE) != 0u;
    g.sec.min_secure_version = header[2];
    g.sec.link_security = (ble_ota_link_security_t)((header[1] >> 4) % 3u);
    if ((header[1] & FZ_S_SECURITY) == 0u) {
        memset(&g.sec, 0, sizeof(g.sec)); /* no security(): the core sees all off */
    }
    g.port.disconnect = (header[6] & FZ_C_NO_DISCONNECT) != 0u ? NULL : prv_disconnect;
    g.chip = host_chip_by_id((header[0] & FZ_F_ESP32) != 0u ? 0u : 9u);
    g.version = fz_gatt_running_version(header[7]);
    g.v2 = (ble_ota_port_v2_t){
        .running_sha256 = prv_running_sha256,
        .chip_id = prv_chip_id,
        .slot_size = prv_slot_size,
        .slot_open = prv_slot_open,
        .slot_erase = prv_slot_erase,
        .slot_write_at = prv_slot_write_at,
        .crc32 = prv_crc32,
    };
    if ((header[0] & FZ_F_INFLATE) != 0u) {
        g.v2.inflate_start = prv_inflate_start;
        g.v2.inflate_update = prv_inflate_update;
        g.v2.inflate_finish = prv_inflate_finish;
    }
    if ((header[0] & FZ_F_LINK) != 0u) {
        g.v2.link_request = prv_link_request;
    }
    if ((header[1] & FZ_S_SECURITY) != 0u) {
        g.v2.security = prv_security;
    }
    if ((header[0] & FZ_F_SIGNATURES) != 0u) {
        g.v2.trusted_keys = prv_trusted_keys;
        g.v2.sha256_buf = prv_sha256_buf;
        g.v2.verify_block = prv_verify_block;
        g.v2.slot_read = prv_slot_read;
    }
    g.now = 0;
    g.restarts = 0;
    g.lock_depth = 0;
    return prv_boot();
}

static uint16_t prv_clamp(uint16_t v, uint16_t lo, uint16_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static bool prv_has_note(uint16_t conn, uint8_t chr, uint8_t op, uint32_t from)
{
    for (uint32_t i = from; i < g.n_notes; i++) {
        if (g.notes[i].conn == conn && g.notes[i].chr == chr && g.notes[i].data[0] == op) {
            return true;
        }
    }
    return false;
}

static void prv_write_record(uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len, bool with_rsp)
{
    ble_ota_status_t bl0;
    ble_ota_status_t bl1;
    ble_ota_v2_status_t v0;
    ble_ota_v2_status_t v1;
    uint32_t notes0 = g.n_notes;
    int rc;

    ble_ota_get_status(&bl0);
    ble_ota_v2_get_status(&v0);
    rc = ble_ota_on_write(conn, chr, len > 0u ? data : NULL, len, with_rsp);
    g.last_att = rc;
    ble_ota_get_status(&bl1);
    ble_ota_v2_get_status(&v1);
    FZ_CHECK(g.lock_depth == 0, "ble_ota_on_write returned with the port lock held");

    /* What the core counts as progress of a link (its idle timeout): image data it took. */
    if ((chr == BLE_OTA_CHR_OTA_DATA && rc == 0 && bl0.state == BLE_OTA_STATE_RECEIVING) ||
        (chr == BLE_OTA_CHR_V2_DATA && v1.expected != v0.expected)) {
        g.progress_ms[conn - 1u] = g.now;
    }
    if (chr == BLE_OTA_CHR_V2_DATA && !(v0.accepting && v0.owner == conn)) {
        FZ_CHECK(v1.expected == v0.expected && v1.buffer_used == v0.buffer_used, "session lock: DATA from connection "
                 "%u went into the session of %u (expected %u -> %u, buffered %u -> %u)", (unsigned)conn,
                 (unsigned)v0.owner, (unsigned)v0.expected, (unsigned)v1.expected, (unsigned)v0.buffer_used,
                 (unsigned)v1.buffer_used);
    }
    if (chr == BLE_OTA_CHR_OTA_CONTROL && len == 1u && data[0] == BLE_OTA_OP_REQUEST && v0.session_held &&
        v0.owner != BLE_OTA_CONN_NONE && v0.owner != conn) {
        FZ_CHECK(v1.owner == v0.owner && v1.accepting == v0.accepting, "session lock: a baseline REQUEST from "
                 "connection %u ended the v2 session of connection %u", (unsigned)conn, (unsigned)v0.owner);
    }
    if (chr == BLE_OTA_CHR_V2_CONTROL && len == BLE_OTA_V2_BEGIN_LEN && data[0] == BLE_OTA_V2_OP_BEGIN && rc == 0 &&
        !prv_has_note(conn, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, notes0)) {
        begin_t *b;
        FZ_CHECK(g.n_begins < MAX_BEGINS, "more BEGINs queued than the core's queue holds");
        b = &g.begins[g.n_begins++];
        b->conn = conn;
        b->flags = data[1];
        b->image_size = fz_u32(&data[4]);
        memcpy(b->sha, &data[8], 32);
    }
    /* The baseline image as the core took it, for DONE_ACK's check. */
    if (chr == BLE_OTA_CHR_OTA_CONTROL && len == 1u && data[0] == BLE_OTA_OP_REQUEST &&
        bl1.state == BLE_OTA_STATE_RECEIVING && !prv_has_note(conn, BLE_OTA_CHR_OTA_CONTROL, BLE_OTA_OP_REQUEST_NAK, notes0)) {
        g.bl_len = 0;
    }
    if (chr == BLE_OTA_CHR_OTA_DATA && rc == 0 && bl0.state == BLE_OTA_STATE_RECEIVING &&
        bl1.state == BLE_OTA_STATE_RECEIVING && g.bl_len + len <= g.slot->size) {
        memcpy(&g.bl_stream[g.bl_len], data, len);
        g.bl_len += (uint32_t)len;
    }
}

void fz_gatt_apply(uint8_t op, uint8_t conn_byte, const uint8_t *payload, size_t len)
{
    uint32_t idx = conn_byte & FZ_CONN_MASK;
    uint16_t conn = (uint16_t)(idx + 1u);
    bool up = g.connected[idx];

    g.n_notes = 0;
    if (op != FZ_OP_CONNECT && op != FZ_OP_WRITER && op != FZ_OP_CLOCK && !up) {
        return; /* the BLE stack has no such connection */
    }
    switch (op) {
    case FZ_OP_CONNECT:
        if (up) {
            return;
        }
        g.connected[idx] = true;
        g.dropping[idx] = false;
        g.progress_ms[idx] = g.now;
        ble_ota_on_connect(conn, prv_clamp(len >= 2u ? fz_u16(payload) : 23u, 23u, 517u));
        break;
    case FZ_OP_DISCONNECT: {
        ble_ota_v2_status_t st;
        g.connected[idx] = false;
        ble_ota_on_disconnect(conn);
        ble_ota_v2_get_status(&st);
        FZ_CHECK(st.owner != conn && !(st.accepting && st.owner == conn), "connection %u still owns the session "
                 "after its disconnect", (unsigned)conn);
        break;
    }
    case FZ_OP_MTU:
        ble_ota_on_mtu(conn, prv_clamp(len >= 2u ? fz_u16(payload) : 23u, 23u, 517u));
        break;
    case FZ_OP_DATA_LENGTH:
        ble_ota_on_data_length(conn, prv_clamp(len >= 2u ? fz_u16(payload) : 27u, 27u, 251u));
        break;
    case FZ_OP_PHY:
        ble_ota_on_phy(conn, (uint8_t)(len >= 1u && (payload[0] & 1u) == 0u ? 2u : 1u));
        break;
    case FZ_OP_SUBSCRIBE:
        ble_ota_on_subscribe(conn, (ble_ota_chr_id_t)(len >= 1u ? payload[0] % 8u : 0u), len >= 2u && payload[1] != 0u);
        break;
    case FZ_OP_WRITER:
        for (uint32_t n = len >= 1u ? payload[0] : 1u; n > 0u && prv_step(); n--) {
        }
        conn_byte |= FZ_DEFER;
        break;
    case FZ_OP_CLOCK:
        g.now += len >= 4u ? fz_u32(payload) : 1000u;
        conn_byte |= FZ_DEFER;
        break;
    default:
        if (op >= FZ_OP_WRITE_RSP && op < FZ_OP_WRITE_RSP + 16u) {
            prv_write_record(conn, (ble_ota_chr_id_t)(op & 7u), payload, len, op < FZ_OP_WRITE_CMD);
        } else if (op >= FZ_OP_READ && op < FZ_OP_READ + 8u) {
            size_t cap = len >= 2u ? prv_clamp(fz_u16(payload), 1u, 512u) : 512u;
            uint8_t *out = malloc(cap); /* exactly cap bytes: a longer value is an ASan report */
            size_t out_len = 0;
            FZ_CHECK(out != NULL, "out of memory");
            g.last_att = ble_ota_on_read(conn, (ble_ota_chr_id_t)(op & 7u), out, cap, &out_len);
            if (g.last_att == 0) {
                FZ_CHECK(out_len <= cap, "read returned %zu bytes into %zu", out_len, cap);
                memcpy(g.read_value, out, out_len);
                g.read_len = out_len;
            }
            free(out);
        } else {
            return;
        }
        break;
    }
    FZ_CHECK(g.lock_depth == 0, "an entry point returned with the port lock held");
    if ((conn_byte & FZ_DEFER) == 0u) {
        prv_drain();
    }
    if (g.restart_pending && (int32_t)(g.now - g.restart_at) >= 0) {
        /* The restart delay is over (the clock moves with CLOCK records): the core starts
         * again on the same flash; links are gone. Until then the device goes on taking events. */
        prv_drain();
        (void)prv_boot();
    }
}

size_t fz_gatt_notes(const fz_note_t **out)
{
    *out = g.notes;
    return g.n_notes;
}

size_t fz_gatt_read_value(const uint8_t **out)
{
    *out = g.read_value;
    return g.read_len;
}

int fz_gatt_last_att(void)
{
    return g.last_att;
}

bool fz_gatt_connected(uint8_t i)
{
    return i < CONNS && g.connected[i];
}

uint32_t fz_gatt_restarts(void)
{
    return g.restarts;
}

void fz_gatt_finish(void)
{
    prv_drain();
    prv_inflate_finish(NULL); /* a held compressed session keeps zlib's memory: no leak between inputs */
    if (g.sha_running) {
        uint8_t d[32];
        unsigned int n = 32;
        (void)EVP_DigestFinal_ex(g.sha, d, &n);
        g.sha_running = false;
    }
}

void fz_gatt_run(const uint8_t *data, size_t size)
{
    uint8_t header[FZ_HEADER_LEN] = { 0 };
    size_t pos = FZ_HEADER_LEN;

    memcpy(header, data, size < FZ_HEADER_LEN ? size : FZ_HEADER_LEN);
    if (!fz_gatt_start(header)) {
        return;
    }
    while (pos + 4u <= size) {
        uint8_t op = data[pos];
        uint8_t conn = data[pos + 1u];
        size_t len = fz_u16(&data[pos + 2u]);
        pos += 4u;
        if (len > size - pos) {
            break;
        }
        fz_gatt_apply(op, conn, &data[pos], len);
        pos += len;
    }
    fz_gatt_finish();
}

const char *fz_gatt_running_version(uint8_t index)
{
    return k_versions[index % (sizeof(k_versions) / sizeof(k_versions[0]))];
}

void fz_gatt_running_sha256(uint8_t out[32])
{
    fz_sha256("the running image", 17, out);
}
