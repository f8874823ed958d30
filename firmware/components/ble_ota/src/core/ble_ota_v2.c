/*
 * Protocol v2 (docs/protocol-v2.md): INFO, BEGIN/END/ABORT on v2 Control,
 * offset-tagged DATA frames on v2 Data, WINDOW_ACKs with the committed
 * offset and the CRC-32 of the stream, resume of a held session, deflate,
 * delta updates (a patch against the running image, ble_ota_patch.c).
 *
 * Contexts, as in ble_ota_core.c:
 * - the BLE context checks each DATA frame's offset and copies its payload
 *   into a byte ring (s_ring); commands go through the core's item queue
 *   with the ring position they arrived at, so the writer sees data and
 *   commands in arrival order;
 * - the writer consumes the ring (inflating it when compressed), erases
 *   ahead, writes to flash, hashes, acknowledges, and handles the commands.
 * The ring is sized to the window the client is told: a client that keeps
 * at most one window unacknowledged can never find it full, so Write
 * Commands are never lost to back-pressure. A frame that still finds it
 * full (a misbehaving client) is dropped and shows up as a gap.
 */
#include <string.h>

#include "ble_ota_patch.h"
#include "ble_ota_priv.h"
#include "ble_ota_sbv2.h"

#if (BLE_OTA_V2_BUFFER_SIZE & (BLE_OTA_V2_BUFFER_SIZE - 1)) != 0 || BLE_OTA_V2_BUFFER_SIZE < 2048
#error "BLE_OTA_V2_BUFFER_SIZE must be a power of two of at least 2048"
#endif

#define SECTOR 4096u
/* NOR flash erases a 64 KB block in about the time of three or four 4 KB
 * sectors (~150 ms vs 16 x ~45 ms). esp_flash_erase_region issues one block
 * erase for each 64 KB aligned 64 KB piece of a range, so one slot_erase of
 * BLOCK bytes at an aligned offset is one block erase (app slots are 64 KB
 * aligned, so slot offsets and flash addresses agree on the alignment). */
#define BLOCK 65536u
/* Largest piece of the ring the writer handles per step: one flash sector. */
#define CHUNK 4096u
/* Flash writes are multiples of this (flash encryption needs 16-byte blocks). */
#define WRITE_ALIGN 16u
/* Acknowledge every quarter window, so the client refills the window
 * before it runs dry instead of stalling a round trip per window. */
#define ACK_STEP (BLE_OTA_V2_BUFFER_SIZE / 4u)
/* How far past the write position the writer erases while idle (a block
 * erase may reach further: it is never split). */
#define ERASE_AHEAD ((uint32_t)BLE_OTA_V2_BUFFER_SIZE + SECTOR)
/* DATA frame header: u32 offset. */
#define FRAME_HDR 4u
#define MAX_ATT_MTU 517u
/* Link-layer payload: 27 octets until LE Data Length Extension raises it,
 * at most 251. */
#define LL_DEFAULT_OCTETS 27u
#define LL_MAX_OCTETS 251u
/* L2CAP basic header (length, channel) and ATT Write Command header (opcode, handle). */
#define L2CAP_HDR 4u
#define ATT_WRITE_HDR 3u
/* Links the core tracks as connected: NimBLE's CONFIG_BT_NIMBLE_MAX_CONNECTIONS is at most 9. */
#define MAX_LINKS 9u

/* Writer-owned session. */
typedef struct {
    bool exists;      /* BEGIN accepted and not ended/aborted */
    bool slot_open;   /* the port's slot is open for it */
    uint8_t failed;   /* status once it failed while streaming (slot released) */
    bool compressed;
    bool inflating;
    bool inflate_done;
    bool sha_running;
    uint8_t sha256[BLE_OTA_SHA256_LEN];
    uint32_t image_size;
    uint32_t stream_size;
    uint32_t committed;
    uint32_t crc;
    uint32_t image_pos; /* image bytes produced (flash_pos + tail_len) */
    uint32_t flash_pos;
    uint32_t erased_to;
    uint32_t next_ack;
    uint32_t start_ms;
    uint32_t active_ms; /* last BEGIN or image data taken: a held session's hold counts from it */
    uint8_t tail[WRITE_ALIGN];
    uint32_t tail_len;
    ble_ota_slot_info_t target;
    /* What BEGIN's manifest claimed, checked against the image's app description when its
     * first bytes arrive; and whether BEGIN asked for an older app version. */
    bool has_manifest;
    uint32_t claimed_secure_version;
    char claimed_version[32];
    bool allow_downgrade;
    ble_ota_head_t head;
    /* Delta: the stream (after inflation) is a patch against the running image. Its applier's
     * state lives here, in RAM like the inflater's, so a held session resumes it. */
    bool delta;
    ble_ota_patch_t patch;
    uint32_t patch_acked; /* image bytes produced at the last ack sent during a COPY */
} session_t;

/* What BEGIN learnt from its flags and the manifest, for the session it opens or resumes. */
typedef struct {
    bool has_manifest;
    uint32_t secure_version;
    char version[32];
    bool allow_downgrade;
} begin_claims_t;

/* Writer-owned: the signature manifest a connection is sending (MANIFEST pieces), for its BEGIN. */
typedef struct {
    uint16_t conn;
    uint32_t len;
    bool bad; /* a piece out of order or too long: BEGIN answers BAD_REQUEST */
    uint8_t buf[BLE_OTA_V2_MANIFEST_MAX];
} manifest_t;

/* Shared between the contexts, under the port's lock. */
typedef struct {
    uint16_t link_conn;
    /* Connected links, BLE_OTA_CONN_NONE where free: the writer runs a command after the BLE
     * context queued it, and only a link that is still up may own the session. */
    uint16_t live[MAX_LINKS];
    uint16_t owner;
    bool accepting;
    bool gap_reported;
    bool no_session_reported;
    bool full_reported;
    uint32_t expected;
    uint32_t stream_size;
    uint32_t ring_in;
    uint32_t ring_out;
    uint32_t ring_high_water;
    /* A link came or went since the writer last looked: the background erase waits again. */
    bool link_changed;
    /* Published by the writer for INFO and status. */
    bool held;
    uint32_t held_offset;
    uint8_t held_sha256[BLE_OTA_SHA256_LEN];
    ble_ota_v2_status_t status;
} shared_t;

static const ble_ota_port_v2_t *s_v2;
static uint16_t s_mtu; /* set by the BLE context under the lock, read by both */
static uint16_t s_rx_octets; /* link-layer payload the central may send; like s_mtu */
/* BLE context: a BEGIN went to the writer since the last DROP. */
static bool s_begin_sent;
/* BLE context: the link last reported on the 2M PHY, and the one already asked for the 2M
 * interval (once per link). */
static uint16_t s_phy_2m_conn;
static uint16_t s_interval_2m_conn;
static shared_t s_sh;
static session_t s_ses;
static uint8_t s_ring[BLE_OTA_V2_BUFFER_SIZE];

/* Writer-owned: the background erase of the next update slot (CONFIG_BLE_OTA_PRE_ERASE). */
typedef struct {
    bool loaded;                /* rec holds what the port stored */
    bool stopped;               /* a port call failed: no more background erases until restart */
    bool idle_known;
    bool erased_one;            /* last_erase_ms is set */
    bool done_logged;
    ble_ota_erase_record_t rec; /* the stored record */
    uint32_t idle_since_ms;     /* the device last stopped being idle (link change, session, boot) */
    uint32_t last_erase_ms;
} pre_erase_t;
static pre_erase_t s_pe;
static uint8_t s_scratch[CHUNK + WRITE_ALIGN];
/* A patch's COPY reads the running image through this, one piece at a time. */
static uint8_t s_base_buf[256];
static manifest_t s_manifest;
/* Writer-owned: refused updates in a row (security refusals at BEGIN, an image that is not what
 * its manifest claimed) and until when BEGIN is answered BUSY. Global, not per peer: a
 * neighbour that changes its address gains nothing, and every erase it causes is paid for. */
static uint32_t s_refusals;
static uint32_t s_refused_until_ms;
/* Writer-owned: the image the last END installed, while the restart into it is pending. */
static uint8_t s_installed_sha[BLE_OTA_SHA256_LEN];
static bool s_installed;

static const ble_ota_port_t *prv_port(void)
{
    return ble_ota_priv_port();
}

static void prv_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void prv_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t prv_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t prv_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

const char *ble_ota_v2_status_name(uint8_t status)
{
    static const char *const names[] = {
        "OK",        "ALREADY_INSTALLED", "TOO_LARGE",  "WRONG_CHIP",    "BAD_REQUEST",   "FLASH_ERROR",
        "HASH_MISMATCH", "INVALID_IMAGE", "BUSY",   "NO_SESSION",    "INFLATE_ERROR", "SIZE_MISMATCH",
        "UNSIGNED",  "BAD_SIGNATURE",     "UNTRUSTED_KEY", "DOWNGRADE",     "VERSION_DOWNGRADE", "MANIFEST_MISMATCH", "INSTALLED_RESTARTING",
        "BASE_MISMATCH", "BAD_PATCH",
    };

    return status < sizeof(names) / sizeof(names[0]) ? names[status] : "UNKNOWN";
}

void ble_ota_v2_reset(void)
{
    s_v2 = NULL;
    s_mtu = 23u;
    s_rx_octets = LL_DEFAULT_OCTETS;
    s_begin_sent = false;
    s_phy_2m_conn = BLE_OTA_CONN_NONE;
    s_interval_2m_conn = BLE_OTA_CONN_NONE;
    memset(&s_sh, 0, sizeof(s_sh));
    memset(&s_ses, 0, sizeof(s_ses));
    s_sh.link_conn = BLE_OTA_CONN_NONE;
    s_sh.owner = BLE_OTA_CONN_NONE;
    for (uint32_t i = 0; i < MAX_LINKS; i++) {
        s_sh.live[i] = BLE_OTA_CONN_NONE;
    }
    s_refusals = 0u;
    s_refused_until_ms = 0u;
    s_installed = false;
    memset(&s_pe, 0, sizeof(s_pe));
}

/* What the firmware enforces; all off when the port does not say. */
static void prv_security(ble_ota_security_t *out)
{
    const ble_ota_port_t *port = prv_port();

    memset(out, 0, sizeof(*out));
    if (s_v2 != NULL && s_v2->security != NULL) {
        s_v2->security(port->ctx, out);
    }
}

void ble_ota_v2_security(ble_ota_security_t *out)
{
    prv_security(out);
}

/* Under the lock. The slot of conn, or of BLE_OTA_CONN_NONE for a free one; MAX_LINKS if none. */
static uint32_t prv_live_slot(uint16_t conn)
{
    uint32_t i = 0;

    while (i < MAX_LINKS && s_sh.live[i] != conn) {
        i++;
    }
    return i;
}

