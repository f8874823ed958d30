/*
 * Delta updates over protocol v2 (docs/protocol-v2.md, "Delta updates"), against the fake port
 * with a running image (fake_v2_port_delta): a patch of a changed image rebuilds the same bytes
 * as the full image, plain and deflated, resumed after a lost link at any point; the base is
 * checked before any erase; every malformed patch is refused with BAD_PATCH and nothing is
 * installed; the applier never reads outside the base.
 */
#include "check.h"

#include <zlib.h>

#include "ble_ota.h"
#include "fake_port_v2.h"
#include "image.h"

#define CONN 1u
#define CONN_B 2u
#define MTU 247u
#define PAYLOAD (MTU - 3u - 4u)
#define WINDOW BLE_OTA_V2_BUFFER_SIZE

/* DATA payload per frame: PAYLOAD, or 1 byte so that a lost link cuts the patch exactly where a
 * test says. */
static uint32_t s_payload = PAYLOAD;

static uint8_t s_base[160u * 1024u];
static uint32_t s_base_len;
static uint8_t s_img[170u * 1024u];
static uint32_t s_img_len;
static uint8_t s_img_sha[32];
static uint8_t s_patch[200u * 1024u];
static uint32_t s_patch_len;
static uint8_t s_z[210u * 1024u];
static uint32_t s_z_len;

/* --- the patch encoder of the format (ops of known edits) --------------------------------- */

static void patch_byte(uint8_t b)
{
    REQUIRE(s_patch_len < sizeof(s_patch));
    s_patch[s_patch_len++] = b;
}

static void patch_varint(uint32_t v)
{
    while (v >= 0x80u) {
        patch_byte((uint8_t)(v | 0x80u));
        v >>= 7;
    }
    patch_byte((uint8_t)v);
}

static void patch_copy(uint32_t from, uint32_t len)
{
    patch_byte(0x01);
    patch_varint(from);
    patch_varint(len);
}

/* DIFF: the image's bytes minus the base's at `from` (mod 256), as a difference search emits for
 * code whose addresses moved. */
static void patch_diff(uint32_t from, const uint8_t *image_bytes, uint32_t len)
{
    patch_byte(0x03);
    patch_varint(from);
    patch_varint(len);
    for (uint32_t i = 0; i < len; i++) {
        patch_byte((uint8_t)(image_bytes[i] - s_base[from + i]));
    }
}

static void patch_add(const uint8_t *data, uint32_t len)
{
    patch_byte(0x02);
    patch_varint(len);
    for (uint32_t i = 0; i < len; i++) {
        patch_byte(data[i]);
    }
}

/* A running image (the base) that starts like an ESP image. */
static void make_base(uint32_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1u;

    REQUIRE(len <= sizeof(s_base));
    for (uint32_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        s_base[i] = (i % 64u) < 40u ? (uint8_t)(i / 64u) : (uint8_t)(x >> 24);
    }
    s_base[0] = 0xE9;
    s_base_len = len;
}

/*
 * The new image: the base with a changed version string at 0x30, a changed "function" (300
 * bytes in the middle) and a new 2000-byte "source file" inserted at 3/4, which moves
 * everything after it. s_patch is its patch, the way a difference search finds it: COPY of
 * what stayed, DIFF of what changed in place, ADD of what is new.
 */
