/* Shared between the core's translation units; not part of the API. */
#ifndef BLE_OTA_PRIV_H
#define BLE_OTA_PRIV_H

#include <stdio.h>

#include "ble_ota.h"

#define BLE_OTA_TAG "ble_ota"

#if defined(__GNUC__)
#define BLE_OTA_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define BLE_OTA_PRINTF(fmt_idx, arg_idx)
#endif

/* The port bound by ble_ota_init(), or NULL before it. */
const ble_ota_port_t *ble_ota_priv_port(void);
/* An update (either protocol) is installed and the restart into it is scheduled: no new session
 * may open the update slot, which is the one just written until the restart. */
bool ble_ota_priv_restart_pending(void);
/* ble_ota_v2.c's part of it. */
bool ble_ota_v2_restart_scheduled(void);

/* The v2 table bound by ble_ota_v2_attach(), or NULL. */
const ble_ota_port_v2_t *ble_ota_priv_port_v2(void);

void ble_ota_priv_log(ble_ota_log_level_t level, const char *fmt, ...) BLE_OTA_PRINTF(2, 3);

/* Lowercase hex of len bytes into out (2 * len + 1 chars). */
/* Why slot_end refused an image for security (signature, anti-rollback), or NULL for any other
 * result: one sentence for the log, the same for both protocols. */
const char *ble_ota_priv_security_reason(int rc);
void ble_ota_priv_hex(const uint8_t *data, size_t len, char *out);

/* --- ble_ota_image.c: the first bytes of an incoming image ---------------- */

/* Up to the end of esp_app_desc_t.version: image header, segment header, app description. */
#define BLE_OTA_HEAD_LEN 80u

typedef struct {
    uint8_t bytes[BLE_OTA_HEAD_LEN];
    uint32_t have;
    bool complete;
    bool has_desc; /* the app description's magic word is there */
    uint32_t secure_version;
    char version[33];
} ble_ota_head_t;

/* Feeds image bytes at image offset pos; true when this call completed the head. */
bool ble_ota_priv_head_feed(ble_ota_head_t *head, uint32_t pos, const uint8_t *data, size_t len);

/*
 * The checks the core makes on an image's app description as soon as it arrives: secure_version
 * against the device's minimum (BLE_OTA_ERR_DOWNGRADE), the app version against the running one
 * (BLE_OTA_ERR_VERSION_DOWNGRADE unless asked for and allowed). *why is one sentence for the log.
 */
int ble_ota_priv_check_head(const ble_ota_head_t *head, const ble_ota_security_t *sec, const char *running_version,
                            bool downgrade_requested, const char **why);

/* Queue item kinds. The baseline's are handled in ble_ota_core.c, the v2
 * ones in ble_ota_v2.c. */
typedef enum {
    BLE_OTA_ITEM_BEGIN = 1, /* REQUEST: open the update slot */
    BLE_OTA_ITEM_DATA,      /* image bytes */
    BLE_OTA_ITEM_END,       /* DONE: validate, set boot, answer, restart */
    BLE_OTA_ITEM_ABORT,     /* disconnect or new REQUEST: drop the open slot */
    BLE_OTA_ITEM_V2_BEGIN,  /* v2 BEGIN command (44 bytes) */
    BLE_OTA_ITEM_V2_END,    /* v2 END */
    BLE_OTA_ITEM_V2_ABORT,  /* v2 ABORT: drop the session, answer ABORT_RSP */
    BLE_OTA_ITEM_V2_GAP,    /* a DATA frame was lost: ack with the expected offset */
    BLE_OTA_ITEM_V2_DROP,   /* a baseline REQUEST: drop the v2 session silently */
    BLE_OTA_ITEM_V2_MANIFEST, /* a piece of the signature manifest (u16 offset, bytes) */
} ble_ota_item_kind_t;

/* Short critical section of the port (queue counters, shared state). */
void ble_ota_priv_lock(void);
void ble_ota_priv_unlock(void);

/*
 * Queues one item for the writer. ring_pos is the v2 buffer's input count
 * when the item was queued: the writer consumes buffered v2 data up to it
 * before it handles the item, so items and data stay in arrival order.
 * Returns false if the queue has no room.
 */
/* BLE context: conn moved an update on (image data taken); restarts its idle timeout. */
void ble_ota_priv_progress(uint16_t conn);

bool ble_ota_priv_enqueue(ble_ota_item_kind_t kind, uint16_t conn, const uint8_t *data, size_t len,
                          uint32_t ring_pos);

/* Drops a baseline transfer in progress (a v2 BEGIN takes over). */
void ble_ota_priv_baseline_cancel(uint16_t conn);

/* --- ble_ota_v2.c, called by ble_ota_core.c ---------------------------- */

void ble_ota_v2_reset(void);
bool ble_ota_v2_enabled(void);
void ble_ota_v2_on_connect(uint16_t conn, uint16_t mtu);
void ble_ota_v2_on_disconnect(uint16_t conn);
void ble_ota_v2_on_mtu(uint16_t conn, uint16_t mtu);
void ble_ota_v2_on_data_length(uint16_t conn, uint16_t rx_octets);
void ble_ota_v2_on_phy(uint16_t conn, uint8_t tx_phy);
/* What the firmware enforces (the v2 port's security(); all off without one). */
void ble_ota_v2_security(ble_ota_security_t *out);
/* A baseline REQUEST is about to start: drop any v2 session; false (refuse the REQUEST) while
 * another connected link owns one. */
bool ble_ota_v2_on_baseline_request(uint16_t conn);
int ble_ota_v2_on_write(uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len);
int ble_ota_v2_on_read(uint16_t conn, ble_ota_chr_id_t chr, uint8_t *out, size_t cap, size_t *out_len);
/* Writer: one v2 item; the buffered data before it is consumed first. */
void ble_ota_v2_writer_item(ble_ota_item_kind_t kind, uint16_t conn, const uint8_t *data, size_t len,
                            uint32_t ring_pos);
/* Writer with an empty queue: consumes one chunk of buffered data, or
 * erases one sector ahead. Returns true if it did something. */
bool ble_ota_v2_writer_idle(void);
/* Writer with nothing else to do: one step of the background erase of the update slot (one
 * block, when the device has been idle long enough and the pause since the last block is over).
 * baseline_busy: a baseline transfer holds the slot. Returns true if it erased. */
bool ble_ota_v2_pre_erase_step(bool baseline_busy);
/* A baseline transfer is about to write the update slot: the erase record must say nothing is
 * erased first. False if it could not be stored (the transfer must not start). */
bool ble_ota_v2_pre_erase_forget(void);

#endif /* BLE_OTA_PRIV_H */
