/*
 * Protocol v2 as the core speaks it, against the fake port (fake_port_v2.h):
 * INFO, the byte-exact exchange, gaps, resume, already installed, every
 * refusal, deflate, and how v2 and the baseline displace each other.
 */
#include "check.h"

#include <zlib.h>

#include "ble_ota.h"
#include "fake_port_v2.h"
#include "test_sign.h"
#include "image.h"

#define CONN 1u
#define CONN_B 2u
#define MTU 247u
#define PAYLOAD (MTU - 3u - 4u)
#define WINDOW BLE_OTA_V2_BUFFER_SIZE
#define ACK_STEP (WINDOW / 4u)

static uint8_t s_img[200u * 1024u];
static size_t s_img_len;
static uint8_t s_img_sha[32];
static uint8_t s_z[220u * 1024u];
static size_t s_z_len;

/* An image that starts like an ESP image and compresses about 3:1. */
static void make_image(size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1u;

    REQUIRE(len <= sizeof(s_img));
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        s_img[i] = (i % 64u) < 40u ? (uint8_t)(i / 64u) : (uint8_t)(x >> 24);
    }
    s_img[0] = 0xE9;
    s_img_len = len;
    host_sha256(s_img, len, s_img_sha);
}

static void compress_image(void)
{
    uLongf zl = sizeof(s_z);

    REQUIRE(compress2(s_z, &zl, s_img, s_img_len, 9) == Z_OK);
    s_z_len = zl;
}

static uint32_t crc_of(const uint8_t *data, size_t len)
{
    return (uint32_t)crc32(0, data, (uInt)len);
}

static void connect_as(uint16_t conn)
{
    ble_ota_on_connect(conn, 23);
    ble_ota_on_mtu(conn, MTU);
    ble_ota_on_data_length(conn, 251); /* MTU 247 fills one 251-byte packet: frames of MTU - 3 */
    ble_ota_on_subscribe(conn, BLE_OTA_CHR_V2_CONTROL, true);
}

static int begin_raw(uint16_t conn, uint8_t flags, uint16_t chip, uint32_t image_size, const uint8_t *sha,
                     uint32_t stream_size)
{
    uint8_t cmd[44];

    cmd[0] = 0x10;
    cmd[1] = flags;
    cmd[2] = (uint8_t)chip;
    cmd[3] = (uint8_t)(chip >> 8);
    put_u32(&cmd[4], image_size);
    memcpy(&cmd[8], sha, 32);
    put_u32(&cmd[40], stream_size);
    return ble_ota_on_write(conn, BLE_OTA_CHR_V2_CONTROL, cmd, sizeof(cmd), true);
}

/* BEGIN for s_img (compressed: the s_z stream); returns the BEGIN_RSP note. */
static const fv2_note_t *begin(uint16_t conn, uint8_t flags)
{
    uint32_t before = fv2.n_notes;
    bool z = (flags & 1u) != 0u;

    if (begin_raw(conn, flags, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)(z ? s_z_len : s_img_len)) !=
        0) {
        return NULL;
    }
    fake_drain();
    for (uint32_t i = before; i < fv2.n_notes; i++) {
        if (fv2.notes[i].data[0] == 0x90) {
            return &fv2.notes[i];
        }
    }
    return NULL;
}

/* Where each frame sent so far ended, to predict the acks. */
static uint32_t s_frame_ends[4096];
static uint32_t s_n_frame_ends;

static bool has_ack_status(uint8_t status)
{
    for (uint32_t i = 0; i < fv2.n_notes; i++) {
        if (fv2.notes[i].data[0] == 0x91 && fv2.notes[i].data[1] == status) {
            return true;
        }
    }
    return false;
}

static void frame(uint16_t conn, const uint8_t *stream, uint32_t off, uint32_t n)
{
    uint8_t buf[4 + BLE_OTA_MAX_PACKET];

    put_u32(buf, off);
    memcpy(buf + 4, stream + off, n);
    if (s_n_frame_ends < 4096u) {
        s_frame_ends[s_n_frame_ends++] = off + n;
    }
    CHECK_EQ_INT(ble_ota_on_write(conn, BLE_OTA_CHR_V2_DATA, buf, 4 + n, false), 0);
}

typedef struct {
    uint32_t drop_at;       /* frame offset lost once on air (0 = none) */
    uint32_t stop_after;    /* stop sending once this many bytes were sent (0 = never) */
    bool drain_per_window;  /* the writer runs only once a whole window is in flight */
    uint32_t sent_bytes;    /* out: payload bytes sent, resends included */
    uint32_t acked;         /* out */
    uint32_t gaps;          /* out: BAD_REQUEST acks seen */
    uint32_t bad_crc;       /* out: acks whose CRC differs from the client's */
} client_t;

/* A v2 client: at most one window unacknowledged, resends from a gap ack. */
static void stream_from(uint16_t conn, const uint8_t *stream, uint32_t len, uint32_t start, client_t *c)
{
    uint32_t sent = start;
    uint32_t seen = fv2.n_notes;
    bool dropped = false;
    unsigned guard = 0;

    c->acked = start;
    while (c->acked < len && guard++ < 100000u) {
        while (sent < len && sent - c->acked < WINDOW) {
            uint32_t n = len - sent;
            if (n > PAYLOAD) {
                n = PAYLOAD;
            }
            if (n > WINDOW - (sent - c->acked)) {
                n = WINDOW - (sent - c->acked);
            }
            if (c->stop_after != 0u && c->sent_bytes >= c->stop_after) {
                return;
            }
            if (c->drop_at != 0u && sent == c->drop_at && !dropped) {
                dropped = true; /* lost on air: the device never sees it */
            } else {
                frame(conn, stream, sent, n);
            }
            c->sent_bytes += n;
            sent += n;
            if (!c->drain_per_window) {
                fake_drain();
            }
        }
        fake_drain();
        for (; seen < fv2.n_notes; seen++) {
            const fv2_note_t *note = &fv2.notes[seen];
            uint32_t committed;
            if (note->data[0] != 0x91 || note->len != 10u) {
                continue;
            }
            committed = get_u32(&note->data[2]);
            if (get_u32(&note->data[6]) != crc_of(stream, committed)) {
                c->bad_crc++;
            }
            if (note->data[1] == 4u) {
                c->gaps++;
                sent = committed;
                c->acked = committed;
            } else if (note->data[1] == 0u) {
                c->acked = committed;
            } else {
                return;
            }
        }
    }
}

static const fv2_note_t *last_note(void)
{
    return fv2.n_notes > 0u ? &fv2.notes[fv2.n_notes - 1u] : NULL;
}

static uint8_t end_status(uint16_t conn)
{
    uint8_t op = 0x11;
    const fv2_note_t *n;

    REQUIRE_EQ_INT(ble_ota_on_write(conn, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    fake_drain();
    n = last_note();
    if (n == NULL || n->data[0] != 0x93 || n->len != 2u) {
        return 0xFF;
    }
    return n->data[1];
}

/* A fresh core and port with a v2 session on CONN for a new s_img of len bytes. */
static void open_session_for_new_image(size_t len, uint32_t seed)
{
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(len, seed);
    connect_as(CONN);
    REQUIRE(begin(CONN, 0) != NULL);
}

/* A new client on CONN streams from offset 0, stopping after stop_after bytes (0 = never). */
static void stream_new_client(client_t *c, const uint8_t *stream, uint32_t len, uint32_t stop_after)
{
    memset(c, 0, sizeof(*c));
    c->stop_after = stop_after;
    stream_from(CONN, stream, len, 0, c);
}

/* A session on CONN (flags as BEGIN's) streamed until the device gives up with `status`: said at
 * once in a WINDOW_ACK, again by END, and nothing set to boot. Returns how far it was acked. */
static uint32_t stream_until_refused(uint8_t flags, const uint8_t *stream, uint32_t len, uint8_t status)
{
    client_t c;

    connect_as(CONN);
    REQUIRE(begin(CONN, flags) != NULL);
    stream_new_client(&c, stream, len, 0);
    CHECK(c.acked < len);
    CHECK(has_ack_status(status));
    CHECK_EQ_INT(end_status(CONN), status);
    CHECK(!fake.boot_set);
    return c.acked;
}

TEST(info_describes_the_device)
{
    uint8_t info[128];
    size_t len = 0;
    uint8_t version[32] = "1.2.3";

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    connect_as(CONN);
    REQUIRE_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_V2_CONTROL, info, sizeof(info), &len), 0);
    REQUIRE_EQ_INT(len, 123);
    CHECK_EQ_INT(info[0], 2);
    CHECK_EQ_HEX(info[1], 0x07); /* deflate, resume, manifest; no background erase without its port */
    CHECK_EQ_INT(info[2] | info[3] << 8, 9);
    CHECK_EQ_HEX(get_u32(&info[4]), FV2_SLOT_SIZE);
    CHECK_EQ_INT(info[8] | info[9] << 8, MTU - 3);
    CHECK_EQ_INT(get_u32(&info[10]), WINDOW);
    CHECK_MEM_EQ(&info[14], fv2.running_sha, 32);
    CHECK_MEM_EQ(&info[46], version, 32);
    CHECK_EQ_INT(get_u32(&info[78]), 0);
    CHECK_EQ_INT(info[82] | info[113], 0);
    CHECK_EQ_HEX(info[114], 0x00); /* nothing enforced */
    CHECK_EQ_INT(get_u32(&info[115]), 0);
    CHECK_EQ_INT(get_u32(&info[119]), 0); /* nothing pre-erased */
    /* what the firmware enforces: signed only, anti-rollback from secure_version 4, an encrypted link */
    fv2.sec.signed_only = true;
    fv2.sec.anti_rollback = true;
    fv2.sec.min_secure_version = 4;
    fv2.sec.link_security = BLE_OTA_LINK_ENCRYPTED;
    REQUIRE_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_V2_CONTROL, info, sizeof(info), &len), 0);
    CHECK_EQ_HEX(info[114], 0x13);
    CHECK_EQ_INT(get_u32(&info[115]), 4);
    CHECK_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_V2_CONTROL, info, 100, &len), BLE_OTA_ATT_ERR_INSUFFICIENT_RES);
    CHECK_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_V2_DATA, info, sizeof(info), &len),
                 BLE_OTA_ATT_ERR_READ_NOT_PERMITTED);
}