static void make_changed_image_and_patch(void)
{
    static const char version[] = "2.0.0-delta";
    uint32_t fn = s_base_len / 2u;
    uint32_t ins = s_base_len * 3u / 4u;
    uint8_t fresh[2000];

    for (uint32_t i = 0; i < sizeof(fresh); i++) {
        fresh[i] = (uint8_t)(i * 7u + 3u);
    }
    memcpy(s_img, s_base, 0x30);
    memcpy(&s_img[0x30], version, sizeof(version));
    memcpy(&s_img[0x30 + sizeof(version)], &s_base[0x30 + sizeof(version)], fn - 0x30 - sizeof(version));
    for (uint32_t i = 0; i < 300u; i++) {
        s_img[fn + i] = (uint8_t)(s_base[fn + i] ^ 0x5Au);
    }
    memcpy(&s_img[fn + 300u], &s_base[fn + 300u], ins - fn - 300u);
    memcpy(&s_img[ins], fresh, sizeof(fresh));
    memcpy(&s_img[ins + sizeof(fresh)], &s_base[ins], s_base_len - ins);
    s_img_len = s_base_len + (uint32_t)sizeof(fresh);
    host_sha256(s_img, s_img_len, s_img_sha);

    s_patch_len = 0;
    patch_copy(0, 0x30);
    patch_add((const uint8_t *)version, sizeof(version));
    patch_copy(0x30 + sizeof(version), fn - 0x30 - sizeof(version));
    patch_diff(fn, &s_img[fn], 300u); /* the changed function, as a difference from the old one */
    patch_copy(fn + 300u, ins - fn - 300u);
    patch_add(fresh, sizeof(fresh));
    patch_copy(ins, s_base_len - ins);
    patch_byte(0x00);
    REQUIRE(s_patch_len < s_img_len / 10u); /* a patch, not an image */
}

static void compress_patch(void)
{
    uLongf zl = sizeof(s_z);

    REQUIRE(compress2(s_z, &zl, s_patch, s_patch_len, 9) == Z_OK);
    s_z_len = (uint32_t)zl;
}

/* --- a v2 client ----------------------------------------------------------------------------- */

/* Fresh core on the delta port, running s_base; configured with cfg, or the fake's defaults. */
static void device_running_base_cfg(const ble_ota_config_t *cfg)
{
    REQUIRE_EQ_INT(cfg != NULL ? fake_v2_reset_cfg(cfg) : fake_v2_reset(), BLE_OTA_OK);
    REQUIRE_EQ_INT(ble_ota_v2_attach(&fake_v2_port_delta), BLE_OTA_OK);
    memcpy(fv2.base, s_base, s_base_len);
    fv2.base_len = s_base_len;
    host_sha256(s_base, s_base_len, fv2.running_sha);
}

static void device_running_base(void)
{
    device_running_base_cfg(NULL);
}

static void connect_as(uint16_t conn)
{
    ble_ota_on_connect(conn, 23);
    ble_ota_on_mtu(conn, MTU);
    ble_ota_on_data_length(conn, 251);
    ble_ota_on_subscribe(conn, BLE_OTA_CHR_V2_CONTROL, true);
}

/* BEGIN with the delta flag (76 bytes: the base's SHA-256 appended); returns BEGIN_RSP's status. */
static uint8_t begin_delta(uint16_t conn, uint8_t flags, const uint8_t base_sha[32], uint32_t stream_size,
                           uint32_t *offset)
{
    uint8_t cmd[76];
    uint32_t before = fv2.n_notes;

    cmd[0] = 0x10;
    cmd[1] = (uint8_t)(flags | 0x10u);
    cmd[2] = FV2_CHIP_ID;
    cmd[3] = 0;
    put_u32(&cmd[4], s_img_len);
    memcpy(&cmd[8], s_img_sha, 32);
    put_u32(&cmd[40], stream_size);
    memcpy(&cmd[44], base_sha, 32);
    REQUIRE_EQ_INT(ble_ota_on_write(conn, BLE_OTA_CHR_V2_CONTROL, cmd, sizeof(cmd), true), 0);
    fake_drain();
    for (uint32_t i = before; i < fv2.n_notes; i++) {
        if (fv2.notes[i].data[0] == 0x90) {
            if (offset != NULL) {
                *offset = get_u32(&fv2.notes[i].data[2]);
            }
            return fv2.notes[i].data[1];
        }
    }
    return 0xFF;
}

static void frame(uint16_t conn, const uint8_t *stream, uint32_t off, uint32_t n)
{
    uint8_t buf[4 + BLE_OTA_MAX_PACKET];

    put_u32(buf, off);
    memcpy(buf + 4, stream + off, n);
    CHECK_EQ_INT(ble_ota_on_write(conn, BLE_OTA_CHR_V2_DATA, buf, 4 + n, false), 0);
}

/*
 * Streams [start, len) keeping at most one window unacknowledged, stopping once `stop` bytes
 * (absolute offset; 0 = never) were sent. Returns the last acked offset; *status the first
 * non-OK ack status (0 if none).
 */
