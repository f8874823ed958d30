/*
 * Baseline ("v1") OTA protocol state machine and the queue to the writer.
 *
 * Two contexts touch this file:
 * - the BLE context (ble_ota_on_*): owns s_ble and the queue head;
 * - the writer context (ble_ota_writer_run_once): owns s_writer and the
 *   queue tail, and is the only one that calls flash and SHA functions.
 * Only the queue count and the published statistics are shared; they are
 * changed under port->lock, which is never held across flash work.
 */
#include <string.h>

#include "ble_ota_priv.h"
#include "ble_ota_sbv2.h"

#if BLE_OTA_QUEUE_DEPTH < 2
#error "BLE_OTA_QUEUE_DEPTH must be at least 2: one slot is reserved for the end of a session"
#endif

#define ITEM_BEGIN BLE_OTA_ITEM_BEGIN
#define ITEM_DATA BLE_OTA_ITEM_DATA
#define ITEM_END BLE_OTA_ITEM_END
#define ITEM_ABORT BLE_OTA_ITEM_ABORT
typedef ble_ota_item_kind_t item_kind_t;

typedef struct {
    item_kind_t kind;
    uint32_t session; /* which REQUEST the item belongs to */
    uint32_t ring_pos; /* v2 items: buffered v2 data before this item */
    uint16_t conn;
    uint16_t len;
    uint8_t data[BLE_OTA_MAX_PACKET];
} item_t;

/* BLE-context state. */
typedef struct {
    ble_ota_state_t state;
    uint16_t conn;
    uint16_t mtu;
    bool control_notify_enabled;
    /* Last value written to OTA Data outside a transfer: REQUEST reads the
     * packet size from its first two bytes, as the baseline does. */
    uint8_t size_value[2];
    uint16_t packet_size;
    uint32_t session; /* counts REQUESTs; 0 = none yet */
} ble_state_t;

/* Writer-context state. */
typedef struct {
    bool slot_open;
    bool sha_ok;
    uint8_t sha_digest[BLE_OTA_SHA256_LEN]; /* the upload's digest between its end and DONE_ACK */
    bool sha_digest_ok;
    uint32_t start_ms;
    ble_ota_slot_info_t target;
    ble_ota_head_t head; /* the image's first bytes, for its app description */
} writer_state_t;

/* Shared, under lock. */
typedef struct {
    uint32_t head; /* next slot the BLE context fills (BLE context only) */
    uint32_t tail; /* next slot the writer takes (writer only) */
    uint32_t count;
    uint32_t high_water;
    /* Sessions up to this one were dropped (disconnect, new REQUEST, lost
     * data): the writer skips their queued work instead of flashing it. */
    uint32_t cancelled_session;
    /* Last session the writer gave up on (REQUEST or a flash write failed):
     * further image data for it is refused at once instead of queued. */
    uint32_t failed_session;
    /* The ATT error further image data of that session gets: why, where the client can tell. */
    uint8_t failed_att;
    uint8_t control_value;
    bool slot_open;
    uint32_t bytes_written;
    uint32_t packets_written;
    uint32_t writes_refused_full;
    uint32_t sessions_completed;
    bool restart_scheduled;
    uint8_t image_sha256[BLE_OTA_SHA256_LEN];
    bool image_sha256_valid;
} shared_state_t;

/* Links the idle timeout watches: when each last started or moved an update on. Under lock:
 * the BLE context adds, refreshes and removes; the writer checks. */
#define IDLE_LINKS 4u
typedef struct {
    uint16_t conn; /* BLE_OTA_CONN_NONE where free */
    uint32_t progress_ms;
    bool dropping; /* port->disconnect was asked; the disconnect event frees the entry */
} idle_link_t;

static const ble_ota_port_t *s_port;
static ble_ota_config_t s_cfg;
static idle_link_t s_idle[IDLE_LINKS];
static ble_state_t s_ble;
static writer_state_t s_writer;
static shared_state_t s_shared;
static item_t s_items[BLE_OTA_QUEUE_DEPTH];

const ble_ota_port_t *ble_ota_priv_port(void)
{
    return s_port;
}

void ble_ota_priv_log(ble_ota_log_level_t level, const char *fmt, ...)
{
    va_list ap;

    if (s_port == NULL) {
        return;
    }
    va_start(ap, fmt);
    s_port->log(s_port->ctx, level, BLE_OTA_TAG, fmt, ap);
    va_end(ap);
}

void ble_ota_priv_hex(const uint8_t *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0x0Fu];
    }
    out[2 * len] = '\0';
}

static void prv_lock(void)
{
    s_port->lock(s_port->ctx);
}

static void prv_unlock(void)
{
    s_port->unlock(s_port->ctx);
}

void ble_ota_priv_lock(void)
{
    prv_lock();
}

void ble_ota_priv_unlock(void)
{
    prv_unlock();
}

