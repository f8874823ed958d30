/*
 * Portable core of the BLE OTA service (baseline "v1" protocol and v2).
 *
 * The core is plain C99 with no platform includes. A port (NimBLE + esp_ota
 * on ESP-IDF, the host port on Linux) feeds it GATT events through the
 * ble_ota_on_*() functions and runs ble_ota_writer_run_once() in a context
 * where flash work is allowed. See ble_ota_port.h for what a port provides.
 *
 * Protocol (byte-exact with the baseline):
 *   1. client writes the packet size (u16 LE) to OTA Data;
 *   2. client writes REQUEST (0x01) to OTA Control; device notifies
 *      REQUEST_ACK (0x02) or REQUEST_NAK (0x03) on OTA Control;
 *   3. client writes the image in chunks to OTA Data;
 *   4. client writes DONE (0x04); device validates the image, sets the boot
 *      slot and notifies DONE_ACK (0x05), then restarts; or DONE_NAK (0x06).
 * Write Requests and Write Commands are accepted on both characteristics.
 *
 * Protocol v2 (docs/protocol-v2.md) runs beside it on v2 Control and v2 Data
 * once the port's v2 table is attached (ble_ota_v2_attach): INFO, BEGIN,
 * windowed offset-tagged DATA, WINDOW_ACK, END, ABORT, resume, deflate.
 */
#ifndef BLE_OTA_H
#define BLE_OTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ble_ota_gatt.h"
#include "ble_ota_port.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BLE_OTA_VERSION "0.1.0"

/* OTA Control opcodes (one byte, written to / notified on OTA Control). */
typedef enum {
    BLE_OTA_OP_NOP = 0x00,
    BLE_OTA_OP_REQUEST = 0x01,
    BLE_OTA_OP_REQUEST_ACK = 0x02,
    BLE_OTA_OP_REQUEST_NAK = 0x03,
    BLE_OTA_OP_DONE = 0x04,
    BLE_OTA_OP_DONE_ACK = 0x05,
    BLE_OTA_OP_DONE_NAK = 0x06,
} ble_ota_opcode_t;

/* Largest value accepted in one write: ATT_MTU 517 - 3. */
#define BLE_OTA_MAX_PACKET 514u

/* Queue slots between the BLE context and the writer. One slot is kept for
 * the end-of-session item (DONE or abort), so data can use DEPTH - 1. */
#ifndef BLE_OTA_QUEUE_DEPTH
#define BLE_OTA_QUEUE_DEPTH 16
#endif

/* ATT error codes returned by ble_ota_on_write()/ble_ota_on_read()
 * (Bluetooth Core Vol 3, Part F, 3.4.1.1; same values as NimBLE's BLE_ATT_ERR_*). */
#define BLE_OTA_ATT_OK 0x00
#define BLE_OTA_ATT_ERR_INVALID_HANDLE 0x01
#define BLE_OTA_ATT_ERR_READ_NOT_PERMITTED 0x02
#define BLE_OTA_ATT_ERR_WRITE_NOT_PERMITTED 0x03
#define BLE_OTA_ATT_ERR_REQ_NOT_SUPPORTED 0x06
#define BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN 0x0D
#define BLE_OTA_ATT_ERR_UNLIKELY 0x0E
#define BLE_OTA_ATT_ERR_INSUFFICIENT_RES 0x11
#define BLE_OTA_ATT_ERR_VALUE_NOT_ALLOWED 0x13
/* Application errors (0x80-0x9F), the answer to baseline image data once the device gave up on
 * the image, so that a baseline client can say why (a baseline device answers UNLIKELY_ERROR):
 * data past the end of the update slot; */
#define BLE_OTA_ATT_ERR_IMAGE_TOO_LARGE 0x80
/* the image was refused (anti-rollback, older version, signature, not an ESP app image; the
 * console names the reason). DONE is then answered DONE_NAK. */
#define BLE_OTA_ATT_ERR_IMAGE_REFUSED 0x81

/* Connection handle meaning "none". */
#define BLE_OTA_CONN_NONE 0xFFFFu

