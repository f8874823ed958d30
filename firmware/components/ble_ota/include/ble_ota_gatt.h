/*
 * GATT layout of the BLE OTA device, declared once.
 *
 * Every port builds its GATT database from these tables (the NimBLE port
 * turns them into `struct ble_gatt_svc_def`; the host build exports them as
 * JSON for the virtual rig), so the layout cannot drift between targets.
 *
 * UUID bytes are stored little-endian, the order NimBLE's BLE_UUID128_INIT()
 * and the air interface use: the last group of the textual UUID comes first.
 */
#ifndef BLE_OTA_GATT_H
#define BLE_OTA_GATT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Characteristic property bits, values as in the Bluetooth Core spec
 * (Vol 3, Part G, 3.3.1.1) and NimBLE's BLE_GATT_CHR_PROP_*. */
#define BLE_OTA_PROP_READ 0x02u
#define BLE_OTA_PROP_WRITE_NO_RSP 0x04u
#define BLE_OTA_PROP_WRITE 0x08u
#define BLE_OTA_PROP_NOTIFY 0x10u
#define BLE_OTA_PROP_INDICATE 0x20u

/* Access bits of a characteristic (ble_ota_chr_def_t.access). */
/* Writes change what the device will boot (the OTA characteristics): they need
 * the link security the firmware is built with (CONFIG_BLE_OTA_LINK_SECURITY);
 * reads stay open, so a scanner can read INFO and the version unpaired. */
#define BLE_OTA_ACCESS_SECURED_WRITE 0x01u

/* Link security the secured writes need, as NimBLE's characteristic flags say
 * it: nothing, BLE_GATT_CHR_F_WRITE_ENC (an encrypted link: the peer paired or
 * bonded, Just Works included), or BLE_GATT_CHR_F_WRITE_ENC |
 * BLE_GATT_CHR_F_WRITE_AUTHEN (keys from a pairing with MITM protection:
 * passkey, numeric comparison or OOB). */
typedef enum {
    BLE_OTA_LINK_OPEN = 0,
    BLE_OTA_LINK_ENCRYPTED = 1,
    BLE_OTA_LINK_AUTHENTICATED = 2,
} ble_ota_link_security_t;

/* "open", "encrypted", "authenticated"; NULL for a value out of range. */
const char *ble_ota_link_security_name(ble_ota_link_security_t level);

/* Small integer ids: ports and the host I/O protocol name characteristics by
 * these instead of by attribute handle, which depends on the stack. */
typedef enum {
    BLE_OTA_CHR_OTA_CONTROL = 0,
    BLE_OTA_CHR_OTA_DATA = 1,
    BLE_OTA_CHR_DIS_MANUFACTURER = 2,
    BLE_OTA_CHR_DIS_MODEL = 3,
    BLE_OTA_CHR_DIS_FW_REV = 4,
    /* Protocol v2 (docs/protocol-v2.md), in the OTA service beside the baseline pair. */
    BLE_OTA_CHR_V2_CONTROL = 5,
    BLE_OTA_CHR_V2_DATA = 6,
    BLE_OTA_CHR_COUNT
} ble_ota_chr_id_t;

typedef enum {
    BLE_OTA_SVC_OTA = 0,
    BLE_OTA_SVC_DEVICE_INFO = 1,
    BLE_OTA_SVC_COUNT
} ble_ota_svc_id_t;

/* A 16-bit (len 2) or 128-bit (len 16) UUID, bytes little-endian. */
typedef struct {
    uint8_t len;
    uint8_t bytes[16];
} ble_ota_uuid_t;

typedef struct {
    ble_ota_chr_id_t id;
    const char *name; /* for logs and the JSON export, e.g. "ota_control" */
    ble_ota_uuid_t uuid;
    uint8_t properties; /* BLE_OTA_PROP_* */
    uint8_t access;     /* BLE_OTA_ACCESS_* */
} ble_ota_chr_def_t;

typedef struct {
    ble_ota_svc_id_t id;
    const char *name;
    ble_ota_uuid_t uuid;
    const ble_ota_chr_def_t *characteristics;
    size_t characteristic_count;
} ble_ota_svc_def_t;

/* All primary services, in registration order. */
extern const ble_ota_svc_def_t ble_ota_gatt_services[BLE_OTA_SVC_COUNT];

/* The OTA service UUID as registered and advertised:
 * d6f1d96d-594c-4c53-b1c6-144a1dfde6d8 (the baseline's on-air value; its
 * source comment says ...-244a..., but the initializer's octal 024 is 0x14). */
extern const ble_ota_uuid_t ble_ota_service_uuid;

/* Characteristic definition by id, or NULL if the id is out of range. */
const ble_ota_chr_def_t *ble_ota_gatt_find_chr(ble_ota_chr_id_t id);

/* Service that holds the characteristic, or NULL. */
const ble_ota_svc_def_t *ble_ota_gatt_find_svc_of_chr(ble_ota_chr_id_t id);

/* Buffer size for ble_ota_uuid_to_string(), terminator included. */
#define BLE_OTA_UUID_STR_SIZE 37

/*
 * Formats a UUID in lowercase: "d6f1d96d-594c-4c53-b1c6-144a1dfde6d8" for
 * 128-bit ones, 4 hex digits ("180a") for 16-bit ones.
 * Returns the string length, or -1 if cap is too small or the UUID is neither
 * 2 nor 16 bytes long.
 */
int ble_ota_uuid_to_string(const ble_ota_uuid_t *uuid, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* BLE_OTA_GATT_H */
