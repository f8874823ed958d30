/* Glue between the two ESP-IDF ports (esp_ota and NimBLE); not public. */
#ifndef BLE_OTA_IDF_PRIV_H
#define BLE_OTA_IDF_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#include "ble_ota_gatt.h"

/* Registers the GATT services, starts the NimBLE host task and advertises
 * under device_name. */
esp_err_t ble_ota_nimble_start(const char *device_name);

/* ble_ota_port_t.notify for NimBLE. */
int ble_ota_nimble_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data,
                          size_t len);

#endif /* BLE_OTA_IDF_PRIV_H */