typedef struct {
    /* Complete local name to advertise; the baseline client looks for "esp32". */
    const char *device_name;
    /* Device Information: Manufacturer Name String. */
    const char *manufacturer;
    /* Delay between the DONE_ACK notification and the restart. */
    uint32_t restart_delay_ms;
    /* Refuse the baseline protocol's REQUEST (CONFIG_BLE_OTA_BASELINE_PROTOCOL off): it cannot
     * carry a signature manifest, so it erases the update slot before anything is checked. */
    bool disable_baseline;
    /* CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS: up to three key digests (64 hex digits each,
     * separated by commas or spaces) that an image's signature must be by, on top of the keys
     * the platform trusts. NULL or "" pins none. ble_ota_init refuses a malformed list. */
    const char *trusted_key_digests;
    /* CONFIG_BLE_OTA_IDLE_TIMEOUT_S: a link that has not started an update, or moved one on
     * (image data taken), for this long is dropped with port->disconnect. 0: never. */
    uint32_t idle_timeout_ms;
    /* CONFIG_BLE_OTA_SESSION_HOLD_S: a v2 session whose owner left is held this long after its
     * last progress; until then a BEGIN for another image is BUSY (the same image resumes it). */
    uint32_t session_hold_ms;
    /* CONFIG_BLE_OTA_REFUSAL_BACKOFF_MAX_S: after n refused v2 updates in a row (security
     * refusals at BEGIN, an image that is not what its manifest said) BEGIN is BUSY for
     * min(2^(n-1) s, this); an installed update resets n. 0: no back-off. */
    uint32_t refusal_backoff_max_ms;
    /* CONFIG_BLE_OTA_PRE_ERASE: when the writer erases the next update slot in the background
     * (ble_ota_pre_erase_t), so that an update finds it erased and skips the erase stalls. The
     * erased slot's previous image is gone: esp_ota_mark_app_invalid_rollback_and_reboot() can no
     * longer go back to it. Needs the v2 port's pre-erase functions; without them, off. */
    uint8_t pre_erase;
    /* CONFIG_BLE_OTA_PRE_ERASE_DELAY_S: the device must have been idle this long (since boot, the
     * last session or, for BLE_OTA_PRE_ERASE_DISCONNECTED, the last disconnect) first. */
    uint32_t pre_erase_delay_ms;
    /* CONFIG_BLE_OTA_PRE_ERASE_PAUSE_MS: at least this long between two 64 KB block erases (each
     * stalls the chip for one block erase, ~150-450 ms). */
    uint32_t pre_erase_pause_ms;
} ble_ota_config_t;

/* When the update slot is erased in the background (ble_ota_config_t.pre_erase). */
typedef enum {
    BLE_OTA_PRE_ERASE_OFF = 0,
    BLE_OTA_PRE_ERASE_DISCONNECTED = 1, /* idle and no BLE connection */
    BLE_OTA_PRE_ERASE_IDLE = 2,         /* idle, connected or not */
} ble_ota_pre_erase_t;

#define BLE_OTA_CONFIG_DEFAULT_INIT                                                                                    \
    { "esp32", "Espressif Systems", 500u, false, NULL, 30000u, 60000u, 64000u, BLE_OTA_PRE_ERASE_DISCONNECTED,        \
      30000u, 1000u }

/* Session state as seen from the BLE side. */
typedef enum {
    BLE_OTA_STATE_IDLE = 0,  /* no session; OTA Data writes set the packet size */
    BLE_OTA_STATE_RECEIVING, /* REQUEST accepted, image bytes are queued */
    BLE_OTA_STATE_FAILED,    /* data was lost (Write Command into a full queue); DONE gets DONE_NAK */
} ble_ota_state_t;

typedef struct {
    ble_ota_state_t state;
    uint16_t conn;              /* connected peer, or BLE_OTA_CONN_NONE */
    uint16_t mtu;
    bool control_notify_enabled;
    uint16_t packet_size;       /* as read at the last REQUEST */
    uint8_t control_value;      /* what a read of OTA Control returns */
    /* Writer side. */
    bool slot_open;             /* slot_begin succeeded and the session is not over */
    uint32_t bytes_written;     /* to the slot in the current/last session */
    uint32_t packets_written;
    uint32_t queue_count;       /* items waiting for the writer */
    uint32_t queue_high_water;
    uint32_t writes_refused_full; /* Write Requests answered INSUFFICIENT_RES */
    uint32_t sessions_completed;  /* DONE_ACK sent */
    bool restart_scheduled;
    uint8_t image_sha256[BLE_OTA_SHA256_LEN]; /* of the last completed image */
    bool image_sha256_valid;
} ble_ota_status_t;

