/*
 * Protocol v2 with the BLE side and the writer on two real threads, as on
 * FreeRTOS: a client that keeps one window unacknowledged never loses a frame
 * although the writer is slow (sector erases), and every byte lands in order.
 * ctest runs it under AddressSanitizer; for the locking, build it by hand
 * under ThreadSanitizer, from firmware/:
 *   gcc -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=thread -Icomponents/ble_ota/include
 *       -Ihost/tests -Ihost/src host/tests/test_core_v2_threads.c
 *       components/ble_ota/src/core/ble_ota_*.c -lpthread -lz -lcrypto
 */
#include "check.h"

#include <pthread.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "ble_ota.h"
#include "fake_threaded_port.h"

#define CONN 3u
#define PAYLOAD 510u
#define IMAGE_LEN (700u * 1024u)

static uint8_t s_image[IMAGE_LEN];
static uint8_t s_mem[TFAKE_SLOT_SIZE]; /* writer thread only */
static uint32_t s_erases;
static uint32_t s_block_erases;
static uint32_t s_erased_bytes;
static ble_ota_port_t s_port;

/* Answers on v2 Control, under tfake.wake_lock. */
static uint32_t s_acked;
static uint8_t s_last_op;
static uint8_t s_last_status;
static unsigned s_answers;
static unsigned s_bad_crc;

static int v2_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)conn;
    pthread_mutex_lock(&tfake.wake_lock);
    if (chr == BLE_OTA_CHR_V2_CONTROL && len >= 2u) {
        s_last_op = data[0];
        s_last_status = data[1];
        if (data[0] == 0x91 && len == 10u && data[1] == 0u) {
            uint32_t committed = (uint32_t)data[2] | (uint32_t)data[3] << 8 | (uint32_t)data[4] << 16 |
                                 (uint32_t)data[5] << 24;
            uint32_t crc = (uint32_t)data[6] | (uint32_t)data[7] << 8 | (uint32_t)data[8] << 16 |
                           (uint32_t)data[9] << 24;
            if (crc != (uint32_t)crc32(0, s_image, committed)) {
                s_bad_crc++;
            }
            if (committed > s_acked) {
                s_acked = committed;
            }
        }
        s_answers++;
        pthread_cond_broadcast(&tfake.notified);
    }
    pthread_mutex_unlock(&tfake.wake_lock);
    return BLE_OTA_OK;
}

static int v2_running_sha256(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    memset(out, 0, BLE_OTA_SHA256_LEN);
    return BLE_OTA_OK;
}

static uint16_t v2_chip_id(void *ctx)
{
    (void)ctx;
    return 0;
}

static uint32_t v2_slot_size(void *ctx)
{
    (void)ctx;
    return TFAKE_SLOT_SIZE;
}

/* While s_hold_open, the writer waits in slot_open (inside BEGIN) until the test lets it go. */
static pthread_mutex_t s_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_gate = PTHREAD_COND_INITIALIZER;
static bool s_hold_open;
static bool s_in_open;

static int v2_slot_open(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target, uint32_t *erased)
{
    (void)image_size;
    pthread_mutex_lock(&s_gate_lock);
    s_in_open = true;
    pthread_cond_broadcast(&s_gate);
    while (s_hold_open) {
        pthread_cond_wait(&s_gate, &s_gate_lock);
    }
    pthread_mutex_unlock(&s_gate_lock);
    *erased = 0;
    return tfake_slot_begin(ctx, image_size, target);
}

static int v2_slot_erase(void *ctx, uint32_t offset, uint32_t len)
{
    (void)ctx;
    memset(&s_mem[offset], 0xFF, len);
    s_erases++;
    s_erased_bytes += len;
    if (len == 65536u) {
        s_block_erases++;
    }
    /* an erase stalls the writer, not the BLE side; a 64 KB block takes about 3x a
     * 4 KB sector (~150 ms vs ~45 ms on the chip) */
    tfake_sleep_us(len == 65536u ? 5000 : 1500);
    return BLE_OTA_OK;
}

static int v2_slot_write_at(void *ctx, uint32_t offset, const uint8_t *data, size_t len)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        if (s_mem[offset + i] != 0xFF) {
            return BLE_OTA_ERR_FLASH;
        }
    }
    memcpy(&s_mem[offset], data, len);
    return BLE_OTA_OK;
}

