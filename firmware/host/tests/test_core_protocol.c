/*
 * The baseline protocol as the core speaks it, against the fake port:
 * byte-exact exchange, failure answers, write types, queue limits.
 */
#include "check.h"

#include "ble_ota.h"
#include "fake_port.h"

#define CONN 1u
#define MTU 185u
#define PACKET (MTU - 3u)

static uint8_t s_image[64u * BLE_OTA_MAX_PACKET];

static void fill_image(size_t len)
{
    size_t i;

    REQUIRE(len <= sizeof(s_image));
    for (i = 0; i < len; i++) {
        s_image[i] = (uint8_t)(i * 7u + 3u);
    }
}

static int write_ctrl(uint8_t op, bool with_response)
{
    return ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &op, 1, with_response);
}

static int write_data(const uint8_t *data, size_t len, bool with_response)
{
    return ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, data, len, with_response);
}

static void connect_and_size(uint16_t packet_size)
{
    uint8_t size_le[2];

    size_le[0] = (uint8_t)(packet_size & 0xFFu);
    size_le[1] = (uint8_t)(packet_size >> 8);
    ble_ota_on_connect(CONN, 23);
    ble_ota_on_mtu(CONN, MTU);
    ble_ota_on_subscribe(CONN, BLE_OTA_CHR_OTA_CONTROL, true);
    REQUIRE_EQ_INT(write_data(size_le, 2, true), 0);
}

/* Sends the image in packet-size chunks, draining the writer after each
 * like the baseline client (one write, wait for the response, next). */
static void send_image(size_t len, size_t packet, bool with_response)
{
    size_t off;

    for (off = 0; off < len; off += packet) {
        size_t n = (len - off < packet) ? len - off : packet;
        REQUIRE_EQ_INT(write_data(&s_image[off], n, with_response), 0);
        fake_drain();
    }
}

static void check_notified(int index, uint8_t op)
{
    REQUIRE(index >= 0);
    CHECK_EQ_INT(fake.events[index].kind, FAKE_EV_NOTIFY);
    CHECK_EQ_INT(fake.events[index].conn, CONN);
    CHECK_EQ_INT(fake.events[index].chr, BLE_OTA_CHR_OTA_CONTROL);
    CHECK_EQ_INT(fake.events[index].len, 1);
    CHECK_EQ_HEX(fake.events[index].data[0], op);
}

TEST(baseline_exchange_byte_for_byte)
{
    const size_t len = 3u * PACKET + 50u;
    ble_ota_status_t st;
    uint8_t ctrl = 0xEE;
    size_t ctrl_len = 0;
    unsigned log_before_data;
    int begin;
    int end;
    int boot;
    int ack;
    int restart;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(len);
    connect_and_size(PACKET);

    /* The baseline client sends REQUEST as a Write Command. */
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_NOTIFY), 0); /* nothing until the writer ran */
    CHECK(fake.wakes >= 1u);
    CHECK_EQ_INT(fake_drain(), 1);
    begin = fake_find_event(FAKE_EV_SLOT_BEGIN, 0);
    CHECK_EQ_INT(begin, 0);
    check_notified(1, 0x02);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.packet_size, PACKET);
    CHECK(st.slot_open);

    log_before_data = fake.n_log;
    send_image(len, PACKET, true);
    CHECK_EQ_INT(fake.n_log, log_before_data); /* no per-packet log line */
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 4);

    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
    fake_drain();

    end = fake_find_event(FAKE_EV_SLOT_END, 0);
    boot = fake_find_event(FAKE_EV_SLOT_SET_BOOT, 0);
    ack = fake_find_event(FAKE_EV_NOTIFY, 1);
    restart = fake_find_event(FAKE_EV_RESTART, 0);
    REQUIRE(end >= 0 && boot >= 0 && ack >= 0 && restart >= 0);
    CHECK(end < boot);
    CHECK(boot < ack);
    CHECK(ack < restart); /* the answer leaves before the restart is even scheduled */
    check_notified(ack, 0x05);
    CHECK_EQ_INT(fake.events[restart].len, 500);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_NOTIFY), 2);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 0);

    CHECK_EQ_INT(fake.slot_len, len);
    CHECK_MEM_EQ(fake.slot, s_image, len);
    CHECK(fake.boot_set);

    REQUIRE_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_OTA_CONTROL, &ctrl, 1, &ctrl_len), 0);
    CHECK_EQ_INT(ctrl_len, 1);
    CHECK_EQ_HEX(ctrl, 0x05);

    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.bytes_written, len);
    CHECK_EQ_INT(st.packets_written, 4);
    CHECK_EQ_INT(st.sessions_completed, 1);
    CHECK(st.restart_scheduled);
    CHECK(!st.slot_open);
    CHECK_EQ_INT(st.queue_count, 0);
    CHECK_EQ_INT(fake.lock_depth, 0);
    CHECK_EQ_INT(fake.max_lock_depth, 1);
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "OTA done"));
}

