/*
 * What a port must provide to the portable BLE OTA core.
 *
 * A port fills one `ble_ota_port_t` and passes it to ble_ota_init(). The core
 * never includes a platform header; everything it needs from the platform
 * goes through these functions. README.md (section PORTING) explains each
 * one with the ESP-IDF and host implementations as examples.
 *
 * Threading model: the BLE stack calls the ble_ota_on_*() entry points from
 * its own context (NimBLE host task, or the host I/O loop). Those entry points
 * only copy bytes into a bounded queue. A separate writer context (FreeRTOS
 * task on ESP-IDF; the host I/O loop itself on Linux) calls
 * ble_ota_writer_run_once(), which is the only place that calls slot_*,
 * sha256_* and schedule_restart. notify() and log() may be called from both.
 *
 * Return conventions: functions returning int return BLE_OTA_OK (0) on
 * success or a negative ble_ota_err_t.
 */
#ifndef BLE_OTA_PORT_H
#define BLE_OTA_PORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ble_ota_gatt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    BLE_OTA_OK = 0,
    BLE_OTA_ERR_INVALID_ARG = -1,
    BLE_OTA_ERR_NO_SLOT = -2,       /* no update slot (partition table has no OTA slot) */
    BLE_OTA_ERR_FLASH = -3,         /* erase/write/read failed */
    BLE_OTA_ERR_INVALID_IMAGE = -4, /* slot_end found the image invalid */
    BLE_OTA_ERR_TOO_LARGE = -5,     /* image does not fit the slot */
    BLE_OTA_ERR_NO_MEM = -6,
    BLE_OTA_ERR_STATE = -7,         /* call not valid in the current state */
    BLE_OTA_ERR_UNSUPPORTED = -8,
} ble_ota_err_t;

/* Same numbers as esp_log_level_t so the IDF port can pass them through. */
typedef enum {
    BLE_OTA_LOG_ERROR = 1,
    BLE_OTA_LOG_WARN = 2,
    BLE_OTA_LOG_INFO = 3,
    BLE_OTA_LOG_DEBUG = 4,
    BLE_OTA_LOG_VERBOSE = 5,
} ble_ota_log_level_t;

/* OTA state of an app slot, mirroring esp_ota_img_states_t. */
typedef enum {
    BLE_OTA_SLOT_STATE_UNDEFINED = 0, /* no otadata entry: flashed by serial, or rollback disabled */
    BLE_OTA_SLOT_STATE_NEW,
    BLE_OTA_SLOT_STATE_PENDING_VERIFY,
    BLE_OTA_SLOT_STATE_VALID,
    BLE_OTA_SLOT_STATE_INVALID,
    BLE_OTA_SLOT_STATE_ABORTED,
} ble_ota_slot_state_t;

typedef struct {
    char label[17]; /* partition label, e.g. "ota_0" (16 chars max, like esp_partition_t) */
    uint32_t address;
    uint32_t size;
    ble_ota_slot_state_t state;
} ble_ota_slot_info_t;

/* Passed to slot_begin when the image size is not known in advance
 * (the baseline protocol never tells it). */
#define BLE_OTA_IMAGE_SIZE_UNKNOWN 0xFFFFFFFFu

#define BLE_OTA_SHA256_LEN 32

typedef struct ble_ota_port {
    /* Handed back as the first argument of every call. */
    void *ctx;

    /* --- Flash slot (writer context only) ------------------------------ */

    /* Picks the next update slot and prepares it for sequential writes
     * (IDF: esp_ota_get_next_update_partition + esp_ota_begin with
     * OTA_WITH_SEQUENTIAL_WRITES). Fills *target with the chosen slot. */
    int (*slot_begin)(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target);
    /* Appends len bytes (1..BLE_OTA_MAX_PACKET) at the current end. */
    int (*slot_write)(void *ctx, const uint8_t *data, size_t len);
    /* Finishes the write and validates the image (IDF: esp_ota_end).
     * The session is over whatever the result; slot_abort is not called after it. */
    int (*slot_end)(void *ctx);
    /* Drops an unfinished session (IDF: esp_ota_abort). Must accept being
     * called when slot_begin failed. */
    void (*slot_abort)(void *ctx);
    /* Makes the slot written by the last successful slot_end the boot slot
     * (IDF: esp_ota_set_boot_partition). */
    int (*slot_set_boot)(void *ctx);

    /* --- Running image ------------------------------------------------- */

    int (*get_running_slot)(void *ctx, ble_ota_slot_info_t *out);
    /* Confirms a PENDING_VERIFY image (esp_ota_mark_app_valid_cancel_rollback). */
    int (*confirm_running)(void *ctx);
    /* Marks the running image invalid and reboots into the previous one
     * (esp_ota_mark_app_invalid_rollback_and_reboot). Returns only on failure. */
    int (*reject_running)(void *ctx);
    /* Version of the running app ("1.0.0"), chip name ("ESP32-S3"). Never NULL. */
    const char *(*app_version)(void *ctx);
    const char *(*chip_name)(void *ctx);

    /* --- BLE ----------------------------------------------------------- */

    /* Sends a notification of a characteristic value to one connection.
     * Must not block; an error is logged by the core and otherwise ignored. */
    int (*notify)(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len);

    /* --- System -------------------------------------------------------- */

    /* Monotonic milliseconds, any epoch. */
    uint32_t (*now_ms)(void *ctx);
    /* One log line, without trailing newline. tag names the module. */
    void (*log)(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap);
    /* Restarts the device after delay_ms. Must return at once: it is called
     * from the writer context right after the DONE_ACK notification, and the
     * delay is there so the notification leaves the radio first. */
    void (*schedule_restart)(void *ctx, uint32_t delay_ms);

    /* --- Queue between BLE context and writer -------------------------- */

    /* Short critical section around the queue counters (a mutex, or a no-op
     * when both sides run in one thread). Never held across flash work. */
    void (*lock)(void *ctx);
    void (*unlock)(void *ctx);
    /* Wakes a writer blocked in writer_wait (IDF: xTaskNotifyGive). */
    void (*writer_wake)(void *ctx);
    /* Blocks up to timeout_ms or until writer_wake; may return early.
     * Single-threaded ports return at once. */
    void (*writer_wait)(void *ctx, uint32_t timeout_ms);

    /* --- SHA-256 (writer context and self-test; one digest at a time) ---- */

    int (*sha256_start)(void *ctx);
    int (*sha256_update)(void *ctx, const uint8_t *data, size_t len);
    int (*sha256_finish)(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN]);
} ble_ota_port_t;

#ifdef __cplusplus
}
#endif

#endif /* BLE_OTA_PORT_H */