int ble_ota_v2_attach(const ble_ota_port_v2_t *v2)
{
    if (prv_port() == NULL || v2 == NULL || v2->running_sha256 == NULL || v2->chip_id == NULL ||
        v2->slot_size == NULL || v2->slot_open == NULL || v2->slot_erase == NULL ||
        v2->slot_write_at == NULL || v2->crc32 == NULL) {
        return BLE_OTA_ERR_INVALID_ARG;
    }
    if ((v2->inflate_start == NULL) != (v2->inflate_update == NULL) ||
        (v2->inflate_start == NULL) != (v2->inflate_finish == NULL)) {
        return BLE_OTA_ERR_INVALID_ARG; /* all three or none */
    }
    {
        unsigned pe = (v2->next_slot != NULL) + (v2->idle_erase != NULL) + (v2->erase_record_load != NULL) +
                      (v2->erase_record_store != NULL) + (v2->idle_read != NULL);
        if (pe != 0u && pe != 5u) {
            return BLE_OTA_ERR_INVALID_ARG; /* the background erase's five, or none */
        }
    }
    if ((v2->running_size == NULL) != (v2->running_read == NULL)) {
        return BLE_OTA_ERR_INVALID_ARG; /* delta's two, or none */
    }
    s_v2 = v2;
    return BLE_OTA_OK;
}

const ble_ota_port_v2_t *ble_ota_priv_port_v2(void)
{
    return s_v2;
}

bool ble_ota_v2_restart_scheduled(void)
{
    bool scheduled;

    ble_ota_priv_lock();
    scheduled = s_sh.status.restart_scheduled;
    ble_ota_priv_unlock();
    return scheduled;
}

bool ble_ota_v2_enabled(void)
{
    return s_v2 != NULL;
}

static bool prv_has_inflate(void)
{
    return s_v2->inflate_start != NULL;
}

static bool prv_has_delta(void)
{
    return s_v2->running_read != NULL;
}

/* The port can erase the update slot in the background and keep its record. */
static bool prv_pre_erase_port(void)
{
    return s_v2 != NULL && s_v2->next_slot != NULL;
}

/* The firmware erases the update slot in the background when idle (INFO flag bit 3). */
static bool prv_pre_erase_on(void)
{
    return prv_pre_erase_port() && ble_ota_get_config()->pre_erase != (uint8_t)BLE_OTA_PRE_ERASE_OFF;
}

/* GATT caps an attribute value at 512 bytes (Core Vol 3 Part F 3.2.9): NimBLE drops a longer
 * Write Command without a word, so MTU 517 still means 512-byte frames. */
#define MAX_ATTR_VALUE 512u

/* The largest DATA frame worth sending: the link layer carries a Write
 * Command (value + 3 ATT + 4 L2CAP bytes) in packets of rx_octets, so a
 * value of MTU-3 that overshoots a packet boundary by a few bytes costs a
 * whole extra packet (MTU 256 at data length 251: 260 bytes = 251 + 9).
 * Sizing the frame to k whole packets sends more value bytes per packet:
 * MTU 256 -> 244 at data length 251, 236 at 27. When MTU + 4 already fills
 * whole packets (MTU 247 at 251), or no whole packet fits (MTU 185 at 251),
 * MTU-3 it is. The device never refuses a longer frame: this is advice,
 * and the data length may change under a running session. */
static uint16_t prv_max_frame(uint16_t mtu, uint16_t rx_octets)
{
    uint32_t m = mtu < 23u ? 23u : (mtu > MAX_ATT_MTU ? MAX_ATT_MTU : mtu);
    uint32_t ll = rx_octets < LL_DEFAULT_OCTETS ? LL_DEFAULT_OCTETS
                                                : (rx_octets > LL_MAX_OCTETS ? LL_MAX_OCTETS : rx_octets);
    uint32_t k = (m + L2CAP_HDR) / ll;
    uint32_t frame = m - ATT_WRITE_HDR;

    if (k >= 1u && (m + L2CAP_HDR) % ll != 0u) {
        frame = k * ll - L2CAP_HDR - ATT_WRITE_HDR;
    }
    return (uint16_t)(frame > MAX_ATTR_VALUE ? MAX_ATTR_VALUE : frame);
}

static void prv_notify(uint16_t conn, const uint8_t *data, size_t len)
{
    const ble_ota_port_t *port = prv_port();
    int rc;

    if (conn == BLE_OTA_CONN_NONE) {
        return;
    }
    rc = port->notify(port->ctx, conn, BLE_OTA_CHR_V2_CONTROL, data, len);
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "could not notify v2 answer 0x%02x to connection %u (error %d)",
                         data[0], (unsigned)conn, rc);
    }
}

static void prv_answer(uint16_t conn, uint8_t op, uint8_t status)
{
    uint8_t rsp[2];

    rsp[0] = op;
    rsp[1] = status;
    prv_notify(conn, rsp, sizeof(rsp));
}

static void prv_window_ack(uint16_t conn, uint8_t status, uint32_t committed, uint32_t crc)
{
    uint8_t ack[BLE_OTA_V2_WINDOW_ACK_LEN];

    ack[0] = BLE_OTA_V2_OP_WINDOW_ACK;
    ack[1] = status;
    prv_put_u32(&ack[2], committed);
    prv_put_u32(&ack[6], crc);
    prv_notify(conn, ack, sizeof(ack));
}

/* --- Link tuning (BLE context) ------------------------------------------ */

/* Asks for one link change and says on the console what was asked. */
static void prv_link_request(uint16_t conn, const ble_ota_link_request_t *req, const char *what, const char *asked)
{
    const ble_ota_port_t *port = prv_port();
    int rc = s_v2->link_request(port->ctx, conn, req);

    if (rc == BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "link: requested %s", asked);
    } else if (rc == BLE_OTA_ERR_UNSUPPORTED) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "link: %s not available on this chip", what);
    } else {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "link: %s request failed (error %d)", what, rc);
    }
}

/* A connection parameter update to an interval of min_interval (1.25 ms units) to 15 ms,
 * latency 0, supervision timeout 4 s. */
static void prv_request_interval(uint16_t conn, uint16_t min_interval, const char *asked)
{
    ble_ota_link_request_t req;

    memset(&req, 0, sizeof(req));
    req.kind = BLE_OTA_LINK_CONN_PARAMS;
    req.min_interval = min_interval;
    req.max_interval = 12u; /* 15 ms */
    req.latency = 0u;
    req.timeout = 400u; /* 4 s */
    prv_link_request(conn, &req, "connection parameter update", asked);
}

static void prv_tune_link(uint16_t conn)
{
    ble_ota_link_request_t req;

    if (s_v2->link_request == NULL) {
        return;
    }
    /* The interval sets how many packets fit per second; 7.5-15 ms lets
     * every central pick something it supports (Apple: 15 ms). */
    prv_request_interval(conn, 6u, "connection interval 7.5-15 ms, latency 0, timeout 4000 ms");

    /* 251-byte link-layer packets carry a 247-byte ATT PDU in one piece. */
    memset(&req, 0, sizeof(req));
    req.kind = BLE_OTA_LINK_DATA_LENGTH;
    req.tx_octets = 251u;
    req.tx_time_us = 2120u;
    prv_link_request(conn, &req, "data length extension", "data length 251 (2120 us)");

    memset(&req, 0, sizeof(req));
    req.kind = BLE_OTA_LINK_PHY;
    req.tx_phys = BLE_OTA_PHY_1M_MASK | BLE_OTA_PHY_2M_MASK;
    req.rx_phys = BLE_OTA_PHY_1M_MASK | BLE_OTA_PHY_2M_MASK;
    prv_link_request(conn, &req, "2M PHY", "the 2M PHY");
}

/* On 2M a 251-byte packet takes half the air time, so the fixed cost of an event's end (the
 * last exchange that no longer fits) weighs more: 11.25 ms events stream 173.5 kB/s against
 * 162.7 at 7.5 ms (MTU 256). On 1M, 7.5 and 15 ms tie (97.6) and 11.25 is worse (86.8). Only a
 * stream gains: the baseline's one write per round trip loses a third at 11.25 ms, so this is
 * asked when a v2 BEGIN arrives on a 2M link (or the link turns 2M during a session), once per
 * link. */
static void prv_tune_interval_for_2m(uint16_t conn)
{
    if (s_v2->link_request == NULL || s_phy_2m_conn != conn || s_interval_2m_conn == conn) {
        return;
    }
    s_interval_2m_conn = conn;
    prv_request_interval(conn, 9u, /* 11.25 ms */
                         "connection interval 11.25-15 ms for the 2M PHY, latency 0, timeout 4000 ms");
}

/* --- BLE context ------------------------------------------------------------ */

void ble_ota_v2_on_phy(uint16_t conn, uint8_t tx_phy)
{
    uint16_t owner;

    if (s_v2 == NULL) {
        return;
    }
    if (tx_phy != 2u) {
        if (s_phy_2m_conn == conn) {
            s_phy_2m_conn = BLE_OTA_CONN_NONE;
        }
        return;
    }
    s_phy_2m_conn = conn;
    ble_ota_priv_lock();
    owner = s_sh.owner;
    ble_ota_priv_unlock();
    if (owner == conn) {
        prv_tune_interval_for_2m(conn);
    }
}

void ble_ota_v2_on_connect(uint16_t conn, uint16_t mtu)
{
    if (s_v2 == NULL) {
        return;
    }
    uint32_t slot;

    ble_ota_priv_lock();
    s_mtu = mtu;
    s_rx_octets = LL_DEFAULT_OCTETS; /* a new link starts at the default */
    s_sh.link_conn = conn;
    slot = prv_live_slot(conn);
    if (slot == MAX_LINKS) {
        slot = prv_live_slot(BLE_OTA_CONN_NONE);
    }
    if (slot < MAX_LINKS) {
        s_sh.live[slot] = conn;
    }
    s_sh.link_changed = true;
    ble_ota_priv_unlock();
    if (slot == MAX_LINKS) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "more than %u links: conn %u cannot own a v2 session",
                         (unsigned)MAX_LINKS, (unsigned)conn);
    }
    prv_tune_link(conn);
}

void ble_ota_v2_on_mtu(uint16_t conn, uint16_t mtu)
{
    (void)conn;
    if (s_v2 == NULL) {
        return;
    }
    ble_ota_priv_lock();
    s_mtu = mtu;
    ble_ota_priv_unlock();
}

void ble_ota_v2_on_data_length(uint16_t conn, uint16_t rx_octets)
{
    if (s_v2 == NULL) {
        return;
    }
    ble_ota_priv_lock();
    /* Frames are sized for the link that streams; another link's change says nothing about it. */
    if (s_sh.link_conn == conn) {
        s_rx_octets = rx_octets;
    }
    ble_ota_priv_unlock();
}