int ble_ota_init(const ble_ota_port_t *port, const ble_ota_config_t *cfg)
{
    static const ble_ota_config_t defaults = BLE_OTA_CONFIG_DEFAULT_INIT;

    if (port == NULL || port->slot_begin == NULL || port->slot_write == NULL ||
        port->slot_end == NULL || port->slot_abort == NULL || port->slot_set_boot == NULL ||
        port->get_running_slot == NULL || port->confirm_running == NULL ||
        port->reject_running == NULL || port->app_version == NULL || port->chip_name == NULL ||
        port->notify == NULL || port->now_ms == NULL || port->log == NULL ||
        port->schedule_restart == NULL || port->lock == NULL || port->unlock == NULL ||
        port->writer_wake == NULL || port->writer_wait == NULL || port->sha256_start == NULL ||
        port->sha256_update == NULL || port->sha256_finish == NULL) {
        return BLE_OTA_ERR_INVALID_ARG;
    }
    s_port = port;
    s_cfg = (cfg != NULL) ? *cfg : defaults;
    if (s_cfg.device_name == NULL) {
        s_cfg.device_name = defaults.device_name;
    }
    if (s_cfg.manufacturer == NULL) {
        s_cfg.manufacturer = defaults.manufacturer;
    }
    memset(&s_ble, 0, sizeof(s_ble));
    memset(&s_writer, 0, sizeof(s_writer));
    memset(&s_shared, 0, sizeof(s_shared));
    s_ble.state = BLE_OTA_STATE_IDLE;
    s_ble.conn = BLE_OTA_CONN_NONE;
    for (size_t i = 0; i < IDLE_LINKS; i++) {
        s_idle[i].conn = BLE_OTA_CONN_NONE;
    }
    ble_ota_v2_reset();
    if (!ble_ota_sbv2_pin(s_cfg.trusted_key_digests)) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS is not a list of up to three 64-hex-digit key digests "
                         "(ble-ota keygen and espsecure.py digest_sbv2_public_key print them): \"%s\"; fix it in "
                         "menuconfig",
                         s_cfg.trusted_key_digests);
        s_port = NULL;
        return BLE_OTA_ERR_INVALID_ARG;
    }
    return BLE_OTA_OK;
}

const ble_ota_config_t *ble_ota_get_config(void)
{
    return &s_cfg;
}

/* --- Idle links ----------------------------------------------------------- */

static idle_link_t *prv_idle_find(uint16_t conn)
{
    for (size_t i = 0; i < IDLE_LINKS; i++) {
        if (s_idle[i].conn == conn) {
            return &s_idle[i];
        }
    }
    return NULL;
}

void ble_ota_priv_progress(uint16_t conn)
{
    idle_link_t *link;
    uint32_t now = s_port->now_ms(s_port->ctx);

    prv_lock();
    link = prv_idle_find(conn);
    if (link != NULL) {
        link->progress_ms = now;
    }
    prv_unlock();
}

/* Writer context: drops links that did nothing for an update within the idle timeout. The
 * device advertises only while no central is connected, so such a link keeps every updater out. */
static void prv_drop_idle_links(void)
{
    uint32_t now;

    if (s_port->disconnect == NULL || s_cfg.idle_timeout_ms == 0u) {
        return;
    }
    now = s_port->now_ms(s_port->ctx);
    for (size_t i = 0; i < IDLE_LINKS; i++) {
        uint16_t conn = BLE_OTA_CONN_NONE;
        uint32_t idle = 0u;
        int rc;

        prv_lock();
        if (s_idle[i].conn != BLE_OTA_CONN_NONE && !s_idle[i].dropping) {
            idle = now - s_idle[i].progress_ms;
            if (idle >= s_cfg.idle_timeout_ms) {
                conn = s_idle[i].conn;
                s_idle[i].dropping = true;
            }
        }
        prv_unlock();
        if (conn == BLE_OTA_CONN_NONE) {
            continue;
        }
        ble_ota_priv_log(BLE_OTA_LOG_WARN,
                         "conn %u started or moved on no update for %lu ms: disconnecting it so that others can "
                         "update (CONFIG_BLE_OTA_IDLE_TIMEOUT_S)",
                         (unsigned)conn, (unsigned long)idle);
        rc = s_port->disconnect(s_port->ctx, conn);
        if (rc != BLE_OTA_OK) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "could not disconnect conn %u (error %d)", (unsigned)conn, rc);
        }
    }
}

/* --- BLE context ------------------------------------------------------- */

static void prv_set_control(uint8_t value)
{
    prv_lock();
    s_shared.control_value = value;
    prv_unlock();
}

static void prv_notify_control(uint16_t conn, uint8_t op)
{
    int rc;

    prv_set_control(op);
    if (conn == BLE_OTA_CONN_NONE) {
        return;
    }
    /* Sent whether or not the peer enabled notifications, like the baseline
     * (ble_gattc_notify_custom does not look at the CCCD). */
    rc = s_port->notify(s_port->ctx, conn, BLE_OTA_CHR_OTA_CONTROL, &op, 1u);
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "could not notify %s to connection %u (error %d)",
                         ble_ota_opcode_name(op), (unsigned)conn, rc);
    }
}

