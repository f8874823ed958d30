/*
 * The BLE OTA device: confirm (or roll back) the image we booted, then serve
 * OTA updates over BLE. The decision logic lives in the ble_ota core so that
 * the host build (the virtual rig's device) decides exactly the same way.
 */
#include "esp_err.h"
#include "esp_log.h"
#include "nvs_flash.h"

#include "ble_ota.h"
#include "ble_ota_idf.h"

static const char *TAG = "main";

static void prv_init_nvs(void)
{
    esp_err_t err = nvs_flash_init();

    /* A partition from another IDF version or a full one is useless to us:
     * it only holds PHY calibration data, which is measured again. */
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
}

void app_main(void)
{
    ble_ota_boot_result_t boot;

    prv_init_nvs();
    ESP_ERROR_CHECK(ble_ota_idf_init());

    /* Before BLE starts, so the image is confirmed or gone before anyone can
     * start an update: esp_ota_begin refuses while it is still unconfirmed. */
    boot = ble_ota_idf_boot_check();
    switch (boot) {
    case BLE_OTA_BOOT_CONFIRMED:
        ESP_LOGI(TAG, "new image confirmed");
        break;
    case BLE_OTA_BOOT_NOT_PENDING:
        break;
    case BLE_OTA_BOOT_ROLLBACK_FAILED:
        ESP_LOGE(TAG, "self-test failed and there is no previous image: OTA requests will be "
                      "refused until an image is flashed over serial");
        break;
    case BLE_OTA_BOOT_CONFIRM_FAILED:
    case BLE_OTA_BOOT_ERROR:
    default:
        ESP_LOGW(TAG, "boot check did not complete (result %d)", (int)boot);
        break;
    }

    ESP_ERROR_CHECK(ble_ota_idf_start());
}
