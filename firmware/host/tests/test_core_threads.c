/*
 * The BLE side and the writer on two real threads, as on FreeRTOS: every
 * byte arrives, in order, while the writer is slow enough for the queue to
 * fill. ctest runs it under AddressSanitizer; to check the locking, build it
 * by hand under ThreadSanitizer, from firmware/:
 *   gcc -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=thread -Wno-clobbered
 *       -Icomponents/ble_ota/include -Ihost/tests host/tests/test_core_threads.c
 *       components/ble_ota/src/core/ble_ota_*.c -lpthread
 * (with the fake's mutex removed, TSan reports the race in prv_enqueue).
 */
#include "check.h"

#include <pthread.h>

#include "ble_ota.h"
#include "fake_threaded_port.h"

#define CONN 7u

static uint8_t s_image[600u * 1024u];

static uint32_t lcg(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

TEST(two_threads_deliver_every_byte_in_order)
{
    pthread_t writer;
    uint8_t size_le[2] = { 0x02, 0x02 }; /* 514 */
    uint8_t op;
    uint32_t seed = 12345u;
    size_t off = 0;
    unsigned retries = 0;
    ble_ota_status_t st;
    size_t i;

    tfake_reset();
    tfake.slow_every = 40u;
    for (i = 0; i < sizeof(s_image); i++) {
        s_image[i] = (uint8_t)lcg(&seed);
    }
    REQUIRE_EQ_INT(ble_ota_init(&tfake_port, NULL), BLE_OTA_OK);
    REQUIRE_EQ_INT(tfake_writer_start(&writer), 0);

    ble_ota_on_connect(CONN, 517);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, size_le, 2, true), 0);
    op = BLE_OTA_OP_REQUEST;
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &op, 1, false), 0);
    CHECK_EQ_HEX(tfake_wait_notify(1), BLE_OTA_OP_REQUEST_ACK);

    /* Packets of varying length, as Write Requests; a full queue is answered
     * INSUFFICIENT_RES and the packet is sent again, as a careful client would. */
    while (off < sizeof(s_image)) {
        size_t n = 1u + lcg(&seed) % BLE_OTA_MAX_PACKET;
        int rc;

        if (n > sizeof(s_image) - off) {
            n = sizeof(s_image) - off;
        }
        rc = ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, &s_image[off], n, true);
        if (rc == BLE_OTA_ATT_ERR_INSUFFICIENT_RES) {
            retries++;
            tfake_sleep_us(200);
            continue;
        }
        REQUIRE_EQ_INT(rc, 0);
        off += n;
    }
    op = BLE_OTA_OP_DONE;
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &op, 1, false), 0);
    CHECK_EQ_HEX(tfake_wait_notify(2), BLE_OTA_OP_DONE_ACK);

    REQUIRE_EQ_INT(tfake_writer_join(writer), 0);

    CHECK_EQ_INT(tfake.slot_len, sizeof(s_image));
    CHECK_MEM_EQ(tfake.slot, s_image, sizeof(s_image));
    CHECK(tfake.restart);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.bytes_written, sizeof(s_image));
    CHECK(!st.image_sha256_valid); /* this port has no SHA-256 */
    CHECK_EQ_INT(st.writes_refused_full, retries);
    CHECK_MSG(retries > 0u, "the slow writer never filled the queue: the test lost its point");
}