/*
 * Queues one item. Items that end a session (END, ABORT) may take the last
 * slot; all others leave it free, so a session can always be ended even when
 * the writer is behind. Returns false if the queue has no room.
 */
static bool prv_enqueue_at(item_kind_t kind, uint16_t conn, const uint8_t *data, size_t len,
                           uint32_t ring_pos)
{
    bool ends_session = (kind == ITEM_END || kind == ITEM_ABORT || kind == BLE_OTA_ITEM_V2_END ||
                         kind == BLE_OTA_ITEM_V2_ABORT || kind == BLE_OTA_ITEM_V2_DROP);
    uint32_t limit = ends_session ? BLE_OTA_QUEUE_DEPTH : BLE_OTA_QUEUE_DEPTH - 1u;
    item_t *item;

    prv_lock();
    if (s_shared.count >= limit) {
        prv_unlock();
        return false;
    }
    prv_unlock();

    /* The head slot belongs to this context until count is raised. */
    item = &s_items[s_shared.head];
    item->kind = kind;
    item->session = s_ble.session;
    item->conn = conn;
    item->ring_pos = ring_pos;
    item->len = (uint16_t)len;
    if (len > 0u) {
        memcpy(item->data, data, len);
    }
    s_shared.head = (s_shared.head + 1u) % BLE_OTA_QUEUE_DEPTH;

    prv_lock();
    s_shared.count++;
    if (s_shared.count > s_shared.high_water) {
        s_shared.high_water = s_shared.count;
    }
    prv_unlock();

    s_port->writer_wake(s_port->ctx);
    return true;
}

static bool prv_enqueue(item_kind_t kind, uint16_t conn, const uint8_t *data, size_t len)
{
    return prv_enqueue_at(kind, conn, data, len, 0u);
}

bool ble_ota_priv_enqueue(ble_ota_item_kind_t kind, uint16_t conn, const uint8_t *data, size_t len,
                          uint32_t ring_pos)
{
    if (len > BLE_OTA_MAX_PACKET) {
        return false;
    }
    return prv_enqueue_at(kind, conn, data, len, ring_pos);
}

/* Drops the current session: queued work for it is skipped, and the ABORT
 * item (which always fits) releases the slot in order. */
static void prv_cancel_session(uint16_t conn)
{
    prv_lock();
    s_shared.cancelled_session = s_ble.session;
    prv_unlock();
    (void)prv_enqueue(ITEM_ABORT, conn, NULL, 0u);
    s_ble.state = BLE_OTA_STATE_IDLE;
}

void ble_ota_priv_baseline_cancel(uint16_t conn)
{
    if (s_ble.state == BLE_OTA_STATE_IDLE) {
        return;
    }
    ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN during a baseline transfer: dropping the baseline transfer");
    prv_cancel_session(conn);
}

static bool prv_session_failed(void)
{
    bool failed;

    prv_lock();
    failed = s_shared.failed_session == s_ble.session;
    prv_unlock();
    return failed;
}

/* The ATT error for image data of a failed session: why, where the client can tell. */
static int prv_failed_data_error(void)
{
    uint8_t att;

    prv_lock();
    att = s_shared.failed_att;
    prv_unlock();
    return att;
}

static void prv_handle_request(uint16_t conn)
{
    if (s_cfg.disable_baseline) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "REQUEST refused: this firmware takes protocol v2 only "
                                            "(CONFIG_BLE_OTA_BASELINE_PROTOCOL is off); use a v2 client");
        prv_notify_control(conn, BLE_OTA_OP_REQUEST_NAK);
        return;
    }
    if (!ble_ota_v2_on_baseline_request(conn)) {
        prv_notify_control(conn, BLE_OTA_OP_REQUEST_NAK);
        return;
    }
    if (s_ble.state != BLE_OTA_STATE_IDLE) {
        if (!prv_session_failed()) {
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "REQUEST during a transfer: dropping it and starting over");
        }
        prv_cancel_session(conn);
    }
    s_ble.session++;
    s_ble.packet_size = (uint16_t)(s_ble.size_value[0] | (s_ble.size_value[1] << 8));
    /* The packet size travels with the item: the writer logs it. */
    if (!prv_enqueue(ITEM_BEGIN, conn, s_ble.size_value, sizeof(s_ble.size_value))) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "REQUEST refused: the flash writer is still busy with the previous "
                         "transfer; retry in a moment");
        prv_notify_control(conn, BLE_OTA_OP_REQUEST_NAK);
        return;
    }
    s_ble.state = BLE_OTA_STATE_RECEIVING;
}