static uint32_t stream(uint16_t conn, const uint8_t *data, uint32_t len, uint32_t start, uint32_t stop,
                       uint8_t *status)
{
    uint32_t sent = start;
    uint32_t acked = start;
    uint32_t seen = fv2.n_notes;
    unsigned guard = 0;

    *status = 0;
    while (acked < len && guard++ < 100000u) {
        while (sent < len && sent - acked < WINDOW) {
            uint32_t n = len - sent < s_payload ? len - sent : s_payload;
            if (n > WINDOW - (sent - acked)) {
                n = WINDOW - (sent - acked);
            }
            if (stop != 0u && sent >= stop) {
                return acked;
            }
            frame(conn, data, sent, n);
            sent += n;
            fake_drain();
        }
        fake_drain();
        for (; seen < fv2.n_notes; seen++) {
            const fv2_note_t *note = &fv2.notes[seen];
            if (note->data[0] != 0x91 || note->len != 10u) {
                continue;
            }
            CHECK_EQ_HEX(get_u32(&note->data[6]), (uint32_t)crc32(0, data, get_u32(&note->data[2])));
            if (note->data[1] != 0u) {
                *status = note->data[1];
                return acked;
            }
            acked = get_u32(&note->data[2]);
        }
    }
    return acked;
}

static uint8_t end_status(uint16_t conn)
{
    uint8_t op = 0x11;

    REQUIRE_EQ_INT(ble_ota_on_write(conn, BLE_OTA_CHR_V2_CONTROL, &op, 1, true), 0);
    fake_drain();
    REQUIRE(fv2.n_notes > 0u);
    const fv2_note_t *n = &fv2.notes[fv2.n_notes - 1u];
    return n->data[0] == 0x93 && n->len == 2u ? n->data[1] : 0xFF;
}

static uint8_t s_base_sha[32];

static void setup(uint32_t base_len, uint32_t seed)
{
    make_base(base_len, seed);
    host_sha256(s_base, s_base_len, s_base_sha);
    make_changed_image_and_patch();
    compress_patch();
}

/* --- tests ------------------------------------------------------------------------------------ */

TEST(info_advertises_delta_only_with_the_ports_running_read)
{
    uint8_t info[128];
    size_t len = 0;

    setup(40000u, 1);
    REQUIRE_EQ_INT(fake_v2_reset(), BLE_OTA_OK);
    connect_as(CONN);
    REQUIRE_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_V2_CONTROL, info, sizeof(info), &len), 0);
    CHECK_EQ_HEX(info[1] & 0x10u, 0);
    /* a delta BEGIN to a device without it: BAD_REQUEST, nothing opened */
    CHECK_EQ_INT(begin_delta(CONN, 0, s_base_sha, s_patch_len, NULL), 4);
    CHECK_EQ_INT(fv2.opens, 0);

    device_running_base();
    connect_as(CONN);
    REQUIRE_EQ_INT(ble_ota_on_read(CONN, BLE_OTA_CHR_V2_CONTROL, info, sizeof(info), &len), 0);
    CHECK_EQ_HEX(info[1], 0x17); /* deflate, resume, manifest, delta */
    /* the delta port must give both primitives or none */
    fake_v2_port_delta.running_read = NULL;
    CHECK_EQ_INT(ble_ota_v2_attach(&fake_v2_port_delta), BLE_OTA_ERR_INVALID_ARG);
}

TEST(a_patch_of_a_changed_image_rebuilds_the_full_images_bytes_plain_and_deflated)
{
    uint8_t st;

    setup(150000u, 2);
    for (int z = 0; z < 2; z++) {
        const uint8_t *data = z ? s_z : s_patch;
        uint32_t len = z ? s_z_len : s_patch_len;

        device_running_base();
        connect_as(CONN);
        REQUIRE_EQ_INT(begin_delta(CONN, (uint8_t)z, s_base_sha, len, NULL), 0);
        CHECK_EQ_INT(stream(CONN, data, len, 0, 0, &st), len);
        CHECK_EQ_INT(st, 0);
        CHECK_EQ_INT(end_status(CONN), 0);
        CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
        CHECK(fake.boot_set);
        CHECK(!fv2.base_read_outside);
        CHECK(fv2.base_reads > 0u);
        CHECK(!fv2.nor_violation);
        printf("  figure: %s patch of %lu bytes for an image of %lu (base %lu)\n", z ? "deflated" : "plain",
               (unsigned long)len, (unsigned long)s_img_len, (unsigned long)s_base_len);
    }
}