TEST(image_digest_is_the_sha256_of_the_bytes_written)
{
    const size_t len = 2u * PACKET + 17u;
    uint8_t expected[BLE_OTA_SHA256_LEN];
    ble_ota_status_t st;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(len);
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    fake_drain();
    send_image(len, PACKET, true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, true), 0);
    fake_drain();

    /* Reference digest from the fake's SHA-256, itself checked against the
     * FIPS "abc" vector by the self-test tests. */
    fake_sha256_start(NULL);
    fake_sha256_update(NULL, s_image, len);
    fake_sha256_finish(NULL, expected);
    ble_ota_get_status(&st);
    REQUIRE(st.image_sha256_valid);
    CHECK_MEM_EQ(st.image_sha256, expected, sizeof(expected));
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "image SHA-256: "));
}

TEST(short_last_packet_is_written_with_its_real_length)
{
    const size_t len = 2u * PACKET + 1u;
    int last;
    size_t i;
    bool tail_untouched = true;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(len);
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    send_image(len, PACKET, true);

    last = fake_find_event(FAKE_EV_SLOT_WRITE, 2);
    REQUIRE(last >= 0);
    CHECK_EQ_INT(fake.events[last].len, 1); /* the baseline would write PACKET bytes here */
    CHECK_EQ_HEX(fake.events[last].data[0], s_image[len - 1u]);
    CHECK_EQ_INT(fake.slot_len, len);
    for (i = len; i < len + PACKET; i++) {
        tail_untouched = tail_untouched && fake.slot[i] == 0xFFu;
    }
    CHECK_MSG(tail_untouched, "bytes after the image were written (stale packet tail)");

    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x05);
}

TEST(begin_failure_answers_request_nak)
{
    ble_ota_status_t st;
    uint8_t ctrl = 0;
    size_t ctrl_len = 0;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET);
    fake.begin_rc = BLE_OTA_ERR_NO_SLOT;
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();

    REQUIRE_EQ_INT(fake_count_events(FAKE_EV_NOTIFY), 1);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 0), 0x03);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "needs otadata and two OTA app slots"));
    REQUIRE_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_OTA_CONTROL, &ctrl, 1, &ctrl_len), 0);
    CHECK_EQ_HEX(ctrl, 0x03);
    ble_ota_get_status(&st);
    CHECK(!st.slot_open);

    /* A client that carries on anyway is refused, gets nothing written and a DONE_NAK. */
    CHECK_EQ_INT(write_data(s_image, PACKET, true), BLE_OTA_ATT_ERR_UNLIKELY);
    fake_drain();
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 0);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_RESTART), 0);
}

TEST(request_after_request_nak_starts_a_fresh_session)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET);
    fake.begin_rc = BLE_OTA_ERR_STATE; /* running image not confirmed yet */
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 0), 0x03);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "not confirmed yet"));

    fake.begin_rc = BLE_OTA_OK;
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    CHECK(!fake_logged(BLE_OTA_LOG_WARN, "REQUEST during a transfer"));
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x02);
    send_image(PACKET, PACKET, true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 2), 0x05);
    CHECK_EQ_INT(fake.slot_len, PACKET);
}

TEST(validation_failure_answers_done_nak_and_keeps_the_boot_slot)
{
    ble_ota_status_t st;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * 2u);
    fake.end_rc = BLE_OTA_ERR_INVALID_IMAGE;
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    send_image(PACKET * 2u, PACKET, true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();

    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_RESTART), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 0); /* slot_end already closed it */
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
    CHECK(!fake.boot_set);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "image validation failed"));
    ble_ota_get_status(&st);
    CHECK(!st.restart_scheduled);
    CHECK(!st.image_sha256_valid);
    CHECK_EQ_INT(st.sessions_completed, 0);
}

TEST(set_boot_failure_answers_done_nak_without_restart)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET);
    fake.set_boot_rc = BLE_OTA_ERR_FLASH;
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    fake_drain();
    send_image(PACKET, PACKET, true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, true), 0);
    fake_drain();

    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 1);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_RESTART), 0);
}