/*
 * Resets all state and binds the port. The port struct and the strings in
 * cfg must outlive the core. cfg may be NULL for the defaults.
 * Returns BLE_OTA_ERR_INVALID_ARG if a required port function is missing.
 */
int ble_ota_init(const ble_ota_port_t *port, const ble_ota_config_t *cfg);

const ble_ota_config_t *ble_ota_get_config(void);

/* --- Called by the BLE port, from the BLE host context. Never block. --- */

void ble_ota_on_connect(uint16_t conn, uint16_t mtu);
/* Aborts a transfer in progress (the slot is dropped by the writer). */
void ble_ota_on_disconnect(uint16_t conn);
void ble_ota_on_mtu(uint16_t conn, uint16_t mtu);
/* The link layer's receive payload size changed (LE Data Length Change:
 * maxRxOctets, 27..251). v2 sizes its DATA frames to whole link-layer packets
 * with it; until a port reports it, each connection assumes 27, the link
 * layer's default. */
void ble_ota_on_data_length(uint16_t conn, uint16_t rx_octets);
/* The link now uses this PHY for its transmissions (LE PHY Update Complete: 1 = 1M, 2 = 2M).
 * On 2M, v2 asks for an 11.25-15 ms interval instead of 7.5: with 251-byte packets a 2M
 * event fits 6.6% more data at 11.25 ms (docs/protocol-v2.md, link tuning). */
void ble_ota_on_phy(uint16_t conn, uint8_t tx_phy);
void ble_ota_on_subscribe(uint16_t conn, ble_ota_chr_id_t chr, bool notify_enabled);

/*
 * A value written to a characteristic. with_response is true for an ATT
 * Write Request, false for a Write Command; both are handled alike, except
 * when image data finds the queue full: a Write Request is refused with
 * INSUFFICIENT_RES and may be retried, while a Write Command (which cannot be
 * refused on air) fails the session, so DONE gets DONE_NAK. A port that cannot
 * tell the two apart (NimBLE's access callback cannot) passes false: safe, as
 * data is then never lost silently. Returns 0 or a BLE_OTA_ATT_ERR_* code.
 */
int ble_ota_on_write(uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len,
                     bool with_response);

/* Reads a characteristic value. Returns 0 or a BLE_OTA_ATT_ERR_* code. */
int ble_ota_on_read(uint16_t conn, ble_ota_chr_id_t chr, uint8_t *out, size_t cap,
                    size_t *out_len);

/* --- Called by the port's writer context. --- */

/*
 * Processes one queued item (flash work happens here). If the queue is empty
 * it waits up to timeout_ms through port->writer_wait first.
 * Returns true if an item was processed.
 */
bool ble_ota_writer_run_once(uint32_t timeout_ms);

void ble_ota_get_status(ble_ota_status_t *out);

/* --- Boot-time checks, shared by the ESP-IDF app and the host device. --- */

/*
 * Portable self-test: GATT layout consistency, SHA-256 of the port against a
 * known vector, app version and chip name present, running slot readable.
 * force_fail makes it fail on purpose (rollback tests).
 * Returns true if every check passed; logs each failed check.
 */
bool ble_ota_self_test(bool force_fail);

typedef enum {
    BLE_OTA_BOOT_NOT_PENDING = 0, /* image was not waiting for verification */
    BLE_OTA_BOOT_CONFIRMED,       /* pending image passed the self-test and is now valid */
    BLE_OTA_BOOT_ROLLBACK_FAILED, /* self-test failed but reject_running returned */
    BLE_OTA_BOOT_CONFIRM_FAILED,  /* self-test passed but confirm_running failed */
    BLE_OTA_BOOT_ERROR,           /* running slot could not be read */
} ble_ota_boot_result_t;

/*
 * What the app does at boot, as the baseline does: log the running slot; if
 * it is PENDING_VERIFY, run the self-test and confirm it, or reject it and
 * reboot into the previous image (reject_running does not return then).
 */
ble_ota_boot_result_t ble_ota_boot_check(bool force_self_test_failure);

/* --- Protocol v2 (docs/protocol-v2.md) ------------------------------------ */

