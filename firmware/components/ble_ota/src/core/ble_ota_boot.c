/*
 * Boot-time self-test and rollback decision, shared by the ESP-IDF app and the
 * host device program so that both decide the same way.
 */
#include <string.h>

#include "ble_ota_priv.h"

/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
static const uint8_t k_sha256_abc[BLE_OTA_SHA256_LEN] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
};

const char *ble_ota_opcode_name(uint8_t op)
{
    switch (op) {
    case BLE_OTA_OP_NOP:
        return "NOP";
    case BLE_OTA_OP_REQUEST:
        return "REQUEST";
    case BLE_OTA_OP_REQUEST_ACK:
        return "REQUEST_ACK";
    case BLE_OTA_OP_REQUEST_NAK:
        return "REQUEST_NAK";
    case BLE_OTA_OP_DONE:
        return "DONE";
    case BLE_OTA_OP_DONE_ACK:
        return "DONE_ACK";
    case BLE_OTA_OP_DONE_NAK:
        return "DONE_NAK";
    default:
        return "unknown";
    }
}

const char *ble_ota_slot_state_name(ble_ota_slot_state_t state)
{
    switch (state) {
    case BLE_OTA_SLOT_STATE_UNDEFINED:
        return "undefined";
    case BLE_OTA_SLOT_STATE_NEW:
        return "new";
    case BLE_OTA_SLOT_STATE_PENDING_VERIFY:
        return "pending-verify";
    case BLE_OTA_SLOT_STATE_VALID:
        return "valid";
    case BLE_OTA_SLOT_STATE_INVALID:
        return "invalid";
    case BLE_OTA_SLOT_STATE_ABORTED:
        return "aborted";
    default:
        return "unknown";
    }
}

static bool prv_uuid_equal(const ble_ota_uuid_t *a, const ble_ota_uuid_t *b)
{
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

/* Every id appears once, in the service that ble_ota_gatt_find_chr reports,
 * every UUID is 16 or 128 bits and unique: ports rely on all three. */
static bool prv_check_gatt(void)
{
    unsigned seen[BLE_OTA_CHR_COUNT];
    const ble_ota_uuid_t *uuids[BLE_OTA_CHR_COUNT + BLE_OTA_SVC_COUNT];
    size_t n_uuids = 0;
    size_t s;
    size_t c;
    size_t i;
    size_t j;
    bool ok = true;

    memset(seen, 0, sizeof(seen));
    for (s = 0; s < BLE_OTA_SVC_COUNT; s++) {
        const ble_ota_svc_def_t *svc = &ble_ota_gatt_services[s];
        if (svc->id != (ble_ota_svc_id_t)s) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: service %s is out of order", svc->name);
            ok = false;
        }
        uuids[n_uuids++] = &svc->uuid;
        for (c = 0; c < svc->characteristic_count; c++) {
            const ble_ota_chr_def_t *chr = &svc->characteristics[c];
            if ((unsigned)chr->id >= BLE_OTA_CHR_COUNT) {
                ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: characteristic %s has a bad id",
                                 chr->name);
                ok = false;
                continue;
            }
            if (n_uuids >= BLE_OTA_CHR_COUNT + BLE_OTA_SVC_COUNT) {
                ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                                 "self-test: more characteristics declared than ids exist");
                ok = false;
                continue;
            }
            seen[chr->id]++;
            uuids[n_uuids++] = &chr->uuid;
        }
    }
    for (i = 0; i < BLE_OTA_CHR_COUNT; i++) {
        if (seen[i] != 1u) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                             "self-test: characteristic id %u is declared %u times", (unsigned)i,
                             seen[i]);
            ok = false;
        }
    }
    for (i = 0; i < n_uuids; i++) {
        if (uuids[i]->len != 2u && uuids[i]->len != 16u) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: a GATT UUID is %u bytes long",
                             (unsigned)uuids[i]->len);
            ok = false;
        }
        for (j = i + 1; j < n_uuids; j++) {
            if (prv_uuid_equal(uuids[i], uuids[j])) {
                ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: a GATT UUID is declared twice");
                ok = false;
            }
        }
    }
    if (!prv_uuid_equal(&ble_ota_gatt_services[BLE_OTA_SVC_OTA].uuid, &ble_ota_service_uuid)) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: the OTA service UUID differs from the advertised one");
        ok = false;
    }
    return ok;
}