TEST(flash_write_failure_drops_the_slot_and_done_gets_nak)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * 3u);
    fake.fail_write_at = 2;
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    fake_drain();
    send_image(PACKET * 2u, PACKET, true);
    /* The next packet learns at once that the transfer is lost. */
    CHECK_EQ_INT(write_data(&s_image[PACKET * 2u], PACKET, true), BLE_OTA_ATT_ERR_UNLIKELY);
    fake_drain();
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 2); /* nothing after the failure */
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, true), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "flash write of"));
}

TEST(image_larger_than_the_slot_is_said_in_the_att_error_of_the_next_packet)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * 3u);
    fake.fail_write_at = 2;
    fake.fail_write_rc = BLE_OTA_ERR_TOO_LARGE; /* esp_ota_write: ESP_ERR_INVALID_SIZE */
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    fake_drain();
    send_image(PACKET * 2u, PACKET, true);
    /* not a bare "unlikely error": the client can say what went wrong */
    CHECK_EQ_HEX(write_data(&s_image[PACKET * 2u], PACKET, true), BLE_OTA_ATT_ERR_IMAGE_TOO_LARGE);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "image larger than the update slot"));
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, true), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
    /* the next session that fails for another reason answers the generic error again */
    fake.fail_write_at = fake.write_calls + 1u;
    fake.fail_write_rc = BLE_OTA_ERR_FLASH;
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    fake_drain();
    send_image(PACKET, PACKET, true);
    CHECK_EQ_HEX(write_data(&s_image[PACKET], PACKET, true), BLE_OTA_ATT_ERR_UNLIKELY);
}

TEST(image_refused_by_the_slot_is_reported_and_dropped)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * 2u);
    fake.fail_write_at = 1;
    fake.fail_write_rc = BLE_OTA_ERR_INVALID_IMAGE;
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    fake_drain();
    send_image(PACKET, PACKET, true);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "not an ESP app image"));
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    /* the next packet learns that the image was refused, not a bare "unlikely error" */
    CHECK_EQ_HEX(write_data(&s_image[PACKET], PACKET, true), BLE_OTA_ATT_ERR_IMAGE_REFUSED);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, true), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
}

TEST(a_security_refusal_of_baseline_data_is_said_in_the_att_error_and_done_gets_nak)
{
    static const int refusals[] = { BLE_OTA_ERR_DOWNGRADE, BLE_OTA_ERR_VERSION_DOWNGRADE, BLE_OTA_ERR_UNSIGNED,
                                    BLE_OTA_ERR_BAD_SIGNATURE, BLE_OTA_ERR_UNTRUSTED_KEY };

    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
        fill_image(PACKET * 3u);
        fake.fail_write_at = 1;
        fake.fail_write_rc = refusals[i]; /* esp_ota_write: ESP_ERR_OTA_SMALL_SEC_VER and the like */
        connect_and_size(PACKET);
        REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
        fake_drain();
        send_image(PACKET, PACKET, true);
        CHECK(fake_logged(BLE_OTA_LOG_ERROR, "image refused at offset 0: "));
        /* every further packet gets the application error "image refused", DONE a DONE_NAK */
        CHECK_EQ_HEX(write_data(&s_image[PACKET], PACKET, true), BLE_OTA_ATT_ERR_IMAGE_REFUSED);
        CHECK_EQ_HEX(write_data(&s_image[PACKET * 2u], PACKET, false), BLE_OTA_ATT_ERR_IMAGE_REFUSED);
        REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, true), 0);
        fake_drain();
        check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
        CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
    }
}

TEST(write_commands_are_accepted_on_both_characteristics)
{
    const size_t len = 5u * PACKET - 9u;
    uint8_t size_le[2] = { (uint8_t)PACKET, 0 };

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(len);
    ble_ota_on_connect(CONN, MTU);
    REQUIRE_EQ_INT(write_data(size_le, 2, false), 0);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    send_image(len, PACKET, false);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();

    check_notified(fake_find_event(FAKE_EV_NOTIFY, 0), 0x02);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x05);
    CHECK_EQ_INT(fake.slot_len, len);
    CHECK_MEM_EQ(fake.slot, s_image, len);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_RESTART), 1);
}

