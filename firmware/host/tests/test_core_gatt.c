/*
 * The GATT layout declared once: UUIDs as seen on air, properties, ids,
 * and the reads the core answers.
 */
#include "check.h"

#include "ble_ota.h"
#include "ble_ota_gatt.h"
#include "fake_port.h"

static const char *uuid_str(const ble_ota_uuid_t *uuid)
{
    static char buf[BLE_OTA_UUID_STR_SIZE];

    if (ble_ota_uuid_to_string(uuid, buf, sizeof(buf)) < 0) {
        return "(bad uuid)";
    }
    return buf;
}

TEST(ota_service_uuid_is_the_on_air_value)
{
    /* ...-144a..., not the ...-244a... of the baseline's source comment. */
    CHECK_EQ_STR(uuid_str(&ble_ota_service_uuid), "d6f1d96d-594c-4c53-b1c6-144a1dfde6d8");
    CHECK_EQ_STR(uuid_str(&ble_ota_gatt_services[BLE_OTA_SVC_OTA].uuid),
                 "d6f1d96d-594c-4c53-b1c6-144a1dfde6d8");
}

TEST(uuids_are_stored_little_endian_like_ble_uuid128_init)
{
    /* BLE_UUID128_INIT takes the bytes in air order: least significant first. */
    static const uint8_t service_le[16] = { 0xd8, 0xe6, 0xfd, 0x1d, 0x4a, 0x14, 0xc6, 0xb1,
                                            0x53, 0x4c, 0x4c, 0x59, 0x6d, 0xd9, 0xf1, 0xd6 };
    const ble_ota_chr_def_t *model = ble_ota_gatt_find_chr(BLE_OTA_CHR_DIS_MODEL);

    CHECK_EQ_INT(ble_ota_service_uuid.len, 16);
    CHECK_MEM_EQ(ble_ota_service_uuid.bytes, service_le, 16);
    REQUIRE(model != NULL);
    CHECK_EQ_INT(model->uuid.len, 2);
    CHECK_EQ_HEX(model->uuid.bytes[0], 0x24);
    CHECK_EQ_HEX(model->uuid.bytes[1], 0x2A);
}

TEST(characteristics_match_the_baseline_layout)
{
    const ble_ota_chr_def_t *ctrl = ble_ota_gatt_find_chr(BLE_OTA_CHR_OTA_CONTROL);
    const ble_ota_chr_def_t *data = ble_ota_gatt_find_chr(BLE_OTA_CHR_OTA_DATA);
    const ble_ota_chr_def_t *manu = ble_ota_gatt_find_chr(BLE_OTA_CHR_DIS_MANUFACTURER);
    const ble_ota_chr_def_t *model = ble_ota_gatt_find_chr(BLE_OTA_CHR_DIS_MODEL);
    const ble_ota_chr_def_t *fw = ble_ota_gatt_find_chr(BLE_OTA_CHR_DIS_FW_REV);

    REQUIRE(ctrl != NULL && data != NULL && manu != NULL && model != NULL && fw != NULL);
    CHECK_EQ_STR(uuid_str(&ctrl->uuid), "7ad671aa-21c0-46a4-b722-270e3ae3d830");
    CHECK_EQ_STR(uuid_str(&data->uuid), "23408888-1f40-4cd8-9b89-ca8d45f8a5b0");
    CHECK_EQ_STR(uuid_str(&manu->uuid), "2a29");
    CHECK_EQ_STR(uuid_str(&model->uuid), "2a24");
    CHECK_EQ_STR(uuid_str(&fw->uuid), "2a26");
    CHECK_EQ_STR(uuid_str(&ble_ota_gatt_services[BLE_OTA_SVC_DEVICE_INFO].uuid), "180a");

    CHECK_EQ_HEX(ctrl->properties, BLE_OTA_PROP_READ | BLE_OTA_PROP_WRITE |
                                       BLE_OTA_PROP_WRITE_NO_RSP | BLE_OTA_PROP_NOTIFY);
    CHECK_EQ_HEX(data->properties, BLE_OTA_PROP_WRITE | BLE_OTA_PROP_WRITE_NO_RSP);
    CHECK_EQ_HEX(manu->properties, BLE_OTA_PROP_READ);
    CHECK_EQ_HEX(model->properties, BLE_OTA_PROP_READ);
    CHECK_EQ_HEX(fw->properties, BLE_OTA_PROP_READ);

    CHECK(ble_ota_gatt_find_svc_of_chr(BLE_OTA_CHR_OTA_DATA) == &ble_ota_gatt_services[BLE_OTA_SVC_OTA]);
    CHECK(ble_ota_gatt_find_svc_of_chr(BLE_OTA_CHR_DIS_FW_REV) ==
          &ble_ota_gatt_services[BLE_OTA_SVC_DEVICE_INFO]);
    CHECK(ble_ota_gatt_find_chr(BLE_OTA_CHR_COUNT) == NULL);
}