TEST(without_the_v2_port_the_v2_characteristics_are_not_supported)
{
    uint8_t info[128];
    size_t len = 0;
    uint8_t op = 0x11;

    REQUIRE_EQ_INT(fake_reset(), BLE_OTA_OK);
    CHECK_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_V2_CONTROL, info, sizeof(info), &len),
                 BLE_OTA_ATT_ERR_REQ_NOT_SUPPORTED);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), BLE_OTA_ATT_ERR_REQ_NOT_SUPPORTED);
    CHECK(ble_ota_v2_attach(NULL) == BLE_OTA_ERR_INVALID_ARG);
}

static uint16_t info_max_frame(uint16_t conn)
{
    uint8_t info[128];
    size_t len = 0;

    REQUIRE_EQ_INT(ble_ota_on_read(conn, BLE_OTA_CHR_V2_CONTROL, info, sizeof(info), &len), 0);
    return (uint16_t)(info[8] | info[9] << 8);
}

TEST(max_frame_fills_whole_link_layer_packets)
{
    /* value + 3 (ATT) + 4 (L2CAP) in whole packets of the data length, else MTU - 3 */
    static const struct {
        uint16_t mtu;
        uint16_t data_length;
        uint16_t max_frame;
    } table[] = {
        { 256u, 251u, 244u }, /* 260 bytes would be 251 + a 9-byte packet */
        { 185u, 251u, 182u }, /* less than one packet: MTU - 3 */
        { 517u, 251u, 495u }, /* two whole packets (502 bytes) */
        { 247u, 251u, 244u }, /* MTU 247 fills one packet exactly */
        { 256u, 27u, 236u },  /* nine 27-byte packets */
        { 23u, 27u, 20u },    /* the minimum MTU fills one default packet */
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const fv2_note_t *rsp;

        REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
        make_image(20000u, 11);
        ble_ota_on_connect(CONN, 23);
        ble_ota_on_mtu(CONN, table[i].mtu);
        ble_ota_on_subscribe(CONN, BLE_OTA_CHR_V2_CONTROL, true);
        ble_ota_on_data_length(CONN, table[i].data_length);
        CHECK_MSG(info_max_frame(CONN) == table[i].max_frame, "MTU %u, data length %u: INFO max_frame %u, want %u",
                  table[i].mtu, table[i].data_length, info_max_frame(CONN), table[i].max_frame);
        rsp = begin(CONN, 0);
        REQUIRE(rsp != NULL);
        CHECK_MSG((rsp->data[14] | rsp->data[15] << 8) == table[i].max_frame,
                  "MTU %u, data length %u: BEGIN_RSP max_frame %u, want %u", table[i].mtu, table[i].data_length,
                  rsp->data[14] | rsp->data[15] << 8, table[i].max_frame);
    }
}

TEST(the_data_length_is_27_until_the_port_reports_it_and_again_after_a_disconnect)
{
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    ble_ota_on_connect(CONN, 256);
    CHECK_EQ_INT(info_max_frame(CONN), 236);
    ble_ota_on_data_length(CONN, 251);
    CHECK_EQ_INT(info_max_frame(CONN), 244);
    /* another connection's link says nothing about this one */
    ble_ota_on_data_length(CONN_B, 27);
    CHECK_EQ_INT(info_max_frame(CONN), 244);
    ble_ota_on_disconnect(CONN);
    ble_ota_on_connect(CONN_B, 256);
    CHECK_EQ_INT(info_max_frame(CONN_B), 236);
}

TEST(a_frame_longer_than_max_frame_is_still_taken)
{
    client_t c;

    /* the data length drops mid-session: max_frame is advice, the frames in flight stay good */
    open_session_for_new_image(40000u, 12);
    ble_ota_on_data_length(CONN, 27);
    REQUIRE(info_max_frame(CONN) < PAYLOAD + 4u);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(c.acked, s_img_len);
    CHECK_EQ_INT(c.gaps, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
}

/* Runs a whole update of s_img and checks the slot_erase calls it made. */
static void update_and_check_erases(const uint32_t *off, const uint32_t *len, uint32_t n)
{
    client_t c;

    connect_as(CONN);
    REQUIRE(begin(CONN, 0) != NULL);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(c.acked, s_img_len);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
    CHECK(!fv2.nor_violation);
    CHECK_EQ_INT(fv2.erase_calls, n);
    for (uint32_t i = 0; i < n && i < fv2.erase_calls; i++) {
        CHECK_MSG(fv2.erase_off[i] == off[i] && fv2.erase_len[i] == len[i],
                  "erase %u: %u bytes at %u, want %u at %u", i, fv2.erase_len[i], fv2.erase_off[i], len[i], off[i]);
    }
}

TEST(the_slot_is_erased_in_64k_blocks_where_a_whole_block_fits)
{
    /* 150000 bytes = 37 sectors: two whole blocks, then the 5-sector tail as sectors */
    static const uint32_t off_a[] = { 65536u, 131072u, 135168u, 139264u, 143360u, 147456u };
    static const uint32_t len_a[] = { 65536u, 4096u, 4096u, 4096u, 4096u, 4096u };
    static const uint32_t off_b[] = { 0u, 65536u, 131072u, 135168u, 139264u, 143360u, 147456u };
    static const uint32_t len_b[] = { 65536u, 65536u, 4096u, 4096u, 4096u, 4096u, 4096u };
    static const uint32_t off_c[] = { 0u, 4096u, 8192u, 12288u, 16384u, 20480u, 24576u, 28672u };
    static const uint32_t len_c[] = { 4096u, 4096u, 4096u, 4096u, 4096u, 4096u, 4096u, 4096u };
    ble_ota_v2_status_t st;

    /* as on the chip: opening the slot erased the first block, the core does the rest */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    fv2.open_erases = 65536u;
    make_image(150000u, 13);
    connect_as(CONN);
    REQUIRE(begin(CONN, 0) != NULL);
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.erased_to, 65536); /* covers the first window: no erase ahead yet */
    CHECK_EQ_INT(fv2.erase_calls, 0);
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    fv2.open_erases = 65536u;
    update_and_check_erases(off_a, len_a, 6u);

    /* a port whose open erases nothing: the first block too */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    update_and_check_erases(off_b, len_b, 7u);

    /* an image smaller than a block never gets a block erase */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(30000u, 14);
    update_and_check_erases(off_c, len_c, 8u);
}

