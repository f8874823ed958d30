/*
 * The GATT fuzz harness: the portable core behind a fake port whose flash is the host build's
 * NOR flash emulation (firmware/host/src/flash.c) holding the real partition table's update
 * slot, driven by a recorded session, with the invariants of README.md checked as it goes.
 *
 * An input is an 8-byte header (the firmware's configuration and one injected fault) and then
 * records `u8 op, u8 conn, u16 length (LE), bytes`, each one GATT event of one connection, as
 * the BLE stack hands them to the core (README.md, "Input format"). After each record the
 * writer runs until it is idle, as the host device program's I/O loop does, unless the record
 * asks to defer it.
 */
#ifndef GATT_HARNESS_H
#define GATT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FZ_HEADER_LEN 8u

/* header[0]: what the port provides and how the firmware is built */
#define FZ_F_V2 0x01u            /* ble_ota_v2_attach */
#define FZ_F_INFLATE 0x02u       /* inflate_* */
#define FZ_F_SIGNATURES 0x04u    /* trusted_keys, sha256_buf, verify_block, slot_read */
#define FZ_F_LINK 0x08u          /* link_request */
#define FZ_F_NO_BASELINE 0x10u   /* CONFIG_BLE_OTA_BASELINE_PROTOCOL off */
#define FZ_F_ESP32 0x20u         /* chip ESP32 (id 0, no 2M PHY); else ESP32-S3 (id 9) */
#define FZ_F_PIN_SHIFT 6u        /* bits 6-7: CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS: 0 none, 1 key A, 2 key B, 3 malformed */
/* header[1]: ble_ota_security_t */
#define FZ_S_SIGNED_ONLY 0x01u
#define FZ_S_ANTI_ROLLBACK 0x02u
#define FZ_S_ALLOW_DOWNGRADE 0x04u
#define FZ_S_SECURITY 0x08u      /* the port has security() at all */
/* header[2]: min_secure_version (eFuse) */
/* header[3]: trusted_keys(): bit 0 key A, bit 1 key B, bit 2 key C (ECDSA), bits 3-4 blocks_checked (0 = all),
 * bit 5 trusted_keys() fails */
/* header[4]: injected fault (FZ_FAULT_*); header[5]: the call it hits (1-based; 0 none) */
enum {
    FZ_FAULT_NONE = 0,
    FZ_FAULT_OPEN,       /* slot_begin / slot_open */
    FZ_FAULT_ERASE,      /* slot_erase, or the baseline's sequential erase */
    FZ_FAULT_WRITE,      /* slot_write / slot_write_at */
    FZ_FAULT_SHA_START,  /* sha256_start */
    FZ_FAULT_INFLATE,    /* inflate_start */
    FZ_FAULT_END,        /* slot_end */
    FZ_FAULT_SET_BOOT,   /* slot_set_boot */
    FZ_FAULT_NOTIFY,     /* notify */
    FZ_FAULT_READ,       /* slot_read */
    FZ_FAULT_DISCONNECT, /* disconnect */
    FZ_FAULT_COUNT
};
/* header[6]: ble_ota_config_t timers, IDF's defaults unless a bit turns one off */
#define FZ_C_NO_IDLE_TIMEOUT 0x01u   /* idle_timeout_ms 0 */
#define FZ_C_NO_SESSION_HOLD 0x02u   /* session_hold_ms 0 */
#define FZ_C_NO_BACKOFF 0x04u        /* refusal_backoff_max_ms 0 */
#define FZ_C_NO_DISCONNECT 0x08u     /* the port has no disconnect() */
/* header[7]: running app version (index into a table: "1.2.0", "1.2.0-rc1", "abc", "0.1") */

/* Record ops */
enum {
    FZ_OP_CONNECT = 0x01,     /* u16 mtu */
    FZ_OP_DISCONNECT = 0x02,
    FZ_OP_MTU = 0x03,         /* u16 mtu */
    FZ_OP_DATA_LENGTH = 0x04, /* u16 rx octets */
    FZ_OP_PHY = 0x05,         /* u8 phy (1 or 2) */
    FZ_OP_SUBSCRIBE = 0x06,   /* u8 chr, u8 notify */
    FZ_OP_WRITER = 0x07,      /* u8 n: runs the writer n times (after deferred records) */
    FZ_OP_CLOCK = 0x08,       /* u32 ms the clock advances */
    FZ_OP_WRITE_RSP = 0x10,   /* + chr: Write Request of the bytes */
    FZ_OP_WRITE_CMD = 0x18,   /* + chr: Write Command of the bytes */
    FZ_OP_READ = 0x20,        /* + chr: read, optional u16 buffer size */
};
/* conn byte: bits 0-1 connection (handle 1..4), bit 7: do not run the writer after this record */
#define FZ_CONN_MASK 0x03u
#define FZ_DEFER 0x80u

/* A notification the core sent during the last record. */
typedef struct {
    uint16_t conn;
    uint8_t chr;
    uint8_t len;
    uint8_t data[32];
} fz_note_t;

/* Runs one input (header and records). */
void fz_gatt_run(const uint8_t *data, size_t size);

/* The same, a record at a time, for the seed generator: start with a header, apply records,
 * read what the core notified during the last one, finish. start returns false when the
 * header's configuration makes ble_ota_init refuse (a malformed key list). */
bool fz_gatt_start(const uint8_t header[FZ_HEADER_LEN]);
void fz_gatt_apply(uint8_t op, uint8_t conn, const uint8_t *payload, size_t len);
size_t fz_gatt_notes(const fz_note_t **out);
/* Result of the last READ record. */
size_t fz_gatt_read_value(const uint8_t **out);
/* What ble_ota_on_write or ble_ota_on_read returned for the last WRITE or READ record. */
int fz_gatt_last_att(void);
/* Whether connection index i (0..3) is up (the core may drop one through port->disconnect). */
bool fz_gatt_connected(uint8_t i);
/* How many restarts (DONE_ACK / END_RSP OK) the core scheduled so far. */
uint32_t fz_gatt_restarts(void);
void fz_gatt_finish(void);

/* The running app's version and chip, as the fake port reports them. */
const char *fz_gatt_running_version(uint8_t index);
/* SHA-256 that INFO reports for the running image (a BEGIN with it is ALREADY_INSTALLED). */
void fz_gatt_running_sha256(uint8_t out[32]);

#endif