/* Commands written to v2 Control, and the answers notified on it. */
typedef enum {
    BLE_OTA_V2_OP_BEGIN = 0x10,
    BLE_OTA_V2_OP_END = 0x11,
    BLE_OTA_V2_OP_ABORT = 0x12,
    BLE_OTA_V2_OP_MANIFEST = 0x13, /* a piece of the signature manifest, before BEGIN; no answer of its own */
    BLE_OTA_V2_OP_BEGIN_RSP = 0x90,
    BLE_OTA_V2_OP_WINDOW_ACK = 0x91,
    BLE_OTA_V2_OP_END_RSP = 0x93,
    BLE_OTA_V2_OP_ABORT_RSP = 0x94,
} ble_ota_v2_opcode_t;

/* Second byte of every v2 answer. */
typedef enum {
    BLE_OTA_V2_OK = 0,
    BLE_OTA_V2_ALREADY_INSTALLED = 1,
    BLE_OTA_V2_TOO_LARGE = 2,
    BLE_OTA_V2_WRONG_CHIP = 3,
    BLE_OTA_V2_BAD_REQUEST = 4,
    BLE_OTA_V2_FLASH_ERROR = 5,
    BLE_OTA_V2_HASH_MISMATCH = 6,
    BLE_OTA_V2_INVALID_IMAGE = 7,
    BLE_OTA_V2_BUSY = 8,
    BLE_OTA_V2_NO_SESSION = 9,
    BLE_OTA_V2_INFLATE_ERROR = 10,
    BLE_OTA_V2_SIZE_MISMATCH = 11,
    /* END with signed updates required (docs/security.md); the running image stays: */
    BLE_OTA_V2_UNSIGNED = 12,      /* no Secure Boot v2 signature */
    BLE_OTA_V2_BAD_SIGNATURE = 13, /* a trusted key's signature is damaged or does not hold */
    BLE_OTA_V2_UNTRUSTED_KEY = 14, /* signed by no key the device trusts */
    BLE_OTA_V2_DOWNGRADE = 15,     /* secure_version below the device's minimum */
    /* BEGIN (from the manifest) or while streaming (from the image's app description): */
    BLE_OTA_V2_VERSION_DOWNGRADE = 16, /* app version older than the running one, not allowed */
    BLE_OTA_V2_MANIFEST_MISMATCH = 17, /* the image is not the one its manifest describes */
    BLE_OTA_V2_INSTALLED_RESTARTING = 18, /* BEGIN: this image was installed; the device restarts into it now */
    /* Delta updates (BEGIN flag bit 4): */
    BLE_OTA_V2_BASE_MISMATCH = 19, /* BEGIN: the running image is not the patch's base (before any erase) */
    BLE_OTA_V2_BAD_PATCH = 20,     /* streaming or END: the patch reads outside the base, writes past
                                    * image_size, goes on after END, or has no END */
} ble_ota_v2_status_code_t;

#define BLE_OTA_V2_PROTO_VERSION 2u
#define BLE_OTA_V2_INFO_LEN 123u
#define BLE_OTA_V2_BEGIN_LEN 44u
#define BLE_OTA_V2_BEGIN_DELTA_LEN 76u /* BEGIN with flag bit 4: the base's SHA-256 follows */
#define BLE_OTA_V2_BEGIN_RSP_LEN 16u
#define BLE_OTA_V2_WINDOW_ACK_LEN 10u
/* INFO flags */
#define BLE_OTA_V2_INFO_DEFLATE 0x01u
#define BLE_OTA_V2_INFO_RESUME 0x02u
#define BLE_OTA_V2_INFO_MANIFEST 0x04u /* takes MANIFEST (0x13) before BEGIN */
#define BLE_OTA_V2_INFO_PRE_ERASE 0x08u /* erases the update slot in the background when idle */
#define BLE_OTA_V2_INFO_DELTA 0x10u     /* takes a patch against the running image (BEGIN bit 4) */
/* INFO security byte (offset 114): what the firmware enforces; bits 4-5 the link security
 * its OTA writes need (ble_ota_link_security_t). u32 minimum secure_version follows. */
#define BLE_OTA_V2_SEC_SIGNED_ONLY 0x01u     /* BEGIN needs a manifest signed by a trusted key */
#define BLE_OTA_V2_SEC_ANTI_ROLLBACK 0x02u   /* secure_version below the minimum is refused */
#define BLE_OTA_V2_SEC_ALLOW_DOWNGRADE 0x04u /* an older app version is taken when BEGIN asks */
#define BLE_OTA_V2_SEC_LINK_SHIFT 4u
/* BEGIN flags */
#define BLE_OTA_V2_BEGIN_DEFLATE 0x01u
#define BLE_OTA_V2_BEGIN_RESTART 0x02u
#define BLE_OTA_V2_BEGIN_MANIFEST 0x04u        /* this connection sent the image's manifest */
#define BLE_OTA_V2_BEGIN_ALLOW_DOWNGRADE 0x08u /* install an older app version (if the device allows) */
#define BLE_OTA_V2_BEGIN_DELTA 0x10u           /* the stream is a patch against the running image */