TEST(link_tuning_is_requested_on_connect)
{
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    fv2.no_2m = true;
    ble_ota_on_connect(CONN, 23);
    REQUIRE_EQ_INT(fv2.n_links, 3);
    CHECK_EQ_INT(fv2.links[0].kind, BLE_OTA_LINK_CONN_PARAMS);
    CHECK_EQ_INT(fv2.links[0].min_interval, 6);
    CHECK_EQ_INT(fv2.links[0].max_interval, 12);
    CHECK_EQ_INT(fv2.links[0].latency, 0);
    CHECK_EQ_INT(fv2.links[0].timeout, 400);
    CHECK_EQ_INT(fv2.links[1].kind, BLE_OTA_LINK_DATA_LENGTH);
    CHECK_EQ_INT(fv2.links[1].tx_octets, 251);
    CHECK_EQ_INT(fv2.links[1].tx_time_us, 2120);
    CHECK_EQ_INT(fv2.links[2].kind, BLE_OTA_LINK_PHY);
    CHECK_EQ_HEX(fv2.links[2].tx_phys, 0x03);
    CHECK_EQ_HEX(fv2.links[2].rx_phys, 0x03);
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "link: requested connection interval 7.5-15 ms"));
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "link: requested data length 251"));
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "link: 2M PHY not available on this chip"));
}

TEST(on_2m_a_v2_session_asks_for_the_11_25_ms_interval_once_per_link)
{
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(30000u, 22);
    connect_as(CONN);
    REQUIRE_EQ_INT(fv2.n_links, 3);
    ble_ota_on_phy(CONN, 2); /* 2M, but no stream yet: a baseline client keeps 7.5 ms */
    CHECK_EQ_INT(fv2.n_links, 3);
    REQUIRE(begin(CONN, 0) != NULL);
    REQUIRE_EQ_INT(fv2.n_links, 4);
    CHECK_EQ_INT(fv2.links[3].kind, BLE_OTA_LINK_CONN_PARAMS);
    CHECK_EQ_INT(fv2.links[3].min_interval, 9);
    CHECK_EQ_INT(fv2.links[3].max_interval, 12);
    CHECK_EQ_INT(fv2.links[3].latency, 0);
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "connection interval 11.25-15 ms for the 2M PHY"));
    /* a second BEGIN or another 2M report on the same link asks nothing more */
    ble_ota_on_phy(CONN, 2);
    REQUIRE(begin(CONN, 0) != NULL);
    CHECK_EQ_INT(fv2.n_links, 4);

    /* on 1M a BEGIN asks nothing: 7.5 ms is as good as it gets there */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    connect_as(CONN);
    ble_ota_on_phy(CONN, 1);
    REQUIRE(begin(CONN, 0) != NULL);
    CHECK_EQ_INT(fv2.n_links, 3);
    /* the link turning 2M during the session asks then */
    ble_ota_on_phy(CONN, 2);
    CHECK_EQ_INT(fv2.n_links, 4);
}

TEST(v2_exchange_byte_for_byte)
{
    static const uint8_t want_begin_rsp[16] = { 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0xF4, 0 };
    const fv2_note_t *rsp;
    client_t c;
    ble_ota_v2_status_t st;
    uint32_t ack_count = 0;
    int end_note;
    int restart;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(50000u, 1);
    connect_as(CONN);
    rsp = begin(CONN, 0);
    REQUIRE(rsp != NULL);
    CHECK_EQ_INT(rsp->len, 16);
    CHECK_MEM_EQ(rsp->data, want_begin_rsp, 16);
    CHECK_EQ_INT(fv2.opens, 1);
    /* erase ahead happened in the writer, before any data */
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.erased_to, WINDOW + 4096u);
    CHECK(st.accepting);

    memset(&c, 0, sizeof(c));
    s_n_frame_ends = 0;
    stream_from(CONN, s_img, (uint32_t)s_img_len, 0, &c);
    CHECK_EQ_INT(c.acked, s_img_len);
    CHECK_EQ_INT(c.sent_bytes, s_img_len);
    CHECK_EQ_INT(c.gaps, 0);
    CHECK_EQ_INT(c.bad_crc, 0);
    /* acks: at the first frame end past each quarter window, then at the end of the
     * stream, byte for byte */
    for (uint32_t i = 0; i < fv2.n_notes; i++) {
        const fv2_note_t *n = &fv2.notes[i];
        uint8_t want[10];
        uint32_t step = (ack_count + 1u) * ACK_STEP;
        uint32_t expect = (uint32_t)s_img_len;
        if (n->data[0] != 0x91) {
            continue;
        }
        for (uint32_t f = 0; f < s_n_frame_ends; f++) {
            if (s_frame_ends[f] >= step) {
                expect = s_frame_ends[f];
                break;
            }
        }
        ack_count++;
        want[0] = 0x91;
        want[1] = 0;
        put_u32(&want[2], expect);
        put_u32(&want[6], crc_of(s_img, expect));
        CHECK_EQ_INT(n->len, 10);
        CHECK_MEM_EQ(n->data, want, 10);
        CHECK_EQ_INT(n->conn, CONN);
        CHECK_EQ_INT(n->chr, BLE_OTA_CHR_V2_CONTROL);
    }
    CHECK_EQ_INT(ack_count, (uint32_t)(s_img_len / ACK_STEP) + 1u);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_WRITE), 0); /* v2 writes go through slot_write_at */
    CHECK(!fv2.nor_violation);

    CHECK_EQ_INT(end_status(CONN), 0);
    end_note = fake_find_event(FAKE_EV_NOTIFY, fake_count_events(FAKE_EV_NOTIFY) - 1u);
    restart = fake_find_event(FAKE_EV_RESTART, 0);
    REQUIRE(restart >= 0);
    CHECK(end_note < restart); /* END_RSP leaves before the restart is scheduled */
    CHECK(fake_find_event(FAKE_EV_SLOT_END, 0) < fake_find_event(FAKE_EV_SLOT_SET_BOOT, 0));
    CHECK(fake_find_event(FAKE_EV_SLOT_SET_BOOT, 0) < end_note);
    CHECK_EQ_INT(fake.events[restart].len, 500);
    CHECK(fake.boot_set);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
    CHECK_EQ_INT(fv2.bytes_written, s_img_len);
    ble_ota_v2_get_status(&st);
    CHECK(!st.session_held);
    CHECK_EQ_INT(st.sessions_completed, 1);
    CHECK(st.restart_scheduled);
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "v2 OTA done: 50000 bytes"));
}

TEST(a_client_that_fills_the_window_before_the_writer_runs_loses_nothing)
{
    client_t c;
    ble_ota_v2_status_t st;

    open_session_for_new_image(3u * WINDOW + 1000u, 2);
    memset(&c, 0, sizeof(c));
    c.drain_per_window = true;
    stream_from(CONN, s_img, (uint32_t)s_img_len, 0, &c);
    CHECK_EQ_INT(c.acked, s_img_len);
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.frames_dropped, 0);
    CHECK_EQ_INT(st.buffer_high_water, WINDOW);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
}

TEST(a_lost_frame_is_answered_once_and_the_client_resends_from_there)
{
    client_t c;
    ble_ota_v2_status_t st;
    uint32_t gap_acks = 0;

    open_session_for_new_image(40000u, 3);
    memset(&c, 0, sizeof(c));
    c.drop_at = 10u * PAYLOAD;
    c.drain_per_window = true; /* several frames after the lost one are in flight */
    stream_from(CONN, s_img, (uint32_t)s_img_len, 0, &c);
    CHECK_EQ_INT(c.gaps, 1);
    CHECK_EQ_INT(c.bad_crc, 0);
    CHECK_EQ_INT(c.acked, s_img_len);
    for (uint32_t i = 0; i < fv2.n_notes; i++) {
        if (fv2.notes[i].data[0] == 0x91 && fv2.notes[i].data[1] == 4u) {
            gap_acks++;
            CHECK_EQ_INT(get_u32(&fv2.notes[i].data[2]), 10u * PAYLOAD);
            CHECK_EQ_HEX(get_u32(&fv2.notes[i].data[6]), crc_of(s_img, 10u * PAYLOAD));
        }
    }
    CHECK_EQ_INT(gap_acks, 1);
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.gaps, 1);
    CHECK(st.frames_dropped > 1u); /* the stray frames after the gap were dropped silently */
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
}

