/*
 * Boot-time self-test and the confirm/rollback decision shared by the
 * ESP-IDF app and the host device program.
 */
#include "check.h"

#include "ble_ota.h"
#include "fake_port.h"

TEST(fake_sha256_matches_the_fips_vectors)
{
    /* The fake's SHA-256 is the reference for other tests: pin it first. */
    static const uint8_t empty[32] = { 0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
                                       0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                                       0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                                       0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55 };
    /* SHA-256 of the 56-byte two-block message of FIPS 180-2 B.2. */
    static const char two_block[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const uint8_t two_block_digest[32] = { 0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8,
                                                  0xe5, 0xc0, 0x26, 0x93, 0x0c, 0x3e, 0x60, 0x39,
                                                  0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67,
                                                  0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1 };
    uint8_t out[32];

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fake_sha256_start(NULL);
    fake_sha256_finish(NULL, out);
    CHECK_MEM_EQ(out, empty, 32);
    fake_sha256_start(NULL);
    fake_sha256_update(NULL, (const uint8_t *)two_block, strlen(two_block));
    fake_sha256_finish(NULL, out);
    CHECK_MEM_EQ(out, two_block_digest, 32);
}

TEST(self_test_passes_on_a_working_port)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    CHECK(ble_ota_self_test(false));
    CHECK_EQ_INT(fake.n_log, 0);
}

TEST(self_test_fails_on_purpose_when_asked)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    CHECK(!ble_ota_self_test(true));
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "failing on purpose"));
}

TEST(self_test_catches_a_broken_sha256)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fake.sha_broken = true;
    CHECK(!ble_ota_self_test(false));
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "SHA-256"));
}

TEST(pending_image_that_passes_is_confirmed)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fake.running_state = BLE_OTA_SLOT_STATE_PENDING_VERIFY;
    CHECK_EQ_INT(ble_ota_boot_check(false), BLE_OTA_BOOT_CONFIRMED);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_CONFIRM), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_REJECT), 0);
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "Running partition: ota_0 at 0x10000, state pending-verify"));
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "Diagnostics completed successfully!"));
}

TEST(pending_image_that_fails_is_rolled_back)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fake.running_state = BLE_OTA_SLOT_STATE_PENDING_VERIFY;
    fake.reject_rc = BLE_OTA_ERR_NO_SLOT; /* the fake returns; a real reject reboots */
    CHECK_EQ_INT(ble_ota_boot_check(true), BLE_OTA_BOOT_ROLLBACK_FAILED);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_REJECT), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_CONFIRM), 0);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "Diagnostics failed! Start rollback to the previous version."));
}

TEST(confirm_failure_is_reported)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fake.running_state = BLE_OTA_SLOT_STATE_PENDING_VERIFY;
    fake.confirm_rc = BLE_OTA_ERR_FLASH;
    CHECK_EQ_INT(ble_ota_boot_check(false), BLE_OTA_BOOT_CONFIRM_FAILED);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "could not mark the running image valid"));
}

TEST(image_not_pending_is_left_alone_even_with_a_failing_self_test)
{
    /* An image flashed by serial (or already confirmed) has nothing to roll
     * back to, so the forced failure only matters after an OTA. */
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    fake.running_state = BLE_OTA_SLOT_STATE_VALID;
    CHECK_EQ_INT(ble_ota_boot_check(true), BLE_OTA_BOOT_NOT_PENDING);
    fake.running_state = BLE_OTA_SLOT_STATE_UNDEFINED;
    CHECK_EQ_INT(ble_ota_boot_check(true), BLE_OTA_BOOT_NOT_PENDING);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_CONFIRM), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_REJECT), 0);
}

TEST(names_for_logs)
{
    CHECK_EQ_STR(ble_ota_opcode_name(0x02), "REQUEST_ACK");
    CHECK_EQ_STR(ble_ota_opcode_name(0x06), "DONE_NAK");
    CHECK_EQ_STR(ble_ota_opcode_name(0x42), "unknown");
    CHECK_EQ_STR(ble_ota_slot_state_name(BLE_OTA_SLOT_STATE_PENDING_VERIFY), "pending-verify");
}