void ble_ota_v2_on_disconnect(uint16_t conn)
{
    bool held;
    uint32_t slot;

    if (s_v2 == NULL) {
        return;
    }
    if (s_interval_2m_conn == conn) {
        s_interval_2m_conn = BLE_OTA_CONN_NONE;
    }
    if (s_phy_2m_conn == conn) {
        s_phy_2m_conn = BLE_OTA_CONN_NONE;
    }
    ble_ota_priv_lock();
    slot = prv_live_slot(conn);
    if (slot < MAX_LINKS && conn != BLE_OTA_CONN_NONE) {
        s_sh.live[slot] = BLE_OTA_CONN_NONE;
    }
    s_sh.link_changed = true;
    if (s_sh.link_conn == conn) {
        s_sh.link_conn = BLE_OTA_CONN_NONE;
        s_rx_octets = LL_DEFAULT_OCTETS;
    }
    held = s_sh.owner == conn;
    if (held) {
        /* The session stays; a BEGIN with the same image resumes it. */
        s_sh.owner = BLE_OTA_CONN_NONE;
        s_sh.accepting = false;
    }
    ble_ota_priv_unlock();
    if (held) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 session kept after the disconnect: BEGIN with the same "
                                           "image resumes it");
    }
}

static uint32_t prv_ring_in(void)
{
    uint32_t in;

    ble_ota_priv_lock();
    in = s_sh.ring_in;
    ble_ota_priv_unlock();
    return in;
}

bool ble_ota_v2_on_baseline_request(uint16_t conn)
{
    uint16_t owner;
    bool live;

    if (s_v2 == NULL || !s_begin_sent) {
        return true;
    }
    ble_ota_priv_lock();
    owner = s_sh.owner;
    live = owner != BLE_OTA_CONN_NONE && prv_live_slot(owner) < MAX_LINKS;
    if (live && owner != conn) {
        ble_ota_priv_unlock();
        /* Only the owner ends a v2 session; it is still connected. */
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "REQUEST from conn %u refused: conn %u is running a v2 update",
                         (unsigned)conn, (unsigned)owner);
        return false;
    }
    s_sh.accepting = false;
    ble_ota_priv_unlock();
    if (ble_ota_priv_enqueue(BLE_OTA_ITEM_V2_DROP, conn, NULL, 0u, prv_ring_in())) {
        s_begin_sent = false;
    }
    return true;
}

/* BEGIN's length for its flags: the delta flag appends the base's SHA-256. */
static size_t prv_begin_len(const uint8_t *data, size_t len)
{
    return len >= 2u && (data[1] & BLE_OTA_V2_BEGIN_DELTA) != 0u ? BLE_OTA_V2_BEGIN_DELTA_LEN : BLE_OTA_V2_BEGIN_LEN;
}

static int prv_write_command(uint16_t conn, const uint8_t *data, size_t len)
{
    ble_ota_item_kind_t kind;
    uint8_t answer;

    if (len == 0u) {
        return BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN;
    }
    switch (data[0]) {
    case BLE_OTA_V2_OP_BEGIN:
        kind = BLE_OTA_ITEM_V2_BEGIN;
        answer = BLE_OTA_V2_OP_BEGIN_RSP;
        break;
    case BLE_OTA_V2_OP_END:
        kind = BLE_OTA_ITEM_V2_END;
        answer = BLE_OTA_V2_OP_END_RSP;
        break;
    case BLE_OTA_V2_OP_ABORT:
        kind = BLE_OTA_ITEM_V2_ABORT;
        answer = BLE_OTA_V2_OP_ABORT_RSP;
        break;
    case BLE_OTA_V2_OP_MANIFEST:
        /* u8 op, u16 offset, at least one byte; the writer assembles them for BEGIN. */
        if (len < 4u) {
            return BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN;
        }
        if (!ble_ota_priv_enqueue(BLE_OTA_ITEM_V2_MANIFEST, conn, &data[1], len - 1u, prv_ring_in())) {
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 MANIFEST piece refused: the flash writer is busy; retry");
            return BLE_OTA_ATT_ERR_INSUFFICIENT_RES;
        }
        return BLE_OTA_ATT_OK;
    default:
        ble_ota_priv_log(BLE_OTA_LOG_WARN,
                         "unknown v2 command 0x%02x refused (BEGIN 0x10, END 0x11, ABORT 0x12, MANIFEST 0x13)", data[0]);
        return BLE_OTA_ATT_ERR_VALUE_NOT_ALLOWED;
    }
    if ((kind == BLE_OTA_ITEM_V2_BEGIN && len != prv_begin_len(data, len)) ||
        (kind != BLE_OTA_ITEM_V2_BEGIN && len != 1u)) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 command 0x%02x of %u bytes refused: BEGIN is %u bytes (%u with the "
                                           "delta flag), END and ABORT 1",
                         data[0], (unsigned)len, (unsigned)BLE_OTA_V2_BEGIN_LEN, (unsigned)BLE_OTA_V2_BEGIN_DELTA_LEN);
        prv_answer(conn, answer, BLE_OTA_V2_BAD_REQUEST);
        return BLE_OTA_ATT_OK;
    }
    if (kind == BLE_OTA_ITEM_V2_BEGIN) {
        ble_ota_priv_baseline_cancel(conn);
        prv_tune_interval_for_2m(conn);
    }
    if (kind != BLE_OTA_ITEM_V2_BEGIN) {
        /* No more data until the writer answered. */
        ble_ota_priv_lock();
        if (s_sh.owner == conn) {
            s_sh.accepting = false;
        }
        ble_ota_priv_unlock();
    }
    if (!ble_ota_priv_enqueue(kind, conn, data, len, prv_ring_in())) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 command 0x%02x refused: the flash writer is busy; retry", data[0]);
        prv_answer(conn, answer, BLE_OTA_V2_BUSY);
        return BLE_OTA_ATT_OK;
    }
    if (kind == BLE_OTA_ITEM_V2_BEGIN) {
        s_begin_sent = true;
    }
    return BLE_OTA_ATT_OK;
}

static void prv_write_frame(uint16_t conn, const uint8_t *data, size_t len)
{
    uint32_t offset = prv_get_u32(data);
    uint32_t n = (uint32_t)(len - FRAME_HDR);
    bool no_session = false;
    bool gap = false;
    uint32_t in;
    uint32_t used;
    uint32_t pos;
    uint32_t first;

    ble_ota_priv_lock();
    if (!s_sh.accepting || s_sh.owner != conn) {
        no_session = !s_sh.no_session_reported;
        s_sh.no_session_reported = true;
        ble_ota_priv_unlock();
        if (no_session) {
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 DATA without an accepted BEGIN: answered NO_SESSION");
            prv_window_ack(conn, BLE_OTA_V2_NO_SESSION, 0u, 0u);
        }
        return;
    }
    if (offset != s_sh.expected || n > s_sh.stream_size - s_sh.expected) {
        /* A lost frame (or one past the end): say once where to resume. */
        gap = !s_sh.gap_reported;
        s_sh.gap_reported = true;
        s_sh.status.frames_dropped++;
        in = s_sh.ring_in;
        ble_ota_priv_unlock();
        if (gap) {
            uint8_t expected[4];

            prv_put_u32(expected, offset);
            if (!ble_ota_priv_enqueue(BLE_OTA_ITEM_V2_GAP, conn, expected, sizeof(expected), in)) {
                ble_ota_priv_lock();
                s_sh.gap_reported = false; /* the next stray frame tries again */
                ble_ota_priv_unlock();
            }
        }
        return;
    }
    in = s_sh.ring_in;
    used = in - s_sh.ring_out;
    if (n > BLE_OTA_V2_BUFFER_SIZE - used) {
        /* Only a client that ignores the window gets here; the frame is
         * lost, the next one shows the gap and the client resends. */
        s_sh.status.frames_dropped++;
        if (!s_sh.full_reported) {
            s_sh.full_reported = true;
            ble_ota_priv_unlock();
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 buffer full (%u bytes): frame at %lu dropped; the client "
                                               "must keep at most one window unacknowledged",
                             (unsigned)BLE_OTA_V2_BUFFER_SIZE, (unsigned long)offset);
            return;
        }
        ble_ota_priv_unlock();
        return;
    }
    ble_ota_priv_unlock();

    /* [in, in + n) is free and only this context writes there. */
    pos = in % BLE_OTA_V2_BUFFER_SIZE;
    first = BLE_OTA_V2_BUFFER_SIZE - pos;
    if (first > n) {
        first = n;
    }
    memcpy(&s_ring[pos], data + FRAME_HDR, first);
    memcpy(&s_ring[0], data + FRAME_HDR + first, n - first);

    ble_ota_priv_lock();
    s_sh.ring_in = in + n;
    s_sh.expected += n;
    s_sh.gap_reported = false;
    s_sh.full_reported = false;
    used = s_sh.ring_in - s_sh.ring_out;
    if (used > s_sh.ring_high_water) {
        s_sh.ring_high_water = used;
    }
    ble_ota_priv_unlock();
    ble_ota_priv_progress(conn);
    prv_port()->writer_wake(prv_port()->ctx);
}

int ble_ota_v2_on_write(uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    if (s_v2 == NULL) {
        return BLE_OTA_ATT_ERR_REQ_NOT_SUPPORTED;
    }
    if (chr == BLE_OTA_CHR_V2_CONTROL) {
        return prv_write_command(conn, data, len);
    }
    if (len <= FRAME_HDR || len > BLE_OTA_MAX_PACKET) {
        return BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN;
    }
    prv_write_frame(conn, data, len);
    return BLE_OTA_ATT_OK;
}