static void resume_at(uint32_t cut, uint8_t flags)
{
    const uint8_t *stream = (flags & 1u) ? s_z : s_img;
    uint32_t len = (uint32_t)((flags & 1u) ? s_z_len : s_img_len);
    uint8_t info[128];
    size_t info_len = 0;
    const fv2_note_t *rsp;
    client_t c;
    uint32_t offset;
    uint32_t total_sent;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    connect_as(CONN);
    REQUIRE(begin(CONN, flags) != NULL);
    stream_new_client(&c, stream, len, cut);
    total_sent = c.sent_bytes;
    ble_ota_on_disconnect(CONN);
    fake_drain();

    /* another link: INFO shows the held session; BEGIN resumes it */
    connect_as(CONN_B);
    REQUIRE_EQ_INT(ble_ota_on_read(CONN_B, BLE_OTA_CHR_V2_CONTROL, info, sizeof(info), &info_len), 0);
    offset = get_u32(&info[78]);
    CHECK_MSG(offset >= cut - PAYLOAD && offset <= cut + PAYLOAD, "cut %u: held offset %u", cut, offset);
    CHECK_MEM_EQ(&info[82], s_img_sha, 32);
    rsp = begin(CONN_B, flags);
    REQUIRE(rsp != NULL);
    CHECK_EQ_INT(rsp->data[1], 0);
    CHECK_EQ_INT(get_u32(&rsp->data[2]), offset);
    CHECK_EQ_HEX(get_u32(&rsp->data[6]), crc_of(stream, offset));
    CHECK_EQ_INT(fv2.opens, 1); /* the same slot, not reopened */
    memset(&c, 0, sizeof(c));
    stream_from(CONN_B, stream, len, offset, &c);
    total_sent += c.sent_bytes;
    CHECK_EQ_INT(c.acked, len);
    CHECK_EQ_INT(c.bad_crc, 0);
    CHECK_EQ_INT(total_sent, len); /* nothing sent twice */
    CHECK_EQ_INT(end_status(CONN_B), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
    CHECK(!fv2.nor_violation);
}

TEST(resume_after_a_disconnect_continues_from_the_committed_offset)
{
    static const uint32_t cuts[] = { PAYLOAD, 5000u, WINDOW, WINDOW + 77u * PAYLOAD, 60000u };

    make_image(64000u, 4);
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        resume_at(cuts[i], 0);
    }
}

TEST(resume_of_a_compressed_transfer_keeps_the_inflater_state)
{
    make_image(120000u, 5);
    compress_image();
    REQUIRE(s_z_len < s_img_len);
    resume_at((uint32_t)s_z_len / 3u, 1);
    resume_at((uint32_t)s_z_len - 100u, 1);
}

TEST(begin_with_the_restart_flag_or_another_image_starts_over)
{
    client_t c;
    const fv2_note_t *rsp;

    open_session_for_new_image(30000u, 6);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 9000u);
    rsp = begin(CONN, 2);
    REQUIRE(rsp != NULL);
    CHECK_EQ_INT(rsp->data[1], 0);
    CHECK_EQ_INT(get_u32(&rsp->data[2]), 0);
    CHECK_EQ_INT(fv2.opens, 2);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
}

TEST(already_installed_touches_no_flash)
{
    const fv2_note_t *rsp;
    uint8_t want[16] = { 0x90, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0xF4, 0 };

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(30000u, 7);
    memcpy(fv2.running_sha, s_img_sha, 32);
    connect_as(CONN);
    rsp = begin(CONN, 0);
    REQUIRE(rsp != NULL);
    CHECK_MEM_EQ(rsp->data, want, 16);
    CHECK_EQ_INT(fv2.opens, 0);
    CHECK_EQ_INT(fv2.erase_calls + fv2.write_calls, 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 0);
    CHECK_EQ_INT(end_status(CONN), 9); /* nothing to end */
}

static uint8_t begin_status(uint16_t conn, uint8_t flags, uint16_t chip, uint32_t size, const uint8_t *sha,
                            uint32_t stream)
{
    uint32_t before = fv2.n_notes;

    REQUIRE_EQ_INT(begin_raw(conn, flags, chip, size, sha, stream), 0);
    fake_drain();
    REQUIRE(fv2.n_notes > before);
    REQUIRE_EQ_HEX(last_note()->data[0], 0x90);
    return last_note()->data[1];
}

TEST(begin_refusals_carry_their_reason)
{
    uint8_t short_begin[10] = { 0x10 };

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(30000u, 8);
    connect_as(CONN);
    CHECK_EQ_INT(begin_status(CONN, 0, 0, 30000u, s_img_sha, 30000u), 3);                       /* WRONG_CHIP */
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, FV2_SLOT_SIZE + 1u, s_img_sha, FV2_SLOT_SIZE + 1u), 2); /* TOO_LARGE */
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, 30000u, s_img_sha, 29000u), 4);  /* sizes differ uncompressed */
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, 0u, s_img_sha, 0u), 4);
    CHECK_EQ_INT(fv2.opens + fv2.erase_calls, 0);
    /* checked in the spec's order: chip before size before already-installed */
    memcpy(fv2.running_sha, s_img_sha, 32);
    CHECK_EQ_INT(begin_status(CONN, 0, 5, FV2_SLOT_SIZE + 1u, s_img_sha, 1u), 3);
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, FV2_SLOT_SIZE + 1u, s_img_sha, 1u), 2);
    /* a malformed command is answered at once */
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, short_begin, sizeof(short_begin), true), 0);
    CHECK_EQ_HEX(last_note()->data[0], 0x90);
    CHECK_EQ_INT(last_note()->data[1], 4);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, short_begin + 1, 1, true),
                 BLE_OTA_ATT_ERR_VALUE_NOT_ALLOWED);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 0);
}

TEST(data_and_end_without_a_session_get_no_session)
{
    uint8_t buf[8] = { 0, 0, 0, 0, 0xE9, 1, 2, 3 };
    uint32_t before;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    connect_as(CONN);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_DATA, buf, sizeof(buf), false), 0);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_DATA, buf, sizeof(buf), false), 0);
    fake_drain();
    REQUIRE_EQ_INT(fv2.n_notes, 1); /* once, not per frame */
    CHECK_EQ_HEX(fv2.notes[0].data[0], 0x91);
    CHECK_EQ_INT(fv2.notes[0].data[1], 9);
    before = fv2.n_notes;
    CHECK_EQ_INT(end_status(CONN), 9);
    CHECK_EQ_INT(fv2.n_notes, before + 1u);
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_DATA, buf, 4, false), BLE_OTA_ATT_ERR_INVALID_ATTR_VALUE_LEN);
    CHECK_EQ_INT(fv2.write_calls, 0);
}

TEST(a_second_connection_is_busy_while_the_first_holds_the_session)
{
    uint8_t op = 0x12;

    open_session_for_new_image(30000u, 9);
    ble_ota_on_connect(CONN_B, MTU); /* a second central, the first still connected */
    CHECK_EQ_INT(begin_status(CONN_B, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 8);
    CHECK_EQ_INT(end_status(CONN_B), 8);
    CHECK_EQ_INT(ble_ota_on_write(CONN_B, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    fake_drain();
    CHECK_EQ_HEX(last_note()->data[0], 0x94);
    CHECK_EQ_INT(last_note()->data[1], 8);
    /* nor does a baseline REQUEST from it end the session the first central is running */
    {
        uint8_t size_le[2] = {244, 0};
        uint8_t request = 0x01;
        ble_ota_on_subscribe(CONN_B, BLE_OTA_CHR_OTA_CONTROL, true);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN_B, BLE_OTA_CHR_OTA_DATA, size_le, 2, true), 0);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN_B, BLE_OTA_CHR_OTA_CONTROL, &request, 1, true), 0);
        fake_drain();
        CHECK_EQ_HEX(last_note()->data[0], 0x03); /* REQUEST_NAK */
        CHECK(fake_logged(BLE_OTA_LOG_WARN, "is running a v2 update"));
        CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 0);
    }
    /* the owner may abort */
    CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    fake_drain();
    CHECK_EQ_HEX(last_note()->data[0], 0x94);
    CHECK_EQ_INT(last_note()->data[1], 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    CHECK_EQ_INT(end_status(CONN), 9);
}

