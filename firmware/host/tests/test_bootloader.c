/*
 * The bootloader emulation against flash states produced by the host port's update path:
 * boot choice, PENDING_VERIFY -> ABORTED rollback, fall back from a corrupt image, and a
 * power cut at every flash operation of one update (mcuboot's simulator idea).
 */
#include "bootloader.h"
#include "host_test_util.h"
#include "port_host.h"

#include <sys/wait.h>

static host_flash_t s_flash;

/* A flash file for flash_chip with an app image for image_chip in ota_0. */
static const char *prv_make_device_for(const char *name, const char *flash_chip, const char *image_chip,
                                       const char *version, size_t payload_len)
{
    char err[200];
    const char *path = htu_path(name);
    size_t len;
    uint8_t *img = htu_small_image(image_chip, version, payload_len, &len);
    REQUIRE(host_factory_create(path, host_chip_by_name(flash_chip), img, len, err, sizeof(err)) == 0);
    free(img);
    return path;
}

static const char *prv_make_device(const char *name, const char *version)
{
    return prv_make_device_for(name, "esp32", "esp32", version, 20000);
}

static void prv_open(const char *path)
{
    char err[200];
    REQUIRE(host_flash_open(&s_flash, path, err, sizeof(err)) == 0);
}

/* One boot with the console captured; returns the booted slot or -2. */
static int prv_boot(const char *path, host_boot_t *boot, const char **console)
{
    host_io_init(HOST_IO_CAPTURE, -1);
    host_io_capture_reset();
    prv_open(path);
    int rc = host_bootloader_run(&s_flash, false, boot);
    host_flash_close(&s_flash);
    *console = host_io_captured_console();
    return rc == 0 ? boot->slot : -2;
}

static uint32_t prv_state(const char *path, int slot)
{
    host_dev_t dev;
    char err[200];
    uint32_t st = 0xDEAD;
    prv_open(path);
    if (host_dev_load(&dev, &s_flash, err, sizeof(err)) == 0) {
        (void)host_ota_get_state(&dev, slot, &st);
    }
    host_flash_close(&s_flash);
    return st;
}

/* What the core does for one update: begin, sequential writes of `chunk` bytes, end, set boot. */
static int prv_update(host_flash_t *f, int running_slot, const uint8_t *img, size_t len, size_t chunk)
{
    static host_port_t hp;
    static ble_ota_port_t port;
    char err[200];
    if (host_port_init(&hp, &port, f, host_chip_by_name("esp32"), running_slot, err, sizeof(err)) != 0) {
        return -1;
    }
    ble_ota_slot_info_t target;
    int rc = port.slot_begin(port.ctx, BLE_OTA_IMAGE_SIZE_UNKNOWN, &target);
    for (size_t off = 0; rc == 0 && off < len; off += chunk) {
        rc = port.slot_write(port.ctx, img + off, len - off < chunk ? len - off : chunk);
    }
    if (rc == 0) {
        rc = port.slot_end(port.ctx);
    }
    if (rc == 0) {
        rc = port.slot_set_boot(port.ctx);
    }
    host_port_deinit(&hp);
    return rc;
}

static void prv_update_path(const char *path, int running_slot, const char *version)
{
    size_t len;
    uint8_t *img = htu_small_image("esp32", version, 30000, &len);
    host_io_init(HOST_IO_CAPTURE, -1);
    prv_open(path);
    CHECK_EQ_INT(prv_update(&s_flash, running_slot, img, len, 509), 0);
    host_flash_close(&s_flash);
    free(img);
}

/* A device that booted 1.0.0 from ota_0 once, then took an update to 2.0.0 (not booted yet). */
static const char *prv_make_updated_device(const char *name, host_boot_t *boot, const char **con)
{
    const char *path = prv_make_device(name, "1.0.0");
    REQUIRE_EQ_INT(prv_boot(path, boot, con), 0);
    prv_update_path(path, 0, "2.0.0");
    return path;
}

