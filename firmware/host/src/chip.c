#include "chip.h"

#include <string.h>

/*
 * ROM banners and reset lines are as the mask ROMs print them (ESP-IDF documentation logs);
 * chip ids and DROM windows are ESP-IDF's esp_chip_id_t and SOC_DROM_LOW/HIGH.
 */
static const host_chip_t s_chips[] = {
    {"esp32", "ESP32", 0x0000, 0x3F400000u, 0x400000u, 0x1000u, 300, 399, 2, 160000000u, "40MHz",
     "ets Jun  8 2016 00:22:57\r\n\r\n", "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
     "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
     "configsip: 0, SPIWP:0xee\r\nclk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n"
     "mode:DIO, clock div:2\r\n",
     0x3fff0030u},
    /* ESP32-S2 silicon v1.0 exists (IDF v5's ESP32S2_REV_MIN choice offers it), and IDF v5 builds S2
     * images for up to v1.99 (ESP32S2_REV_MAX_FULL 199). The S2 has no Bluetooth: it is simulated for
     * the bootloader and the image tools only; the rig refuses it as a BLE OTA target. */
    {"esp32s2", "ESP32-S2", 0x0002, 0x3F000000u, 0xF80000u, 0x1000u, 100, 199, 1, 160000000u, "80MHz",
     "ESP-ROM:esp32s2-rc4-20191025\r\nBuild:Oct 25 2019\r\n", "rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)",
     "rst:0xc (RTC_SW_CPU_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)", "SPIWP:0xee\r\nmode:DIO, clock div:1\r\n",
     0x3ffe6260u},
    {"esp32c3", "ESP32-C3", 0x0005, 0x3C000000u, 0x800000u, 0x0u, 4, 199, 1, 160000000u, "80MHz",
     "ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\n", "rst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)",
     "rst:0xc (RTC_SW_CPU_RST),boot:0xc (SPI_FAST_FLASH_BOOT)", "SPIWP:0xee\r\nmode:DIO, clock div:1\r\n",
     0x3fcd5820u},
    {"esp32s3", "ESP32-S3", 0x0009, 0x3C000000u, 0x2000000u, 0x0u, 2, 99, 2, 160000000u, "80MHz",
     "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n", "rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)",
     "rst:0xc (RTC_SW_CPU_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)", "SPIWP:0xee\r\nmode:DIO, clock div:1\r\n",
     0x3fce3818u},
    {"esp32c2", "ESP32-C2", 0x000C, 0x3C000000u, 0x400000u, 0x0u, 100, 199, 1, 120000000u, "60MHz",
     "ESP-ROM:esp8684-api1-20211015\r\nBuild:Oct 15 2021\r\n", "rst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)",
     "rst:0xc (RTC_SW_CPU_RST),boot:0xc (SPI_FAST_FLASH_BOOT)", "SPIWP:0xee\r\nmode:DIO, clock div:1\r\n",
     0x3fcd6190u},
    {"esp32c6", "ESP32-C6", 0x000D, 0x42800000u, 0x800000u, 0x0u, 1, 99, 1, 160000000u, "80MHz",
     "ESP-ROM:esp32c6-20220919\r\nBuild:Sep 19 2022\r\n", "rst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)",
     "rst:0xc (SW_CPU),boot:0xc (SPI_FAST_FLASH_BOOT)", "SPIWP:0xee\r\nmode:DIO, clock div:2\r\n",
     0x4086c410u},
    {"esp32h2", "ESP32-H2", 0x0010, 0x42800000u, 0x800000u, 0x0u, 1, 199, 1, 96000000u, "64MHz",
     "ESP-ROM:esp32h2-20221101\r\nBuild:Nov  1 2022\r\n", "rst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)",
     "rst:0xc (SW_CPU),boot:0xc (SPI_FAST_FLASH_BOOT)", "SPIWP:0xee\r\nmode:DIO, clock div:1\r\n",
     0x408460e0u},
};

const host_chip_t *host_chip_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(s_chips) / sizeof(s_chips[0]); i++) {
        if (strcmp(s_chips[i].name, name) == 0) {
            return &s_chips[i];
        }
    }
    return NULL;
}

const host_chip_t *host_chip_by_id(uint16_t chip_id)
{
    for (size_t i = 0; i < sizeof(s_chips) / sizeof(s_chips[0]); i++) {
        if (s_chips[i].chip_id == chip_id) {
            return &s_chips[i];
        }
    }
    return NULL;
}

const char *host_chip_names(void)
{
    return "esp32 esp32s2 esp32c3 esp32s3 esp32c2 esp32c6 esp32h2";
}