/* The signature manifest (docs/protocol-v2.md): u8 version 1, u8 block count (1..3), u16 0,
 * u32 secure_version, char[32] app version, then the image's Secure Boot v2 signature blocks
 * as they open its signature sector (1216 bytes each). MANIFEST carries it in pieces:
 * u8 op, u16 offset, bytes. */
#define BLE_OTA_V2_MANIFEST_VERSION 1u
#define BLE_OTA_V2_MANIFEST_HDR 40u
#define BLE_OTA_SIG_BLOCK_LEN 1216u
#define BLE_OTA_SIG_MAX_BLOCKS 3u
#define BLE_OTA_V2_MANIFEST_MAX (BLE_OTA_V2_MANIFEST_HDR + BLE_OTA_SIG_MAX_BLOCKS * BLE_OTA_SIG_BLOCK_LEN)

/*
 * Compares two app versions (esp_app_desc_t.version) by their numeric major.minor.patch
 * ("v1.2", "1.2.3-rc1", "2.0.0-hil.ab12cd34"): *order < 0 when a is older than b, 0 equal,
 * > 0 newer. Suffixes after the numbers are not compared. Returns false when either does not
 * start with a number (e.g. a git hash): no order, no refusal.
 */
bool ble_ota_version_compare(const char *a, size_t a_len, const char *b, size_t b_len, int *order);

/* Bytes of v2 Data payload buffered between the BLE context and the writer;
 * this is the window announced to clients (a power of two). 32 KB lets a
 * client keep sending through a 64 KB block erase (~150 ms, ~24 KB at
 * ~160 kB/s) instead of stalling on a full window. */
#ifndef BLE_OTA_V2_BUFFER_SIZE
#define BLE_OTA_V2_BUFFER_SIZE 32768
#endif

/*
 * Enables protocol v2 with the port's v2 functions (ble_ota_port.h). Call
 * after ble_ota_init(), which detaches them again. The table must outlive
 * the core. Returns BLE_OTA_ERR_INVALID_ARG if a required function is missing.
 */
int ble_ota_v2_attach(const ble_ota_port_v2_t *v2);

typedef struct {
    bool attached;
    bool session_held;      /* a v2 session exists (possibly without a connection) */
    bool accepting;         /* DATA frames are taken (BEGIN_RSP OK sent, link up) */
    bool compressed;
    uint8_t failed_status;  /* a status != 0 if the held session failed while streaming */
    uint16_t owner;         /* connection of the session, or BLE_OTA_CONN_NONE */
    uint32_t image_size;
    uint32_t stream_size;
    uint32_t expected;      /* next stream offset the BLE side takes */
    uint32_t committed;     /* stream bytes the writer consumed */
    uint32_t crc32;         /* of stream bytes [0, committed) */
    uint32_t image_written; /* image bytes handed to flash (inflated) */
    uint32_t erased_to;     /* slot bytes erased so far */
    uint32_t pre_erased;    /* bytes from the update slot's start the background erase left erased */
    uint32_t buffer_used;
    uint32_t buffer_high_water;
    uint32_t gaps;            /* WINDOW_ACKs with BAD_REQUEST for a lost frame */
    uint32_t frames_dropped;  /* frames that found the buffer full or came out of order */
    uint32_t acks;            /* WINDOW_ACKs sent with status OK */
    uint32_t sessions_completed;
    bool restart_scheduled;
} ble_ota_v2_status_t;

void ble_ota_v2_get_status(ble_ota_v2_status_t *out);

/* "ALREADY_INSTALLED" for a v2 status code. */
const char *ble_ota_v2_status_name(uint8_t status);

/* Name of an opcode ("REQUEST_ACK"), of a slot state ("pending-verify"). */
const char *ble_ota_opcode_name(uint8_t op);
const char *ble_ota_slot_state_name(ble_ota_slot_state_t state);

#ifdef __cplusplus
}
#endif

#endif /* BLE_OTA_H */