int ble_ota_v2_on_read(uint16_t conn, ble_ota_chr_id_t chr, uint8_t *out, size_t cap, size_t *out_len)
{
    const ble_ota_port_t *port = prv_port();
    const char *version;
    size_t vlen;

    (void)conn;
    (void)chr;
    if (s_v2 == NULL) {
        return BLE_OTA_ATT_ERR_REQ_NOT_SUPPORTED;
    }
    if (cap < BLE_OTA_V2_INFO_LEN) {
        return BLE_OTA_ATT_ERR_INSUFFICIENT_RES;
    }
    memset(out, 0, BLE_OTA_V2_INFO_LEN);
    out[0] = BLE_OTA_V2_PROTO_VERSION;
    out[1] = BLE_OTA_V2_INFO_RESUME | (prv_has_inflate() ? BLE_OTA_V2_INFO_DEFLATE : 0u) |
             (ble_ota_sbv2_available() ? BLE_OTA_V2_INFO_MANIFEST : 0u) |
             (prv_pre_erase_on() ? BLE_OTA_V2_INFO_PRE_ERASE : 0u) | (prv_has_delta() ? BLE_OTA_V2_INFO_DELTA : 0u);
    prv_put_u16(&out[2], s_v2->chip_id(port->ctx));
    prv_put_u32(&out[4], s_v2->slot_size(port->ctx));
    ble_ota_priv_lock();
    prv_put_u16(&out[8], prv_max_frame(s_mtu, s_rx_octets));
    ble_ota_priv_unlock();
    prv_put_u32(&out[10], BLE_OTA_V2_BUFFER_SIZE);
    if (s_v2->running_sha256(port->ctx, &out[14]) != BLE_OTA_OK) {
        memset(&out[14], 0, BLE_OTA_SHA256_LEN); /* unknown: never matches a BEGIN */
    }
    version = port->app_version(port->ctx);
    vlen = strlen(version);
    memcpy(&out[46], version, vlen < 32u ? vlen : 32u);
    ble_ota_priv_lock();
    if (s_sh.held) {
        prv_put_u32(&out[78], s_sh.held_offset);
        memcpy(&out[82], s_sh.held_sha256, BLE_OTA_SHA256_LEN);
    }
    ble_ota_priv_unlock();
    {
        ble_ota_security_t sec;
        prv_security(&sec);
        out[114] = (uint8_t)((sec.signed_only ? BLE_OTA_V2_SEC_SIGNED_ONLY : 0u) |
                             (sec.anti_rollback ? BLE_OTA_V2_SEC_ANTI_ROLLBACK : 0u) |
                             (sec.allow_downgrade ? BLE_OTA_V2_SEC_ALLOW_DOWNGRADE : 0u) |
                             (((unsigned)sec.link_security & 0x3u) << BLE_OTA_V2_SEC_LINK_SHIFT));
        prv_put_u32(&out[115], sec.anti_rollback ? sec.min_secure_version : 0u);
    }
    ble_ota_priv_lock();
    prv_put_u32(&out[119], s_sh.status.pre_erased);
    ble_ota_priv_unlock();
    *out_len = BLE_OTA_V2_INFO_LEN;
    return BLE_OTA_ATT_OK;
}

/* --- Writer context ---------------------------------------------------------- */

static void prv_publish(void)
{
    ble_ota_priv_lock();
    s_sh.held = s_ses.exists && s_ses.failed == 0u;
    s_sh.held_offset = s_sh.held ? s_ses.committed : 0u;
    if (s_sh.held) {
        memcpy(s_sh.held_sha256, s_ses.sha256, BLE_OTA_SHA256_LEN);
    } else {
        memset(s_sh.held_sha256, 0, BLE_OTA_SHA256_LEN);
    }
    s_sh.status.session_held = s_ses.exists;
    s_sh.status.compressed = s_ses.compressed;
    s_sh.status.failed_status = s_ses.failed;
    s_sh.status.image_size = s_ses.image_size;
    s_sh.status.stream_size = s_ses.stream_size;
    s_sh.status.committed = s_ses.committed;
    s_sh.status.crc32 = s_ses.crc;
    s_sh.status.image_written = s_ses.image_pos;
    s_sh.status.erased_to = s_ses.erased_to;
    ble_ota_priv_unlock();
}

static uint16_t prv_owner(void)
{
    uint16_t owner;

    ble_ota_priv_lock();
    owner = s_sh.owner;
    ble_ota_priv_unlock();
    return owner;
}

/* Releases what the session holds in the port; the session record stays. */
static void prv_release(void)
{
    const ble_ota_port_t *port = prv_port();
    uint8_t digest[BLE_OTA_SHA256_LEN];

    if (s_ses.slot_open) {
        port->slot_abort(port->ctx);
        s_ses.slot_open = false;
    }
    if (s_ses.inflating) {
        s_v2->inflate_finish(port->ctx);
        s_ses.inflating = false;
    }
    if (s_ses.sha_running) {
        (void)port->sha256_finish(port->ctx, digest);
        s_ses.sha_running = false;
    }
}

static void prv_drop_session(const char *why)
{
    if (!s_ses.exists) {
        return;
    }
    if (why != NULL) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 session dropped after %lu of %lu stream bytes: %s",
                         (unsigned long)s_ses.committed, (unsigned long)s_ses.stream_size, why);
    }
    prv_release();
    memset(&s_ses, 0, sizeof(s_ses));
    ble_ota_priv_lock();
    s_sh.accepting = false;
    s_sh.owner = BLE_OTA_CONN_NONE;
    ble_ota_priv_unlock();
    prv_publish();
}

/* One more update in a row that ended without an image makes the next BEGIN wait 2^(n-1) s, up to
 * the configured cap: each costs at least one erase, so the waits bound what a neighbour costs. */
static void prv_back_off(bool abandoned)
{
    const ble_ota_config_t *cfg = ble_ota_get_config();
    uint32_t wait;

    if (cfg->refusal_backoff_max_ms == 0u) {
        return;
    }
    if (s_refusals < 31u) {
        s_refusals++;
    }
    wait = s_refusals > 17u ? cfg->refusal_backoff_max_ms : 1000u << (s_refusals - 1u);
    if (wait > cfg->refusal_backoff_max_ms) {
        wait = cfg->refusal_backoff_max_ms;
    }
    s_refused_until_ms = prv_port()->now_ms(prv_port()->ctx) + wait;
    if (abandoned) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN,
                         "%lu refused or abandoned update(s) in a row (the last abandoned after its slot was "
                         "opened): BEGIN is answered BUSY for %lu ms",
                         (unsigned long)s_refusals, (unsigned long)wait);
    } else {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "%lu refused update(s) in a row: BEGIN is answered BUSY for %lu ms",
                         (unsigned long)s_refusals, (unsigned long)wait);
    }
}

/* A refusal of what the image is (not of how it travelled) counts for the back-off. */
static void prv_count_refusal(uint8_t status)
{
    /* A bad patch is refused after its slot was opened and erased, as a mismatching image is. */
    if ((status < BLE_OTA_V2_UNSIGNED || status > BLE_OTA_V2_MANIFEST_MISMATCH) && status != BLE_OTA_V2_BAD_PATCH) {
        return;
    }
    prv_back_off(false);
}

/* A session that opened the update slot (and so erased) and ends without an image by its
 * client's choice (ABORT, or a BEGIN that discards it) counts too: a neighbour replaying a
 * genuine manifest and aborting would otherwise cost an erase each time, never refused. */
static void prv_count_abandoned(void)
{
    if (s_ses.exists && s_ses.slot_open) {
        prv_back_off(true);
    }
}

/* The session failed while streaming: release the slot, tell the client at
 * once, and keep the status for END. */
static void prv_fail(uint8_t status, const char *why)
{
    uint16_t owner = prv_owner();

    ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 transfer failed at stream offset %lu (%s): %s",
                     (unsigned long)s_ses.committed, ble_ota_v2_status_name(status), why);
    prv_release();
    s_ses.failed = status;
    ble_ota_priv_lock();
    s_sh.accepting = false;
    ble_ota_priv_unlock();
    prv_publish();
    prv_count_refusal(status);
    prv_window_ack(owner, status, s_ses.committed, s_ses.crc);
}

static uint32_t prv_align_up(uint32_t v)
{
    return (v + SECTOR - 1u) & ~(SECTOR - 1u);
}

/* Erases the next 64 KB block when one starts at erased_to and lies wholly
 * within the image's sectors, else the next sector. Never past the image:
 * a tail of a few sectors costs less as sectors than as a whole block. */
static bool prv_erase_next(void)
{
    const ble_ota_port_t *port = prv_port();
    uint32_t end = prv_align_up(s_ses.image_size);
    uint32_t len = SECTOR;
    int rc;

    if (s_ses.erased_to % BLOCK == 0u && s_ses.erased_to < end && end - s_ses.erased_to >= BLOCK) {
        len = BLOCK;
    }
    rc = s_v2->slot_erase(port->ctx, s_ses.erased_to, len);
    if (rc != BLE_OTA_OK) {
        prv_fail(BLE_OTA_V2_FLASH_ERROR, "erasing the update slot failed");
        return false;
    }
    s_ses.erased_to += len;
    return true;
}

/* --- Background erase of the next update slot (CONFIG_BLE_OTA_PRE_ERASE) ------------------------
 *
 * The record {slot address, erased_to} says that bytes [0, erased_to) of that slot are erased.
 * It is stored after each block erase completes, and stored with erased_to 0 before the first
 * write of any session into the slot (v2 BEGIN, baseline REQUEST). A power cut therefore leaves
 * it behind the flash (a block erased but not recorded, or torn mid-erase and not recorded),
 * never ahead of it; a session checks the first bytes of each recorded block before it trusts it.
 */

static void prv_pre_erase_publish(uint32_t erased)
{
    ble_ota_priv_lock();
    s_sh.status.pre_erased = erased;
    ble_ota_priv_unlock();
}

/* Loads the record once; false (and no more background erases) if the port cannot. */
static bool prv_pre_erase_load(void)
{
    const ble_ota_port_t *port = prv_port();

    if (s_pe.loaded) {
        return true;
    }
    if (s_v2->erase_record_load(port->ctx, &s_pe.rec) != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "pre-erase: the erase record cannot be read; the update slot is "
                                           "not erased in the background");
        memset(&s_pe.rec, 0, sizeof(s_pe.rec));
        s_pe.stopped = true;
        return false;
    }
    s_pe.loaded = true;
    return true;
}

/* Reads of the recorded range: the first bytes of each block must be blank. */
static bool prv_pre_erase_verified(uint32_t erased_to)
{
    const ble_ota_port_t *port = prv_port();
    uint8_t buf[32];

    for (uint32_t off = 0u; off < erased_to; off += BLOCK) {
        if (s_v2->idle_read(port->ctx, off, buf, sizeof(buf)) != BLE_OTA_OK) {
            return false;
        }
        for (size_t i = 0; i < sizeof(buf); i++) {
            if (buf[i] != 0xFFu) {
                return false;
            }
        }
    }
    return true;
}

/*
 * A session is about to write the next update slot. Returns how many bytes from its start it may
 * take as erased (0 without a usable record) after making the stored record say 0, or a negative
 * error when that store failed: then nothing may be written, or the record would be ahead.
 */
static int32_t prv_pre_erase_take(const char **why)
{
    const ble_ota_port_t *port = prv_port();
    ble_ota_slot_info_t next;
    ble_ota_erase_record_t zero;
    uint32_t claimed;

    *why = NULL;
    s_pe.idle_known = false; /* the wait starts again after the session */
    if (!prv_pre_erase_port() || !prv_pre_erase_load() || s_pe.rec.erased_to == 0u) {
        return 0;
    }
    memset(&next, 0, sizeof(next));
    if (s_v2->next_slot(port->ctx, &next) != BLE_OTA_OK || s_pe.rec.slot_address != next.address) {
        return 0; /* recorded for the running slot: nothing of ours to undo */
    }
    claimed = s_pe.rec.erased_to;
    if (!prv_pre_erase_verified(claimed)) {
        *why = "the pre-erase record says erased, but the slot holds data: erasing it again";
        claimed = 0u;
    }
    zero.slot_address = next.address;
    zero.erased_to = 0u;
    if (s_v2->erase_record_store(port->ctx, &zero) != BLE_OTA_OK) {
        *why = "the pre-erase record could not be cleared before the first write";
        return -1;
    }
    s_pe.rec = zero;
    s_pe.done_logged = false;
    prv_pre_erase_publish(0u);
    return (int32_t)claimed;
}