static bool prv_check_sha256(const ble_ota_port_t *port)
{
    static const uint8_t abc[3] = { 'a', 'b', 'c' };
    uint8_t digest[BLE_OTA_SHA256_LEN];

    if (port->sha256_start(port->ctx) != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: SHA-256 could not start");
        return false;
    }
    if (port->sha256_update(port->ctx, abc, sizeof(abc)) != BLE_OTA_OK) {
        (void)port->sha256_finish(port->ctx, digest);
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: SHA-256 update failed");
        return false;
    }
    if (port->sha256_finish(port->ctx, digest) != BLE_OTA_OK ||
        memcmp(digest, k_sha256_abc, sizeof(digest)) != 0) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: SHA-256(\"abc\") is wrong: the crypto port is broken");
        return false;
    }
    return true;
}

static bool prv_check_identity(const ble_ota_port_t *port)
{
    const char *version = port->app_version(port->ctx);
    const char *chip = port->chip_name(port->ctx);
    bool ok = true;

    if (version == NULL || version[0] == '\0') {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: the app has no version string; set it in version.txt");
        ok = false;
    }
    if (chip == NULL || chip[0] == '\0') {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: the chip name is empty");
        ok = false;
    }
    return ok;
}

bool ble_ota_self_test(bool force_fail)
{
    const ble_ota_port_t *port = ble_ota_priv_port();
    ble_ota_slot_info_t running;
    bool ok = true;

    if (port == NULL) {
        return false;
    }
    ok = prv_check_gatt() && ok;
    ok = prv_check_sha256(port) && ok;
    ok = prv_check_identity(port) && ok;
    if (port->get_running_slot(port->ctx, &running) != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "self-test: the running slot cannot be read");
        ok = false;
    }
    if (force_fail) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "self-test: failing on purpose (BLE_OTA_SELF_TEST_FORCE_FAIL is set)");
        ok = false;
    }
    return ok;
}

ble_ota_boot_result_t ble_ota_boot_check(bool force_self_test_failure)
{
    const ble_ota_port_t *port = ble_ota_priv_port();
    ble_ota_slot_info_t running;

    if (port == NULL) {
        return BLE_OTA_BOOT_ERROR;
    }
    if (port->get_running_slot(port->ctx, &running) != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "Running partition: unknown");
        return BLE_OTA_BOOT_ERROR;
    }
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "Running partition: %s at 0x%lx, state %s", running.label,
                     (unsigned long)running.address, ble_ota_slot_state_name(running.state));
    if (running.state != BLE_OTA_SLOT_STATE_PENDING_VERIFY) {
        return BLE_OTA_BOOT_NOT_PENDING;
    }
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "An OTA update has been detected.");
    if (ble_ota_self_test(force_self_test_failure)) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "Diagnostics completed successfully! Continuing execution.");
        if (port->confirm_running(port->ctx) != BLE_OTA_OK) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "could not mark the running image valid; the "
                                                "bootloader will roll it back on the next reset");
            return BLE_OTA_BOOT_CONFIRM_FAILED;
        }
        return BLE_OTA_BOOT_CONFIRMED;
    }
    ble_ota_priv_log(BLE_OTA_LOG_ERROR, "Diagnostics failed! Start rollback to the previous version.");
    (void)port->reject_running(port->ctx);
    ble_ota_priv_log(BLE_OTA_LOG_ERROR, "rollback failed: no other valid image to boot; keeping this one");
    return BLE_OTA_BOOT_ROLLBACK_FAILED;
}
