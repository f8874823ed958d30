/*
 * ESP-IDF entry points of the ble_ota component: the NimBLE and esp_ota ports
 * wired to the portable core, configured from Kconfig (menu "BLE OTA").
 *
 *   ESP_ERROR_CHECK(nvs_flash_init());      // the BLE controller keeps PHY data in NVS
 *   ESP_ERROR_CHECK(ble_ota_idf_init());
 *   ble_ota_idf_boot_check();               // confirm this image or roll back
 *   ESP_ERROR_CHECK(ble_ota_idf_start());   // writer task, NimBLE, advertising
 */
#ifndef BLE_OTA_IDF_H
#define BLE_OTA_IDF_H

#include "esp_err.h"

#include "ble_ota.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Binds the core to the ESP-IDF port. Call once, before the other two. */
esp_err_t ble_ota_idf_init(void);

/*
 * Logs the running slot and, if it is waiting for verification after an OTA,
 * runs ble_ota_self_test() and confirms the image or rolls back (then it does
 * not return). CONFIG_BLE_OTA_SELF_TEST_FORCE_FAIL makes the self-test fail.
 */
ble_ota_boot_result_t ble_ota_idf_boot_check(void);

/* Starts the flash writer task and the NimBLE host, and advertises. */
esp_err_t ble_ota_idf_start(void);

#ifdef __cplusplus
}
#endif

#endif /* BLE_OTA_IDF_H */