TEST(a_patch_resumes_after_a_lost_link_at_any_point)
{
    setup(150000u, 3);
    for (int z = 0; z < 2; z++) {
        const uint8_t *data = z ? s_z : s_patch;
        uint32_t len = z ? s_z_len : s_patch_len;
        /* inside the first COPY's numbers, inside the ADDs, at the END byte */
        uint32_t cuts[] = { 2u, 5u, 20u, len / 3u, len / 2u, len - 3u, len - 1u };

        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
            uint32_t offset = 0;
            uint8_t st;

            device_running_base();
            connect_as(CONN);
            REQUIRE_EQ_INT(begin_delta(CONN, (uint8_t)z, s_base_sha, len, NULL), 0);
            s_payload = 1u;
            (void)stream(CONN, data, len, 0, cuts[i], &st);
            s_payload = PAYLOAD;
            ble_ota_on_disconnect(CONN);
            fake_drain();
            connect_as(CONN_B);
            REQUIRE_EQ_INT(begin_delta(CONN_B, (uint8_t)z, s_base_sha, len, &offset), 0);
            CHECK_EQ_INT(offset, cuts[i]); /* every byte sent before the cut was committed */
            CHECK_EQ_INT(fv2.opens, 1); /* the held session, not a new one */
            CHECK_EQ_INT(stream(CONN_B, data, len, offset, 0, &st), len);
            CHECK_EQ_INT(st, 0);
            CHECK_EQ_INT(end_status(CONN_B), 0);
            CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
        }
    }
}

TEST(a_long_copy_keeps_the_client_informed_with_acks_at_the_committed_offset)
{
    uint8_t st;
    uint32_t acks = 0;
    uint32_t before;

    setup(150000u, 7);
    memcpy(s_img, s_base, s_base_len); /* the image: the base with 2000 bytes appended */
    host_sha256(s_img, s_img_len, s_img_sha);
    s_patch_len = 0;
    patch_copy(0, s_base_len); /* 150 KB of flash work from 4 patch bytes */
    patch_add(&s_img[s_base_len], s_img_len - s_base_len);
    patch_byte(0);
    device_running_base();
    connect_as(CONN);
    REQUIRE_EQ_INT(begin_delta(CONN, 0, s_base_sha, s_patch_len, NULL), 0);
    before = fv2.n_notes;
    CHECK_EQ_INT(stream(CONN, s_patch, s_patch_len, 0, 0, &st), s_patch_len);
    for (uint32_t i = before; i < fv2.n_notes; i++) {
        acks += fv2.notes[i].data[0] == 0x91 && fv2.notes[i].data[1] == 0u;
    }
    /* one per 64 KB copied (2), and the one at the end of the stream */
    CHECK_EQ_INT(acks, 3);
    CHECK_EQ_INT(end_status(CONN), 0);
    CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
}

