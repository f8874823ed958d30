/* Shared between the core's translation units; not part of the API. */
#ifndef BLE_OTA_PRIV_H
#define BLE_OTA_PRIV_H

#include "ble_ota.h"

#define BLE_OTA_TAG "ble_ota"

#if defined(__GNUC__)
#define BLE_OTA_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define BLE_OTA_PRINTF(fmt_idx, arg_idx)
#endif

/* The port bound by ble_ota_init(), or NULL before it. */
const ble_ota_port_t *ble_ota_priv_port(void);

void ble_ota_priv_log(ble_ota_log_level_t level, const char *fmt, ...) BLE_OTA_PRINTF(2, 3);

/* Lowercase hex of len bytes into out (2 * len + 1 chars). */
void ble_ota_priv_hex(const uint8_t *data, size_t len, char *out);

#endif /* BLE_OTA_PRIV_H */