static uint32_t v2_crc32(void *ctx, uint32_t crc, const uint8_t *data, size_t len)
{
    (void)ctx;
    return (uint32_t)crc32(crc, data, (uInt)len);
}

/* No inflate, link tuning or signature primitives: the threaded fake streams plain images. */
static const ble_ota_port_v2_t s_v2 = {
    .running_sha256 = v2_running_sha256,
    .chip_id = v2_chip_id,
    .slot_size = v2_slot_size,
    .slot_open = v2_slot_open,
    .slot_erase = v2_slot_erase,
    .slot_write_at = v2_slot_write_at,
    .crc32 = v2_crc32,
};

/* The threaded fake has no SHA-256; v2 refuses to run without one. */
static EVP_MD_CTX *s_sha;

static int v2_sha_start(void *ctx)
{
    (void)ctx;
    if (s_sha == NULL) {
        s_sha = EVP_MD_CTX_new();
    }
    return s_sha != NULL && EVP_DigestInit_ex(s_sha, EVP_sha256(), NULL) == 1 ? BLE_OTA_OK : BLE_OTA_ERR_NO_MEM;
}

static int v2_sha_update(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    return EVP_DigestUpdate(s_sha, data, len) == 1 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

static int v2_sha_finish(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    unsigned int n = BLE_OTA_SHA256_LEN;

    (void)ctx;
    return EVP_DigestFinal_ex(s_sha, out, &n) == 1 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void make_begin(uint8_t begin[44])
{
    unsigned int n = 32;

    begin[0] = 0x10;
    begin[1] = 0;
    begin[2] = 0;
    begin[3] = 0;
    put_u32(&begin[4], IMAGE_LEN);
    EVP_Digest(s_image, IMAGE_LEN, &begin[8], &n, EVP_sha256(), NULL);
    put_u32(&begin[40], IMAGE_LEN);
}

static void start_core(uint32_t seed)
{
    tfake_reset();
    for (size_t i = 0; i < sizeof(s_image); i++) {
        seed = seed * 1664525u + 1013904223u;
        s_image[i] = (uint8_t)(seed >> 24);
    }
    s_image[0] = 0xE9;
    s_acked = 0;
    s_answers = 0;
    s_port = tfake_port;
    s_port.notify = v2_notify;
    s_port.sha256_start = v2_sha_start;
    s_port.sha256_update = v2_sha_update;
    s_port.sha256_finish = v2_sha_finish;
    REQUIRE_EQ_INT(ble_ota_init(&s_port, NULL), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_v2_attach(&s_v2), BLE_OTA_OK);
}

/* Waits for the answer count to pass n; returns the acked offset. */
static uint32_t wait_answers(unsigned n)
{
    uint32_t acked;

    pthread_mutex_lock(&tfake.wake_lock);
    while (s_answers < n) {
        pthread_cond_wait(&tfake.notified, &tfake.wake_lock);
    }
    acked = s_acked;
    pthread_mutex_unlock(&tfake.wake_lock);
    return acked;
}

TEST(a_windowed_client_never_overruns_a_slow_writer)
{
    pthread_t writer;
    uint8_t begin[44];
    uint8_t frame[4 + PAYLOAD];
    uint8_t op;
    uint32_t sent = 0;
    unsigned answers;
    ble_ota_v2_status_t st;

    start_core(99u);
    REQUIRE_EQ_INT(tfake_writer_start(&writer), 0);

    ble_ota_on_connect(CONN, 517);
    make_begin(begin);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, begin, sizeof(begin), true), 0);
    (void)wait_answers(1);
    REQUIRE_EQ_HEX(s_last_op, 0x90);
    REQUIRE_EQ_INT(s_last_status, 0);

    /* Write Commands as fast as the window allows; acks come from the writer thread. */
    while (sent < IMAGE_LEN) {
        uint32_t acked;
        uint32_t n = IMAGE_LEN - sent < PAYLOAD ? IMAGE_LEN - sent : PAYLOAD;

        pthread_mutex_lock(&tfake.wake_lock);
        answers = s_answers;
        acked = s_acked;
        pthread_mutex_unlock(&tfake.wake_lock);
        if (sent + n - acked > BLE_OTA_V2_BUFFER_SIZE) {
            (void)wait_answers(answers + 1u);
            continue;
        }
        put_u32(frame, sent);
        memcpy(&frame[4], &s_image[sent], n);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_DATA, frame, 4 + n, false), 0);
        sent += n;
    }
    while (wait_answers(0) < IMAGE_LEN) {
        pthread_mutex_lock(&tfake.wake_lock);
        answers = s_answers;
        pthread_mutex_unlock(&tfake.wake_lock);
        (void)wait_answers(answers + 1u);
    }
    pthread_mutex_lock(&tfake.wake_lock);
    answers = s_answers;
    pthread_mutex_unlock(&tfake.wake_lock);
    op = 0x11;
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    (void)wait_answers(answers + 1u);
    CHECK_EQ_HEX(s_last_op, 0x93);
    CHECK_EQ_INT(s_last_status, 0);

    REQUIRE_EQ_INT(tfake_writer_join(writer), 0);

    CHECK_MEM_EQ(s_mem, s_image, IMAGE_LEN);
    CHECK(tfake.restart);
    CHECK_EQ_INT(s_bad_crc, 0);
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.frames_dropped, 0);
    CHECK_EQ_INT(st.gaps, 0);
    CHECK(st.buffer_high_water <= BLE_OTA_V2_BUFFER_SIZE);
    CHECK_MSG(st.buffer_high_water > BLE_OTA_V2_BUFFER_SIZE / 2u,
              "the writer never fell behind (high water %u): the test lost its point", st.buffer_high_water);
    /* whole 64 KB blocks while one fits in the image, then sectors; each byte erased once */
    CHECK_EQ_INT(s_erased_bytes, (IMAGE_LEN + 4095u) & ~4095u);
    CHECK_EQ_INT(s_block_erases, IMAGE_LEN / 65536u);
    CHECK_EQ_INT(s_erases, IMAGE_LEN / 65536u + (IMAGE_LEN % 65536u + 4095u) / 4096u);
    EVP_MD_CTX_free(s_sha);
    s_sha = NULL;
}

