/*
 * The device program end to end, through its frames, as the virtual rig drives it:
 * boot, baseline OTA exchange, RESET, and the next boot running what was flashed.
 */
#include "device_harness.h"

/* WRITE {conn, chr, with_response, data}; returns the WRITE_RSP status for requests. */
static int prv_write(dh_dev_t *d, uint16_t chr, const uint8_t *data, size_t len, int with_rsp)
{
    uint8_t h[5];
    dh_u16(h, 1);
    dh_u16(h + 2, chr);
    h[4] = (uint8_t)with_rsp;
    /* A device that died (power cut) fails this; the dh_expect that follows reports it. */
    (void)dh_call(d, 0x04, h, 5, data, len);
    if (!with_rsp) {
        return 0;
    }
    uint8_t rsp[5];
    if (dh_expect(d, 0x84, rsp, sizeof(rsp)) != 5) {
        return -1;
    }
    return rsp[4];
}

/* READ {conn, chr}; the READ_RSP payload {conn, chr, status, value} into rsp, returns its length or -1. */
static int prv_read(dh_dev_t *d, uint16_t chr, uint8_t *rsp, size_t cap)
{
    uint8_t rd[4];
    dh_u16(rd, 1);
    dh_u16(rd + 2, chr);
    (void)dh_call(d, 0x05, rd, 4, NULL, 0);
    return dh_expect(d, 0x85, rsp, cap);
}

/* The baseline exchange (SEED-PROTOCOL.md): packet size, REQUEST, data with response, DONE.
 * Returns the opcode notified after DONE. */
static int prv_baseline_upload(dh_dev_t *d, const uint8_t *img, size_t len, uint16_t mtu)
{
    uint8_t p[8], note[16];
    dh_u16(p, 1);
    dh_u16(p + 2, mtu);
    (void)dh_call(d, 0x01, p, 4, NULL, 0); /* CONNECT */
    dh_u16(p + 2, 0);                      /* OTA Control */
    p[4] = 1;
    (void)dh_call(d, 0x06, p, 5, NULL, 0); /* SUBSCRIBE notify */
    uint16_t packet = (uint16_t)(mtu - 3);
    uint8_t size_le[2];
    dh_u16(size_le, packet);
    CHECK_EQ_INT(prv_write(d, 1, size_le, 2, 1), 0);
    const uint8_t request = 0x01;
    prv_write(d, 0, &request, 1, 0); /* the baseline client sends opcodes as Write Commands */
    int n = dh_expect(d, 0x82, note, sizeof(note));
    if (n != 5) {
        return -1; /* the device is gone */
    }
    CHECK_EQ_INT(note[0] | note[1] << 8, 1);
    CHECK_EQ_INT(note[2] | note[3] << 8, 0);
    if (note[4] != 0x02) { /* REQUEST_ACK */
        return -2 - note[4];
    }
    for (size_t off = 0; off < len; off += packet) {
        size_t k = len - off < packet ? len - off : packet;
        int st = prv_write(d, 1, img + off, k, 1);
        if (st != 0) {
            return -1; /* refused, or the device is gone: the caller decides which was expected */
        }
    }
    const uint8_t done = 0x04;
    prv_write(d, 0, &done, 1, 0);
    n = dh_expect(d, 0x82, note, sizeof(note));
    return n == 5 ? note[4] : -1;
}

/* Boots the flash once more: the old app (ota_0, BLE_OTA_TEST_APP_VERSION) runs, confirmed. */
static void prv_check_the_old_app_boots(const char *flash)
{
    dh_dev_t d;
    const char *boot[] = {"--flash", flash, NULL};
    dh_start(&d, boot);
    CHECK_CONTAINS(d.console, "boot: Loaded app from partition at offset 0x10000");
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "\033");
    CHECK_CONTAINS(d.console, "ble_ota: Running partition: ota_0 at 0x10000, state valid");
    CHECK_EQ_INT(dh_end(&d), 0);
}