bool ble_ota_v2_pre_erase_forget(void)
{
    const char *why;
    int32_t rc = prv_pre_erase_take(&why);

    if (why != NULL) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "%s", why);
    }
    return rc >= 0;
}

/* Nothing runs that the background erase would hold up or that owns the slot. */
static bool prv_pre_erase_idle(bool baseline_busy)
{
    const ble_ota_port_t *port = prv_port();
    bool changed;
    bool linked = false;

    ble_ota_priv_lock();
    changed = s_sh.link_changed;
    s_sh.link_changed = false;
    for (uint32_t i = 0; i < MAX_LINKS; i++) {
        linked = linked || s_sh.live[i] != BLE_OTA_CONN_NONE;
    }
    ble_ota_priv_unlock();
    if (changed || baseline_busy || s_ses.exists || ble_ota_priv_restart_pending() ||
        (linked && ble_ota_get_config()->pre_erase == (uint8_t)BLE_OTA_PRE_ERASE_DISCONNECTED)) {
        s_pe.idle_known = false;
        return false;
    }
    if (!s_pe.idle_known) {
        s_pe.idle_known = true;
        s_pe.idle_since_ms = port->now_ms(port->ctx);
    }
    return true;
}

bool ble_ota_v2_pre_erase_step(bool baseline_busy)
{
    const ble_ota_port_t *port = prv_port();
    const ble_ota_config_t *cfg = ble_ota_get_config();
    ble_ota_slot_info_t next;
    ble_ota_slot_info_t running;
    uint32_t now;
    uint32_t len = SECTOR;
    int rc;

    if (!prv_pre_erase_on() || s_pe.stopped) {
        return false;
    }
    if (!s_pe.loaded) {
        /* INFO tells what an earlier boot erased, from the start */
        memset(&next, 0, sizeof(next));
        if (prv_pre_erase_load() && s_v2->next_slot(port->ctx, &next) == BLE_OTA_OK &&
            s_pe.rec.slot_address == next.address) {
            prv_pre_erase_publish(s_pe.rec.erased_to);
        }
    }
    if (!prv_pre_erase_idle(baseline_busy)) {
        return false;
    }
    now = port->now_ms(port->ctx);
    if (now - s_pe.idle_since_ms < cfg->pre_erase_delay_ms ||
        (s_pe.erased_one && now - s_pe.last_erase_ms < cfg->pre_erase_pause_ms)) {
        return false;
    }
    if (!prv_pre_erase_load()) {
        return false;
    }
    memset(&next, 0, sizeof(next));
    if (s_v2->next_slot(port->ctx, &next) != BLE_OTA_OK || next.size == 0u) {
        s_pe.stopped = true; /* no update slot: nothing to erase, ever */
        return false;
    }
    if (s_pe.rec.slot_address != next.address) {
        s_pe.rec.slot_address = next.address; /* the other slot's record: ours starts at 0 */
        s_pe.rec.erased_to = 0u;
    }
    if (s_pe.rec.erased_to >= next.size) {
        prv_pre_erase_publish(s_pe.rec.erased_to);
        return false;
    }
    /* An image that has not confirmed itself may still roll back to the slot. */
    if (port->get_running_slot(port->ctx, &running) != BLE_OTA_OK ||
        running.state == BLE_OTA_SLOT_STATE_PENDING_VERIFY || running.state == BLE_OTA_SLOT_STATE_NEW) {
        return false;
    }
    if (s_pe.rec.erased_to % BLOCK == 0u && next.size - s_pe.rec.erased_to >= BLOCK) {
        len = BLOCK;
    }
    if (s_pe.rec.erased_to == 0u) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "pre-erase: erasing %s (%lu bytes at 0x%lx) in the background, one 64 KB "
                                           "block every %lu ms; its previous image can no longer be rolled back to",
                         next.label, (unsigned long)next.size, (unsigned long)next.address,
                         (unsigned long)cfg->pre_erase_pause_ms);
    }
    rc = s_v2->idle_erase(port->ctx, s_pe.rec.erased_to, len);
    s_pe.erased_one = true;
    s_pe.last_erase_ms = port->now_ms(port->ctx);
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "pre-erase: erasing %s at offset %lu failed (error %d); no more "
                                            "background erases until restart",
                         next.label, (unsigned long)s_pe.rec.erased_to, rc);
        s_pe.stopped = true;
        return true;
    }
    s_pe.rec.erased_to += len;
    if (s_v2->erase_record_store(port->ctx, &s_pe.rec) != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "pre-erase: the erase record could not be stored; no more background "
                                            "erases until restart");
        s_pe.rec.erased_to -= len;
        s_pe.stopped = true;
        return true;
    }
    prv_pre_erase_publish(s_pe.rec.erased_to);
    if (s_pe.rec.erased_to >= next.size && !s_pe.done_logged) {
        s_pe.done_logged = true;
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "pre-erase: %s is erased (%lu bytes); the next update skips its erases",
                         next.label, (unsigned long)s_pe.rec.erased_to);
    }
    return true;
}

static bool prv_flash_write(const uint8_t *data, uint32_t len)
{
    const ble_ota_port_t *port = prv_port();
    int rc;

    while (s_ses.erased_to < s_ses.flash_pos + len) {
        if (!prv_erase_next()) {
            return false;
        }
    }
    rc = s_v2->slot_write_at(port->ctx, s_ses.flash_pos, data, len);
    if (rc == BLE_OTA_ERR_DOWNGRADE) {
        /* esp_ota_write checks secure_version in the first bytes under IDF's anti-rollback */
        prv_fail(BLE_OTA_V2_DOWNGRADE, ble_ota_priv_security_reason(rc));
        return false;
    }
    if (rc != BLE_OTA_OK) {
        prv_fail(BLE_OTA_V2_FLASH_ERROR, "writing the update slot failed");
        return false;
    }
    s_ses.flash_pos += len;
    return true;
}

/* The image's app description arrived: it must be what the manifest said, and not a downgrade
 * the device refuses. Failing here ends the transfer long before END. */
static bool prv_check_head(void)
{
    const ble_ota_port_t *port = prv_port();
    ble_ota_security_t sec;
    const char *why = NULL;
    int rc;

    if (s_ses.has_manifest && s_ses.head.has_desc &&
        (s_ses.head.secure_version != s_ses.claimed_secure_version ||
         strncmp(s_ses.head.version, s_ses.claimed_version, sizeof(s_ses.claimed_version)) != 0)) {
        prv_fail(BLE_OTA_V2_MANIFEST_MISMATCH, "the image's app description differs from its manifest's "
                                               "(secure_version, version)");
        return false;
    }
    prv_security(&sec);
    rc = ble_ota_priv_check_head(&s_ses.head, &sec, port->app_version(port->ctx), s_ses.allow_downgrade, &why);
    if (rc == BLE_OTA_ERR_INVALID_IMAGE) {
        return true; /* no app description: esp_ota_end's image check answers for it */
    }
    if (rc != BLE_OTA_OK) {
        prv_fail(rc == BLE_OTA_ERR_DOWNGRADE ? BLE_OTA_V2_DOWNGRADE : BLE_OTA_V2_VERSION_DOWNGRADE, why);
        return false;
    }
    return true;
}

/* Appends image bytes: hash them and write them in 16-byte multiples, the
 * remainder waiting in tail for the next bytes (or END). */
static bool prv_emit(const uint8_t *data, size_t len)
{
    const ble_ota_port_t *port = prv_port();

    if (len > s_ses.image_size - s_ses.image_pos) {
        prv_fail(BLE_OTA_V2_SIZE_MISMATCH, "the stream holds more image bytes than BEGIN's image_size");
        return false;
    }
    if (s_ses.image_pos == 0u && len > 0u && data[0] != 0xE9u) {
        prv_fail(BLE_OTA_V2_INVALID_IMAGE, "not an ESP app image (it must start with 0xE9)");
        return false;
    }
    if (ble_ota_priv_head_feed(&s_ses.head, s_ses.image_pos, data, len) && !prv_check_head()) {
        return false;
    }
    if (s_ses.sha_running && port->sha256_update(port->ctx, data, len) != BLE_OTA_OK) {
        prv_fail(BLE_OTA_V2_FLASH_ERROR, "SHA-256 of the image failed");
        return false;
    }
    s_ses.image_pos += (uint32_t)len;
    while (len > 0u) {
        uint32_t take = len < CHUNK ? (uint32_t)len : CHUNK;
        uint32_t total = s_ses.tail_len + take;
        uint32_t aligned = total & ~(WRITE_ALIGN - 1u);

        memcpy(s_scratch, s_ses.tail, s_ses.tail_len);
        memcpy(&s_scratch[s_ses.tail_len], data, take);
        if (aligned > 0u && !prv_flash_write(s_scratch, aligned)) {
            return false;
        }
        s_ses.tail_len = total - aligned;
        memcpy(s_ses.tail, &s_scratch[aligned], s_ses.tail_len);
        data += take;
        len -= take;
    }
    return true;
}

static int prv_patch_read_base(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    return s_v2->running_read(ctx, offset, buf, len);
}

static bool prv_patch_emit(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    return prv_emit(data, len);
}

/* A COPY of the whole image is one patch byte and seconds of flash work, during which the stream
 * does not move: an ack at the committed offset every 64 KB it writes tells the client that the
 * device is busy, not gone (without it the client's ack timeout would give up on a long COPY). */
static void prv_patch_progress(void *ctx, uint32_t produced)
{
    (void)ctx;
    if (produced - s_ses.patch_acked >= BLOCK) {
        s_ses.patch_acked = produced;
        prv_window_ack(prv_owner(), BLE_OTA_V2_OK, s_ses.committed, s_ses.crc);
    }
}

/* Stream bytes after inflation: image bytes, or a patch that rebuilds them. */
static bool prv_output(const uint8_t *data, size_t len)
{
    ble_ota_patch_io_t io;
    const char *why = NULL;
    int rc;

    if (!s_ses.delta) {
        return prv_emit(data, len);
    }
    io.ctx = prv_port()->ctx;
    io.read_base = prv_patch_read_base;
    io.emit = prv_patch_emit;
    io.progress = prv_patch_progress;
    io.scratch = s_base_buf;
    io.scratch_len = sizeof(s_base_buf);
    rc = ble_ota_patch_feed(&s_ses.patch, data, len, &io, &why);
    if (rc == BLE_OTA_PATCH_BAD) {
        prv_fail(BLE_OTA_V2_BAD_PATCH, why);
    } else if (rc == BLE_OTA_PATCH_READ) {
        prv_fail(BLE_OTA_V2_FLASH_ERROR, "reading the running image (the patch's base) failed");
    }
    return rc == BLE_OTA_PATCH_OK;
}

