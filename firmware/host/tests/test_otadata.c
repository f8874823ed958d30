/* otadata CRC, slot selection and the esp_ota_ops bookkeeping on it. */
#include "host_test_util.h"
#include "otadata.h"

static esp_ota_select_entry_t prv_entry(uint32_t seq, uint32_t state)
{
    esp_ota_select_entry_t e;
    memset(&e, 0xFF, sizeof(e));
    e.ota_seq = seq;
    e.ota_state = state;
    e.crc = host_ota_select_crc(&e);
    return e;
}

TEST(crc_is_crc32_of_ota_seq_like_esp_rom_crc32_le)
{
    /* binascii.crc32(struct.pack('<I', seq), 0xFFFFFFFF), as otatool.py computes it */
    esp_ota_select_entry_t e = prv_entry(1, ESP_OTA_IMG_VALID);
    CHECK_EQ_HEX(e.crc, 0x4743989a);
    /* zlib check value for "123456789" with the standard init */
    CHECK_EQ_HEX(host_crc32_le(0, (const uint8_t *)"123456789", 9), 0xCBF43926);
    /* only ota_seq is covered */
    esp_ota_select_entry_t f = prv_entry(1, ESP_OTA_IMG_NEW);
    memset(f.seq_label, 0x00, sizeof(f.seq_label));
    CHECK_EQ_HEX(host_ota_select_crc(&f), e.crc);
}

TEST(selection_takes_the_valid_entry_with_the_highest_seq)
{
    esp_ota_select_entry_t two[2];
    two[0] = prv_entry(1, ESP_OTA_IMG_VALID);
    two[1] = prv_entry(2, ESP_OTA_IMG_NEW);
    CHECK_EQ_INT(host_ota_active_entry(two), 1);
    two[1].ota_state = ESP_OTA_IMG_ABORTED;
    CHECK_EQ_INT(host_ota_active_entry(two), 0);
    two[1].ota_state = ESP_OTA_IMG_INVALID;
    CHECK_EQ_INT(host_ota_active_entry(two), 0);
    two[1] = prv_entry(2, ESP_OTA_IMG_VALID);
    two[1].crc ^= 1; /* torn write */
    CHECK_EQ_INT(host_ota_active_entry(two), 0);
    two[0] = prv_entry(UINT32_MAX, ESP_OTA_IMG_UNDEFINED);
    CHECK_EQ_INT(host_ota_active_entry(two), -1);
    two[0] = prv_entry(3, ESP_OTA_IMG_UNDEFINED); /* UNDEFINED boots without limits */
    two[1] = prv_entry(2, ESP_OTA_IMG_VALID);
    CHECK_EQ_INT(host_ota_active_entry(two), 0);
}

TEST(seq_for_slot_maps_back_to_the_slot)
{
    CHECK_EQ_INT(host_ota_seq_for_slot(1, 1, 2), 2);
    CHECK_EQ_INT(host_ota_seq_for_slot(2, 0, 2), 3);
    CHECK_EQ_INT(host_ota_seq_for_slot(5, 1, 2), 6);
    CHECK_EQ_INT(host_ota_seq_for_slot(4, 7, 8), 8);
    for (uint32_t seq = 1; seq < 20; seq++) {
        for (uint32_t slot = 0; slot < 2; slot++) {
            uint32_t n = host_ota_seq_for_slot(seq, slot, 2);
            CHECK(n >= seq);
            CHECK_EQ_INT((n - 1) % 2, slot);
        }
    }
}

static void prv_device(host_flash_t *f, host_dev_t *dev, const char *name)
{
    char err[200];
    const char *path = htu_path(name);
    size_t len;
    uint8_t *img = htu_small_image("esp32", "1.0.0", 4096, &len);
    REQUIRE(host_factory_create(path, host_chip_by_name("esp32"), img, len, err, sizeof(err)) == 0);
    REQUIRE(host_factory_write_app(path, "ota_1", img, len, err, sizeof(err)) == 0);
    free(img);
    REQUIRE(host_flash_open(f, path, err, sizeof(err)) == 0);
    REQUIRE(host_dev_load(dev, f, err, sizeof(err)) == 0);
    REQUIRE_EQ_INT(dev->ota_count, 2);
}