static void prv_handle_done(uint16_t conn)
{
    switch (s_ble.state) {
    case BLE_OTA_STATE_RECEIVING:
        /* Always fits: the last slot is kept for this. */
        (void)prv_enqueue(ITEM_END, conn, NULL, 0u);
        break;
    case BLE_OTA_STATE_FAILED:
        prv_cancel_session(conn);
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "DONE refused: image data was lost because packets came faster than "
                         "flash could take them; raise the writer queue depth or send slower");
        prv_notify_control(conn, BLE_OTA_OP_DONE_NAK);
        break;
    case BLE_OTA_STATE_IDLE:
    default:
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "DONE without a transfer: write REQUEST first");
        prv_notify_control(conn, BLE_OTA_OP_DONE_NAK);
        break;
    }
    s_ble.state = BLE_OTA_STATE_IDLE;
}

static int prv_write_control(uint16_t conn, const uint8_t *data, size_t len)
{
    if (len != 1u) {
        return BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN;
    }
    /* A read of OTA Control returns the last value written or notified. */
    prv_set_control(data[0]);
    switch (data[0]) {
    case BLE_OTA_OP_REQUEST:
        prv_handle_request(conn);
        break;
    case BLE_OTA_OP_DONE:
        prv_handle_done(conn);
        break;
    default:
        /* The baseline stores other values and does nothing with them. */
        break;
    }
    return BLE_OTA_ATT_OK;
}

static int prv_write_data(uint16_t conn, const uint8_t *data, size_t len, bool with_response)
{
    if (len == 0u || len > BLE_OTA_MAX_PACKET) {
        return BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN;
    }
    switch (s_ble.state) {
    case BLE_OTA_STATE_IDLE:
        if (len != 2u) {
            ble_ota_priv_log(BLE_OTA_LOG_WARN,
                             "%u bytes written to OTA Data before REQUEST, refused: write the "
                             "packet size (2 bytes LE), then REQUEST, then the image",
                             (unsigned)len);
            return BLE_OTA_ATT_ERR_VALUE_NOT_ALLOWED;
        }
        s_ble.size_value[0] = data[0];
        s_ble.size_value[1] = data[1];
        return BLE_OTA_ATT_OK;
    case BLE_OTA_STATE_RECEIVING:
        if (prv_session_failed()) {
            /* REQUEST_NAK or a flash error was reported; nothing more is written. */
            return prv_failed_data_error();
        }
        if (prv_enqueue(ITEM_DATA, conn, data, len)) {
            ble_ota_priv_progress(conn);
            return BLE_OTA_ATT_OK;
        }
        if (with_response) {
            prv_lock();
            s_shared.writes_refused_full++;
            prv_unlock();
            return BLE_OTA_ATT_ERR_INSUFFICIENT_RES;
        }
        /* A Write Command cannot be refused, so the image now has a hole. */
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "image data lost: flash writer queue full (%u slots); the transfer "
                         "will end with DONE_NAK",
                         (unsigned)BLE_OTA_QUEUE_DEPTH);
        s_ble.state = BLE_OTA_STATE_FAILED;
        /* Ignored on air for a real Write Command; a port that cannot tell the
         * write type (NimBLE) passes with_response=false, and then a Write
         * Request still learns at once that the transfer is lost. */
        return BLE_OTA_ATT_ERR_INSUFFICIENT_RES;
    case BLE_OTA_STATE_FAILED:
    default:
        return BLE_OTA_ATT_ERR_UNLIKELY;
    }
}

void ble_ota_on_connect(uint16_t conn, uint16_t mtu)
{
    if (s_port == NULL) {
        return;
    }
    s_ble.conn = conn;
    s_ble.mtu = mtu;
    s_ble.control_notify_enabled = false;
    {
        uint32_t now = s_port->now_ms(s_port->ctx);
        idle_link_t *link;

        prv_lock();
        link = prv_idle_find(conn);
        if (link == NULL) {
            link = prv_idle_find(BLE_OTA_CONN_NONE);
        }
        if (link != NULL) {
            link->conn = conn;
            link->progress_ms = now; /* the idle clock starts at the connect */
            link->dropping = false;
        }
        prv_unlock();
    }
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "connected (conn %u, MTU %u)", (unsigned)conn, (unsigned)mtu);
    ble_ota_v2_on_connect(conn, mtu);
}

void ble_ota_on_disconnect(uint16_t conn)
{
    if (s_port == NULL) {
        return;
    }
    if (s_ble.state != BLE_OTA_STATE_IDLE) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "disconnected during a transfer: dropping it");
        prv_cancel_session(conn);
    } else {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "disconnected (conn %u)", (unsigned)conn);
    }
    s_ble.conn = BLE_OTA_CONN_NONE;
    s_ble.control_notify_enabled = false;
    {
        idle_link_t *link;

        prv_lock();
        link = prv_idle_find(conn);
        if (link != NULL && conn != BLE_OTA_CONN_NONE) {
            link->conn = BLE_OTA_CONN_NONE;
        }
        prv_unlock();
    }
    ble_ota_v2_on_disconnect(conn);
}

