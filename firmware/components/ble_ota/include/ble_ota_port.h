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
    /* slot_end with signed updates required (the port checks, as esp_ota_end does under
     * CONFIG_SECURE_SIGNED_ON_UPDATE): */
    BLE_OTA_ERR_UNSIGNED = -9,      /* the image carries no Secure Boot v2 signature */
    BLE_OTA_ERR_BAD_SIGNATURE = -10, /* a trusted key's signature is damaged or does not hold */
    BLE_OTA_ERR_UNTRUSTED_KEY = -11, /* signed, but by no key the device trusts */
    BLE_OTA_ERR_DOWNGRADE = -12,    /* secure_version below the device's minimum (anti-rollback) */
    BLE_OTA_ERR_VERSION_DOWNGRADE = -13, /* app version older than the running one, not allowed */
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

    /* --- Optional (may be NULL) --------------------------------------- */

    /* Drops one link (NimBLE: ble_gap_terminate with BLE_ERR_REM_USER_CONN_TERM); the port then
     * reports the disconnect and advertises again as after any other. Called from the writer
     * context for a link that started or progressed no update within the configured idle
     * timeout, so that a central that connects and does nothing cannot keep updaters out.
     * Without it no link is ever dropped. Must not block. */
    int (*disconnect)(void *ctx, uint16_t conn);
} ble_ota_port_t;

/* --- Protocol v2 ------------------------------------------------------------
 *
 * What the core needs on top of ble_ota_port_t to speak protocol v2
 * (docs/protocol-v2.md). A separate table, bound with ble_ota_v2_attach()
 * after ble_ota_init(), so that a port written for the baseline keeps
 * compiling and working unchanged; without it the v2 characteristics answer
 * "Request Not Supported". inflate_* may be left NULL: INFO then says that
 * deflate is not supported and a compressed BEGIN is refused (BAD_REQUEST).
 */

/* What link_request asks for, in HCI units (and the host build's LINK_REQUEST kinds). */
typedef enum {
    BLE_OTA_LINK_CONN_PARAMS = 1, /* L2CAP connection parameter update */
    BLE_OTA_LINK_DATA_LENGTH = 2, /* LL_LENGTH_REQ */
    BLE_OTA_LINK_PHY = 3,         /* LE Set PHY */
} ble_ota_link_kind_t;

#define BLE_OTA_PHY_1M_MASK 0x01u
#define BLE_OTA_PHY_2M_MASK 0x02u

typedef struct {
    ble_ota_link_kind_t kind;
    /* BLE_OTA_LINK_CONN_PARAMS: 1.25 ms units, latency in events, timeout in 10 ms units. */
    uint16_t min_interval;
    uint16_t max_interval;
    uint16_t latency;
    uint16_t timeout;
    /* BLE_OTA_LINK_DATA_LENGTH */
    uint16_t tx_octets;
    uint16_t tx_time_us;
    /* BLE_OTA_LINK_PHY: BLE_OTA_PHY_1M_MASK / _2M_MASK bits */
    uint8_t tx_phys;
    uint8_t rx_phys;
} ble_ota_link_request_t;

/* What the firmware enforces on updates (CONFIG_BLE_OTA_*, eFuses), for INFO and BEGIN. */
typedef struct {
    bool signed_only;            /* CONFIG_BLE_OTA_REQUIRE_SIGNED: BEGIN needs a trusted manifest */
    bool anti_rollback;          /* CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK */
    uint32_t min_secure_version; /* lowest secure_version the device still boots (eFuse) */
    bool allow_downgrade;        /* CONFIG_BLE_OTA_ALLOW_DOWNGRADE: an older app version on request */
    ble_ota_link_security_t link_security; /* CONFIG_BLE_OTA_LINK_SECURITY */
} ble_ota_security_t;

/* The keys a device trusts for Secure Boot v2 signatures, from the platform (trusted_keys). */
typedef struct {
    uint8_t digests[3][BLE_OTA_SHA256_LEN]; /* SHA-256 of each trusted public key, as espsecure prints it */
    size_t count;
    /* How many signature blocks of an image the platform's own check reads: esp_ota_end reads
     * all three under Secure Boot v2 and only the first without Secure Boot. The core reads no
     * more, so that it never takes an image the platform would refuse at the end. */
    size_t blocks_checked;
} ble_ota_trust_t;

