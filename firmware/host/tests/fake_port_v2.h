/*
 * The protocol v2 half of the fake port (fake_port.h holds the baseline half):
 * an in-memory update slot with NOR rules (writes only into erased bytes,
 * erase by aligned 4 KB sectors, one or many per call), zlib's CRC-32 and inflate, a recorded list
 * of every notification in full and of the link requests.
 */
#ifndef FAKE_PORT_V2_H
#define FAKE_PORT_V2_H

#include <zlib.h>

#include "fake_port.h"
#include "image.h"
#include "sbv2.h"

#define FV2_SLOT_SIZE (256u * 1024u)
#define FV2_MAX_NOTES 2048u
#define FV2_CHIP_ID 9u /* ESP32-S3, as fake_chip_name says */

/* Little-endian fields of the v2 wire, for the tests that speak it. */
static inline uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

typedef struct {
    uint16_t conn;
    ble_ota_chr_id_t chr;
    uint8_t len;
    uint8_t data[20];
} fv2_note_t;

typedef struct {
    /* steering */
    uint8_t running_sha[32];
    bool no_2m;
    uint32_t fail_erase_at; /* 1-based slot_erase call that fails */
    uint32_t open_erases;   /* bytes slot_open erases, as esp_ota_begin(first block) does */
    ble_ota_security_t sec; /* what the firmware enforces */
    ble_ota_trust_t trust;  /* the keys the "platform" trusts (eFuse digests on a chip) */
    uint8_t base[FV2_SLOT_SIZE]; /* the running image's bytes, for delta updates (fake_v2_port_delta) */
    uint32_t base_len;

    /* observed */
    uint8_t mem[FV2_SLOT_SIZE];
    bool erased[FV2_SLOT_SIZE / 4096u];
    uint32_t erase_calls;
    uint32_t erase_off[128]; /* of the first slot_erase calls */
    uint32_t erase_len[128];
    uint32_t write_calls;
    uint32_t bytes_written;
    bool nor_violation;
    uint32_t opens;
    bool v2_open; /* the open session is v2's (slot_open), not the baseline's (slot_begin) */
    fv2_note_t notes[FV2_MAX_NOTES];
    uint32_t n_notes;
    ble_ota_link_request_t links[8];
    uint32_t n_links;
    uint32_t verify_calls; /* verify_block calls: one per block whose key was trusted */
    uint32_t base_reads;   /* running_read calls */
    bool base_read_outside; /* the core asked for bytes outside [0, base_len) */

    z_stream zs;
    bool zs_running;
    uint8_t zout[4096];
} fake_v2_t;

static fake_v2_t fv2;

static int fv2_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    if (fv2.n_notes < FV2_MAX_NOTES) {
        fv2_note_t *n = &fv2.notes[fv2.n_notes++];
        n->conn = conn;
        n->chr = chr;
        n->len = (uint8_t)len;
        memcpy(n->data, data, len < sizeof(n->data) ? len : sizeof(n->data));
    }
    return fake_notify(ctx, conn, chr, data, len);
}

static int fv2_running_sha256(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    memcpy(out, fv2.running_sha, 32);
    return BLE_OTA_OK;
}

static uint16_t fv2_chip_id(void *ctx)
{
    (void)ctx;
    return FV2_CHIP_ID;
}

static uint32_t fv2_slot_size(void *ctx)
{
    (void)ctx;
    return FV2_SLOT_SIZE;
}

static int fv2_slot_open(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target, uint32_t *erased)
{
    ble_ota_slot_info_t unused;
    int rc;

    (void)image_size;
    fv2.opens++;
    /* the baseline half keeps the open/end/abort bookkeeping and events */
    rc = fake_slot_begin(ctx, BLE_OTA_IMAGE_SIZE_UNKNOWN, target != NULL ? target : &unused);
    if (rc != BLE_OTA_OK) {
        return rc;
    }
    fv2.v2_open = true;
    memset(fv2.erased, 0, sizeof(fv2.erased));
    memset(fv2.mem, 0x00, sizeof(fv2.mem)); /* an old image: never 0xFF by chance */
    memset(fv2.mem, 0xFF, fv2.open_erases);
    memset(fv2.erased, true, fv2.open_erases / 4096u);
    *erased = fv2.open_erases;
    return BLE_OTA_OK;
}