void ble_ota_on_mtu(uint16_t conn, uint16_t mtu)
{
    if (s_port == NULL) {
        return;
    }
    s_ble.mtu = mtu;
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "MTU %u (conn %u)", (unsigned)mtu, (unsigned)conn);
    ble_ota_v2_on_mtu(conn, mtu);
}

void ble_ota_on_data_length(uint16_t conn, uint16_t rx_octets)
{
    if (s_port == NULL) {
        return;
    }
    ble_ota_v2_on_data_length(conn, rx_octets);
}

void ble_ota_on_phy(uint16_t conn, uint8_t tx_phy)
{
    if (s_port == NULL) {
        return;
    }
    ble_ota_v2_on_phy(conn, tx_phy);
}

void ble_ota_on_subscribe(uint16_t conn, ble_ota_chr_id_t chr, bool notify_enabled)
{
    (void)conn;
    if (s_port == NULL) {
        return;
    }
    if (chr == BLE_OTA_CHR_OTA_CONTROL) {
        s_ble.control_notify_enabled = notify_enabled;
    }
}

int ble_ota_on_write(uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len,
                     bool with_response)
{
    const ble_ota_chr_def_t *def;

    if (s_port == NULL || (data == NULL && len > 0u)) {
        return BLE_OTA_ATT_ERR_UNLIKELY;
    }
    def = ble_ota_gatt_find_chr(chr);
    if (def == NULL) {
        return BLE_OTA_ATT_ERR_INVALID_HANDLE;
    }
    switch (chr) {
    case BLE_OTA_CHR_OTA_CONTROL:
        return prv_write_control(conn, data, len);
    case BLE_OTA_CHR_OTA_DATA:
        return prv_write_data(conn, data, len, with_response);
    case BLE_OTA_CHR_V2_CONTROL:
    case BLE_OTA_CHR_V2_DATA:
        return ble_ota_v2_on_write(conn, chr, data, len);
    default:
        return BLE_OTA_ATT_ERR_WRITE_NOT_PERMITTED;
    }
}

static int prv_read_string(const char *value, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t len = strlen(value);

    if (len > cap) {
        return BLE_OTA_ATT_ERR_INSUFFICIENT_RES;
    }
    memcpy(out, value, len);
    *out_len = len;
    return BLE_OTA_ATT_OK;
}

int ble_ota_on_read(uint16_t conn, ble_ota_chr_id_t chr, uint8_t *out, size_t cap,
                    size_t *out_len)
{
    (void)conn;
    if (s_port == NULL || out == NULL || out_len == NULL) {
        return BLE_OTA_ATT_ERR_UNLIKELY;
    }
    *out_len = 0u;
    switch (chr) {
    case BLE_OTA_CHR_OTA_CONTROL:
        if (cap < 1u) {
            return BLE_OTA_ATT_ERR_INSUFFICIENT_RES;
        }
        prv_lock();
        out[0] = s_shared.control_value;
        prv_unlock();
        *out_len = 1u;
        return BLE_OTA_ATT_OK;
    case BLE_OTA_CHR_DIS_MANUFACTURER:
        return prv_read_string(s_cfg.manufacturer, out, cap, out_len);
    case BLE_OTA_CHR_DIS_MODEL:
        return prv_read_string(s_port->chip_name(s_port->ctx), out, cap, out_len);
    case BLE_OTA_CHR_DIS_FW_REV:
        return prv_read_string(s_port->app_version(s_port->ctx), out, cap, out_len);
    case BLE_OTA_CHR_OTA_DATA:
    case BLE_OTA_CHR_V2_DATA:
        return BLE_OTA_ATT_ERR_READ_NOT_PERMITTED;
    case BLE_OTA_CHR_V2_CONTROL:
        return ble_ota_v2_on_read(conn, chr, out, cap, out_len);
    default:
        return BLE_OTA_ATT_ERR_INVALID_HANDLE;
    }
}

/* --- Writer context ---------------------------------------------------- */

static void prv_publish_open(bool open)
{
    s_writer.slot_open = open;
    prv_lock();
    s_shared.slot_open = open;
    prv_unlock();
}

/* Ends the running digest; the value is only kept when keep is true. */
/* Ends the image digest; with keep, it is published as the last completed image's (at once,
 * or by prv_sha_publish once the image is in, if finish_only). */
static void prv_sha_finish(bool keep)
{
    int rc;

    if (!s_writer.sha_ok) {
        return;
    }
    s_writer.sha_ok = false;
    rc = s_port->sha256_finish(s_port->ctx, s_writer.sha_digest);
    s_writer.sha_digest_ok = keep && rc == BLE_OTA_OK;
}