static void prv_inflate(const uint8_t *data, size_t len)
{
    const ble_ota_port_t *port = prv_port();
    const uint8_t *in = data;
    size_t in_len = len;

    if (s_ses.inflate_done) {
        prv_fail(BLE_OTA_V2_INFLATE_ERROR, "bytes after the end of the deflate stream");
        return;
    }
    for (;;) {
        const uint8_t *out = NULL;
        size_t out_len = 0u;
        int rc = s_v2->inflate_update(port->ctx, &in, &in_len, &out, &out_len);

        if (rc < 0) {
            prv_fail(BLE_OTA_V2_INFLATE_ERROR, "the deflate stream is corrupt");
            return;
        }
        if (out_len > 0u && !prv_output(out, out_len)) {
            return;
        }
        if (rc == BLE_OTA_INFLATE_DONE) {
            s_ses.inflate_done = true;
            if (in_len > 0u) {
                prv_fail(BLE_OTA_V2_INFLATE_ERROR, "bytes after the end of the deflate stream");
            }
            return;
        }
        if (in_len == 0u && out_len == 0u) {
            return;
        }
    }
}

static void prv_maybe_ack(void)
{
    if (s_ses.committed < s_ses.next_ack && s_ses.committed != s_ses.stream_size) {
        return;
    }
    while (s_ses.next_ack <= s_ses.committed) {
        s_ses.next_ack += ACK_STEP;
    }
    ble_ota_priv_lock();
    s_sh.status.acks++;
    ble_ota_priv_unlock();
    prv_window_ack(prv_owner(), BLE_OTA_V2_OK, s_ses.committed, s_ses.crc);
}

/* Consumes one piece of the ring, not past limit. Returns false if there was nothing. */
static bool prv_consume(uint32_t limit)
{
    const ble_ota_port_t *port = prv_port();
    uint32_t out;
    uint32_t avail;
    uint32_t pos;
    uint32_t n;
    const uint8_t *data;
    bool live;

    ble_ota_priv_lock();
    out = s_sh.ring_out;
    ble_ota_priv_unlock();
    avail = limit - out;
    if (avail == 0u) {
        return false;
    }
    pos = out % BLE_OTA_V2_BUFFER_SIZE;
    n = avail < CHUNK ? avail : CHUNK;
    if (n > BLE_OTA_V2_BUFFER_SIZE - pos) {
        n = BLE_OTA_V2_BUFFER_SIZE - pos;
    }
    data = &s_ring[pos];
    live = s_ses.exists && s_ses.failed == 0u;
    if (live) {
        if (s_ses.compressed) {
            prv_inflate(data, n);
        } else {
            (void)prv_output(data, n);
        }
        /* The CRC covers what the client sent, whatever became of it. */
        s_ses.crc = s_v2->crc32(port->ctx, s_ses.crc, data, n);
        s_ses.committed += n;
        if (s_ses.delta && s_ses.failed == 0u && s_ses.committed == s_ses.stream_size &&
            (!s_ses.compressed || s_ses.inflate_done) && !ble_ota_patch_done(&s_ses.patch)) {
            prv_fail(BLE_OTA_V2_BAD_PATCH, "the patch stream ended without its END op");
        }
        s_ses.active_ms = prv_port()->now_ms(prv_port()->ctx);
    }
    ble_ota_priv_lock();
    s_sh.ring_out = out + n;
    ble_ota_priv_unlock();
    if (live) {
        prv_publish();
        if (s_ses.failed == 0u) {
            prv_maybe_ack();
        }
    }
    return true;
}

static void prv_consume_until(uint32_t limit)
{
    while (prv_consume(limit)) {
    }
}

static void prv_discard_until(uint32_t limit)
{
    ble_ota_priv_lock();
    s_sh.ring_out = limit;
    ble_ota_priv_unlock();
}

bool ble_ota_v2_writer_idle(void)
{
    uint32_t target;

    if (s_v2 == NULL) {
        return false;
    }
    if (prv_consume(prv_ring_in())) {
        return true;
    }
    if (!s_ses.exists || s_ses.failed != 0u || !s_ses.slot_open) {
        return false;
    }
    /* Nothing to write: erase ahead so the next window's writes seldom wait. */
    target = (s_ses.flash_pos & ~(SECTOR - 1u)) + ERASE_AHEAD;
    if (target > prv_align_up(s_ses.image_size)) {
        target = prv_align_up(s_ses.image_size);
    }
    if (s_ses.erased_to >= target) {
        return false;
    }
    (void)prv_erase_next();
    prv_publish();
    return true;
}

static void prv_begin_rsp(uint16_t conn, uint8_t status)
{
    uint8_t rsp[BLE_OTA_V2_BEGIN_RSP_LEN];
    uint16_t max_frame;

    ble_ota_priv_lock();
    max_frame = prv_max_frame(s_mtu, s_rx_octets);
    ble_ota_priv_unlock();

    memset(rsp, 0, sizeof(rsp));
    rsp[0] = BLE_OTA_V2_OP_BEGIN_RSP;
    rsp[1] = status;
    if (status == BLE_OTA_V2_OK) {
        prv_put_u32(&rsp[2], s_ses.committed);
        prv_put_u32(&rsp[6], s_ses.crc);
    }
    prv_put_u32(&rsp[10], BLE_OTA_V2_BUFFER_SIZE);
    prv_put_u16(&rsp[14], max_frame);
    prv_notify(conn, rsp, sizeof(rsp));
}

/* Lets the BLE side take DATA for the session from its committed offset. A link that dropped
 * after its BEGIN was queued owns nothing: the session is held for a BEGIN from a new link, as
 * after any disconnect (else every later BEGIN, END and ABORT would be BUSY until a reboot). */
static void prv_accept(uint16_t conn)
{
    bool live;

    ble_ota_priv_lock();
    live = conn != BLE_OTA_CONN_NONE && prv_live_slot(conn) < MAX_LINKS;
    s_sh.owner = live ? conn : BLE_OTA_CONN_NONE;
    s_sh.accepting = live && s_sh.link_conn == conn;
    s_sh.expected = s_ses.committed;
    s_sh.stream_size = s_ses.stream_size;
    s_sh.gap_reported = false;
    s_sh.no_session_reported = false;
    s_sh.full_reported = false;
    ble_ota_priv_unlock();
    if (!live) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 BEGIN from conn %u done after its link dropped: the session is "
                                           "held; BEGIN with the same image resumes it",
                         (unsigned)conn);
    }
}

static bool prv_owned_by_other(uint16_t conn)
{
    uint16_t owner = prv_owner();

    return s_ses.exists && owner != BLE_OTA_CONN_NONE && owner != conn;
}

static const char *prv_open_hint(int rc)
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

/* MANIFEST: pieces of one connection's manifest, in order, for its next BEGIN. */
static void prv_writer_manifest(uint16_t conn, const uint8_t *data, size_t len)
{
    uint16_t offset = prv_get_u16(data);
    size_t n = len - 2u;

    if (offset == 0u) {
        s_manifest.conn = conn;
        s_manifest.len = 0u;
        s_manifest.bad = false;
    } else if (s_manifest.conn != conn) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 MANIFEST piece at %u from conn %u ignored: conn %u is sending one",
                         (unsigned)offset, (unsigned)conn, (unsigned)s_manifest.conn);
        return;
    }
    if (s_manifest.bad) {
        return;
    }
    if (offset != s_manifest.len || n > sizeof(s_manifest.buf) - s_manifest.len) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 MANIFEST piece at %u (%u bytes) refused: expected offset %lu, at "
                                           "most %u bytes in all",
                         (unsigned)offset, (unsigned)n, (unsigned long)s_manifest.len,
                         (unsigned)sizeof(s_manifest.buf));
        s_manifest.bad = true;
        return;
    }
    memcpy(&s_manifest.buf[s_manifest.len], &data[2], n);
    s_manifest.len += (uint32_t)n;
}

/*
 * What BEGIN checks before anything is erased: with signed updates only, the image's manifest
 * must carry a Secure Boot v2 signature block of a trusted key that verifies (as Nordic's Secure
 * DFU checks its init packet); the secure_version and app version it claims must not be a
 * downgrade the device refuses. The claims are checked again against the image itself when
 * its first bytes arrive, and the signature over the whole image at END (esp_ota_end).
 */
static uint8_t prv_begin_security(uint16_t conn, uint8_t flags, uint32_t image_size, begin_claims_t *claims)
{
    const ble_ota_port_t *port = prv_port();
    ble_ota_security_t sec;
    ble_ota_head_t head;
    uint8_t digest[BLE_OTA_SHA256_LEN];
    const char *why = NULL;
    uint32_t count;
    int sig_rc;
    int rc;

    memset(claims, 0, sizeof(*claims));
    claims->allow_downgrade = (flags & BLE_OTA_V2_BEGIN_ALLOW_DOWNGRADE) != 0u;
    prv_security(&sec);
    if (claims->allow_downgrade && !sec.allow_downgrade) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN asks to allow an older app version; this device does not "
                                           "(CONFIG_BLE_OTA_ALLOW_DOWNGRADE is off)");
    }
    if ((flags & BLE_OTA_V2_BEGIN_MANIFEST) == 0u) {
        if (sec.signed_only) {
            ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused before any erase: signed updates only, and BEGIN "
                                                "came without the image's signature manifest (sign the image)");
            return BLE_OTA_V2_UNSIGNED;
        }
        return BLE_OTA_V2_OK;
    }
    if (!ble_ota_sbv2_available()) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused: a manifest was sent, but this port cannot check one");
        return BLE_OTA_V2_BAD_REQUEST;
    }
    count = s_manifest.len >= BLE_OTA_V2_MANIFEST_HDR ? s_manifest.buf[1] : 0u;
    if (s_manifest.conn != conn || s_manifest.bad || s_manifest.buf[0] != BLE_OTA_V2_MANIFEST_VERSION ||
        count == 0u || count > BLE_OTA_SIG_MAX_BLOCKS ||
        s_manifest.len != BLE_OTA_V2_MANIFEST_HDR + count * BLE_OTA_SIG_BLOCK_LEN) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused: its manifest is incomplete or malformed (%lu bytes "
                                            "from this connection; version 1 and 1 to 3 signature blocks expected)",
                         s_manifest.conn == conn ? (unsigned long)s_manifest.len : 0ul);
        return BLE_OTA_V2_BAD_REQUEST;
    }
    if (image_size % SECTOR != 0u || image_size < 2u * SECTOR) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused: a signed image is whole 4 KB sectors ending in its "
                                            "signature sector; %lu bytes is not",
                         (unsigned long)image_size);
        return BLE_OTA_V2_BAD_REQUEST;
    }
    sig_rc = ble_ota_sbv2_check_blocks(&s_manifest.buf[BLE_OTA_V2_MANIFEST_HDR], count, NULL, digest, &why);
    if (sig_rc != BLE_OTA_OK && sec.signed_only) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused before any erase: %s",
                         why != NULL ? why : "the manifest's signature check failed");
        return sig_rc == BLE_OTA_ERR_UNTRUSTED_KEY ? BLE_OTA_V2_UNTRUSTED_KEY : BLE_OTA_V2_BAD_SIGNATURE;
    }
    if (sig_rc != BLE_OTA_OK) {
        /* This firmware takes unsigned images: a signature it cannot trust keeps nothing out that
         * stripping the signature would not let in, so it is reported and the update goes on. */
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN: this device takes unsigned images, so the update goes on "
                                           "although its manifest's signature was not verified: %s",
                         why != NULL ? why : "the check failed");
    }
    claims->has_manifest = true;
    claims->secure_version = prv_get_u32(&s_manifest.buf[4]);
    memcpy(claims->version, &s_manifest.buf[8], sizeof(claims->version));
    /* The same checks as on the image, on what the manifest says of it. */
    memset(&head, 0, sizeof(head));
    head.has_desc = true;
    head.secure_version = claims->secure_version;
    memcpy(head.version, claims->version, sizeof(claims->version));
    rc = ble_ota_priv_check_head(&head, &sec, port->app_version(port->ctx), claims->allow_downgrade, &why);
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused before any erase: %s", why);
        return rc == BLE_OTA_ERR_DOWNGRADE ? BLE_OTA_V2_DOWNGRADE : BLE_OTA_V2_VERSION_DOWNGRADE;
    }
    if (sig_rc == BLE_OTA_OK) {
        char hex[2 * BLE_OTA_SHA256_LEN + 1];
        ble_ota_priv_hex(digest, BLE_OTA_SHA256_LEN, hex);
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 BEGIN: manifest signature verified (image digest %s, "
                                           "secure_version %lu, version %.32s)",
                         hex, (unsigned long)claims->secure_version, claims->version);
    }
    return BLE_OTA_V2_OK;
}