TEST(fresh_device_boots_ota_0_and_prints_the_idf_boot_log)
{
    const char *path = prv_make_device("fresh.bin", "1.0.0");
    host_boot_t boot;
    const char *con;
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
    CHECK_EQ_STR(boot.part.label, "ota_0");
    CHECK_EQ_STR(boot.image.app_desc.version, "1.0.0");
    CHECK_CONTAINS(con, "ets Jun  8 2016 00:22:57\r\n");
    CHECK_CONTAINS(con, "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n");
    CHECK_CONTAINS(con, "\033[0;32mI (");
    CHECK_CONTAINS(con, ") boot: ESP-IDF v5.3.1 2nd stage bootloader\033[0m\r\n");
    CHECK_CONTAINS(con, "boot: ## Label            Usage          Type ST Offset   Length");
    CHECK_CONTAINS(con, "boot:  3 ota_0            OTA app          00 10 00010000 001f0000");
    CHECK_CONTAINS(con, "boot:  1 otadata          OTA data         01 00 0000d000 00002000");
    CHECK_CONTAINS(con, "esp_image: segment 0: paddr=00010020 vaddr=3f400020 size=");
    CHECK_CONTAINS(con, "boot: Loaded app from partition at offset 0x10000");
    CHECK_CONTAINS(con, "boot: Set actual ota_seq=1 in otadata[0]");
    CHECK_EQ_HEX(prv_state(path, 0), ESP_OTA_IMG_VALID);
}

TEST(update_boots_ota_1_in_pending_verify_then_rolls_back_if_never_confirmed)
{
    host_boot_t boot;
    const char *con;
    const char *path = prv_make_updated_device("rollback.bin", &boot, &con);
    CHECK_EQ_HEX(prv_state(path, 1), ESP_OTA_IMG_NEW);

    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 1);
    CHECK_EQ_STR(boot.image.app_desc.version, "2.0.0");
    CHECK_CONTAINS(con, "boot: Loaded app from partition at offset 0x200000");
    CHECK_EQ_HEX(prv_state(path, 1), ESP_OTA_IMG_PENDING_VERIFY);

    /* the new app reset before confirming: the bootloader aborts it and boots the old one */
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
    CHECK_EQ_STR(boot.image.app_desc.version, "1.0.0");
    CHECK_CONTAINS(con, "boot: Loaded app from partition at offset 0x10000");
    CHECK_EQ_HEX(prv_state(path, 1), ESP_OTA_IMG_ABORTED);
    CHECK_EQ_HEX(prv_state(path, 0), ESP_OTA_IMG_VALID);
    /* and keeps booting it */
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
}

TEST(confirmed_update_keeps_booting)
{
    host_boot_t boot;
    const char *con;
    const char *path = prv_make_updated_device("confirm.bin", &boot, &con);
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 1);
    static host_port_t hp;
    static ble_ota_port_t port;
    char err[200];
    prv_open(path);
    REQUIRE(host_port_init(&hp, &port, &s_flash, host_chip_by_name("esp32"), 1, err, sizeof(err)) == 0);
    CHECK_EQ_STR(port.app_version(port.ctx), "2.0.0");
    ble_ota_slot_info_t running;
    REQUIRE(port.get_running_slot(port.ctx, &running) == 0);
    CHECK_EQ_STR(running.label, "ota_1");
    CHECK_EQ_HEX(running.address, 0x200000);
    CHECK_EQ_INT(running.state, BLE_OTA_SLOT_STATE_PENDING_VERIFY);
    CHECK_EQ_INT(port.confirm_running(port.ctx), 0);
    host_port_deinit(&hp);
    host_flash_close(&s_flash);
    CHECK_EQ_HEX(prv_state(path, 1), ESP_OTA_IMG_VALID);
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 1);
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 1);

    /* the next update goes back into ota_0 and forgets the old entry first */
    prv_update_path(path, 1, "3.0.0");
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
    CHECK_EQ_STR(boot.image.app_desc.version, "3.0.0");
}