TEST(gatt_json_exports_the_layout_declared_in_c)
{
    char buf[4096];
    CHECK_EQ_INT(dh_gatt_json(buf, sizeof(buf)), 0);
    CHECK_CONTAINS(buf, "{\"services\":[{");
    CHECK_CONTAINS(buf, "\"uuid\":\"d6f1d96d-594c-4c53-b1c6-144a1dfde6d8\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"7ad671aa-21c0-46a4-b722-270e3ae3d830\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"23408888-1f40-4cd8-9b89-ca8d45f8a5b0\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"180a\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"2a24\"");
    CHECK_CONTAINS(buf, "\"id\":0,");
    CHECK_CONTAINS(buf, "\"notify\"");
}

TEST(baseline_exchange_then_next_boot_runs_the_new_version)
{
    const char *flash = htu_fresh_path("e2e.bin");
    dh_dev_t d;
    uint8_t hello[64];
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    dh_spawn(&d, create);
    int n = dh_expect(&d, 0x80, hello, sizeof(hello));
    REQUIRE(n >= 1);
    CHECK_EQ_INT(hello[0], 1);
    CHECK_MEM_EQ(hello + 1, "esp32", 5);
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "\033[0m\r\n");
    CHECK_CONTAINS(d.console, "ble_ota: Running partition: ota_0 at 0x10000, state valid");
    CHECK_CONTAINS(d.console, "ble_ota: advertising as \"esp32\"");

    /* Device Information: model is the chip, firmware revision the running version */
    uint8_t rsp[64] = {0};
    n = prv_read(&d, 3, rsp, sizeof(rsp) - 1);
    REQUIRE(n >= 5);
    CHECK_EQ_INT(rsp[4], 0);
    CHECK_MEM_EQ(rsp + 5, "ESP32", 5);

    size_t len;
    uint8_t *img = dh_image_of_app("e2e-2.0.0", &len);
    REQUIRE(img != NULL);
    CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 247), 0x05); /* DONE_ACK */
    uint8_t reason = 0;
    REQUIRE_EQ_INT(dh_expect(&d, 0x87, &reason, 1), 1);
    CHECK_EQ_INT(reason, 1);
    CHECK_CONTAINS(d.console, "ble_ota: restarting into the new image");
    /* the baseline exchange also answers every input frame with its FRAME_DONE */
    CHECK_EQ_INT(d.frames_done, d.frames_in);
    CHECK_EQ_INT(d.done_mismatch, 0);
    CHECK_EQ_INT(dh_end(&d), 0);
    CHECK(d.flash_ops[1] >= len / 4096);        /* erases */
    CHECK(d.flash_ops[2] >= len / 244);         /* one write per packet */

    /* next boot: the bootloader picks ota_1, the app confirms itself */
    const char *boot[] = {"--flash", flash, "--reset-reason", "sw", NULL};
    dh_start(&d, boot);
    CHECK_CONTAINS(d.console, "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)");
    CHECK_CONTAINS(d.console, "boot: Loaded app from partition at offset 0x200000");
    CHECK_CONTAINS(d.console, "App version:      e2e-2.0.0");
    CHECK_CONTAINS(d.console, "state pending-verify");
    CHECK_CONTAINS(d.console, "Diagnostics completed successfully");
    CHECK_EQ_INT(dh_end(&d), 0);

    /* and the one after that still runs it: it was confirmed */
    const char *again[] = {"--flash", flash, NULL};
    dh_start(&d, again);
    CHECK_CONTAINS(d.console, "App version:      e2e-2.0.0");
    CHECK_CONTAINS(d.console, "state valid");
    CHECK_EQ_INT(dh_end(&d), 0);
    free(img);
}

TEST(image_that_fails_its_self_test_is_rolled_back)
{
    const char *flash = htu_fresh_path("e2e-selftest.bin");
    dh_dev_t d;
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    dh_start(&d, create);
    size_t len;
    char err[200];
    uint8_t *img = host_read_file(BLE_OTA_TEST_BAD_IMAGE, &len, err, sizeof(err));
    REQUIRE(img != NULL);
    CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x05);
    uint8_t reason = 0;
    REQUIRE_EQ_INT(dh_expect(&d, 0x87, &reason, 1), 1);
    CHECK_EQ_INT(dh_end(&d), 0);
    free(img);

    /* the bad image boots, fails its self-test, marks itself invalid and resets */
    const char *boot[] = {"--flash", flash, NULL};
    dh_spawn(&d, boot);
    REQUIRE_EQ_INT(dh_expect(&d, 0x87, &reason, 1), 1);
    CHECK_EQ_INT(reason, 2);
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "-bad");
    CHECK_CONTAINS(d.console, "Diagnostics failed! Start rollback to the previous version.");
    CHECK_CONTAINS(d.console, "esp_ota_ops: Rollback to previously worked partition.");
    CHECK_EQ_INT(dh_end(&d), 0);

    /* the bootloader goes back to the old app, which says what happened */
    prv_check_the_old_app_boots(flash);
}