TEST(a_begin_whose_link_drops_while_the_writer_opens_the_slot_leaves_the_session_free)
{
    pthread_t writer;
    uint8_t begin[44];
    uint8_t op = 0x12;
    ble_ota_v2_status_t st;

    start_core(7u);
    REQUIRE_EQ_INT(tfake_writer_start(&writer), 0);
    pthread_mutex_lock(&s_gate_lock);
    s_hold_open = true;
    s_in_open = false;
    pthread_mutex_unlock(&s_gate_lock);

    ble_ota_on_connect(CONN, 517);
    make_begin(begin);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, begin, sizeof(begin), true), 0);
    /* the writer thread is inside BEGIN when the link drops */
    pthread_mutex_lock(&s_gate_lock);
    while (!s_in_open) {
        pthread_cond_wait(&s_gate, &s_gate_lock);
    }
    pthread_mutex_unlock(&s_gate_lock);
    ble_ota_on_disconnect(CONN);
    pthread_mutex_lock(&s_gate_lock);
    s_hold_open = false;
    pthread_cond_broadcast(&s_gate);
    pthread_mutex_unlock(&s_gate_lock);
    (void)wait_answers(1); /* its BEGIN_RSP, to a link that is gone */
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.owner, BLE_OTA_CONN_NONE);
    CHECK(!st.accepting);

    /* a new central resumes the held session, and may abort it */
    ble_ota_on_connect(CONN + 1u, 517);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN + 1u, BLE_OTA_CHR_V2_CONTROL, begin, sizeof(begin), true), 0);
    (void)wait_answers(2);
    CHECK_EQ_HEX(s_last_op, 0x90);
    CHECK_EQ_INT(s_last_status, 0);
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.owner, CONN + 1u);
    CHECK(st.accepting);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN + 1u, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    (void)wait_answers(3);
    CHECK_EQ_HEX(s_last_op, 0x94);
    CHECK_EQ_INT(s_last_status, 0);
    REQUIRE_EQ_INT(tfake_writer_join(writer), 0);
    EVP_MD_CTX_free(s_sha);
    s_sha = NULL;
}