TEST(corrupt_image_in_the_chosen_slot_falls_back)
{
    host_boot_t boot;
    const char *con;
    const char *path = prv_make_updated_device("corrupt.bin", &boot, &con);
    /* flash rot after the update: one byte in ota_1's segment data */
    prv_open(path);
    s_flash.mem[0x200000 + 0x400] ^= 0x10;
    host_flash_close(&s_flash);
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
    CHECK_CONTAINS(con, "esp_image: Checksum failed.");
    CHECK_CONTAINS(con, "boot: OTA app partition slot 1 is not bootable");
    CHECK_CONTAINS(con, "boot: Loaded app from partition at offset 0x10000");
    CHECK_EQ_STR(boot.image.app_desc.version, "1.0.0");
}

TEST(set_boot_refuses_and_slot_end_rejects_a_corrupt_upload)
{
    const char *path = prv_make_device("badupload.bin", "1.0.0");
    host_boot_t boot;
    const char *con;
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
    size_t len;
    uint8_t *img = htu_small_image("esp32", "2.0.0", 30000, &len);
    img[len - 1] ^= 0xFF; /* last byte of the appended SHA-256 */
    host_io_init(HOST_IO_CAPTURE, -1);
    host_io_capture_reset();
    prv_open(path);
    CHECK_EQ_INT(prv_update(&s_flash, 0, img, len, 512), BLE_OTA_ERR_INVALID_IMAGE);
    host_flash_close(&s_flash);
    CHECK_CONTAINS(host_io_captured_console(), "Image hash failed - image is corrupt");
    CHECK_CONTAINS(host_io_captured_console(), "esp_ota_ops: New image failed verification");
    free(img);
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
    CHECK_EQ_STR(boot.image.app_desc.version, "1.0.0");
}

TEST(no_app_at_all_stops_in_the_bootloader)
{
    char err[200];
    const char *path = htu_path("empty.bin");
    REQUIRE(host_factory_create(path, host_chip_by_name("esp32"), NULL, 0, err, sizeof(err)) == 0);
    host_boot_t boot;
    const char *con;
    CHECK_EQ_INT(prv_boot(path, &boot, &con), -2);
    CHECK_CONTAINS(con, "image at 0x10000 has invalid magic byte (nothing flashed here?)");
    CHECK_CONTAINS(con, "E (");
    CHECK_CONTAINS(con, "boot: No bootable app partitions in the partition table");
}

TEST(image_for_another_chip_is_not_booted)
{
    const char *path = prv_make_device_for("wrongchip.bin", "esp32", "esp32s3", "1.0.0", 1000);
    host_boot_t boot;
    const char *con;
    CHECK_EQ_INT(prv_boot(path, &boot, &con), -2);
    CHECK_CONTAINS(con, "boot_comm: mismatch chip ID, expected 0, found 9");
}

TEST(esp32s3_flash_uses_its_rom_banner_and_bootloader_offset)
{
    const char *path = prv_make_device_for("s3.bin", "esp32s3", "esp32s3", "1.0.0", 1000);
    host_boot_t boot;
    const char *con;
    REQUIRE_EQ_INT(prv_boot(path, &boot, &con), 0);
    CHECK_CONTAINS(con, "ESP-ROM:esp32s3-20210327\r\n");
    CHECK_CONTAINS(con, "rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)");
    CHECK_CONTAINS(con, "boot.esp32s3: SPI Flash Size : 4MB");
    CHECK_CONTAINS(con, "vaddr=3c000020");
    prv_open(path);
    host_bl_info_t bl;
    char err[200];
    REQUIRE(host_bootloader_detect(&s_flash, &bl, err, sizeof(err)) == 0);
    CHECK_EQ_INT(bl.bootloader_offset, 0);
    CHECK_EQ_STR(bl.chip->model, "ESP32-S3");
    host_flash_close(&s_flash);
}