static int fv2_slot_erase(void *ctx, uint32_t offset, uint32_t len)
{
    (void)ctx;
    if (fv2.erase_calls < 128u) {
        fv2.erase_off[fv2.erase_calls] = offset;
        fv2.erase_len[fv2.erase_calls] = len;
    }
    fv2.erase_calls++;
    if (fv2.fail_erase_at != 0u && fv2.erase_calls == fv2.fail_erase_at) {
        return BLE_OTA_ERR_FLASH;
    }
    if (!fake.slot_open || offset % 4096u != 0u || len % 4096u != 0u || offset + len > FV2_SLOT_SIZE) {
        fv2.nor_violation = true;
        return BLE_OTA_ERR_INVALID_ARG;
    }
    memset(&fv2.mem[offset], 0xFF, len);
    for (uint32_t s = offset / 4096u; s < (offset + len) / 4096u; s++) {
        fv2.erased[s] = true;
    }
    return BLE_OTA_OK;
}

static int fv2_slot_write_at(void *ctx, uint32_t offset, const uint8_t *data, size_t len)
{
    (void)ctx;
    fv2.write_calls++;
    if (!fake.slot_open || offset + len > FV2_SLOT_SIZE) {
        fv2.nor_violation = true;
        return BLE_OTA_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < len; i++) {
        if (!fv2.erased[(offset + i) / 4096u] || fv2.mem[offset + i] != 0xFF) {
            fv2.nor_violation = true;
            return BLE_OTA_ERR_FLASH;
        }
    }
    memcpy(&fv2.mem[offset], data, len);
    fv2.bytes_written += (uint32_t)len;
    return BLE_OTA_OK;
}

static uint32_t fv2_crc32(void *ctx, uint32_t c, const uint8_t *data, size_t len)
{
    (void)ctx;
    return (uint32_t)crc32(c, data, (uInt)len);
}

static int fv2_inflate_start(void *ctx)
{
    (void)ctx;
    if (fv2.zs_running) {
        inflateEnd(&fv2.zs);
    }
    memset(&fv2.zs, 0, sizeof(fv2.zs));
    if (inflateInit(&fv2.zs) != Z_OK) {
        return BLE_OTA_ERR_NO_MEM;
    }
    fv2.zs_running = true;
    return BLE_OTA_OK;
}

static int fv2_inflate_update(void *ctx, const uint8_t **in, size_t *in_len, const uint8_t **out, size_t *out_len)
{
    int zrc;

    (void)ctx;
    fv2.zs.next_in = (Bytef *)*in;
    fv2.zs.avail_in = (uInt)*in_len;
    fv2.zs.next_out = fv2.zout;
    fv2.zs.avail_out = sizeof(fv2.zout);
    zrc = inflate(&fv2.zs, Z_NO_FLUSH);
    *in += *in_len - fv2.zs.avail_in;
    *in_len = fv2.zs.avail_in;
    *out = fv2.zout;
    *out_len = sizeof(fv2.zout) - fv2.zs.avail_out;
    if (zrc == Z_STREAM_END) {
        return BLE_OTA_INFLATE_DONE;
    }
    if (zrc == Z_OK || (zrc == Z_BUF_ERROR && *out_len == 0u)) {
        return BLE_OTA_OK;
    }
    return BLE_OTA_ERR_INVALID_ARG;
}

static void fv2_inflate_finish(void *ctx)
{
    (void)ctx;
    if (fv2.zs_running) {
        inflateEnd(&fv2.zs);
        fv2.zs_running = false;
    }
}

static int fv2_link_request(void *ctx, uint16_t conn, const ble_ota_link_request_t *req)
{
    (void)ctx;
    (void)conn;
    if (fv2.n_links < 8u) {
        fv2.links[fv2.n_links++] = *req;
    }
    return req->kind == BLE_OTA_LINK_PHY && fv2.no_2m ? BLE_OTA_ERR_UNSUPPORTED : BLE_OTA_OK;
}

static void fv2_security(void *ctx, ble_ota_security_t *out)
{
    (void)ctx;
    *out = fv2.sec;
}

static int fv2_trusted_keys(void *ctx, ble_ota_trust_t *out)
{
    (void)ctx;
    *out = fv2.trust;
    return BLE_OTA_OK;
}

