/* Glue between the two ESP-IDF ports (esp_ota and NimBLE); not public. */
#ifndef BLE_OTA_IDF_PRIV_H
#define BLE_OTA_IDF_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#include "ble_ota_gatt.h"
#include "ble_ota_port.h"

/* Registers the GATT services, starts the NimBLE host task and advertises
 * under device_name. */
esp_err_t ble_ota_nimble_start(const char *device_name);

/* ble_ota_port_t.notify for NimBLE. */
int ble_ota_nimble_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data,
                          size_t len);

/* ble_ota_port_t.disconnect for NimBLE: ble_gap_terminate. */
int ble_ota_nimble_disconnect(void *ctx, uint16_t conn);

/* ble_ota_port_v2_t.link_request for NimBLE: connection parameters, data
 * length, and the 2M PHY where the controller has it. */
int ble_ota_nimble_link_request(void *ctx, uint16_t conn, const ble_ota_link_request_t *req);

#endif /* BLE_OTA_IDF_PRIV_H */