TEST(set_boot_mark_valid_and_rollback_bookkeeping)
{
    host_flash_t f;
    host_dev_t dev;
    char err[200];
    prv_device(&f, &dev, "ota.bin");
    esp_ota_select_entry_t two[2];
    REQUIRE(host_otadata_read(&dev, two) == 0);
    CHECK_EQ_HEX(two[0].ota_seq, UINT32_MAX);
    CHECK_EQ_INT(host_ota_selected_slot(&dev, two), -1);

    /* blank otadata: first set_boot writes entry 0 with seq slot+1 */
    REQUIRE(host_ota_set_boot(&dev, 0, err, sizeof(err)) == 0);
    REQUIRE(host_ota_mark_valid(&dev, err, sizeof(err)) == 0);
    REQUIRE(host_otadata_read(&dev, two) == 0);
    CHECK_EQ_INT(two[0].ota_seq, 1);
    CHECK_EQ_HEX(two[0].ota_state, ESP_OTA_IMG_VALID);
    CHECK_EQ_HEX(two[0].crc, host_ota_select_crc(&two[0]));

    /* update to ota_1: the other entry gets seq 2, state NEW */
    REQUIRE(host_ota_set_boot(&dev, 1, err, sizeof(err)) == 0);
    REQUIRE(host_otadata_read(&dev, two) == 0);
    CHECK_EQ_INT(two[1].ota_seq, 2);
    CHECK_EQ_HEX(two[1].ota_state, ESP_OTA_IMG_NEW);
    CHECK_EQ_INT(host_ota_selected_slot(&dev, two), 1);
    uint32_t st = 0;
    REQUIRE(host_ota_get_state(&dev, 1, &st) == 0);
    CHECK_EQ_HEX(st, ESP_OTA_IMG_NEW);
    REQUIRE(host_ota_get_state(&dev, 0, &st) == 0);
    CHECK_EQ_HEX(st, ESP_OTA_IMG_VALID);

    /* the new app rejects itself: INVALID, and ota_0 is selected again */
    REQUIRE(host_ota_mark_invalid(&dev, err, sizeof(err)) == 0);
    REQUIRE(host_otadata_read(&dev, two) == 0);
    CHECK_EQ_HEX(two[1].ota_state, ESP_OTA_IMG_INVALID);
    CHECK_EQ_INT(host_ota_selected_slot(&dev, two), 0);

    /* with only one usable image there is nothing to roll back to */
    REQUIRE(host_ota_set_boot(&dev, 0, err, sizeof(err)) == 0); /* same slot: only the state is rewritten */
    REQUIRE(host_otadata_read(&dev, two) == 0);
    CHECK_EQ_INT(two[0].ota_seq, 1);
    CHECK_EQ_HEX(two[0].ota_state, ESP_OTA_IMG_NEW);
    CHECK(host_ota_mark_invalid(&dev, err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "Rollback is not possible");
    host_flash_close(&f);
}

TEST(invalidate_inactive_forgets_the_older_entry)
{
    host_flash_t f;
    host_dev_t dev;
    char err[200];
    prv_device(&f, &dev, "inactive.bin");
    REQUIRE(host_ota_set_boot(&dev, 0, err, sizeof(err)) == 0);
    REQUIRE(host_ota_set_boot(&dev, 1, err, sizeof(err)) == 0);
    REQUIRE(host_ota_mark_valid(&dev, err, sizeof(err)) == 0);
    /* running ota_1 (seq 2); an update of ota_0 first forgets entry 0 (seq 1, ota_0) */
    CHECK_EQ_INT(host_ota_invalidate_inactive(&dev, 1), 0);
    esp_ota_select_entry_t two[2];
    REQUIRE(host_otadata_read(&dev, two) == 0);
    CHECK_EQ_HEX(two[0].ota_seq, UINT32_MAX);
    CHECK_EQ_INT(two[1].ota_seq, 2);
    /* nothing left to forget */
    CHECK_EQ_INT(host_ota_invalidate_inactive(&dev, 1), 1);
    host_flash_close(&f);
}