TEST(a_base_that_is_not_the_running_image_is_refused_before_any_erase)
{
    uint8_t other[32];

    setup(40000u, 4);
    device_running_base();
    connect_as(CONN);
    memcpy(other, s_base_sha, 32);
    other[0] ^= 1u;
    CHECK_EQ_INT(begin_delta(CONN, 0, other, s_patch_len, NULL), 19);
    CHECK_EQ_INT(fv2.opens, 0);
    CHECK_EQ_INT(fv2.erase_calls, 0);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "the patch's base is not the running image"));
    /* the full image goes on as before */
    {
        uint8_t cmd[44];
        uint8_t st;

        cmd[0] = 0x10;
        cmd[1] = 0;
        cmd[2] = FV2_CHIP_ID;
        cmd[3] = 0;
        put_u32(&cmd[4], s_img_len);
        memcpy(&cmd[8], s_img_sha, 32);
        put_u32(&cmd[40], s_img_len);
        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, cmd, sizeof(cmd), true), 0);
        fake_drain();
        CHECK_EQ_INT(stream(CONN, s_img, s_img_len, 0, 0, &st), s_img_len);
        CHECK_EQ_INT(end_status(CONN), 0);
        CHECK_MEM_EQ(fv2.mem, s_img, s_img_len);
    }
    /* a BEGIN of 44 bytes with the delta flag is malformed */
    {
        uint8_t cmd[44] = { 0x10, 0x10 };
        uint32_t before = fv2.n_notes;

        REQUIRE_EQ_INT(ble_ota_on_write(CONN, BLE_OTA_CHR_V2_CONTROL, cmd, sizeof(cmd), true), 0);
        fake_drain();
        REQUIRE(fv2.n_notes > before);
        CHECK_EQ_INT(fv2.notes[before].data[0], 0x90);
        CHECK_EQ_INT(fv2.notes[before].data[1], 4);
    }
}

/* Streams a patch with BEGIN's flags and expects BAD_PATCH at once in a WINDOW_ACK and again at
 * END, nothing set to boot, no base read outside the base. */
static void refused(const char *what, uint8_t expect, const char *logged)
{
    uint8_t st = 0;

    device_running_base();
    connect_as(CONN);
    REQUIRE_EQ_INT(begin_delta(CONN, 0, s_base_sha, s_patch_len, NULL), 0);
    (void)stream(CONN, s_patch, s_patch_len, 0, 0, &st);
    CHECK_MSG(st == expect, "%s: ack status %u, expected %u", what, st, expect);
    CHECK_MSG(end_status(CONN) == expect, "%s: END status", what);
    CHECK_MSG(!fake.boot_set, "%s: nothing may boot", what);
    CHECK_MSG(!fv2.base_read_outside, "%s: read outside the base", what);
    CHECK_MSG(fake_logged(BLE_OTA_LOG_ERROR, logged), "%s: log says '%s'", what, logged);
}

TEST(every_malformed_patch_is_refused_with_bad_patch_and_nothing_is_installed)
{
    static uint8_t lit[4096];

    setup(40000u, 5);
    memset(lit, 0xE9, sizeof(lit));

    /* a COPY that reads past the base's end */
    s_patch_len = 0;
    patch_copy(0, 100);
    patch_copy(s_base_len - 10u, 11u);
    patch_byte(0);
    refused("copy past the base", 20, "copies from outside the running image");

    /* a COPY whose offset + length wraps around 2^32 */
    s_patch_len = 0;
    patch_copy(0, 100);
    patch_copy(0xFFFFFFF0u, 0x20u);
    patch_byte(0);
    refused("copy that wraps", 20, "copies from outside the running image");

    /* a DIFF that reads past the base's end, and one past image_size */
    s_patch_len = 0;
    patch_copy(0, 100);
    patch_byte(0x03);
    patch_varint(s_base_len - 4u);
    patch_varint(8u);
    for (int i = 0; i < 8; i++) {
        patch_byte(1);
    }
    patch_byte(0);
    refused("diff past the base", 20, "copies from outside the running image");
    s_patch_len = 0;
    patch_copy(0, s_base_len);
    patch_byte(0x03);
    patch_varint(0);
    patch_varint(s_img_len - s_base_len + 1u);
    refused("diff past image_size", 20, "writes past BEGIN's image_size");

    /* an ADD past image_size */
    s_patch_len = 0;
    patch_copy(0, s_base_len);
    patch_add(lit, s_img_len - s_base_len + 1u);
    patch_byte(0);
    refused("add past image_size", 20, "writes past BEGIN's image_size");

    /* a COPY past image_size (the base is larger than what is left) */
    s_patch_len = 0;
    patch_add(lit, 16u);
    patch_copy(0, s_img_len);
    patch_byte(0);
    refused("copy past image_size", 20, "writes past BEGIN's image_size");

    /* an op after END */
    s_patch_len = 0;
    patch_copy(0, s_base_len);
    patch_copy(0, s_img_len - s_base_len);
    patch_byte(0);
    patch_add(lit, 1u);
    refused("op after END", 20, "bytes after the patch's END");

    /* no END: the stream ends after the image is whole */
    s_patch_len = 0;
    patch_copy(0, s_base_len);
    patch_copy(0, s_img_len - s_base_len);
    refused("no END", 20, "ended without its END op");

    /* no END: the stream ends inside an op */
    s_patch_len = 0;
    patch_copy(0, 1000u);
    patch_byte(0x02);
    patch_varint(100u);
    patch_add(lit, 10u); /* part of the ADD's 100 literal bytes */
    refused("stream ends inside an ADD", 20, "ended without its END op");

    /* END before the image is whole */
    s_patch_len = 0;
    patch_copy(0, 1000u);
    patch_byte(0);
    refused("early END", 20, "ends before the image is whole");

    /* an unknown op and a number that is not a u32 */
    s_patch_len = 0;
    patch_copy(0, 1000u);
    patch_byte(0x07);
    refused("unknown op", 20, "unknown patch op");
    s_patch_len = 0;
    patch_copy(0, 1000u);
    patch_byte(0x01);
    for (int i = 0; i < 5; i++) {
        patch_byte(0xFF);
    }
    patch_byte(0x01);
    refused("a 6-byte varint", 20, "not a 32-bit varint");

    /* a patch of zero-length ops that would never end */
    s_patch_len = 0;
    for (int i = 0; i < 100; i++) {
        patch_byte(0x02);
        patch_byte(0x00);
    }
    refused("zero-length ops", 20, "length 0");

    /* a full image sent as a patch: its first byte 0xE9 is no op */
    memcpy(s_patch, s_img, s_img_len);
    s_patch_len = s_img_len;
    refused("full image with the delta flag", 20, "unknown patch op");
}