TEST(data_before_request_is_refused_and_never_reaches_flash)
{
    uint8_t size_le[2] = { 0x14, 0x01 }; /* 276 */
    ble_ota_status_t st;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET);
    ble_ota_on_connect(CONN, MTU);
    CHECK_EQ_INT(write_data(s_image, PACKET, true), BLE_OTA_ATT_ERR_VALUE_NOT_ALLOWED);
    CHECK_EQ_INT(write_data(s_image, 1, false), BLE_OTA_ATT_ERR_VALUE_NOT_ALLOWED);
    fake_drain();
    CHECK_EQ_INT(fake.n_events, 0);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "before REQUEST"));

    /* The 2-byte packet size is the one OTA Data value allowed before REQUEST,
     * and REQUEST takes the last one written. */
    REQUIRE_EQ_INT(write_data(s_image, 2, true), 0);
    REQUIRE_EQ_INT(write_data(size_le, 2, true), 0);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.packet_size, 276);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 0);
}

TEST(done_without_request_is_answered_done_nak)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    ble_ota_on_connect(CONN, MTU);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 0), 0x06);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
}

TEST(malformed_writes_get_att_errors)
{
    uint8_t two[2] = { 1, 4 };
    uint8_t big[BLE_OTA_MAX_PACKET + 1u];

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    memset(big, 0x5A, sizeof(big));
    ble_ota_on_connect(CONN, MTU);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, two, 2, true),
                 BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, two, 0, true),
                 BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN);
    CHECK_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, true), 0);
    CHECK_EQ_INT(write_data(big, sizeof(big), true), BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN);
    CHECK_EQ_INT(write_data(big, 0, true), BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN);
    CHECK_EQ_INT(write_data(big, BLE_OTA_MAX_PACKET, true), 0);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_DIS_MODEL, two, 2, true),
                 BLE_OTA_ATT_ERR_WRITE_NOT_PERMITTED);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_COUNT, two, 2, true),
                 BLE_OTA_ATT_ERR_INVALID_HANDLE);
    /* NOP and unknown opcodes are stored and otherwise ignored, as the baseline does. */
    CHECK_EQ_INT(write_ctrl(BLE_OTA_OP_NOP, true), 0);
    CHECK_EQ_INT(write_ctrl(0x7F, false), 0);
    fake_drain();
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
}

TEST(disconnect_mid_transfer_aborts_the_slot)
{
    ble_ota_status_t st;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * 4u);
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    send_image(PACKET * 2u, PACKET, true);
    /* Two more packets still queued when the link drops. */
    REQUIRE_EQ_INT(write_data(&s_image[PACKET * 2u], PACKET, true), 0);
    REQUIRE_EQ_INT(write_data(&s_image[PACKET * 3u], PACKET, true), 0);
    ble_ota_on_disconnect(CONN);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.state, BLE_OTA_STATE_IDLE);
    CHECK_EQ_INT(st.conn, BLE_OTA_CONN_NONE);
    fake_drain();

    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    /* The packets still queued are dropped, not flashed for nothing. */
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 2);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
    CHECK(!fake.slot_open);
    ble_ota_get_status(&st);
    CHECK(!st.slot_open);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "disconnected during a transfer"));

    /* The next connection starts over cleanly. */
    fake.n_events = 0;
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    send_image(PACKET * 4u, PACKET, true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x05);
    CHECK_EQ_INT(fake.slot_len, PACKET * 4u);
    CHECK_MEM_EQ(fake.slot, s_image, PACKET * 4u);
}

TEST(request_during_a_transfer_starts_over)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * 2u);
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    send_image(PACKET, PACKET, true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 2);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x02);
    send_image(PACKET * 2u, PACKET, true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    CHECK_EQ_INT(fake.slot_len, PACKET * 2u);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 2), 0x05);
}

/* Queues data packets until the data part of the queue is full. */
static unsigned fill_queue_data(bool with_response)
{
    ble_ota_status_t st;
    unsigned accepted = 0;

    ble_ota_get_status(&st);
    while (st.queue_count < BLE_OTA_QUEUE_DEPTH - 1u) {
        REQUIRE_EQ_INT(write_data(&s_image[accepted * PACKET], PACKET, with_response), 0);
        accepted++;
        ble_ota_get_status(&st);
    }
    return accepted;
}

/* Queues REQUEST and as many data packets as fit without running the writer. */
static unsigned fill_queue(bool with_response)
{
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    return fill_queue_data(with_response);
}