static void prv_sha_publish(void)
{
    if (!s_writer.sha_digest_ok) {
        return;
    }
    s_writer.sha_digest_ok = false;
    prv_lock();
    memcpy(s_shared.image_sha256, s_writer.sha_digest, sizeof(s_writer.sha_digest));
    s_shared.image_sha256_valid = true;
    prv_unlock();
}

/* att: what further image data of the session is answered (BLE_OTA_ATT_ERR_*). */
static void prv_mark_failed(uint32_t session, uint8_t att)
{
    prv_lock();
    s_shared.failed_session = session;
    s_shared.failed_att = att;
    prv_unlock();
}

static void prv_writer_abort(void)
{
    if (!s_writer.slot_open) {
        return;
    }
    s_port->slot_abort(s_port->ctx);
    prv_sha_finish(false);
    prv_publish_open(false);
}

static const char *prv_begin_hint(int rc)
{
    switch (rc) {
    case BLE_OTA_ERR_NO_SLOT:
        return "the partition table needs otadata and two OTA app slots";
    case BLE_OTA_ERR_STATE:
        return "the running image is not confirmed yet; it must pass its self-test first";
    case BLE_OTA_ERR_NO_MEM:
        return "out of memory";
    default:
        return "flash error";
    }
}

bool ble_ota_priv_restart_pending(void)
{
    bool pending;

    prv_lock();
    pending = s_shared.restart_scheduled;
    prv_unlock();
    return pending || ble_ota_v2_restart_scheduled();
}

static void prv_writer_begin(const item_t *item)
{
    int rc;

    if (ble_ota_priv_restart_pending()) {
        /* The next update slot is the one just written until the restart: REQUEST would erase it. */
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "OTA request refused: an update is installed and the device restarts now; "
                                           "connect again after the restart");
        prv_mark_failed(item->session, BLE_OTA_ATT_ERR_UNLIKELY);
        prv_notify_control(item->conn, BLE_OTA_OP_REQUEST_NAK);
        return;
    }
    prv_writer_abort();
    if (!ble_ota_v2_pre_erase_forget()) {
        prv_mark_failed(item->session, BLE_OTA_ATT_ERR_UNLIKELY);
        prv_notify_control(item->conn, BLE_OTA_OP_REQUEST_NAK);
        return;
    }
    memset(&s_writer.target, 0, sizeof(s_writer.target));
    memset(&s_writer.head, 0, sizeof(s_writer.head));
    rc = s_port->slot_begin(s_port->ctx, BLE_OTA_IMAGE_SIZE_UNKNOWN, &s_writer.target);
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "OTA request refused: could not open an update slot (error %d): %s",
                         rc, prv_begin_hint(rc));
        prv_mark_failed(item->session, BLE_OTA_ATT_ERR_UNLIKELY);
        prv_notify_control(item->conn, BLE_OTA_OP_REQUEST_NAK);
        return;
    }
    s_writer.sha_ok = (s_port->sha256_start(s_port->ctx) == BLE_OTA_OK);
    if (!s_writer.sha_ok) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "SHA-256 unavailable: the image digest will not be logged");
    }
    s_writer.start_ms = s_port->now_ms(s_port->ctx);
    prv_lock();
    s_shared.bytes_written = 0u;
    s_shared.packets_written = 0u;
    s_shared.image_sha256_valid = false;
    prv_unlock();
    prv_publish_open(true);
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "OTA requested: writing to %s at 0x%lx, packet size %u",
                     s_writer.target.label, (unsigned long)s_writer.target.address,
                     (unsigned)(item->data[0] | (item->data[1] << 8)));
    prv_notify_control(item->conn, BLE_OTA_OP_REQUEST_ACK);
}

