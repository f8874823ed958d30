/* The command-line tools: esp-app-image and ble-ota-flash. */
#include "bootloader.h"
#include "host_test_util.h"

#include <sys/wait.h>

static int prv_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(esp_app_image_wraps_an_executable)
{
    const char *out = htu_path("tool.bin");
    char cmd[2048], text[4096];
    snprintf(cmd, sizeof(cmd),
             "SOURCE_DATE_EPOCH=1764018000 %s --chip esp32c3 --version 7.7.7 --project demo --secure-version 3 "
             "--out %s %s 2>&1",
             BLE_OTA_TEST_IMAGE_TOOL, out, BLE_OTA_TEST_APP_EXE);
    REQUIRE_EQ_INT(prv_run(cmd, text, sizeof(text)), 0);
    size_t len;
    char err[200];
    uint8_t *img = host_read_file(out, &len, err, sizeof(err));
    REQUIRE(img != NULL);
    host_image_info_t info;
    host_io_init(HOST_IO_CAPTURE, -1);
    REQUIRE(host_image_verify_buffer(img, len, 0x10000, host_chip_by_name("esp32c3"), HOST_IMAGE_VERIFY_SILENT, &info,
                                     err, sizeof(err)) == 0);
    CHECK_EQ_STR(info.app_desc.version, "7.7.7");
    CHECK_EQ_STR(info.app_desc.project_name, "demo");
    CHECK_EQ_INT(info.app_desc.secure_version, 3);
    CHECK_EQ_STR(info.app_desc.date, "Nov 24 2025"); /* SOURCE_DATE_EPOCH 1764018000 */
    CHECK_EQ_STR(info.app_desc.time, "21:00:00");
    size_t exe_len;
    uint8_t *exe = host_read_file(BLE_OTA_TEST_APP_EXE, &exe_len, err, sizeof(err));
    REQUIRE(exe != NULL);
    uint8_t sha[32];
    host_sha256(exe, exe_len, sha);
    CHECK_MEM_EQ(info.app_desc.app_elf_sha256, sha, 32);
    free(exe);
    free(img);

    snprintf(cmd, sizeof(cmd), "%s --chip esp8266 --out %s %s 2>&1", BLE_OTA_TEST_IMAGE_TOOL, out,
             BLE_OTA_TEST_APP_EXE);
    CHECK_EQ_INT(prv_run(cmd, text, sizeof(text)), 2);
    CHECK_CONTAINS(text, "unknown chip 'esp8266'");
    snprintf(cmd, sizeof(cmd), "%s --version 0123456789012345678901234567890123 --out %s %s 2>&1",
             BLE_OTA_TEST_IMAGE_TOOL, out, BLE_OTA_TEST_APP_EXE);
    CHECK_EQ_INT(prv_run(cmd, text, sizeof(text)), 1);
    CHECK_CONTAINS(text, "longer than the 31 characters");
}

TEST(ble_ota_flash_create_write_info)
{
    const char *flash = htu_path("tool-flash.bin");
    char cmd[2048], text[8192];
    snprintf(cmd, sizeof(cmd), "%s create %s --chip esp32 --app %s 2>&1", BLE_OTA_TEST_FLASH_TOOL, flash,
             BLE_OTA_TEST_APP_IMAGE);
    REQUIRE_EQ_INT(prv_run(cmd, text, sizeof(text)), 0);
    snprintf(cmd, sizeof(cmd), "%s write %s ota_1 %s 2>&1", BLE_OTA_TEST_FLASH_TOOL, flash, BLE_OTA_TEST_BAD_IMAGE);
    REQUIRE_EQ_INT(prv_run(cmd, text, sizeof(text)), 0);
    snprintf(cmd, sizeof(cmd), "%s info %s 2>&1", BLE_OTA_TEST_FLASH_TOOL, flash);
    REQUIRE_EQ_INT(prv_run(cmd, text, sizeof(text)), 0);
    CHECK_CONTAINS(text, "bootloader: ESP32 at 0x1000, ESP-IDF v5.3.1");
    CHECK_CONTAINS(text, "   3 ota_0            OTA app          00 10 00010000 001f0000");
    CHECK_CONTAINS(text, "[0] erased");
    CHECK_CONTAINS(text, "next boot tries: ota_0 (otadata has no valid entry)");
    CHECK_CONTAINS(text, "version " BLE_OTA_TEST_APP_VERSION ",");
    CHECK_CONTAINS(text, "version " BLE_OTA_TEST_APP_VERSION "-bad,");

    snprintf(cmd, sizeof(cmd), "%s write %s nvs %s 2>&1", BLE_OTA_TEST_FLASH_TOOL, flash, BLE_OTA_TEST_APP_IMAGE);
    CHECK_EQ_INT(prv_run(cmd, text, sizeof(text)), 1);
    CHECK_CONTAINS(text, "no app partition named 'nvs'");
    snprintf(cmd, sizeof(cmd), "%s bogus 2>&1", BLE_OTA_TEST_FLASH_TOOL);
    CHECK_EQ_INT(prv_run(cmd, text, sizeof(text)), 2);
    CHECK_CONTAINS(text, "usage:");
}