TEST(a_begin_whose_link_drops_before_the_writer_runs_it_leaves_the_session_free)
{
    client_t c;
    uint8_t op = 0x12;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(30000u, 21);
    connect_as(CONN);
    /* queued, then the link drops before the writer gets to it */
    REQUIRE_EQ_INT(begin_raw(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    ble_ota_on_disconnect(CONN);
    fake_drain();
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "after its link dropped"));
    /* a new central is not answered BUSY: its BEGIN resumes the held session */
    connect_as(CONN_B);
    CHECK_EQ_INT(begin_status(CONN_B, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    CHECK_EQ_INT(fv2.opens, 1); /* it resumed the held session, nothing erased twice */
    memset(&c, 0, sizeof(c));
    stream_from(CONN_B, s_img, (uint32_t)s_img_len, 0, &c);
    CHECK_EQ_INT(end_status(CONN_B), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);

    /* END from a new link after such a BEGIN is NO_SESSION (BEGIN first); ABORT is BUSY: the
     * held session is its owner's, and only a BEGIN that resumes it makes the new link that */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    connect_as(CONN);
    REQUIRE_EQ_INT(begin_raw(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    ble_ota_on_disconnect(CONN);
    fake_drain();
    connect_as(CONN_B);
    CHECK_EQ_INT(end_status(CONN_B), 9);
    CHECK_EQ_INT(ble_ota_on_write(CONN_B, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    fake_drain();
    CHECK_EQ_HEX(last_note()->data[0], 0x94);
    CHECK_EQ_INT(last_note()->data[1], 8);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "the session is held for its owner"));
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 0);
    CHECK_EQ_INT(begin_status(CONN_B, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    CHECK_EQ_INT(ble_ota_on_write(CONN_B, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    fake_drain();
    CHECK_EQ_INT(last_note()->data[1], 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
}

TEST(end_refusals_carry_their_reason_and_keep_the_old_image)
{
    client_t c;
    uint8_t wrong_sha[32];

    /* SIZE_MISMATCH: END before the whole stream */
    open_session_for_new_image(30000u, 10);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 10000u);
    CHECK_EQ_INT(end_status(CONN), 11);
    CHECK(!fake.boot_set);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    CHECK_EQ_INT(end_status(CONN), 9); /* the session is gone */

    /* HASH_MISMATCH: BEGIN named another SHA-256 */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    connect_as(CONN);
    memcpy(wrong_sha, s_img_sha, 32);
    wrong_sha[31] ^= 1u;
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, wrong_sha, (uint32_t)s_img_len), 0);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 6);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_END), 0);
    CHECK(!fake.boot_set);

    /* INVALID_IMAGE: esp_ota_end's image check fails */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    fake.end_rc = BLE_OTA_ERR_INVALID_IMAGE;
    connect_as(CONN);
    REQUIRE(begin(CONN, 0) != NULL);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 7);
    CHECK(!fake.boot_set);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_RESTART), 0);

    /* FLASH_ERROR: an erase fails while streaming; reported at once, and at END */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    fv2.fail_erase_at = 7;
    (void)stream_until_refused(0, s_img, (uint32_t)s_img_len, 5);
}

TEST(not_an_esp_image_is_refused_at_its_first_byte)
{
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(20000u, 11);
    s_img[0] = 0x7F;
    host_sha256(s_img, s_img_len, s_img_sha);
    CHECK_EQ_INT(stream_until_refused(0, s_img, (uint32_t)s_img_len, 7), 0);
    CHECK_EQ_INT(fv2.write_calls, 0);
}

TEST(compressed_transfer_inflates_on_the_device)
{
    client_t c;
    const fv2_note_t *rsp;
    ble_ota_v2_status_t st;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(150000u, 12);
    compress_image();
    REQUIRE(s_z_len < s_img_len / 2u);
    connect_as(CONN);
    rsp = begin(CONN, 1);
    REQUIRE(rsp != NULL);
    CHECK_EQ_INT(rsp->data[1], 0);
    stream_new_client(&c, s_z, (uint32_t)s_z_len, 0);
    CHECK_EQ_INT(c.acked, s_z_len); /* acks count stream (compressed) bytes */
    CHECK_EQ_INT(c.bad_crc, 0);
    CHECK_EQ_INT(c.sent_bytes, s_z_len);
    ble_ota_v2_get_status(&st);
    CHECK_EQ_INT(st.image_written, s_img_len);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
    CHECK(!fv2.zs_running); /* the inflater was released */
}

TEST(a_corrupt_deflate_stream_is_an_inflate_error)
{
    client_t c;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(100000u, 13);
    compress_image();
    for (size_t i = 200; i < 260; i++) {
        s_z[i] ^= 0xA5u;
    }
    (void)stream_until_refused(1, s_z, (uint32_t)s_z_len, 10);
    CHECK(!fv2.zs_running);

    /* a stream cut short: every byte arrived, but the deflate end never came */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    compress_image();
    connect_as(CONN);
    CHECK_EQ_INT(begin_status(CONN, 1, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_z_len - 10u), 0);
    stream_new_client(&c, s_z, (uint32_t)s_z_len - 10u, 0);
    CHECK_EQ_INT(end_status(CONN), 10);
}

TEST(a_baseline_request_drops_a_v2_session_and_a_v2_begin_drops_a_baseline_transfer)
{
    client_t c;
    uint8_t size_le[2] = { 244, 0 };
    uint8_t request = 0x01;
    uint8_t data[100];

    open_session_for_new_image(30000u, 14);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 5000u);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, size_le, 2, true), 0);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &request, 1, false), 0);
    fake_drain();
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 2);
    CHECK(fake.slot_open); /* now the baseline's */
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "a baseline REQUEST took over"));
    CHECK_EQ_INT(end_status(CONN), 9);

    /* the baseline transfer runs; a v2 BEGIN replaces it */
    memset(data, 0xE9, sizeof(data));
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, data, sizeof(data), true), 0);
    fake_drain();
    REQUIRE(begin(CONN, 0) != NULL);
    CHECK_EQ_INT(last_note()->data[1], 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_ABORT), 2);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "v2 BEGIN during a baseline transfer"));
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
}

/* --- Signature manifest, downgrade checks, who may abort ------------------------------------ */

/* Gives s_img an app description (esp_app_desc_t after the image and segment headers). */
static void describe_image(uint32_t secure_version, const char *version)
{
    put_u32(&s_img[32], 0xABCD5432u);
    put_u32(&s_img[36], secure_version);
    memset(&s_img[48], 0, 32);
    memcpy(&s_img[48], version, strlen(version));
    host_sha256(s_img, s_img_len, s_img_sha);
}

/* Three ECDSA P-256 keys, made once per run. */
static test_key_t s_key[3];
static uint8_t s_img_digest[32]; /* what the signatures of s_img cover */

static void keys_once(void)
{
    static bool made;

    if (!made) {
        for (int i = 0; i < 3; i++) {
            REQUIRE_EQ_INT(test_key_new(&s_key[i]), 0);
        }
        made = true;
    }
}

/* Signs s_img as espsecure does, with keys k[0..n), and hashes the signed file. */
static void sign_img(const int *k, int n)
{
    const test_key_t *keys[3];
    size_t len;

    keys_once();
    for (int i = 0; i < n; i++) {
        keys[i] = &s_key[k[i]];
    }
    len = test_sign_image(s_img, s_img_len, sizeof(s_img), keys, n, s_img_digest);
    REQUIRE(len != 0u);
    s_img_len = len;
    host_sha256(s_img, s_img_len, s_img_sha);
}

/* The fake platform trusts keys k[0..n) and reads `blocks` signature blocks of an image. */
static void trust_keys(const int *k, int n, size_t blocks)
{
    keys_once();
    memset(&fv2.trust, 0, sizeof(fv2.trust));
    for (int i = 0; i < n; i++) {
        memcpy(fv2.trust.digests[i], s_key[k[i]].digest, 32);
    }
    fv2.trust.count = (size_t)n;
    fv2.trust.blocks_checked = blocks;
}

/* Sends s_img's manifest: its first `blocks` signature blocks with the claims given, in
 * pieces of `piece` bytes. */
static void send_manifest(uint16_t conn, uint32_t blocks, uint32_t secure_version, const char *version,
                          size_t piece)
{
    static uint8_t m[BLE_OTA_V2_MANIFEST_MAX];
    size_t len = BLE_OTA_V2_MANIFEST_HDR + blocks * BLE_OTA_SIG_BLOCK_LEN;
    uint8_t cmd[3 + BLE_OTA_MAX_PACKET];

    memset(m, 0, sizeof(m));
    m[0] = 1;
    m[1] = (uint8_t)blocks;
    put_u32(&m[4], secure_version);
    memcpy(&m[8], version, strlen(version));
    memcpy(&m[BLE_OTA_V2_MANIFEST_HDR], &s_img[s_img_len - BLE_OTA_SBV2_SECTOR], blocks * BLE_OTA_SIG_BLOCK_LEN);
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        cmd[0] = 0x13;
        cmd[1] = (uint8_t)off;
        cmd[2] = (uint8_t)(off >> 8);
        memcpy(&cmd[3], &m[off], n);
        CHECK_EQ_INT(ble_ota_on_write(conn, BLE_OTA_CHR_V2_CONTROL, cmd, 3 + n, true), 0);
        fake_drain(); /* each Write Request waits for its response; the writer keeps up */
    }
}