TEST(corrupt_upload_gets_done_nak_and_the_old_app_keeps_booting)
{
    const char *flash = htu_fresh_path("e2e-corrupt.bin");
    dh_dev_t d;
    uint8_t hello[64];
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    dh_start(&d, create);
    size_t len;
    uint8_t *img = dh_image_of_app("e2e-corrupt", &len);
    REQUIRE(img != NULL);
    img[len / 2] ^= 0x40;
    CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x06); /* DONE_NAK */
    CHECK_CONTAINS(d.console, "esp_ota_ops: New image failed verification");
    CHECK_CONTAINS(d.console, "ble_ota: esp_ota_end failed: ESP_ERR_OTA_VALIDATE_FAILED");
    uint8_t disc[3] = {1, 0, 0x13};
    (void)dh_call(&d, 0x02, disc, 3, NULL, 0);
    REQUIRE(dh_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_EQ_INT(hello[0], 1); /* advertising again */
    CHECK_CONTAINS(d.console, "ble_ota: disconnect reason 0x213");
    CHECK_EQ_INT(dh_end(&d), 0); /* no RESET: it just keeps running */
    free(img);

    prv_check_the_old_app_boots(flash);
}

TEST(power_cut_during_an_upload_exits_137_and_the_old_app_boots)
{
    const char *flash = htu_fresh_path("e2e-cut.bin");
    dh_dev_t d;
    size_t len;
    uint8_t *img = dh_image_of_app("e2e-cut", &len);
    REQUIRE(img != NULL);
    /* the first boot does 2 operations (otadata erase + write); cut halfway through the data */
    unsigned cut = 2 + (unsigned)(len / 514) / 2;
    char cut_s[16];
    snprintf(cut_s, sizeof(cut_s), "%u", cut);
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--power-cut-at", cut_s,
                            NULL};
    dh_start(&d, create);
    CHECK_EQ_INT(prv_baseline_upload(&d, img, len, 517), -1); /* the link dies with the device */
    CHECK_EQ_INT(dh_end(&d), 137);
    CHECK_EQ_INT(d.flash_ops[1] + d.flash_ops[2], cut - 1);
    free(img);

    prv_check_the_old_app_boots(flash);
}

TEST(bad_command_lines_say_what_to_do)
{
    dh_dev_t d;
    const char *none[] = {NULL};
    dh_spawn(&d, none);
    CHECK_EQ_INT(dh_end(&d), 2);
    const char *missing[] = {"--flash", htu_path("missing.bin"), NULL};
    dh_spawn(&d, missing);
    CHECK_EQ_INT(dh_end(&d), 1);
}

TEST(create_for_another_chip_boots_that_chips_image_and_refuses_foreign_images)
{
    static const struct {
        const char *chip, *rom, *model, *cores;
    } chips[] = {{"esp32s3", "ESP-ROM:esp32s3-20210327", "ESP32-S3", "cpu_start: Multicore app"},
                 {"esp32c3", "ESP-ROM:esp32c3-api1-20210207", "ESP32-C3", "cpu_start: Unicore app"}};
    for (size_t i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "e2e-%s.bin", chips[i].chip);
        const char *flash = htu_fresh_path(name);
        dh_dev_t d;
        const char *create[] = {"--flash", flash, "--create", "--chip", chips[i].chip, NULL};
        dh_start(&d, create);
        CHECK_CONTAINS(d.console, chips[i].rom);
        CHECK_CONTAINS(d.console, chips[i].cores);
        uint8_t rsp[64] = {0};
        int n = prv_read(&d, 3, rsp, sizeof(rsp) - 1);
        REQUIRE(n >= 5);
        CHECK_EQ_STR((const char *)rsp + 5, chips[i].model);
        /* an ESP32 image is refused at DONE: esp_ota_end checks the chip id */
        size_t len;
        uint8_t *img = dh_image_of_app("e2e-wrong-chip", &len);
        REQUIRE(img != NULL);
        CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x06);
        CHECK_CONTAINS(d.console, "mismatch chip ID");
        free(img);
        CHECK_EQ_INT(dh_end(&d), 0);
        /* the chip is remembered by the flash: a later boot needs no --chip */
        const char *boot[] = {"--flash", flash, NULL};
        dh_start(&d, boot);
        CHECK_CONTAINS(d.console, chips[i].rom);
        CHECK_EQ_INT(dh_end(&d), 0);
        const char *wrong[] = {"--flash", flash, "--chip", "esp32", NULL};
        dh_spawn(&d, wrong);
        CHECK_EQ_INT(dh_end(&d), 2);
    }
}