static void prv_writer_data(const item_t *item)
{
    uint32_t offset;
    int rc;

    if (!s_writer.slot_open) {
        /* REQUEST failed or an earlier write failed: DONE will be answered with DONE_NAK. */
        return;
    }
    prv_lock();
    offset = s_shared.bytes_written;
    prv_unlock();
    if (ble_ota_priv_head_feed(&s_writer.head, offset, item->data, item->len)) {
        /* The baseline cannot ask for an older version: the device's setting decides. */
        ble_ota_security_t sec;
        const char *why = NULL;
        ble_ota_v2_security(&sec);
        rc = ble_ota_priv_check_head(&s_writer.head, &sec, s_port->app_version(s_port->ctx), true, &why);
        if (rc == BLE_OTA_ERR_DOWNGRADE || rc == BLE_OTA_ERR_VERSION_DOWNGRADE) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "image refused: %s; DONE will be answered with DONE_NAK", why);
            prv_mark_failed(item->session, BLE_OTA_ATT_ERR_IMAGE_REFUSED);
            prv_writer_abort();
            return;
        }
    }
    rc = s_port->slot_write(s_port->ctx, item->data, item->len);
    if (rc == BLE_OTA_ERR_INVALID_IMAGE) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "image refused at offset %lu: not an ESP app image (it must start "
                         "with 0xE9); DONE will be answered with DONE_NAK",
                         (unsigned long)offset);
        prv_mark_failed(item->session, BLE_OTA_ATT_ERR_IMAGE_REFUSED);
        prv_writer_abort();
        return;
    }
    if (ble_ota_priv_security_reason(rc) != NULL) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "image refused at offset %lu: %s; DONE will be answered with DONE_NAK",
                         (unsigned long)offset, ble_ota_priv_security_reason(rc));
        prv_mark_failed(item->session, BLE_OTA_ATT_ERR_IMAGE_REFUSED);
        prv_writer_abort();
        return;
    }
    if (rc == BLE_OTA_ERR_TOO_LARGE) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "image larger than the update slot %s (%lu bytes): %u bytes at image offset %lu do "
                         "not fit; transfer dropped, DONE will be answered with DONE_NAK",
                         s_writer.target.label, (unsigned long)s_writer.target.size, (unsigned)item->len,
                         (unsigned long)offset);
        prv_mark_failed(item->session, BLE_OTA_ATT_ERR_IMAGE_TOO_LARGE);
        prv_writer_abort();
        return;
    }
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "flash write of %u bytes at image offset %lu failed (error %d): transfer "
                         "dropped; DONE will be answered with DONE_NAK",
                         (unsigned)item->len, (unsigned long)offset, rc);
        prv_mark_failed(item->session, BLE_OTA_ATT_ERR_UNLIKELY);
        prv_writer_abort();
        return;
    }
    if (s_writer.sha_ok && s_port->sha256_update(s_port->ctx, item->data, item->len) != BLE_OTA_OK) {
        prv_sha_finish(false);
    }
    prv_lock();
    s_shared.bytes_written += item->len;
    s_shared.packets_written++;
    prv_unlock();
}

static void prv_writer_end(const item_t *item)
{
    ble_ota_status_t st;
    uint32_t elapsed;
    uint32_t image_len;
    char hex[2 * BLE_OTA_SHA256_LEN + 1];
    const char *why = NULL;
    int rc;

    if (!s_writer.slot_open) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "DONE refused: no transfer is open (REQUEST or a "
                                            "flash write failed); start again with REQUEST");
        prv_notify_control(item->conn, BLE_OTA_OP_DONE_NAK);
        return;
    }
    prv_publish_open(false);
    /* The upload's digest ends first: the signature check below hashes the image again. */
    prv_sha_finish(true);
    prv_lock();
    image_len = s_shared.bytes_written;
    prv_unlock();
    rc = ble_ota_sbv2_end_check(image_len, &why);
    if (rc != BLE_OTA_OK) {
        s_writer.sha_digest_ok = false;
        s_port->slot_abort(s_port->ctx);
        s_writer.slot_open = false;
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "DONE refused: %s [%s]; the running image stays in place",
                         ble_ota_priv_security_reason(rc) != NULL ? ble_ota_priv_security_reason(rc)
                                                                  : "the signature check failed",
                         why != NULL ? why : "no detail");
        prv_notify_control(item->conn, BLE_OTA_OP_DONE_NAK);
        return;
    }
    rc = s_port->slot_end(s_port->ctx);
    if (rc != BLE_OTA_OK) {
        s_writer.sha_digest_ok = false;
        if (ble_ota_priv_security_reason(rc) != NULL) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "DONE refused: %s; the running image stays in place",
                             ble_ota_priv_security_reason(rc));
        } else if (rc == BLE_OTA_ERR_INVALID_IMAGE) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "image validation failed: the image is corrupt "
                                                "or truncated; the running image stays in place");
        } else {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "finishing the update slot failed (error %d)", rc);
        }
        prv_notify_control(item->conn, BLE_OTA_OP_DONE_NAK);
        return;
    }
    rc = s_port->slot_set_boot(s_port->ctx);
    if (rc != BLE_OTA_OK) {
        s_writer.sha_digest_ok = false;
        ble_ota_priv_log(BLE_OTA_LOG_ERROR,
                         "could not select %s as boot slot (error %d); the running image stays "
                         "in place",
                         s_writer.target.label, rc);
        prv_notify_control(item->conn, BLE_OTA_OP_DONE_NAK);
        return;
    }
    prv_sha_publish();
    ble_ota_get_status(&st);
    elapsed = s_port->now_ms(s_port->ctx) - s_writer.start_ms;
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "OTA done: %lu bytes in %lu packets, %lu ms, boot slot %s",
                     (unsigned long)st.bytes_written, (unsigned long)st.packets_written,
                     (unsigned long)elapsed, s_writer.target.label);
    if (st.image_sha256_valid) {
        ble_ota_priv_hex(st.image_sha256, BLE_OTA_SHA256_LEN, hex);
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "image SHA-256: %s", hex);
    }
    prv_notify_control(item->conn, BLE_OTA_OP_DONE_ACK);
    /* After the answer, so the client learns the result before the link drops. */
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "restarting in %lu ms", (unsigned long)s_cfg.restart_delay_ms);
    prv_lock();
    s_shared.sessions_completed++;
    s_shared.restart_scheduled = true;
    prv_unlock();
    s_port->schedule_restart(s_port->ctx, s_cfg.restart_delay_ms);
}