/*
 * What the background erase of the update slot left erased (CONFIG_BLE_OTA_PRE_ERASE): bytes
 * [0, erased_to) of the slot at flash address slot_address hold 0xFF. The core stores it after
 * each block erase completes and stores erased_to 0 before any session's first write into that
 * slot, so a power cut leaves it behind the flash, never ahead. Both fields 0: nothing recorded.
 */
typedef struct {
    uint32_t slot_address;
    uint32_t erased_to;
} ble_ota_erase_record_t;

/* inflate_update's return value once the end of the deflate stream was decoded. */
#define BLE_OTA_INFLATE_DONE 1

typedef struct ble_ota_port_v2 {
    /* --- Identity (any context; must not block) ------------------------ */

    /* SHA-256 of the running app image as it lies in flash: every byte of the
     * image, the appended digest included, i.e. the SHA-256 of the .bin file
     * that installs it. Computed once at start-up and cached (the INFO read
     * runs in the BLE context). IDF: esp_image_get_metadata for the length,
     * then mbedtls over the partition (esp_partition_get_sha256 returns the
     * appended digest, which is the SHA-256 of everything before it). */
    int (*running_sha256)(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN]);
    /* esp_image_header_t chip id of this chip (IDF: CONFIG_IDF_FIRMWARE_CHIP_ID). */
    uint16_t (*chip_id)(void *ctx);
    /* Size in bytes of the slot the next update goes to (0 if there is none). */
    uint32_t (*slot_size)(void *ctx);

    /* --- Flash slot, random access (writer context only) ---------------- */

    /* Opens the next update slot for writes at offsets into ranges the core
     * erases itself (erase ahead). *erased is how many bytes from the slot
     * start the open already erased; 0 lets BEGIN be answered before any
     * erase, the core erasing the first block right after (IDF:
     * esp_ota_resume(slot, 0, 0), no erase). Closed by slot_end/slot_abort of
     * ble_ota_port_t, like slot_begin. */
    int (*slot_open)(void *ctx, uint32_t image_size, ble_ota_slot_info_t *target, uint32_t *erased);
    /* Erases [offset, offset + len) of the open slot; both are multiples of
     * 4096. The core asks for one 4 KB sector or one 64 KB block at a 64 KB
     * aligned offset, which the flash driver turns into one block erase. */
    int (*slot_erase)(void *ctx, uint32_t offset, uint32_t len);
    /* Writes into erased bytes of the open slot (IDF: esp_ota_write_with_offset).
     * len is a multiple of 16 except for the image's last write. */
    int (*slot_write_at)(void *ctx, uint32_t offset, const uint8_t *data, size_t len);

    /* --- CRC and inflate (writer context) -------------------------------- */

    /* IEEE CRC-32 continued from crc (zlib's crc32(); IDF: esp_rom_crc32_le). */
    uint32_t (*crc32)(void *ctx, uint32_t crc, const uint8_t *data, size_t len);
    /* One zlib-format (RFC 1950) stream at a time. IDF: the ROM's miniz
     * tinfl_decompress with a 32 KB dictionary; host: zlib's inflate. */
    int (*inflate_start)(void *ctx);
    /* Consumes input from *in, *in_len (advancing them) and returns the bytes it
     * decoded in *out, *out_len, which stay valid until the next call. The core
     * calls again until *in_len and *out_len are both 0. Returns BLE_OTA_OK,
     * BLE_OTA_INFLATE_DONE after the stream's end (its Adler-32 checked), or a
     * negative error for a corrupt stream. */
    int (*inflate_update)(void *ctx, const uint8_t **in, size_t *in_len, const uint8_t **out,
                          size_t *out_len);
    /* Releases what inflate_start took; harmless when nothing is running. */
    void (*inflate_finish)(void *ctx);

    /* --- Link tuning (BLE context, on connect; must not block) ---------- */

    /* Asks the controller/central for one link change. BLE_OTA_ERR_UNSUPPORTED
     * if this chip cannot (2M PHY on the ESP32); any other error is logged. */
    int (*link_request)(void *ctx, uint16_t conn, const ble_ota_link_request_t *req);

    /* --- Update security (optional) ------------------------------------ */
    /*
     * Which images to take is the core's policy (ble_ota_sbv2.c): which signature blocks count,
     * the refusal reason, CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS, the secure_version and version
     * rules. A port gives only the primitives below. Without them (NULL) the device can check
     * no signature: a manifest is then a BAD_REQUEST, and signed-only refuses every image.
     */

    /* What the firmware enforces. Any context; must not block (values read at start-up). */
    void (*security)(void *ctx, ble_ota_security_t *out);
    /* The Secure Boot v2 key digests the platform trusts (IDF: the eFuse digests that are
     * not revoked under Secure Boot v2; without Secure Boot, the keys of the running app's
     * signature blocks, as esp_ota_end trusts them) and how many of an image's blocks the
     * platform itself looks at. Writer context. */
    int (*trusted_keys)(void *ctx, ble_ota_trust_t *out);
    /* SHA-256 of one buffer, without touching the sha256_* digest that may be running for an
     * upload (IDF: mbedtls_sha256). Any context the core calls it from is the writer's. */
    int (*sha256_buf)(void *ctx, const uint8_t *data, size_t len, uint8_t out[BLE_OTA_SHA256_LEN]);
    /* Verifies one signature block's signature with the block's own public key over `digest`
     * (RSA-3072-PSS for version 2, ECDSA P-256 for version 3; IDF: mbedTLS, as
     * esp_secure_boot_verify_sbv2_signature_block does it). Nothing else: the core checks
     * the CRC, the key's trust and the digest. BLE_OTA_OK if it holds, BLE_OTA_ERR_BAD_SIGNATURE
     * if not, BLE_OTA_ERR_UNSUPPORTED for a scheme this platform does not check. */
    int (*verify_block)(void *ctx, const uint8_t *block, const uint8_t digest[BLE_OTA_SHA256_LEN]);
    /* Reads back bytes the open session wrote to its slot (IDF: esp_partition_read), for the
     * core's signature check of the written image before slot_end. Writer context. */
    int (*slot_read)(void *ctx, uint32_t offset, uint8_t *buf, size_t len);

    /* --- Background erase of the update slot (optional: all five, or none) --- */
    /*
     * With them and ble_ota_config_t.pre_erase on, the writer erases the next update slot one
     * 64 KB block at a time while the device is idle, and an update skips what is erased.
     */

    /* The slot the next update goes to, without opening it (esp_ota_get_next_update_partition).
     * Writer context. */
    int (*next_slot)(void *ctx, ble_ota_slot_info_t *out);
    /* Erases [offset, offset + len) of that slot while no session has it open (IDF:
     * esp_partition_erase_range); the core asks for one 64 KB block at a 64 KB aligned offset,
     * or the slot's last sectors. Writer context. */
    int (*idle_erase)(void *ctx, uint32_t offset, uint32_t len);
    /* Loads and stores the record atomically: after a power cut, load gives a record that was
     * stored whole (the last one, or the one before it if the last store did not complete), or
     * nothing (zeros, BLE_OTA_OK). IDF: an NVS blob; host: an append log in the emulated flash. */
    int (*erase_record_load)(void *ctx, ble_ota_erase_record_t *out);
    int (*erase_record_store)(void *ctx, const ble_ota_erase_record_t *rec);
    /* Reads bytes of the next update slot without a session (IDF: esp_partition_read), to check
     * that what the record calls erased is blank before a session trusts it. Writer context. */
    int (*idle_read)(void *ctx, uint32_t offset, uint8_t *buf, size_t len);

    /* --- Delta updates (optional: both, or none) ------------------------ */
    /*
     * With them INFO says the device takes a patch (flag bit 4) and BEGIN may name a base: the
     * running image, whose bytes a patch's COPY reads. Without them a delta BEGIN is BAD_REQUEST.
     */

    /* Bytes of the running image that running_sha256 covers (its .bin file's size); 0 if unknown.
     * Any context; must not block (computed with the hash at start-up). */
    uint32_t (*running_size)(void *ctx);
    /* Reads bytes [offset, offset + len) of the running image (IDF: esp_partition_read on
     * esp_ota_get_running_partition()); the core asks only inside running_size. Writer context. */
    int (*running_read)(void *ctx, uint32_t offset, uint8_t *buf, size_t len);
} ble_ota_port_v2_t;

#ifdef __cplusplus
}
#endif

#endif /* BLE_OTA_PORT_H */
