/* The GATT layout, declared once. See ble_ota_gatt.h. */
#include "ble_ota_gatt.h"

/* Written big-endian as in the textual UUID, stored reversed (little-endian). */
#define UUID128(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15) \
    { 16u, { b15, b14, b13, b12, b11, b10, b9, b8, b7, b6, b5, b4, b3, b2, b1, b0 } }
#define UUID16(v) { 2u, { (uint8_t)((v) & 0xFFu), (uint8_t)((v) >> 8) } }

/* Both OTA characteristics accept Write Commands as well as Write Requests:
 * the baseline client sends REQUEST and DONE as Write Commands, and NimBLE
 * accepts them on any writable attribute; declaring it says so honestly. */
#define OTA_WRITE_PROPS (BLE_OTA_PROP_WRITE | BLE_OTA_PROP_WRITE_NO_RSP)

/* d6f1d96d-594c-4c53-b1c6-144a1dfde6d8: the byte 0x14 is the baseline's
 * octal literal 024, kept because it is what clients have seen on air. */
#define OTA_SERVICE_UUID                                                                   \
    UUID128(0xd6, 0xf1, 0xd9, 0x6d, 0x59, 0x4c, 0x4c, 0x53, 0xb1, 0xc6, 0x14, 0x4a, 0x1d, 0xfd, \
            0xe6, 0xd8)

const ble_ota_uuid_t ble_ota_service_uuid = OTA_SERVICE_UUID;

static const ble_ota_chr_def_t s_ota_chrs[] = {
    {
        BLE_OTA_CHR_OTA_CONTROL,
        "ota_control",
        /* 7ad671aa-21c0-46a4-b722-270e3ae3d830 */
        UUID128(0x7a, 0xd6, 0x71, 0xaa, 0x21, 0xc0, 0x46, 0xa4, 0xb7, 0x22, 0x27, 0x0e, 0x3a, 0xe3,
                0xd8, 0x30),
        BLE_OTA_PROP_READ | OTA_WRITE_PROPS | BLE_OTA_PROP_NOTIFY,
        BLE_OTA_ACCESS_SECURED_WRITE,
    },
    {
        BLE_OTA_CHR_OTA_DATA,
        "ota_data",
        /* 23408888-1f40-4cd8-9b89-ca8d45f8a5b0 */
        UUID128(0x23, 0x40, 0x88, 0x88, 0x1f, 0x40, 0x4c, 0xd8, 0x9b, 0x89, 0xca, 0x8d, 0x45, 0xf8,
                0xa5, 0xb0),
        OTA_WRITE_PROPS,
        BLE_OTA_ACCESS_SECURED_WRITE,
    },
    {
        BLE_OTA_CHR_V2_CONTROL,
        "v2_control",
        /* 44d90618-0f1a-4804-b9c7-a5ae29118ffa; commands are Write Requests, answers notifications */
        UUID128(0x44, 0xd9, 0x06, 0x18, 0x0f, 0x1a, 0x48, 0x04, 0xb9, 0xc7, 0xa5, 0xae, 0x29, 0x11,
                0x8f, 0xfa),
        BLE_OTA_PROP_READ | BLE_OTA_PROP_WRITE | BLE_OTA_PROP_NOTIFY,
        BLE_OTA_ACCESS_SECURED_WRITE,
    },
    {
        BLE_OTA_CHR_V2_DATA,
        "v2_data",
        /* fe4a130e-1430-449c-bc25-1c299d409db4; frames are Write Commands */
        UUID128(0xfe, 0x4a, 0x13, 0x0e, 0x14, 0x30, 0x44, 0x9c, 0xbc, 0x25, 0x1c, 0x29, 0x9d, 0x40,
                0x9d, 0xb4),
        BLE_OTA_PROP_WRITE_NO_RSP | BLE_OTA_PROP_WRITE,
        BLE_OTA_ACCESS_SECURED_WRITE,
    },
};

static const ble_ota_chr_def_t s_dis_chrs[] = {
    { BLE_OTA_CHR_DIS_MANUFACTURER, "manufacturer_name", UUID16(0x2A29), BLE_OTA_PROP_READ, 0 },
    { BLE_OTA_CHR_DIS_MODEL, "model_number", UUID16(0x2A24), BLE_OTA_PROP_READ, 0 },
    { BLE_OTA_CHR_DIS_FW_REV, "firmware_revision", UUID16(0x2A26), BLE_OTA_PROP_READ, 0 },
};

const ble_ota_svc_def_t ble_ota_gatt_services[BLE_OTA_SVC_COUNT] = {
    {
        BLE_OTA_SVC_OTA,
        "ota",
        OTA_SERVICE_UUID,
        s_ota_chrs,
        sizeof(s_ota_chrs) / sizeof(s_ota_chrs[0]),
    },
    {
        BLE_OTA_SVC_DEVICE_INFO,
        "device_information",
        UUID16(0x180A),
        s_dis_chrs,
        sizeof(s_dis_chrs) / sizeof(s_dis_chrs[0]),
    },
};

const char *ble_ota_link_security_name(ble_ota_link_security_t level)
{
    switch (level) {
    case BLE_OTA_LINK_OPEN:
        return "open";
    case BLE_OTA_LINK_ENCRYPTED:
        return "encrypted";
    case BLE_OTA_LINK_AUTHENTICATED:
        return "authenticated";
    default:
        return NULL;
    }
}

const ble_ota_chr_def_t *ble_ota_gatt_find_chr(ble_ota_chr_id_t id)
{
    const ble_ota_svc_def_t *svc = ble_ota_gatt_find_svc_of_chr(id);
    size_t i;

    if (svc == NULL) {
        return NULL;
    }
    for (i = 0; i < svc->characteristic_count; i++) {
        if (svc->characteristics[i].id == id) {
            return &svc->characteristics[i];
        }
    }
    return NULL;
}

const ble_ota_svc_def_t *ble_ota_gatt_find_svc_of_chr(ble_ota_chr_id_t id)
{
    size_t s;
    size_t c;

    for (s = 0; s < BLE_OTA_SVC_COUNT; s++) {
        const ble_ota_svc_def_t *svc = &ble_ota_gatt_services[s];
        for (c = 0; c < svc->characteristic_count; c++) {
            if (svc->characteristics[c].id == id) {
                return svc;
            }
        }
    }
    return NULL;
}

static char prv_hex_digit(unsigned v)
{
    return "0123456789abcdef"[v & 0xFu];
}

int ble_ota_uuid_to_string(const ble_ota_uuid_t *uuid, char *out, size_t cap)
{
    size_t pos = 0;
    int i;

    if (uuid == NULL || out == NULL) {
        return -1;
    }
    if (uuid->len == 2u) {
        if (cap < 5u) {
            return -1;
        }
        for (i = 1; i >= 0; i--) {
            out[pos++] = prv_hex_digit(uuid->bytes[i] >> 4);
            out[pos++] = prv_hex_digit(uuid->bytes[i]);
        }
        out[pos] = '\0';
        return (int)pos;
    }
    if (uuid->len != 16u || cap < BLE_OTA_UUID_STR_SIZE) {
        return -1;
    }
    /* Text order is most significant byte first: walk the stored bytes backwards. */
    for (i = 15; i >= 0; i--) {
        out[pos++] = prv_hex_digit(uuid->bytes[i] >> 4);
        out[pos++] = prv_hex_digit(uuid->bytes[i]);
        if (i == 12 || i == 10 || i == 8 || i == 6) {
            out[pos++] = '-';
        }
    }
    out[pos] = '\0';
    return (int)pos;
}