TEST(every_id_is_declared_exactly_once)
{
    unsigned seen[BLE_OTA_CHR_COUNT] = { 0 };
    size_t s;
    size_t c;
    unsigned i;

    for (s = 0; s < BLE_OTA_SVC_COUNT; s++) {
        CHECK_EQ_INT(ble_ota_gatt_services[s].id, s);
        for (c = 0; c < ble_ota_gatt_services[s].characteristic_count; c++) {
            REQUIRE(ble_ota_gatt_services[s].characteristics[c].id < BLE_OTA_CHR_COUNT);
            seen[ble_ota_gatt_services[s].characteristics[c].id]++;
        }
    }
    for (i = 0; i < BLE_OTA_CHR_COUNT; i++) {
        CHECK_EQ_INT(seen[i], 1);
    }
}

TEST(uuid_to_string_checks_its_buffer)
{
    char small[36];
    char tiny[4];
    ble_ota_uuid_t odd = { 4, { 1, 2, 3, 4 } };
    const ble_ota_chr_def_t *model = ble_ota_gatt_find_chr(BLE_OTA_CHR_DIS_MODEL);

    CHECK_EQ_INT(ble_ota_uuid_to_string(&ble_ota_service_uuid, small, sizeof(small)), -1);
    CHECK_EQ_INT(ble_ota_uuid_to_string(&model->uuid, tiny, sizeof(tiny)), -1);
    CHECK_EQ_INT(ble_ota_uuid_to_string(&odd, small, sizeof(small)), -1);
    CHECK_EQ_INT(ble_ota_uuid_to_string(NULL, small, sizeof(small)), -1);
}

TEST(device_information_reads)
{
    static const ble_ota_config_t cfg = { "my-board", "ACME", 250u, false, NULL, 0u, 0u, 0u, BLE_OTA_PRE_ERASE_OFF, 0u, 0u };
    uint8_t buf[32];
    size_t len = 0;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_init(&fake_port, &cfg), BLE_OTA_OK);
    CHECK_EQ_STR(ble_ota_get_config()->device_name, "my-board");

    REQUIRE_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_DIS_MODEL, buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(len, 8);
    CHECK_MEM_EQ(buf, "ESP32-S3", 8);
    REQUIRE_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_DIS_FW_REV, buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(len, 5);
    CHECK_MEM_EQ(buf, "1.2.3", 5);
    REQUIRE_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_DIS_MANUFACTURER, buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(len, 4);
    CHECK_MEM_EQ(buf, "ACME", 4);

    CHECK_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_OTA_DATA, buf, sizeof(buf), &len),
                 BLE_OTA_ATT_ERR_READ_NOT_PERMITTED);
    CHECK_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_DIS_MODEL, buf, 3, &len),
                 BLE_OTA_ATT_ERR_INSUFFICIENT_RES);
    CHECK_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_COUNT, buf, sizeof(buf), &len),
                 BLE_OTA_ATT_ERR_INVALID_HANDLE);
}

TEST(default_config_is_the_baseline_name)
{
    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    CHECK_EQ_STR(ble_ota_get_config()->device_name, "esp32");
    CHECK_EQ_INT(ble_ota_get_config()->restart_delay_ms, 500);
}

TEST(control_reads_back_the_last_value_written)
{
    uint8_t op = 0x7F;
    uint8_t buf[1];
    size_t len = 0;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_OTA_CONTROL, buf, 1, &len), 0);
    CHECK_EQ_INT(len, 1);
    CHECK_EQ_HEX(buf[0], 0x00);
    REQUIRE_EQ_INT(ble_ota_on_write(1, BLE_OTA_CHR_OTA_CONTROL, &op, 1, true), 0);
    REQUIRE_EQ_INT(ble_ota_on_read(1, BLE_OTA_CHR_OTA_CONTROL, buf, 1, &len), 0);
    CHECK_EQ_HEX(buf[0], 0x7F);
}
