/*
 * On-flash structures of ESP-IDF, written from the ESP-IDF definitions
 * (components/bootloader_support/include/esp_app_format.h, esp_flash_partitions.h,
 * components/esp_app_format/include/esp_app_desc.h,
 * components/esp_bootloader_format/include/esp_bootloader_desc.h).
 *
 * The host is little-endian like every ESP32, so the packed structs below are the
 * on-flash byte layout; the static asserts pin sizes and offsets to ESP-IDF's.
 */
#ifndef ESP_FORMAT_H
#define ESP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the host build maps ESP flash structures directly and needs a little-endian host"
#endif

#define ESP_FLASH_SECTOR_SIZE 0x1000u

/* ---- app image ---- */
#define ESP_IMAGE_HEADER_MAGIC 0xE9u
#define ESP_IMAGE_MAX_SEGMENTS 16u
#define ESP_IMAGE_CHECKSUM_SEED 0xEFu
#define ESP_IMAGE_HASH_LEN 32u
#define ESP_IMAGE_WP_PIN_DISABLED 0xEEu

typedef enum {
    ESP_IMAGE_SPI_MODE_QIO = 0,
    ESP_IMAGE_SPI_MODE_QOUT = 1,
    ESP_IMAGE_SPI_MODE_DIO = 2,
    ESP_IMAGE_SPI_MODE_DOUT = 3,
} esp_image_spi_mode_t;

#define ESP_IMAGE_SPI_SPEED_DIV_2 0x0u /* 40 MHz on a classic ESP32 */
#define ESP_IMAGE_FLASH_SIZE_4MB 0x2u

typedef struct __attribute__((packed)) {
    uint8_t magic;
    uint8_t segment_count;
    uint8_t spi_mode;
    uint8_t spi_speed : 4;
    uint8_t spi_size : 4;
    uint32_t entry_addr;
    uint8_t wp_pin;
    uint8_t spi_pin_drv[3];
    uint16_t chip_id;
    uint8_t min_chip_rev;
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
    uint8_t reserved[4];
    uint8_t hash_appended;
} esp_image_header_t;
_Static_assert(sizeof(esp_image_header_t) == 24, "esp_image_header_t is 24 bytes in ESP-IDF");
_Static_assert(offsetof(esp_image_header_t, entry_addr) == 4, "entry_addr offset");
_Static_assert(offsetof(esp_image_header_t, chip_id) == 12, "chip_id offset");
_Static_assert(offsetof(esp_image_header_t, min_chip_rev_full) == 15, "min_chip_rev_full offset");
_Static_assert(offsetof(esp_image_header_t, hash_appended) == 23, "hash_appended offset");

typedef struct __attribute__((packed)) {
    uint32_t load_addr;
    uint32_t data_len;
} esp_image_segment_header_t;
_Static_assert(sizeof(esp_image_segment_header_t) == 8, "segment header is 8 bytes");

#define ESP_APP_DESC_MAGIC_WORD 0xABCD5432u

typedef struct __attribute__((packed)) {
    uint32_t magic_word;
    uint32_t secure_version;
    uint32_t reserv1[2];
    char version[32];
    char project_name[32];
    char time[16];
    char date[16];
    char idf_ver[32];
    uint8_t app_elf_sha256[32];
    uint16_t min_efuse_blk_rev_full;
    uint16_t max_efuse_blk_rev_full;
    uint8_t mmu_page_size;
    uint8_t spi_flash_mode;
    uint8_t reserv3[2];
    uint32_t reserv2[18];
} esp_app_desc_t;
_Static_assert(sizeof(esp_app_desc_t) == 256, "esp_app_desc_t is 256 bytes in ESP-IDF");
_Static_assert(offsetof(esp_app_desc_t, secure_version) == 4, "secure_version offset");
_Static_assert(offsetof(esp_app_desc_t, version) == 16, "version offset");
_Static_assert(offsetof(esp_app_desc_t, project_name) == 48, "project_name offset");
_Static_assert(offsetof(esp_app_desc_t, time) == 80, "time offset");
_Static_assert(offsetof(esp_app_desc_t, date) == 96, "date offset");
_Static_assert(offsetof(esp_app_desc_t, idf_ver) == 112, "idf_ver offset");
_Static_assert(offsetof(esp_app_desc_t, app_elf_sha256) == 144, "app_elf_sha256 offset");
_Static_assert(offsetof(esp_app_desc_t, min_efuse_blk_rev_full) == 176, "min_efuse_blk_rev_full offset");
_Static_assert(offsetof(esp_app_desc_t, mmu_page_size) == 180, "mmu_page_size offset");
_Static_assert(offsetof(esp_app_desc_t, reserv2) == 184, "reserv2 offset");

#define ESP_BOOTLOADER_DESC_MAGIC_BYTE 0x50u

typedef struct __attribute__((packed)) {
    uint8_t magic_byte;
    uint8_t reserved[2];
    uint8_t secure_version;
    uint32_t version;
    char idf_ver[32];
    char date_time[24];
    uint8_t reserved2[16];
} esp_bootloader_desc_t;
_Static_assert(sizeof(esp_bootloader_desc_t) == 80, "esp_bootloader_desc_t is 80 bytes in ESP-IDF");

/* ---- partition table ---- */
#define ESP_PARTITION_TABLE_OFFSET 0x8000u
#define ESP_PARTITION_TABLE_MAX_LEN 0xC00u
#define ESP_PARTITION_MAGIC 0x50AAu
#define ESP_PARTITION_MAGIC_MD5 0xEBEBu
#define ESP_PARTITION_MD5_OFFSET 16u

#define PART_TYPE_APP 0x00u
#define PART_SUBTYPE_FACTORY 0x00u
#define PART_SUBTYPE_OTA_FLAG 0x10u
#define PART_SUBTYPE_OTA_MASK 0x0fu
#define PART_SUBTYPE_TEST 0x20u
#define PART_TYPE_DATA 0x01u
#define PART_SUBTYPE_DATA_OTA 0x00u
#define PART_SUBTYPE_DATA_RF 0x01u
#define PART_SUBTYPE_DATA_WIFI 0x02u /* "nvs" in partitions.csv */
#define PART_SUBTYPE_DATA_NVS_KEYS 0x04u
#define PART_SUBTYPE_DATA_EFUSE_EM 0x05u

typedef struct __attribute__((packed)) {
    uint16_t magic;
    uint8_t type;
    uint8_t subtype;
    uint32_t offset;
    uint32_t size;
    uint8_t label[16];
    uint32_t flags;
} esp_partition_info_t;
_Static_assert(sizeof(esp_partition_info_t) == 32, "esp_partition_info_t is 32 bytes");

/* ---- otadata ---- */
typedef enum {
    ESP_OTA_IMG_NEW = 0x0u,
    ESP_OTA_IMG_PENDING_VERIFY = 0x1u,
    ESP_OTA_IMG_VALID = 0x2u,
    ESP_OTA_IMG_INVALID = 0x3u,
    ESP_OTA_IMG_ABORTED = 0x4u,
    ESP_OTA_IMG_UNDEFINED = 0xFFFFFFFFu,
} esp_ota_img_states_t;

typedef struct __attribute__((packed)) {
    uint32_t ota_seq;
    uint8_t seq_label[20];
    uint32_t ota_state;
    uint32_t crc; /* CRC32 of ota_seq only */
} esp_ota_select_entry_t;
_Static_assert(sizeof(esp_ota_select_entry_t) == 32, "esp_ota_select_entry_t is 32 bytes");

#endif /* ESP_FORMAT_H */