/* A device that takes signed updates only, anti-rollback from secure_version 2, running 1.2.3,
 * trusting key 0; s_img is len bytes of app signed by key 0 (and key 1 when two_keys). */
static void signed_device_with(size_t len, bool two_keys)
{
    static const int both[2] = {0, 1};

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    fv2.sec.signed_only = true;
    fv2.sec.anti_rollback = true;
    fv2.sec.min_secure_version = 2;
    trust_keys(both, 1, 3);
    make_image(len, 31);
    describe_image(2, "1.3.0");
    sign_img(both, two_keys ? 2 : 1);
    connect_as(CONN);
}

static void signed_only_device(size_t len)
{
    signed_device_with(len, false);
}

/* "prefix<64 hex digits of d>" was logged at INFO. */
static bool logged_digest(const char *prefix, const uint8_t d[32])
{
    char line[160];
    char hex[65];

    for (int i = 0; i < 32; i++) {
        (void)snprintf(&hex[2 * i], 3, "%02x", d[i]);
    }
    (void)snprintf(line, sizeof(line), "%s%s", prefix, hex);
    return fake_logged(BLE_OTA_LOG_INFO, line);
}

TEST(signed_only_refuses_a_begin_without_a_good_manifest_before_any_erase)
{
    static const int other[1] = {2};

    signed_only_device(64u * 1024u);
    /* no manifest */
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 12);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "came without the image's signature manifest"));
    /* a manifest by a key the device does not trust: no signature is even checked */
    trust_keys(other, 1, 3);
    send_manifest(CONN, 1, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 14);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "is by a key this device trusts"));
    CHECK_EQ_INT(fv2.verify_calls, 0);
    /* a block of the trusted key whose signature is forged (its CRC made right again) */
    trust_keys((const int[]){0}, 1, 3);
    {
        uint8_t *block = &s_img[s_img_len - BLE_OTA_SBV2_SECTOR];
        uint32_t crc;
        block[BLE_OTA_SBV2_ECDSA_SIG_AT + 5] ^= 0x40u;
        crc = (uint32_t)crc32(0, block, BLE_OTA_SBV2_CRC_AT);
        put_u32(&block[BLE_OTA_SBV2_CRC_AT], crc);
        send_manifest(CONN, 1, 2, "1.3.0", 244);
        CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 13);
        CHECK(fake_logged(BLE_OTA_LOG_ERROR, "does not verify"));
        CHECK_EQ_INT(fv2.verify_calls, 1);
        /* and one whose CRC no longer holds: damaged, not checked further */
        block[BLE_OTA_SBV2_CRC_AT] ^= 0x01u;
        send_manifest(CONN, 1, 2, "1.3.0", 244);
        CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 13);
        CHECK(fake_logged(BLE_OTA_LOG_ERROR, "is damaged: its CRC is wrong"));
        CHECK_EQ_INT(fv2.verify_calls, 1);
    }
    signed_only_device(64u * 1024u);
    /* the manifest flag without a manifest from this connection, a piece out of order, an image
     * that is not whole sectors */
    ble_ota_on_connect(CONN_B, MTU);
    CHECK_EQ_INT(begin_status(CONN_B, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 4);
    {
        uint8_t piece[8] = {0x13, 0x10, 0x00, 1, 1, 0, 0, 0};
        CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, piece, sizeof(piece), true), 0);
        fake_drain();
        CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 4);
    }
    send_manifest(CONN, 1, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len - 16u, s_img_sha, (uint32_t)s_img_len - 16u),
                 4);
    /* none of it opened the slot or erased a byte */
    CHECK_EQ_INT(fv2.opens, 0);
    CHECK_EQ_INT(fv2.erase_calls, 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 0);
}

TEST(a_verified_manifest_opens_the_session_and_the_logged_digests_are_the_images)
{
    client_t c;
    uint8_t signed_part[32];

    signed_device_with(64u * 1024u, true);
    /* the digest the signatures cover is the SHA-256 of the image up to its signature sector */
    host_sha256(s_img, s_img_len - BLE_OTA_SBV2_SECTOR, signed_part);
    CHECK_MEM_EQ(signed_part, s_img_digest, 32);
    send_manifest(CONN, 2, 2, "1.3.0", 100);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    CHECK(logged_digest("v2 BEGIN: manifest signature verified (image digest ", signed_part));
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK(logged_digest("signature of the written image verified (image digest ", signed_part));
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 1);
}

TEST(end_refuses_an_image_that_is_not_what_was_signed_and_nothing_boots)
{
    client_t c;

    /* the manifest is genuine, the image streamed after it was changed in one byte (and its
     * SHA-256 in BEGIN with it, as a tampering client would) */
    signed_only_device(64u * 1024u);
    send_manifest(CONN, 1, 2, "1.3.0", 244);
    s_img[40000] ^= 0x01u;
    host_sha256(s_img, s_img_len, s_img_sha);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 13);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "names another image digest"));
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);

    /* the signature sector replaced by 0xFF after a genuine manifest: not signed */
    signed_only_device(64u * 1024u);
    send_manifest(CONN, 1, 2, "1.3.0", 244);
    memset(&s_img[s_img_len - BLE_OTA_SBV2_SECTOR], 0xFF, BLE_OTA_SBV2_SECTOR);
    host_sha256(s_img, s_img_len, s_img_sha);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 12);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "holds no Secure Boot v2 signature block"));
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 0);
}

TEST(pinned_key_digests_narrow_the_platforms_trust)
{
    static const int both[2] = {0, 1};
    ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;
    char pin[80];
    client_t c;

    keys_once();
    for (int i = 0; i < 32; i++) {
        (void)snprintf(&pin[2 * i], 3, "%02X", s_key[1].digest[i]);
    }
    (void)snprintf(&pin[64], sizeof(pin) - 64u, " ,");
    /* key 0 and key 1 trusted by the platform, key 1 pinned; an image signed by key 0 only */
    signed_only_device(32u * 1024u);
    trust_keys(both, 2, 3);
    cfg.trusted_key_digests = pin;
    cfg.refusal_backoff_max_ms = 0u; /* the second BEGIN follows the refusal at once */
    REQUIRE_EQ_INT(ble_ota_init(&fv2_base_port, &cfg), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_v2_attach(&fake_v2_port), BLE_OTA_OK);
    connect_as(CONN);
    send_manifest(CONN, 1, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 14);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "no signature block is by a key in CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS"));
    /* signed by both: the second block is by the pinned key, and counts */
    make_image(32u * 1024u, 31);
    describe_image(2, "1.3.0");
    sign_img(both, 2);
    send_manifest(CONN, 2, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    /* a malformed list stops the core from starting, with the reason */
    cfg.trusted_key_digests = "0123abc";
    CHECK_EQ_INT(ble_ota_init(&fv2_base_port, &cfg), BLE_OTA_ERR_INVALID_ARG);
    cfg.trusted_key_digests = "";
    CHECK_EQ_INT(ble_ota_init(&fv2_base_port, &cfg), BLE_OTA_OK);
}

TEST(without_secure_boot_only_the_first_block_counts_as_esp_ota_end_reads_it)
{
    static const int both[2] = {0, 1};

    /* signed by keys 0 and 1; the platform trusts key 1 but, like esp_ota_end without Secure
     * Boot, reads only the first block: the core takes no image the platform would refuse */
    signed_device_with(32u * 1024u, true);
    trust_keys(&both[1], 1, 1);
    send_manifest(CONN, 2, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 14);
    trust_keys(&both[1], 1, 3);
    send_manifest(CONN, 2, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
}

TEST(a_device_that_takes_any_image_also_takes_a_signed_one_it_cannot_trust)
{
    static const int none[1] = {2};
    client_t c;

    /* signed updates off, no trusted key at all (an unsigned running app) */
    signed_only_device(32u * 1024u);
    fv2.sec.signed_only = false;
    trust_keys(none, 0, 1);
    send_manifest(CONN, 1, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "v2 BEGIN: this device takes unsigned images, so the update goes on"));
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), 1);
    /* a port without the signature primitives says so in INFO and refuses a manifest */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_v2_attach(&fake_v2_port_unsigned), BLE_OTA_OK);
    connect_as(CONN);
    send_manifest(CONN, 1, 2, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 4);
}

