/*
 * Fake ble_ota port for the core's unit tests: a working, steerable platform
 * (an in-memory update slot, a real SHA-256, a recorded timeline of what the
 * core did). Kept apart from any mock or stub, per STYLE.md: tests assert on
 * the state and the timeline, not on call expectations.
 *
 * Header-only because every tests/test_*.c is its own executable.
 */
#ifndef FAKE_PORT_H
#define FAKE_PORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ble_ota.h"
#include "ble_ota_port.h"

#define FAKE_SLOT_SIZE (64u * 1024u)
#define FAKE_MAX_EVENTS 512u
#define FAKE_MAX_LOG 64u

typedef enum {
    FAKE_EV_NOTIFY = 1,
    FAKE_EV_SLOT_BEGIN,
    FAKE_EV_SLOT_WRITE,
    FAKE_EV_SLOT_END,
    FAKE_EV_SLOT_ABORT,
    FAKE_EV_SLOT_SET_BOOT,
    FAKE_EV_RESTART,
    FAKE_EV_CONFIRM,
    FAKE_EV_REJECT,
    FAKE_EV_DISCONNECT, /* the core asked the port to drop conn */
} fake_event_kind_t;

typedef struct {
    fake_event_kind_t kind;
    uint16_t conn;
    ble_ota_chr_id_t chr;
    uint8_t data[8];
    uint32_t len; /* notify: value length; slot write: bytes; restart: delay */
} fake_event_t;

typedef struct {
    /* Steering: return codes the fake gives on the next calls. */
    int begin_rc;
    int end_rc;
    int set_boot_rc;
    uint32_t fail_write_at; /* 1-based slot_write call that fails; 0 = never */
    int fail_write_rc;      /* what it returns; 0 means BLE_OTA_ERR_FLASH */
    ble_ota_slot_state_t running_state;
    int confirm_rc;
    int reject_rc;
    bool sha_broken;

    /* Observed state. */
    uint8_t slot[FAKE_SLOT_SIZE];
    uint32_t slot_len;
    bool slot_open;
    bool boot_set;
    uint32_t write_calls;
    uint32_t wakes;
    int lock_depth;
    int max_lock_depth;
    uint32_t now;
    fake_event_t events[FAKE_MAX_EVENTS];
    uint32_t n_events;
    char log[FAKE_MAX_LOG][320];
    ble_ota_log_level_t log_level[FAKE_MAX_LOG];
    uint32_t n_log;

    /* SHA-256 state. */
    uint32_t sha_h[8];
    uint8_t sha_buf[64];
    uint32_t sha_buf_len;
    uint64_t sha_total;
    bool sha_running;
} fake_port_t;

static fake_port_t fake;

static void fake_record(fake_event_kind_t kind, uint16_t conn, ble_ota_chr_id_t chr,
                        const uint8_t *data, uint32_t len)
{
    fake_event_t *ev;

    if (fake.n_events >= FAKE_MAX_EVENTS) {
        return;
    }
    ev = &fake.events[fake.n_events++];
    memset(ev, 0, sizeof(*ev));
    ev->kind = kind;
    ev->conn = conn;
    ev->chr = chr;
    ev->len = len;
    if (data != NULL) {
        memcpy(ev->data, data, len < sizeof(ev->data) ? len : sizeof(ev->data));
    }
}

/* --- SHA-256 (FIPS 180-4), small and slow, enough for tests. ------------- */

static const uint32_t fake_sha_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

static uint32_t fake_rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32u - n));
}