static int fv2_sha256_buf(void *ctx, const uint8_t *data, size_t len, uint8_t out[32])
{
    (void)ctx;
    host_sha256(data, len, out);
    return BLE_OTA_OK;
}

/* The host port's own primitive (OpenSSL): a real signature check. */
static int fv2_verify_block(void *ctx, const uint8_t *block, const uint8_t digest[32])
{
    (void)ctx;
    fv2.verify_calls++;
    return host_sbv2_verify_block(block, digest) ? BLE_OTA_OK : BLE_OTA_ERR_BAD_SIGNATURE;
}

/* The slot the open session writes: the baseline half's (slot_begin) or the v2 half's (slot_open). */
static int fv2_slot_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    (void)ctx;
    if (!fv2.v2_open) {
        if ((uint64_t)offset + len > FAKE_SLOT_SIZE) {
            return BLE_OTA_ERR_INVALID_ARG;
        }
        memcpy(buf, &fake.slot[offset], len);
        return BLE_OTA_OK;
    }
    if ((uint64_t)offset + len > FV2_SLOT_SIZE) {
        return BLE_OTA_ERR_INVALID_ARG;
    }
    memcpy(buf, &fv2.mem[offset], len);
    return BLE_OTA_OK;
}

static uint32_t fv2_running_size(void *ctx)
{
    (void)ctx;
    return fv2.base_len;
}

static int fv2_running_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    (void)ctx;
    fv2.base_reads++;
    if ((uint64_t)offset + len > fv2.base_len) {
        fv2.base_read_outside = true;
        return BLE_OTA_ERR_INVALID_ARG;
    }
    memcpy(buf, &fv2.base[offset], len);
    return BLE_OTA_OK;
}

static const ble_ota_port_v2_t fake_v2_port = {
    .running_sha256 = fv2_running_sha256,
    .chip_id = fv2_chip_id,
    .slot_size = fv2_slot_size,
    .slot_open = fv2_slot_open,
    .slot_erase = fv2_slot_erase,
    .slot_write_at = fv2_slot_write_at,
    .crc32 = fv2_crc32,
    .inflate_start = fv2_inflate_start,
    .inflate_update = fv2_inflate_update,
    .inflate_finish = fv2_inflate_finish,
    .link_request = fv2_link_request,
    .security = fv2_security,
    .trusted_keys = fv2_trusted_keys,
    .sha256_buf = fv2_sha256_buf,
    .verify_block = fv2_verify_block,
    .slot_read = fv2_slot_read,
};

static ble_ota_port_v2_t fake_v2_port_unsigned; /* fake_v2_port without the signature primitives */
static ble_ota_port_v2_t fake_v2_port_delta;    /* fake_v2_port that reads its running image (fv2.base) */

static ble_ota_port_t fv2_base_port;

/* Fresh fake (both halves) and core with v2 attached, configured with cfg. */
static inline int fake_v2_reset_cfg(const ble_ota_config_t *cfg)
{
    fv2_inflate_finish(NULL);
    memset(&fv2, 0, sizeof(fv2));
    memset(fv2.running_sha, 0x5A, sizeof(fv2.running_sha));
    memset(&fake, 0, sizeof(fake));
    fake.running_state = BLE_OTA_SLOT_STATE_VALID;
    fv2_base_port = fake_port;
    fv2_base_port.notify = fv2_notify;
    if (ble_ota_init(&fv2_base_port, cfg) != BLE_OTA_OK) {
        return -1;
    }
    fake_v2_port_unsigned = fake_v2_port;
    fake_v2_port_unsigned.trusted_keys = NULL;
    fake_v2_port_unsigned.sha256_buf = NULL;
    fake_v2_port_unsigned.verify_block = NULL;
    fake_v2_port_unsigned.slot_read = NULL;
    fake_v2_port_delta = fake_v2_port;
    fake_v2_port_delta.running_size = fv2_running_size;
    fake_v2_port_delta.running_read = fv2_running_read;
    return ble_ota_v2_attach(&fake_v2_port);
}

/* The defaults without the refusal back-off: tests of one refusal after another would wait it
 * out (the back-off has tests of its own, with fake_v2_reset_cfg). */
static inline int fake_v2_reset(void)
{
    static ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;

    cfg.refusal_backoff_max_ms = 0u;
    return fake_v2_reset_cfg(&cfg);
}

#endif /* FAKE_PORT_V2_H */