TEST(a_baseline_upload_to_a_signed_only_device_is_checked_by_the_same_policy)
{
    uint8_t request = 0x01;
    uint8_t done = 0x04;
    uint8_t size[2] = {244, 0};

    for (int signed_img = 0; signed_img < 2; signed_img++) {
        REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
        fv2.sec.signed_only = true;
        trust_keys((const int[]){0}, 1, 3);
        make_image(24000u, 35);
        describe_image(0, "1.3.0");
        if (signed_img) {
            sign_img((const int[]){0}, 1);
        }
        connect_as(CONN);
        ble_ota_on_subscribe(CONN, BLE_OTA_CHR_OTA_CONTROL, true);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, size, 2, true), 0);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &request, 1, true), 0);
        fake_drain();
        for (size_t off = 0; off < s_img_len; off += 244u) {
            size_t n = s_img_len - off < 244u ? s_img_len - off : 244u;
            REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, &s_img[off], n, true), 0);
            fake_drain();
        }
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &done, 1, true), 0);
        fake_drain();
        CHECK_EQ_HEX(last_note()->data[0], signed_img ? 0x05 : 0x06); /* DONE_ACK : DONE_NAK */
        CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), signed_img);
        if (signed_img) {
            CHECK(logged_digest("signature of the written image verified (image digest ", s_img_digest));
        } else {
            CHECK(fake_logged(BLE_OTA_LOG_ERROR, "the image is not signed"));
        }
    }
}

TEST(downgrades_are_refused_at_begin_from_the_manifest_before_any_erase)
{
    signed_only_device(64u * 1024u);
    /* secure_version below the minimum: refused whatever BEGIN asks */
    send_manifest(CONN, 1, 1, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4 | 8, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 15);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "secure_version 1 is below the device's minimum 2"));
    /* an older app version: refused, also when BEGIN asks and the device does not allow it */
    send_manifest(CONN, 1, 2, "1.2.2", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 16);
    send_manifest(CONN, 1, 2, "v1.2", 244);
    CHECK_EQ_INT(begin_status(CONN, 4 | 8, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 16);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "CONFIG_BLE_OTA_ALLOW_DOWNGRADE is off"));
    CHECK_EQ_INT(fv2.opens, 0);
    /* a device that allows it on request */
    fv2.sec.allow_downgrade = true;
    send_manifest(CONN, 1, 2, "1.2.2", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 16);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "ask for it with --allow-downgrade"));
    send_manifest(CONN, 1, 2, "1.2.2", 244);
    CHECK_EQ_INT(begin_status(CONN, 4 | 8, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    /* a session is open now; a BEGIN without its manifest is still refused */
    CHECK_EQ_INT(begin_status(CONN, 2, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 12);
}

TEST(the_image_must_be_what_its_manifest_says_and_is_checked_again_as_it_arrives)
{
    signed_only_device(64u * 1024u);
    /* the manifest claims secure_version 3, the image says 2 */
    send_manifest(CONN, 1, 3, "1.3.0", 244);
    stream_until_refused(4, s_img, (uint32_t)s_img_len, 17);
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "differs from its manifest's"));

    /* no manifest needed (unsigned accepted), but the image itself is older: refused as its
     * app description arrives, long before END */
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(64u * 1024u, 32);
    describe_image(0, "0.9.9");
    CHECK(stream_until_refused(0, s_img, (uint32_t)s_img_len, 16) < 16u * 1024u);
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    fv2.sec.anti_rollback = true;
    fv2.sec.min_secure_version = 5;
    make_image(64u * 1024u, 33);
    describe_image(4, "2.0.0");
    stream_until_refused(0, s_img, (uint32_t)s_img_len, 15);
}

TEST(version_order_compares_major_minor_patch)
{
    int order = 9;

    CHECK(ble_ota_version_compare("1.2.3", 32, "1.2.4", 32, &order) && order < 0);
    CHECK(ble_ota_version_compare("v2", 32, "1.9.9", 32, &order) && order > 0);
    CHECK(ble_ota_version_compare("1.0.0-hil.ab12cd34", 32, "1.0.0", 32, &order) && order == 0);
    CHECK(ble_ota_version_compare("1.10.0", 32, "1.9.0", 32, &order) && order > 0);
    CHECK(ble_ota_version_compare("1.2", 32, "1.2.0", 32, &order) && order == 0);
    CHECK(!ble_ota_version_compare("abc123", 32, "1.0.0", 32, &order));
    CHECK(!ble_ota_version_compare("", 32, "1.0.0", 32, &order));
}

TEST(a_baseline_upload_of_an_older_version_is_refused_unless_the_device_allows_older)
{
    uint8_t request = 0x01;
    uint8_t done = 0x04;
    uint8_t size[2] = {244, 0};

    for (int allow = 0; allow < 2; allow++) {
        REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
        fv2.sec.allow_downgrade = allow != 0;
        make_image(8192u, 34);
        describe_image(0, "1.0.0");
        connect_as(CONN);
        ble_ota_on_subscribe(CONN, BLE_OTA_CHR_OTA_CONTROL, true);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, size, 2, true), 0);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &request, 1, true), 0);
        fake_drain();
        for (size_t off = 0; off < s_img_len; off += 244u) {
            size_t n = s_img_len - off < 244u ? s_img_len - off : 244u;
            /* once refused, the device answers the rest with its "image refused" ATT error */
            int att = ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, &s_img[off], n, true);
            if (att != 0) {
                CHECK(!allow);
                CHECK_EQ_HEX(att, BLE_OTA_ATT_ERR_IMAGE_REFUSED);
                break;
            }
            fake_drain();
        }
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &done, 1, true), 0);
        fake_drain();
        CHECK_EQ_INT(fake_logged(BLE_OTA_LOG_ERROR, "app version 1.0.0 is older than the running 1.2.3"), !allow);
        CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_SET_BOOT), allow);
        CHECK_EQ_HEX(last_note()->data[0], allow ? 0x05 : 0x06); /* DONE_ACK : DONE_NAK */
    }
}

TEST(with_the_baseline_protocol_off_request_is_refused_and_v2_still_updates)
{
    static const ble_ota_config_t v2_only = { "esp32", "Espressif Systems", 500u, true, NULL, 0u, 0u, 0u, BLE_OTA_PRE_ERASE_OFF, 0u, 0u };
    uint8_t size[2] = {244, 0};
    uint8_t request = 0x01;
    client_t c;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_init(&fv2_base_port, &v2_only), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_v2_attach(&fake_v2_port), BLE_OTA_OK);
    make_image(30000u, 41);
    connect_as(CONN);
    ble_ota_on_subscribe(CONN, BLE_OTA_CHR_OTA_CONTROL, true);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_DATA, size, 2, true), 0);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_OTA_CONTROL, &request, 1, true), 0);
    fake_drain();
    CHECK_EQ_HEX(last_note()->data[0], 0x03); /* REQUEST_NAK */
    CHECK(fake_logged(BLE_OTA_LOG_ERROR, "CONFIG_BLE_OTA_BASELINE_PROTOCOL is off"));
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 0); /* nothing opened, nothing erased */
    REQUIRE(begin(CONN, 0) != NULL);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
}

/* --- Denial of service: idle links, held sessions, refusal back-off --------------------------- */

#define CONN2 7u

/* The writer loop as a port runs it (IDF: every second at least), for `ms` of fake time. */
static void run_writer_for(uint32_t ms)
{
    uint32_t end = fake.now + ms;

    while (fake.now < end) {
        fake.now += 100u;
        (void)ble_ota_writer_run_once(0);
    }
}

TEST(a_link_that_does_nothing_is_dropped_after_the_idle_timeout_and_an_update_gets_through)
{
    client_t c;
    uint32_t connected_at;
    uint32_t dropped_at = 0u;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(24000u, 41);
    /* a hostile central connects and does nothing (it may read INFO: reads are no progress) */
    connected_at = fake.now;
    connect_as(CONN2);
    run_writer_for(29900u);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_DISCONNECT), 0);
    while (fake_count_events(FAKE_EV_DISCONNECT) == 0 && fake.now - connected_at < 60000u) {
        run_writer_for(100u);
    }
    REQUIRE_EQ_INT(fake_count_events(FAKE_EV_DISCONNECT), 1);
    CHECK_EQ_INT(fake.events[fake_find_event(FAKE_EV_DISCONNECT, 0)].conn, CONN2);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "conn 7 started or moved on no update for 30000 ms"));
    dropped_at = fake.now;
    ble_ota_on_disconnect(CONN2); /* the port reports it and advertises again */
    run_writer_for(1000u);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_DISCONNECT), 1); /* asked once */
    /* the legitimate client connects and updates; streaming keeps its link alive */
    connect_as(CONN);
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_DISCONNECT), 1);
    printf("  figure: idle central connected at %lu ms, dropped at %lu ms (%lu ms), update done at %lu ms "
           "(CONFIG_BLE_OTA_IDLE_TIMEOUT_S=30, fake clock)\n",
           (unsigned long)connected_at, (unsigned long)dropped_at, (unsigned long)(dropped_at - connected_at),
           (unsigned long)fake.now);
}