TEST(device_power_cut_at_sampled_operations_of_a_baseline_update_never_bricks_it)
{
    /* a device that has booted once, so the upload's own boot does no flash work */
    const char *base = htu_fresh_path("e2e-cuts-base.bin");
    dh_dev_t d;
    const char *create[] = {"--flash", base, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    dh_start(&d, create);
    CHECK_EQ_INT(dh_end(&d), 0);

    size_t len;
    uint8_t *img = dh_image_of_app("e2e-cuts-new", &len);
    REQUIRE(img != NULL);
    const char *work = htu_fresh_path("e2e-cuts-work.bin");

    /* the clean run: count its erase/write operations */
    htu_copy_file(base, work);
    const char *run[] = {"--flash", work, "--restart-delay-ms", "0", NULL};
    dh_start(&d, run);
    REQUIRE_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x05);
    CHECK_EQ_INT(dh_end(&d), 0);
    unsigned total = d.flash_ops[1] + d.flash_ops[2];
    CHECK(total > 100);
    CHECK(dh_boots_version(work, "e2e-cuts-new"));

    /* every cut before the last operation (the otadata entry write) keeps the old app */
    unsigned cuts[16];
    int ncuts = 0;
    cuts[ncuts++] = 1;
    cuts[ncuts++] = 2;
    for (unsigned k = 1; k < 8; k++) {
        cuts[ncuts++] = total * k / 8;
    }
    cuts[ncuts++] = total - 2; /* last data write */
    cuts[ncuts++] = total - 1; /* erase of the otadata sector */
    cuts[ncuts++] = total;     /* write of the new otadata entry */
    for (int i = 0; i < ncuts; i++) {
        char cut[16];
        snprintf(cut, sizeof(cut), "%u", cuts[i]);
        htu_copy_file(base, work);
        const char *cutrun[] = {"--flash", work, "--power-cut-at", cut, NULL};
        dh_start(&d, cutrun);
        int up = prv_baseline_upload(&d, img, len, 517);
        CHECK_MSG(up == -1, "cut at %u of %u: upload ended with %d instead of losing the device", cuts[i], total, up);
        CHECK_EQ_INT(dh_end(&d), 137);
        CHECK_MSG(dh_boots_version(work, BLE_OTA_TEST_APP_VERSION),
                  "power cut at operation %u of %u: the old app did not boot (its console is above)", cuts[i], total);
    }
    free(img);
}

TEST(app_staged_in_a_file_when_memfds_are_not_executable_leaves_nothing_behind)
{
    const char *flash = htu_fresh_path("e2e-nomemfd.bin");
    dh_dev_t d;
    setenv("BLE_OTA_DEVICE_NO_MEMFD", "1", 1);
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    dh_spawn(&d, create);
    unsetenv("BLE_OTA_DEVICE_NO_MEMFD");
    REQUIRE(dh_expect(&d, 0x80, NULL, 0) >= 1);
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "\033");
    CHECK_EQ_INT(dh_end(&d), 0);
    char cmd[1024], out[256] = {0};
    snprintf(cmd, sizeof(cmd), "ls %s.app-* 2>/dev/null | wc -l", flash);
    FILE *p = popen(cmd, "r");
    REQUIRE(p != NULL);
    REQUIRE(fgets(out, sizeof(out), p) != NULL);
    pclose(p);
    CHECK_EQ_INT(atoi(out), 0);
}