static void prv_writer_begin(uint16_t conn, const uint8_t *cmd)
{
    const ble_ota_port_t *port = prv_port();
    uint8_t flags = cmd[1];
    uint16_t chip = prv_get_u16(&cmd[2]);
    uint32_t image_size = prv_get_u32(&cmd[4]);
    const uint8_t *sha = &cmd[8];
    uint32_t stream_size = prv_get_u32(&cmd[40]);
    bool compressed = (flags & BLE_OTA_V2_BEGIN_DEFLATE) != 0u;
    bool delta = (flags & BLE_OTA_V2_BEGIN_DELTA) != 0u;
    uint32_t base_size = 0u;
    uint8_t running[BLE_OTA_SHA256_LEN];
    uint32_t slot = s_v2->slot_size(port->ctx);
    uint16_t own_chip = s_v2->chip_id(port->ctx);
    uint32_t erased = 0u;
    int32_t pre;
    uint8_t status;
    begin_claims_t claims;
    int rc;

    if (chip != own_chip) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused: image for chip id %u, this chip is %u",
                         (unsigned)chip, (unsigned)own_chip);
        prv_begin_rsp(conn, BLE_OTA_V2_WRONG_CHIP);
        return;
    }
    if (image_size > slot) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused: image of %lu bytes, the update slot holds %lu",
                         (unsigned long)image_size, (unsigned long)slot);
        prv_begin_rsp(conn, BLE_OTA_V2_TOO_LARGE);
        return;
    }
    if (ble_ota_priv_restart_pending()) {
        /* An update is in and the device restarts into it: the next update slot is now the one
         * just written, and a new session would erase it. A client that lost END's answer learns
         * its image is in; any other waits for the restart. */
        if (s_installed && memcmp(s_installed_sha, sha, BLE_OTA_SHA256_LEN) == 0) {
            ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 BEGIN: this image is installed; the device restarts into it now");
            prv_begin_rsp(conn, BLE_OTA_V2_INSTALLED_RESTARTING);
        } else {
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN refused: an update is installed and the device restarts now; "
                                               "connect again after the restart");
            prv_begin_rsp(conn, BLE_OTA_V2_BUSY);
        }
        return;
    }
    if (s_v2->running_sha256(port->ctx, running) == BLE_OTA_OK &&
        memcmp(running, sha, BLE_OTA_SHA256_LEN) == 0) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 BEGIN: this image is already running, nothing to send");
        prv_begin_rsp(conn, BLE_OTA_V2_ALREADY_INSTALLED);
        return;
    }
    if (image_size == 0u || stream_size == 0u || (!compressed && !delta && stream_size != image_size) ||
        (compressed && !prv_has_inflate()) || (delta && !prv_has_delta())) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused: image_size %lu, stream_size %lu, flags 0x%02x "
                                            "(sizes must be non-zero, equal unless compressed or a patch; deflate "
                                            "%s, delta %s)",
                         (unsigned long)image_size, (unsigned long)stream_size, flags,
                         prv_has_inflate() ? "supported" : "not supported",
                         prv_has_delta() ? "supported" : "not supported");
        prv_begin_rsp(conn, BLE_OTA_V2_BAD_REQUEST);
        return;
    }
    if (delta) {
        /* The patch rebuilds the image from the running one's bytes: any other base would give
         * another image. Refused before any erase; the client sends the full image instead. */
        base_size = s_v2->running_size(port->ctx);
        if (base_size == 0u || s_v2->running_sha256(port->ctx, running) != BLE_OTA_OK ||
            memcmp(running, &cmd[BLE_OTA_V2_BEGIN_LEN], BLE_OTA_SHA256_LEN) != 0) {
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN refused before any erase: the patch's base is not the "
                                               "running image; send the full image");
            prv_begin_rsp(conn, BLE_OTA_V2_BASE_MISMATCH);
            return;
        }
    }
    if (prv_owned_by_other(conn)) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN refused: connection %u holds the session", (unsigned)prv_owner());
        prv_begin_rsp(conn, BLE_OTA_V2_BUSY);
        return;
    }
    if (s_refusals > 0u && (int32_t)(s_refused_until_ms - port->now_ms(port->ctx)) > 0) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN refused: %lu refused update(s) in a row, BEGIN waits %lu ms more "
                                           "(CONFIG_BLE_OTA_REFUSAL_BACKOFF_MAX_S)",
                         (unsigned long)s_refusals, (unsigned long)(s_refused_until_ms - port->now_ms(port->ctx)));
        prv_begin_rsp(conn, BLE_OTA_V2_BUSY);
        return;
    }
    status = prv_begin_security(conn, flags, image_size, &claims);
    if (status != BLE_OTA_V2_OK) {
        prv_count_refusal(status);
        prv_begin_rsp(conn, status);
        return;
    }
    if (s_ses.exists && s_ses.failed == 0u && (flags & BLE_OTA_V2_BEGIN_RESTART) == 0u &&
        s_ses.image_size == image_size && s_ses.stream_size == stream_size && s_ses.compressed == compressed &&
        s_ses.delta == delta && memcmp(s_ses.sha256, sha, BLE_OTA_SHA256_LEN) == 0) {
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 session resumed at stream offset %lu of %lu",
                         (unsigned long)s_ses.committed, (unsigned long)s_ses.stream_size);
        s_ses.allow_downgrade = claims.allow_downgrade;
        s_ses.active_ms = port->now_ms(port->ctx);
        prv_accept(conn);
        prv_begin_rsp(conn, BLE_OTA_V2_OK);
        return;
    }
    if (s_ses.exists && s_ses.failed == 0u && prv_owner() == BLE_OTA_CONN_NONE &&
        port->now_ms(port->ctx) - s_ses.active_ms < ble_ota_get_config()->session_hold_ms) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 BEGIN refused: a session for another image is held for its owner "
                                           "for %lu ms more (CONFIG_BLE_OTA_SESSION_HOLD_S); BEGIN with that image "
                                           "resumes it",
                         (unsigned long)(ble_ota_get_config()->session_hold_ms -
                                         (port->now_ms(port->ctx) - s_ses.active_ms)));
        prv_begin_rsp(conn, BLE_OTA_V2_BUSY);
        return;
    }
    prv_count_abandoned();
    prv_drop_session(s_ses.exists ? "a BEGIN for another image (or with the restart flag) replaced it" : NULL);

    memset(&s_ses, 0, sizeof(s_ses));
    {
        const char *why;
        pre = prv_pre_erase_take(&why);
        if (why != NULL) {
            ble_ota_priv_log(pre < 0 ? BLE_OTA_LOG_ERROR : BLE_OTA_LOG_WARN, "v2 BEGIN: %s", why);
        }
        if (pre < 0) {
            prv_begin_rsp(conn, BLE_OTA_V2_FLASH_ERROR);
            return;
        }
    }
    rc = s_v2->slot_open(port->ctx, image_size, &s_ses.target, &erased);
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 BEGIN refused: could not open an update slot (error %d): %s", rc,
                         prv_open_hint(rc));
        prv_begin_rsp(conn, rc == BLE_OTA_ERR_TOO_LARGE ? BLE_OTA_V2_TOO_LARGE : BLE_OTA_V2_FLASH_ERROR);
        return;
    }
    s_ses.slot_open = true;
    s_ses.erased_to = erased & ~(SECTOR - 1u);
    if ((uint32_t)pre > s_ses.erased_to) {
        s_ses.erased_to = (uint32_t)pre;
        ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 BEGIN: %s is pre-erased up to %lu bytes: the image's %lu need %s",
                         s_ses.target.label, (unsigned long)pre, (unsigned long)image_size,
                         (uint32_t)pre >= prv_align_up(image_size) ? "no erase" : "erases past that only");
    }
    if (port->sha256_start(port->ctx) != BLE_OTA_OK) {
        s_ses.exists = true;
        prv_drop_session("SHA-256 is not available");
        prv_begin_rsp(conn, BLE_OTA_V2_FLASH_ERROR);
        return;
    }
    s_ses.sha_running = true;
    if (compressed) {
        if (s_v2->inflate_start(port->ctx) != BLE_OTA_OK) {
            s_ses.exists = true;
            prv_drop_session("the inflater could not start (out of memory?)");
            prv_begin_rsp(conn, BLE_OTA_V2_FLASH_ERROR);
            return;
        }
        s_ses.inflating = true;
    }
    s_ses.exists = true;
    s_ses.has_manifest = claims.has_manifest;
    s_ses.claimed_secure_version = claims.secure_version;
    memcpy(s_ses.claimed_version, claims.version, sizeof(s_ses.claimed_version));
    s_ses.allow_downgrade = claims.allow_downgrade;
    s_ses.compressed = compressed;
    s_ses.delta = delta;
    if (delta) {
        ble_ota_patch_init(&s_ses.patch, base_size, image_size);
    }
    s_ses.image_size = image_size;
    s_ses.stream_size = stream_size;
    memcpy(s_ses.sha256, sha, BLE_OTA_SHA256_LEN);
    s_ses.next_ack = ACK_STEP;
    s_ses.start_ms = port->now_ms(port->ctx);
    s_ses.active_ms = s_ses.start_ms;
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 update: %lu bytes%s%s%lu sent) to %s at 0x%lx, window %u",
                     (unsigned long)image_size, delta ? " (a patch against the running image, " : " (",
                     compressed ? "deflate, " : "", (unsigned long)stream_size,
                     s_ses.target.label, (unsigned long)s_ses.target.address, (unsigned)BLE_OTA_V2_BUFFER_SIZE);
    prv_publish();
    prv_accept(conn);
    prv_begin_rsp(conn, BLE_OTA_V2_OK);
}