TEST(full_queue_refuses_write_requests_which_can_be_retried)
{
    const unsigned total = BLE_OTA_QUEUE_DEPTH + 2u;
    ble_ota_status_t st;
    unsigned sent;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * total);
    connect_and_size(PACKET);
    sent = fill_queue(true);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.queue_count, BLE_OTA_QUEUE_DEPTH - 1u);

    /* One slot is kept for DONE/abort, so data sees the queue full here. */
    CHECK_EQ_INT(write_data(&s_image[sent * PACKET], PACKET, true), BLE_OTA_ATT_ERR_INSUFFICIENT_RES);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.writes_refused_full, 1);
    CHECK_EQ_INT(st.state, BLE_OTA_STATE_RECEIVING);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 0); /* no flash work in the BLE context */

    /* The writer catches up; the client retries the refused packet. */
    fake_drain();
    for (; sent < total; sent++) {
        REQUIRE_EQ_INT(write_data(&s_image[sent * PACKET], PACKET, true), 0);
    }
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, true), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x05);
    CHECK_EQ_INT(fake.slot_len, PACKET * total);
    CHECK_MEM_EQ(fake.slot, s_image, PACKET * total);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.queue_high_water, BLE_OTA_QUEUE_DEPTH - 1u);
}

TEST(done_fits_even_when_data_filled_the_queue)
{
    unsigned sent;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * BLE_OTA_QUEUE_DEPTH);
    connect_and_size(PACKET);
    sent = fill_queue(true);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x05);
    CHECK_EQ_INT(fake.slot_len, PACKET * sent);
}

TEST(write_command_into_a_full_queue_fails_the_transfer)
{
    ble_ota_status_t st;
    unsigned sent;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * (BLE_OTA_QUEUE_DEPTH + 1u));
    connect_and_size(PACKET);
    sent = fill_queue(false);
    /* Cannot be refused on air, so the image would have a hole: fail it. */
    CHECK_EQ_INT(write_data(&s_image[sent * PACKET], PACKET, false), BLE_OTA_ATT_ERR_INSUFFICIENT_RES);
    /* Everything after it is refused too. */
    CHECK_EQ_INT(write_data(&s_image[0], PACKET, true), BLE_OTA_ATT_ERR_UNLIKELY);
    ble_ota_get_status(&st);
    CHECK_EQ_INT(st.state, BLE_OTA_STATE_FAILED);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "image data lost"));

    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 0), 0x06); /* answered at once */
    fake_drain();
    /* The writer had not started: the dropped session never touches flash. */
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_RESTART), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_NOTIFY), 1);
}

TEST(write_command_into_a_full_queue_after_writing_began_aborts_the_slot)
{
    unsigned sent;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * (BLE_OTA_QUEUE_DEPTH + 1u));
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    for (sent = 0; sent < BLE_OTA_QUEUE_DEPTH - 1u; sent++) {
        REQUIRE_EQ_INT(write_data(&s_image[sent * PACKET], PACKET, false), 0);
    }
    CHECK_EQ_INT(write_data(&s_image[sent * PACKET], PACKET, false), BLE_OTA_ATT_ERR_INSUFFICIENT_RES);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_DONE, false), 0);
    fake_drain();
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 0), 0x02);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x06);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
    CHECK(!fake.slot_open);
}

TEST(disconnect_with_a_full_queue_still_aborts)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fill_image(PACKET * BLE_OTA_QUEUE_DEPTH);
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    fake_drain();
    (void)fill_queue_data(true);
    ble_ota_on_disconnect(CONN); /* takes the last slot */
    fake_drain();
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 0);
    CHECK(!fake.slot_open);

    /* A REQUEST while the writer is still behind is refused, not queued over. */
    connect_and_size(PACKET);
    (void)fill_queue(true);
    ble_ota_on_disconnect(CONN);
    connect_and_size(PACKET);
    REQUIRE_EQ_INT(write_ctrl(BLE_OTA_OP_REQUEST, false), 0);
    check_notified(fake_find_event(FAKE_EV_NOTIFY, 1), 0x03);
    fake_drain();
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_NOTIFY), 2);
    CHECK(!fake.slot_open);
}

TEST(writer_waits_through_the_port_when_idle)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fake.now = 1000;
    CHECK(!ble_ota_writer_run_once(50));
    CHECK_EQ_INT(fake.now, 1050);
    CHECK(!ble_ota_writer_run_once(0));
    CHECK_EQ_INT(fake.now, 1050);
}

TEST(init_refuses_an_incomplete_port)
{
    ble_ota_port_t broken = fake_port;

    broken.sha256_finish = NULL;
    CHECK_EQ_INT(ble_ota_init(&broken, NULL), BLE_OTA_ERR_INVALID_ARG);
    CHECK_EQ_INT(ble_ota_init(NULL, NULL), BLE_OTA_ERR_INVALID_ARG);
}