static void fake_sha_block(const uint8_t *p)
{
    uint32_t w[64];
    uint32_t a, b, c, d, e, f, g, h;
    unsigned i;

    for (i = 0; i < 16u; i++) {
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
    }
    for (i = 16; i < 64u; i++) {
        uint32_t s0 = fake_rotr(w[i - 15], 7) ^ fake_rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = fake_rotr(w[i - 2], 17) ^ fake_rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = fake.sha_h[0];
    b = fake.sha_h[1];
    c = fake.sha_h[2];
    d = fake.sha_h[3];
    e = fake.sha_h[4];
    f = fake.sha_h[5];
    g = fake.sha_h[6];
    h = fake.sha_h[7];
    for (i = 0; i < 64u; i++) {
        uint32_t s1 = fake_rotr(e, 6) ^ fake_rotr(e, 11) ^ fake_rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + s1 + ch + fake_sha_k[i] + w[i];
        uint32_t s0 = fake_rotr(a, 2) ^ fake_rotr(a, 13) ^ fake_rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    fake.sha_h[0] += a;
    fake.sha_h[1] += b;
    fake.sha_h[2] += c;
    fake.sha_h[3] += d;
    fake.sha_h[4] += e;
    fake.sha_h[5] += f;
    fake.sha_h[6] += g;
    fake.sha_h[7] += h;
}

static int fake_sha256_start(void *ctx)
{
    static const uint32_t init[8] = { 0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                      0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u };
    (void)ctx;
    memcpy(fake.sha_h, init, sizeof(init));
    fake.sha_buf_len = 0;
    fake.sha_total = 0;
    fake.sha_running = true;
    return BLE_OTA_OK;
}

static int fake_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    size_t i;

    (void)ctx;
    if (!fake.sha_running) {
        return BLE_OTA_ERR_STATE;
    }
    for (i = 0; i < len; i++) {
        fake.sha_buf[fake.sha_buf_len++] = data[i];
        if (fake.sha_buf_len == 64u) {
            fake_sha_block(fake.sha_buf);
            fake.sha_buf_len = 0;
        }
    }
    fake.sha_total += len;
    return BLE_OTA_OK;
}

static int fake_sha256_finish(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    uint64_t bits = fake.sha_total * 8u;
    uint8_t pad = 0x80;
    uint8_t zero = 0;
    uint8_t len_be[8];
    unsigned i;

    (void)ctx;
    if (!fake.sha_running) {
        return BLE_OTA_ERR_STATE;
    }
    fake_sha256_update(ctx, &pad, 1);
    while (fake.sha_buf_len != 56u) {
        fake_sha256_update(ctx, &zero, 1);
    }
    for (i = 0; i < 8u; i++) {
        len_be[i] = (uint8_t)(bits >> (56u - 8u * i));
    }
    fake_sha256_update(ctx, len_be, 8);
    for (i = 0; i < 8u; i++) {
        out[4 * i] = (uint8_t)(fake.sha_h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(fake.sha_h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(fake.sha_h[i] >> 8);
        out[4 * i + 3] = (uint8_t)fake.sha_h[i];
    }
    if (fake.sha_broken) {
        out[0] ^= 0xFFu;
    }
    fake.sha_running = false;
    return BLE_OTA_OK;
}

/* --- The rest of the port ------------------------------------------------ */

static int fake_slot_begin(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target)
{
    (void)ctx;
    (void)image_size;
    fake_record(FAKE_EV_SLOT_BEGIN, 0, BLE_OTA_CHR_COUNT, NULL, 0);
    if (fake.begin_rc != BLE_OTA_OK) {
        return fake.begin_rc;
    }
    memset(target, 0, sizeof(*target));
    strcpy(target->label, "ota_1");
    target->address = 0x200000u;
    target->size = 0x1F0000u;
    target->state = BLE_OTA_SLOT_STATE_NEW;
    fake.slot_open = true;
    fake.slot_len = 0;
    memset(fake.slot, 0xFF, sizeof(fake.slot));
    return BLE_OTA_OK;
}

static int fake_slot_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    fake.write_calls++;
    fake_record(FAKE_EV_SLOT_WRITE, 0, BLE_OTA_CHR_COUNT, data, (uint32_t)len);
    if (!fake.slot_open) {
        return BLE_OTA_ERR_STATE;
    }
    if (fake.fail_write_at != 0u && fake.write_calls == fake.fail_write_at) {
        return fake.fail_write_rc != 0 ? fake.fail_write_rc : BLE_OTA_ERR_FLASH;
    }
    if (fake.slot_len + len > FAKE_SLOT_SIZE) {
        return BLE_OTA_ERR_TOO_LARGE;
    }
    memcpy(&fake.slot[fake.slot_len], data, len);
    fake.slot_len += (uint32_t)len;
    return BLE_OTA_OK;
}

static int fake_slot_end(void *ctx)
{
    (void)ctx;
    fake_record(FAKE_EV_SLOT_END, 0, BLE_OTA_CHR_COUNT, NULL, 0);
    if (!fake.slot_open) {
        return BLE_OTA_ERR_STATE;
    }
    fake.slot_open = false;
    return fake.end_rc;
}

static void fake_slot_abort(void *ctx)
{
    (void)ctx;
    fake_record(FAKE_EV_SLOT_ABORT, 0, BLE_OTA_CHR_COUNT, NULL, 0);
    fake.slot_open = false;
}

static int fake_slot_set_boot(void *ctx)
{
    (void)ctx;
    fake_record(FAKE_EV_SLOT_SET_BOOT, 0, BLE_OTA_CHR_COUNT, NULL, 0);
    if (fake.set_boot_rc == BLE_OTA_OK) {
        fake.boot_set = true;
    }
    return fake.set_boot_rc;
}

static int fake_get_running_slot(void *ctx, ble_ota_slot_info_t *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
    strcpy(out->label, "ota_0");
    out->address = 0x10000u;
    out->size = 0x1F0000u;
    out->state = fake.running_state;
    return BLE_OTA_OK;
}

static int fake_confirm_running(void *ctx)
{
    (void)ctx;
    fake_record(FAKE_EV_CONFIRM, 0, BLE_OTA_CHR_COUNT, NULL, 0);
    return fake.confirm_rc;
}

static int fake_reject_running(void *ctx)
{
    (void)ctx;
    fake_record(FAKE_EV_REJECT, 0, BLE_OTA_CHR_COUNT, NULL, 0);
    return fake.reject_rc;
}

static const char *fake_app_version(void *ctx)
{
    (void)ctx;
    return "1.2.3";
}

static const char *fake_chip_name(void *ctx)
{
    (void)ctx;
    return "ESP32-S3";
}

static int fake_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    (void)ctx;
    fake_record(FAKE_EV_NOTIFY, conn, chr, data, (uint32_t)len);
    return BLE_OTA_OK;
}

static uint32_t fake_now_ms(void *ctx)
{
    (void)ctx;
    return fake.now;
}

static void fake_log(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap)
{
    (void)ctx;
    (void)tag;
    if (fake.n_log >= FAKE_MAX_LOG) {
        return;
    }
    fake.log_level[fake.n_log] = level;
    vsnprintf(fake.log[fake.n_log], sizeof(fake.log[0]), fmt, ap);
    fake.n_log++;
}

static void fake_schedule_restart(void *ctx, uint32_t delay_ms)
{
    (void)ctx;
    fake_record(FAKE_EV_RESTART, 0, BLE_OTA_CHR_COUNT, NULL, delay_ms);
}

static void fake_lock(void *ctx)
{
    (void)ctx;
    fake.lock_depth++;
    if (fake.lock_depth > fake.max_lock_depth) {
        fake.max_lock_depth = fake.lock_depth;
    }
}

static void fake_unlock(void *ctx)
{
    (void)ctx;
    fake.lock_depth--;
}

static void fake_writer_wake(void *ctx)
{
    (void)ctx;
    fake.wakes++;
}

static void fake_writer_wait(void *ctx, uint32_t timeout_ms)
{
    (void)ctx;
    fake.now += timeout_ms;
}

static int fake_disconnect(void *ctx, uint16_t conn)
{
    (void)ctx;
    fake_record(FAKE_EV_DISCONNECT, conn, BLE_OTA_CHR_COUNT, NULL, 0u);
    return BLE_OTA_OK;
}

static const ble_ota_port_t fake_port = {
    NULL,
    fake_slot_begin,
    fake_slot_write,
    fake_slot_end,
    fake_slot_abort,
    fake_slot_set_boot,
    fake_get_running_slot,
    fake_confirm_running,
    fake_reject_running,
    fake_app_version,
    fake_chip_name,
    fake_notify,
    fake_now_ms,
    fake_log,
    fake_schedule_restart,
    fake_lock,
    fake_unlock,
    fake_writer_wake,
    fake_writer_wait,
    fake_sha256_start,
    fake_sha256_update,
    fake_sha256_finish,
    fake_disconnect,
};

/* Fresh fake and core; returns ble_ota_init's result. */
static inline int fake_reset(void)
{
    memset(&fake, 0, sizeof(fake));
    fake.running_state = BLE_OTA_SLOT_STATE_VALID;
    return ble_ota_init(&fake_port, NULL);
}

/* Runs the writer until the queue is empty, like the host I/O loop does. */
static inline unsigned fake_drain(void)
{
    unsigned n = 0;

    while (ble_ota_writer_run_once(0)) {
        n++;
    }
    return n;
}

/* Index of the n-th (0-based) event of a kind, or -1. */
static inline int fake_find_event(fake_event_kind_t kind, unsigned nth)
{
    uint32_t i;

    for (i = 0; i < fake.n_events; i++) {
        if (fake.events[i].kind == kind) {
            if (nth == 0u) {
                return (int)i;
            }
            nth--;
        }
    }
    return -1;
}

static inline unsigned fake_count_events(fake_event_kind_t kind)
{
    unsigned n = 0;
    uint32_t i;

    for (i = 0; i < fake.n_events; i++) {
        n += fake.events[i].kind == kind;
    }
    return n;
}

/* True if some log line at or below level (ERROR=1 .. VERBOSE=5) contains text. */
static inline bool fake_logged(ble_ota_log_level_t level, const char *text)
{
    uint32_t i;

    for (i = 0; i < fake.n_log; i++) {
        if (fake.log_level[i] <= level && strstr(fake.log[i], text) != NULL) {
            return true;
        }
    }
    return false;
}

#endif /* FAKE_PORT_H */