static uint8_t prv_finish_image(void)
{
    const ble_ota_port_t *port = prv_port();
    uint8_t digest[BLE_OTA_SHA256_LEN];
    const char *why = NULL;
    int rc;

    if (s_ses.committed != s_ses.stream_size) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: %lu of %lu stream bytes received",
                         (unsigned long)s_ses.committed, (unsigned long)s_ses.stream_size);
        return BLE_OTA_V2_SIZE_MISMATCH;
    }
    if (s_ses.compressed && !s_ses.inflate_done) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: the deflate stream ended early");
        return BLE_OTA_V2_INFLATE_ERROR;
    }
    if (s_ses.delta && !ble_ota_patch_done(&s_ses.patch)) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: the patch stream ended without its END op");
        return BLE_OTA_V2_BAD_PATCH;
    }
    if (s_ses.image_pos != s_ses.image_size) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: %lu image bytes written, BEGIN said %lu",
                         (unsigned long)s_ses.image_pos, (unsigned long)s_ses.image_size);
        return BLE_OTA_V2_SIZE_MISMATCH;
    }
    if (s_ses.tail_len > 0u && !prv_flash_write(s_ses.tail, s_ses.tail_len)) {
        return BLE_OTA_V2_FLASH_ERROR;
    }
    s_ses.tail_len = 0u;
    s_ses.sha_running = false;
    if (port->sha256_finish(port->ctx, digest) != BLE_OTA_OK) {
        return BLE_OTA_V2_FLASH_ERROR;
    }
    if (memcmp(digest, s_ses.sha256, BLE_OTA_SHA256_LEN) != 0) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: the SHA-256 of the written image differs from "
                                            "BEGIN's; the running image stays");
        return BLE_OTA_V2_HASH_MISMATCH;
    }
    rc = ble_ota_sbv2_end_check(s_ses.image_size, &why);
    if (rc != BLE_OTA_OK) {
        s_ses.slot_open = false;
        port->slot_abort(port->ctx);
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: %s [%s]; the running image stays",
                         ble_ota_priv_security_reason(rc) != NULL ? ble_ota_priv_security_reason(rc)
                                                                  : "the signature check failed",
                         why != NULL ? why : "no detail");
        return rc == BLE_OTA_ERR_UNSIGNED      ? BLE_OTA_V2_UNSIGNED
               : rc == BLE_OTA_ERR_UNTRUSTED_KEY ? BLE_OTA_V2_UNTRUSTED_KEY
               : rc == BLE_OTA_ERR_FLASH         ? BLE_OTA_V2_FLASH_ERROR
                                                 : BLE_OTA_V2_BAD_SIGNATURE;
    }
    s_ses.slot_open = false; /* slot_end closes it whatever it returns */
    rc = port->slot_end(port->ctx);
    if (ble_ota_priv_security_reason(rc) != NULL) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: %s; the running image stays",
                         ble_ota_priv_security_reason(rc));
        return rc == BLE_OTA_ERR_UNSIGNED        ? BLE_OTA_V2_UNSIGNED
               : rc == BLE_OTA_ERR_BAD_SIGNATURE ? BLE_OTA_V2_BAD_SIGNATURE
               : rc == BLE_OTA_ERR_UNTRUSTED_KEY ? BLE_OTA_V2_UNTRUSTED_KEY
               : rc == BLE_OTA_ERR_VERSION_DOWNGRADE ? BLE_OTA_V2_VERSION_DOWNGRADE
                                                 : BLE_OTA_V2_DOWNGRADE;
    }
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: %s; the running image stays",
                         rc == BLE_OTA_ERR_INVALID_IMAGE ? "the ESP image check failed" : "finishing the slot failed");
        return rc == BLE_OTA_ERR_INVALID_IMAGE ? BLE_OTA_V2_INVALID_IMAGE : BLE_OTA_V2_FLASH_ERROR;
    }
    rc = port->slot_set_boot(port->ctx);
    if (rc != BLE_OTA_OK) {
        ble_ota_priv_log(BLE_OTA_LOG_ERROR, "v2 END refused: could not select %s as boot slot (error %d)",
                         s_ses.target.label, rc);
        return rc == BLE_OTA_ERR_INVALID_IMAGE ? BLE_OTA_V2_INVALID_IMAGE : BLE_OTA_V2_FLASH_ERROR;
    }
    return BLE_OTA_V2_OK;
}

static void prv_writer_end(uint16_t conn)
{
    const ble_ota_port_t *port = prv_port();
    const ble_ota_config_t *cfg = ble_ota_get_config();
    char hex[2 * BLE_OTA_SHA256_LEN + 1];
    uint32_t elapsed;
    uint8_t status;

    if (!s_ses.exists || prv_owner() == BLE_OTA_CONN_NONE) {
        ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 END without a session: send BEGIN first (after a disconnect, "
                                           "BEGIN again resumes)");
        prv_answer(conn, BLE_OTA_V2_OP_END_RSP, BLE_OTA_V2_NO_SESSION);
        return;
    }
    if (prv_owned_by_other(conn)) {
        prv_answer(conn, BLE_OTA_V2_OP_END_RSP, BLE_OTA_V2_BUSY);
        return;
    }
    if (s_ses.failed != 0u) {
        status = s_ses.failed;
        prv_drop_session(NULL);
        prv_answer(conn, BLE_OTA_V2_OP_END_RSP, status);
        return;
    }
    status = prv_finish_image();
    if (status != BLE_OTA_V2_OK) {
        /* an image refused for what it is at END cost a whole slot's erases: it counts too */
        prv_count_refusal(status);
        prv_drop_session("END failed");
        prv_answer(conn, BLE_OTA_V2_OP_END_RSP, status);
        return;
    }
    elapsed = port->now_ms(port->ctx) - s_ses.start_ms;
    ble_ota_priv_hex(s_ses.sha256, BLE_OTA_SHA256_LEN, hex);
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 OTA done: %lu bytes (%lu sent), %lu ms, boot slot %s",
                     (unsigned long)s_ses.image_size, (unsigned long)s_ses.stream_size, (unsigned long)elapsed,
                     s_ses.target.label);
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "image SHA-256: %s", hex);
    memcpy(s_installed_sha, s_ses.sha256, BLE_OTA_SHA256_LEN);
    s_installed = true;
    prv_drop_session(NULL);
    s_refusals = 0u;
    prv_answer(conn, BLE_OTA_V2_OP_END_RSP, BLE_OTA_V2_OK);
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "restarting in %lu ms", (unsigned long)cfg->restart_delay_ms);
    ble_ota_priv_lock();
    s_sh.status.sessions_completed++;
    s_sh.status.restart_scheduled = true;
    ble_ota_priv_unlock();
    /* After the answer, so the client learns the result before the link drops. */
    port->schedule_restart(port->ctx, cfg->restart_delay_ms);
}

void ble_ota_v2_writer_item(ble_ota_item_kind_t kind, uint16_t conn, const uint8_t *data, size_t len,
                            uint32_t ring_pos)
{
    if (s_v2 == NULL) {
        return;
    }
    switch (kind) {
    case BLE_OTA_ITEM_V2_BEGIN:
        /* Bytes that arrived before it belong to the held session: keep them. */
        prv_consume_until(ring_pos);
        if (len == prv_begin_len(data, len)) {
            prv_writer_begin(conn, data);
        }
        break;
    case BLE_OTA_ITEM_V2_END:
        prv_consume_until(ring_pos);
        prv_writer_end(conn);
        break;
    case BLE_OTA_ITEM_V2_ABORT:
        prv_discard_until(ring_pos);
        /* Only the session's owner aborts it: another link, or any link while the session is
         * held after its owner's disconnect, gets BUSY (the owner resumes with BEGIN, then aborts). */
        if (s_ses.exists && prv_owner() != conn) {
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 ABORT from conn %u refused: %s", (unsigned)conn,
                             prv_owner() == BLE_OTA_CONN_NONE
                                 ? "the session is held for its owner; BEGIN with the same image resumes it first"
                                 : "another connection owns the session");
            prv_answer(conn, BLE_OTA_V2_OP_ABORT_RSP, BLE_OTA_V2_BUSY);
            break;
        }
        if (s_ses.exists) {
            ble_ota_priv_log(BLE_OTA_LOG_INFO, "v2 session aborted by the client");
        }
        prv_count_abandoned();
        prv_drop_session(NULL);
        prv_answer(conn, BLE_OTA_V2_OP_ABORT_RSP, BLE_OTA_V2_OK);
        break;
    case BLE_OTA_ITEM_V2_MANIFEST:
        if (len >= 3u) {
            prv_writer_manifest(conn, data, len);
        }
        break;
    case BLE_OTA_ITEM_V2_DROP:
        prv_discard_until(ring_pos);
        prv_drop_session("a baseline REQUEST took over");
        break;
    case BLE_OTA_ITEM_V2_GAP:
        prv_consume_until(ring_pos);
        if (s_ses.exists && s_ses.failed == 0u && len == 4u) {
            ble_ota_priv_log(BLE_OTA_LOG_WARN, "v2 frame at %lu lost or out of order: client resends from %lu",
                             (unsigned long)prv_get_u32(data), (unsigned long)s_ses.committed);
            ble_ota_priv_lock();
            s_sh.status.gaps++;
            ble_ota_priv_unlock();
            prv_window_ack(conn, BLE_OTA_V2_BAD_REQUEST, s_ses.committed, s_ses.crc);
        }
        break;
    default:
        break;
    }
}

void ble_ota_v2_get_status(ble_ota_v2_status_t *out)
{
    if (out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    if (prv_port() == NULL) {
        return;
    }
    ble_ota_priv_lock();
    *out = s_sh.status;
    out->attached = s_v2 != NULL;
    out->accepting = s_sh.accepting;
    out->owner = s_sh.owner;
    out->expected = s_sh.expected;
    out->buffer_used = s_sh.ring_in - s_sh.ring_out;
    out->buffer_high_water = s_sh.ring_high_water;
    ble_ota_priv_unlock();
}