TEST(a_bad_patch_counts_for_the_refusal_back_off)
{
    ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;
    uint8_t st = 0;

    /* a replayed BEGIN with a patch that copies from outside the base: its slot was opened and
     * erased before the patch gave itself away, so it costs what a mismatching image costs */
    setup(40000u, 9);
    s_patch_len = 0;
    patch_copy(0, 100);
    patch_copy(s_base_len - 10u, 11u);
    patch_byte(0);
    cfg.refusal_backoff_max_ms = 64000u;
    device_running_base_cfg(&cfg);
    connect_as(CONN);
    REQUIRE_EQ_INT(begin_delta(CONN, 0, s_base_sha, s_patch_len, NULL), 0);
    (void)stream(CONN, s_patch, s_patch_len, 0, 0, &st);
    CHECK_EQ_INT(st, 20);
    CHECK(fake_logged(BLE_OTA_LOG_WARN, "1 refused update(s) in a row: BEGIN is answered BUSY for 1000 ms"));
    CHECK_EQ_INT(begin_delta(CONN, 0, s_base_sha, s_patch_len, NULL), 8);
}

TEST(the_rebuilt_image_goes_through_the_same_checks_as_a_full_one)
{
    uint8_t st;

    setup(40000u, 6);
    /* a patch that rebuilds another image than BEGIN's SHA-256 names */
    s_patch_len = 0;
    patch_copy(0, s_base_len);
    {
        uint8_t tail[2000];
        memset(tail, 0x11, sizeof(tail));
        patch_add(tail, s_img_len - s_base_len);
    }
    patch_byte(0);
    device_running_base();
    connect_as(CONN);
    REQUIRE_EQ_INT(begin_delta(CONN, 0, s_base_sha, s_patch_len, NULL), 0);
    CHECK_EQ_INT(stream(CONN, s_patch, s_patch_len, 0, 0, &st), s_patch_len);
    CHECK_EQ_INT(end_status(CONN), 6); /* HASH_MISMATCH */
    CHECK(!fake.boot_set);

    /* a rebuilt image that is not an ESP image is refused at its first byte */
    s_patch_len = 0;
    patch_add((const uint8_t *)"\x7F", 1u);
    patch_copy(1, s_base_len - 1u);
    patch_byte(0);
    refused("not an ESP image", 7, "not an ESP app image");
}