static void prv_writer_drop(void)
{
    uint32_t bytes;

    if (!s_writer.slot_open) {
        return;
    }
    prv_lock();
    bytes = s_shared.bytes_written;
    prv_unlock();
    prv_writer_abort();
    ble_ota_priv_log(BLE_OTA_LOG_WARN, "transfer dropped after %lu bytes; the update slot was "
                                       "released", (unsigned long)bytes);
}

bool ble_ota_writer_run_once(uint32_t timeout_ms)
{
    const item_t *item;
    uint32_t count;
    uint32_t cancelled;

    if (s_port == NULL) {
        return false;
    }
    prv_drop_idle_links();
    prv_lock();
    count = s_shared.count;
    prv_unlock();
    if (count == 0u) {
        /* v2 data comes through its own buffer, not as items. */
        if (ble_ota_v2_writer_idle()) {
            return true;
        }
        if (ble_ota_v2_pre_erase_step(s_writer.slot_open)) {
            return true;
        }
        if (timeout_ms == 0u) {
            return false;
        }
        s_port->writer_wait(s_port->ctx, timeout_ms);
        prv_lock();
        count = s_shared.count;
        prv_unlock();
        if (count == 0u) {
            return ble_ota_v2_writer_idle();
        }
    }

    /* The tail slot belongs to this context until count is lowered. */
    item = &s_items[s_shared.tail];
    prv_lock();
    cancelled = s_shared.cancelled_session;
    prv_unlock();
    switch (item->kind) {
    case ITEM_BEGIN:
    case ITEM_DATA:
        if (item->session <= cancelled) {
            /* Nobody waits for this anymore; the session's ABORT item follows. */
            break;
        }
        if (item->kind == ITEM_BEGIN) {
            prv_writer_begin(item);
        } else {
            prv_writer_data(item);
        }
        break;
    case ITEM_END:
        prv_writer_end(item);
        break;
    case BLE_OTA_ITEM_V2_BEGIN:
    case BLE_OTA_ITEM_V2_END:
    case BLE_OTA_ITEM_V2_ABORT:
    case BLE_OTA_ITEM_V2_GAP:
    case BLE_OTA_ITEM_V2_DROP:
    case BLE_OTA_ITEM_V2_MANIFEST:
        ble_ota_v2_writer_item(item->kind, item->conn, item->data, item->len, item->ring_pos);
        break;
    case ITEM_ABORT:
    default:
        prv_writer_drop();
        break;
    }
    s_shared.tail = (s_shared.tail + 1u) % BLE_OTA_QUEUE_DEPTH;
    prv_lock();
    s_shared.count--;
    prv_unlock();
    return true;
}

void ble_ota_get_status(ble_ota_status_t *out)
{
    if (out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    out->state = s_ble.state;
    out->conn = s_ble.conn;
    out->mtu = s_ble.mtu;
    out->control_notify_enabled = s_ble.control_notify_enabled;
    out->packet_size = s_ble.packet_size;
    if (s_port == NULL) {
        return;
    }
    prv_lock();
    out->control_value = s_shared.control_value;
    out->slot_open = s_shared.slot_open;
    out->bytes_written = s_shared.bytes_written;
    out->packets_written = s_shared.packets_written;
    out->queue_count = s_shared.count;
    out->queue_high_water = s_shared.high_water;
    out->writes_refused_full = s_shared.writes_refused_full;
    out->sessions_completed = s_shared.sessions_completed;
    out->restart_scheduled = s_shared.restart_scheduled;
    memcpy(out->image_sha256, s_shared.image_sha256, sizeof(out->image_sha256));
    out->image_sha256_valid = s_shared.image_sha256_valid;
    prv_unlock();
}

const char *ble_ota_priv_security_reason(int rc)
{
    switch (rc) {
    case BLE_OTA_ERR_UNSIGNED:
        return "the image is not signed and this device takes signed updates only (sign it with ble-ota sign or "
               "espsecure.py sign_data --version 2)";
    case BLE_OTA_ERR_BAD_SIGNATURE:
        return "the image's signature does not hold (changed after signing, or forged)";
    case BLE_OTA_ERR_UNTRUSTED_KEY:
        return "the image is signed by a key this device does not trust (CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS)";
    case BLE_OTA_ERR_DOWNGRADE:
        return "the image's secure_version is below the device's minimum (anti-rollback)";
    case BLE_OTA_ERR_VERSION_DOWNGRADE:
        return "the image's app version is older than the running one, which this device does not take";
    default:
        return NULL;
    }
}