TEST(a_link_that_streams_image_data_is_not_dropped)
{
    client_t c;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(24000u, 42);
    connect_as(CONN);
    run_writer_for(20000u);
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    /* 20 s after the connect, then 20 s more: data taken at 20 s restarted the clock */
    stream_new_client(&c, s_img, 4096u, 4096u);
    run_writer_for(20000u);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_DISCONNECT), 0);
    run_writer_for(10100u);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_DISCONNECT), 1);
}

TEST(a_held_session_is_not_replaced_by_another_image_before_its_hold_expires)
{
    client_t c;
    uint8_t other_sha[32];

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(24000u, 43);
    connect_as(CONN);
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 8192u);
    ble_ota_on_disconnect(CONN); /* the owner's link drops: the session is held */
    memset(other_sha, 0x33, sizeof(other_sha));
    connect_as(CONN2);
    fake.now += 59000u;
    CHECK_EQ_INT(begin_status(CONN2, 0, FV2_CHIP_ID, 20000u, other_sha, 20000u), 8); /* BUSY */
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "a session for another image is held for its owner"));
    CHECK_EQ_INT(fv2.opens, 1);
    /* the owner (any link with the same image) resumes it */
    ble_ota_on_disconnect(CONN2);
    connect_as(CONN);
    CHECK_EQ_INT(begin_status(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    ble_ota_on_disconnect(CONN);
    /* once the hold expired, another image may take the slot */
    connect_as(CONN2);
    fake.now += 60000u;
    CHECK_EQ_INT(begin_status(CONN2, 0, FV2_CHIP_ID, 20000u, other_sha, 20000u), 0);
    CHECK_EQ_INT(fv2.opens, 2);
}

TEST(between_an_installed_update_and_its_restart_nothing_opens_the_slot_just_written)
{
    client_t c;
    uint8_t other_sha[32];
    uint8_t size[2] = {244, 0};
    uint8_t request = 0x01;

    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    make_image(20000u, 47);
    connect_as(CONN);
    REQUIRE(begin(CONN, 0) != NULL);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_EQ_INT(fv2.opens, 1);
    /* the answer to END was lost with the link; the client comes back before the restart */
    ble_ota_on_disconnect(CONN);
    connect_as(CONN2);
    CHECK_EQ_INT(begin_status(CONN2, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 18);
    CHECK(fake_logged(BLE_OTA_LOG_INFO, "this image is installed; the device restarts into it now"));
    /* another image, or a baseline REQUEST, waits for the restart */
    memset(other_sha, 0x42, sizeof(other_sha));
    CHECK_EQ_INT(begin_status(CONN2, 0, FV2_CHIP_ID, 20000u, other_sha, 20000u), 8);
    ble_ota_on_subscribe(CONN2, BLE_OTA_CHR_OTA_CONTROL, true);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN2, BLE_OTA_CHR_OTA_DATA, size, 2, true), 0);
    REQUIRE_EQ_INT(ble_ota_on_write(CONN2, BLE_OTA_CHR_OTA_CONTROL, &request, 1, true), 0);
    fake_drain();
    CHECK_EQ_HEX(last_note()->data[0], 0x03); /* REQUEST_NAK */
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "OTA request refused: an update is installed and the device restarts now"));
    /* nothing opened the slot again */
    CHECK_EQ_INT(fv2.opens, 1);
    CHECK_EQ_INT(fake_count_events(FAKE_EV_SLOT_BEGIN), 1);
}

TEST(a_session_abandoned_after_its_slot_was_opened_counts_for_the_back_off)
{
    ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;
    uint8_t op = 0x12;
    uint32_t opened = 0u;

    /* a neighbour replaying a genuine BEGIN and aborting each time: every BEGIN erases a block */
    cfg.refusal_backoff_max_ms = 64000u;
    REQUIRE_EQ_INT(fake_v2_reset_cfg(&cfg), BLE_OTA_OK);
    make_image(30000u, 48);
    connect_as(CONN);
    for (uint32_t t = 0; t < 60u * 1000u; t += 250u) {
        uint8_t st = begin_status(CONN, 0, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len);
        CHECK(st == 0 || st == 8);
        if (st == 0) {
            opened++;
            CHECK_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
            fake_drain();
        }
        fake.now += 250u;
    }
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "abandoned after its slot was opened): BEGIN is answered BUSY for"));
    /* 1 + 2 + 4 + 8 + 16 + 32 s: 6 openings in a minute, not 240 */
    CHECK(opened <= 7u);
    CHECK_EQ_INT(fv2.opens, opened);
    printf("  figure: BEGIN then ABORT every 250 ms for a minute: %lu slot openings with the back-off "
           "(240 without)\n",
           (unsigned long)opened);
}

TEST(an_image_refused_at_end_counts_for_the_back_off_too)
{
    ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;
    client_t c;

    /* a genuine manifest, then an image changed after signing: the whole slot was erased for it */
    cfg.refusal_backoff_max_ms = 64000u;
    REQUIRE_EQ_INT(fake_v2_reset_cfg(&cfg), BLE_OTA_OK);
    fv2.sec.signed_only = true;
    trust_keys((const int[]){0}, 1, 3);
    make_image(24000u, 46);
    describe_image(0, "1.3.0");
    sign_img((const int[]){0}, 1);
    connect_as(CONN);
    send_manifest(CONN, 1, 0, "1.3.0", 244);
    s_img[1000] ^= 0x01u;
    host_sha256(s_img, s_img_len, s_img_sha);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
    stream_new_client(&c, s_img, (uint32_t)s_img_len, 0);
    CHECK_EQ_INT(end_status(CONN), 13);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "1 refused update(s) in a row: BEGIN is answered BUSY for 1000 ms"));
    /* the next BEGIN waits, whatever it brings */
    send_manifest(CONN, 1, 0, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 8);
    fake.now += 1000u;
    send_manifest(CONN, 1, 0, "1.3.0", 244);
    CHECK_EQ_INT(begin_status(CONN, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len), 0);
}

TEST(refused_begins_wait_longer_each_time_which_bounds_what_a_replaying_neighbour_costs)
{
    ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;
    uint32_t evaluated = 0u;
    uint32_t in_last_minute = 0u;
    bool capped = false;
    uint16_t conn = 0x20;

    cfg.refusal_backoff_max_ms = 64000u;
    REQUIRE_EQ_INT(fake_v2_reset_cfg(&cfg), BLE_OTA_OK);
    fv2.sec.signed_only = true;
    fv2.sec.anti_rollback = true;
    fv2.sec.min_secure_version = 2;
    trust_keys((const int[]){0}, 1, 3);
    make_image(24000u, 44);
    describe_image(2, "1.0.0");
    sign_img((const int[]){0}, 1);
    /* a genuine but older image, replayed as fast as the device answers, from a new address
     * (connection) each time: every evaluated BEGIN stands for one the device could have erased for */
    for (uint32_t t = 0; t < 10u * 60u * 1000u; t += 250u) {
        uint8_t st;

        conn = (uint16_t)(conn + 1u);
        fv2.n_notes = 0u; /* only this round's answers and log lines matter */
        fake.n_log = 0u;
        connect_as(conn);
        send_manifest(conn, 1, 2, "1.0.0", 244);
        st = begin_status(conn, 4, FV2_CHIP_ID, (uint32_t)s_img_len, s_img_sha, (uint32_t)s_img_len);
        CHECK(st == 16 || st == 8); /* VERSION_DOWNGRADE, or BUSY while it waits */
        if (st == 16) {
            evaluated++;
            in_last_minute += t >= 9u * 60u * 1000u;
            capped = capped || fake_logged(BLE_OTA_LOG_WARN, "BEGIN is answered BUSY for 64000 ms");
        }
        ble_ota_on_disconnect(conn);
        fake.now += 250u;
    }
    /* 1 + 2 + 4 + ... + 64 s, then one per 64 s */
    CHECK(evaluated <= 16u);
    CHECK(in_last_minute <= 1u);
    CHECK(capped);
    printf("  figure: a neighbour replaying a refused update every 250 ms from a new address: %lu BEGINs "
           "evaluated in 10 min, %lu in the 10th minute (without the back-off: 2400 in 10 min)\n",
           (unsigned long)evaluated, (unsigned long)in_last_minute);
}