TEST(every_simulated_chip_boots_the_image_built_for_it)
{
    char names[128];
    char *save = NULL;

    snprintf(names, sizeof(names), "%s", host_chip_names());
    for (char *chip = strtok_r(names, " ", &save); chip != NULL; chip = strtok_r(NULL, " ", &save)) {
        char file[64];
        char tag[64];
        host_boot_t boot;
        const char *con;
        const host_chip_t *c = host_chip_by_name(chip);

        REQUIRE(c != NULL);
        /* the revision check a real bootloader makes: the silicon within the image's range */
        CHECK_MSG(c->chip_rev_full <= c->max_chip_rev_full, "%s: silicon v%d.%d above the image's max v%d.%d", chip,
                  c->chip_rev_full / 100, c->chip_rev_full % 100, c->max_chip_rev_full / 100,
                  c->max_chip_rev_full % 100);
        snprintf(file, sizeof(file), "chip-%s.bin", chip);
        snprintf(tag, sizeof(tag), "boot.%s: ", chip);
        const char *path = prv_make_device_for(file, chip, chip, "1.0.0", 1000);
        CHECK_MSG(prv_boot(path, &boot, &con) == 0, "%s did not boot its own image:\n%s", chip, con);
        CHECK_CONTAINS(con, tag);
        CHECK(!htu_contains(con, "chip revision check failed"));
    }
}

static void prv_cut_every_operation(bool torn)
{
    const char *base = prv_make_device("cut-base.bin", "1.0.0");
    host_boot_t boot;
    const char *con;
    REQUIRE_EQ_INT(prv_boot(base, &boot, &con), 0);
    size_t len;
    uint8_t *img = htu_small_image("esp32", "2.0.0", 30000, &len);

    /* count the operations of a clean update */
    const char *work = htu_path("cut-work.bin");
    htu_copy_file(base, work);
    host_io_init(HOST_IO_CAPTURE, -1);
    prv_open(work);
    REQUIRE_EQ_INT(prv_update(&s_flash, 0, img, len, 509), 0);
    uint64_t total = s_flash.ops;
    host_flash_close(&s_flash);
    CHECK(total > 10);

    int booted_old = 0, booted_new = 0;
    for (uint64_t cut = 1; cut <= total; cut++) {
        htu_copy_file(base, work);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            host_io_init(HOST_IO_CAPTURE, -1);
            char err[200];
            if (host_flash_open(&s_flash, work, err, sizeof(err)) != 0) {
                _exit(1);
            }
            s_flash.power_cut_at = cut;
            s_flash.power_cut_torn = torn;
            prv_update(&s_flash, 0, img, len, 509);
            _exit(0);
        }
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        CHECK_EQ_INT(WEXITSTATUS(status), 137);
        int slot = prv_boot(work, &boot, &con);
        CHECK_MSG(slot == 0 || slot == 1, "%s power cut at operation %llu of %llu left no bootable app:\n%s",
                  torn ? "torn" : "clean", (unsigned long long)cut, (unsigned long long)total, con);
        if (slot == 0) {
            CHECK_EQ_STR(boot.image.app_desc.version, "1.0.0");
            booted_old++;
        } else if (slot == 1) {
            CHECK_EQ_STR(boot.image.app_desc.version, "2.0.0");
            booted_new++;
        }
    }
    /* every cut came before the otadata entry was complete, so all of them boot the old app */
    CHECK_EQ_INT(booted_old, (int)total);
    CHECK_EQ_INT(booted_new, 0);
    free(img);
}

/* A power cut at every flash operation of an update, the operation skipped (clean) or torn
 * (half of a write programmed, half of a sector or block erased), as mcuboot's simulator does. */
TEST(power_cut_at_every_flash_operation_of_an_update_leaves_a_bootable_device)
{
    prv_cut_every_operation(false);
}

TEST(a_torn_write_or_half_erased_sector_at_every_operation_leaves_a_bootable_device)
{
    prv_cut_every_operation(true);
}
