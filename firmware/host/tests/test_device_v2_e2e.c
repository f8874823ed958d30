/*
 * Protocol v2 end to end through ble-ota-device's frames, as the virtual rig drives it:
 * link requests, INFO, windowed streaming, resume, deflate, already installed, power
 * cuts; FRAME_DONE after every input frame throughout (device_harness.h).
 */
#include "device_harness.h"

#include <zlib.h>

#include "ble_ota.h"

#define CONN 1u
#define V2_CTRL 5u
#define V2_DATA 6u
#define WINDOW BLE_OTA_V2_BUFFER_SIZE
#define SLOT_ADDR 0x200000u /* ota_1 in firmware/partitions.csv: the update slot while ota_0 runs */
#define BLOCK 0x10000u

static void connect_dev(dh_dev_t *d, uint16_t mtu)
{
    uint8_t p[5];
    dh_u16(p, CONN);
    dh_u16(p + 2, mtu);
    REQUIRE(dh_call(d, 0x01, p, 4, NULL, 0) == 0);
    dh_u16(p + 2, V2_CTRL);
    p[4] = 1;
    REQUIRE(dh_call(d, 0x06, p, 5, NULL, 0) == 0);
}

/* What the rig sends once the link settled (LINK_UPDATE): 7.5 ms, this data length, 2M PHY. */
static void link_update(dh_dev_t *d, uint16_t data_length)
{
    uint8_t p[7];
    dh_u16(p, CONN);
    dh_u16(p + 2, 6);
    dh_u16(p + 4, data_length);
    p[6] = 2;
    REQUIRE(dh_call(d, 0x07, p, sizeof(p), NULL, 0) == 0);
}

static void disconnect_dev(dh_dev_t *d)
{
    uint8_t p[3];
    dh_u16(p, CONN);
    p[2] = 0x08; /* supervision timeout */
    REQUIRE(dh_call(d, 0x02, p, 3, NULL, 0) == 0);
}

/* The last NOTIFY on v2 Control with this opcode, or NULL. Payload: conn, chr, answer. */
static const uint8_t *last_answer(const dh_dev_t *d, uint8_t op)
{
    for (unsigned i = d->n_got; i-- > 0;) {
        const dh_frame_t *f = &d->got[i];
        if (f->type == 0x82 && f->len >= 6 && f->data[2] == V2_CTRL && f->data[4] == op) {
            return f->data + 4;
        }
    }
    return NULL;
}

static void read_info(dh_dev_t *d, uint8_t info[123])
{
    uint8_t p[4];
    dh_u16(p, CONN);
    dh_u16(p + 2, V2_CTRL);
    dh_clear(d);
    REQUIRE(dh_call(d, 0x05, p, 4, NULL, 0) == 0);
    int i = dh_find(d, 0x85, 0, -1, 0);
    REQUIRE(i >= 0);
    REQUIRE_EQ_INT(d->got[i].len, 5 + 123);
    CHECK_EQ_INT(d->got[i].data[4], 0);
    memcpy(info, d->got[i].data + 5, 123);
}

/* BEGIN; returns the 16-byte BEGIN_RSP (copied into rsp) status, or -1. */
static int begin(dh_dev_t *d, uint8_t flags, uint16_t chip, uint32_t size, const uint8_t sha[32], uint32_t stream,
                 uint8_t rsp[16])
{
    uint8_t h[5], cmd[44];
    dh_u16(h, CONN);
    dh_u16(h + 2, V2_CTRL);
    h[4] = 1;
    cmd[0] = 0x10;
    cmd[1] = flags;
    dh_u16(cmd + 2, chip);
    dh_u32(cmd + 4, size);
    memcpy(cmd + 8, sha, 32);
    dh_u32(cmd + 40, stream);
    dh_clear(d);
    if (dh_call(d, 0x04, h, 5, cmd, sizeof(cmd)) != 0) {
        return -1;
    }
    int w = dh_find(d, 0x84, 0, -1, 0);
    CHECK(w >= 0 && d->got[w].data[4] == 0); /* the Write Response: accepted */
    const uint8_t *a = last_answer(d, 0x90);
    if (a == NULL) {
        return -1;
    }
    memcpy(rsp, a, 16);
    return a[1];
}

typedef struct {
    uint32_t stop_after; /* stop once this many bytes were sent (0 = never) */
    uint32_t sent_bytes;
    uint32_t acked;
    uint32_t bad_crc;
    int failed_status; /* a WINDOW_ACK status other than OK/BAD_REQUEST, else -1 */
    bool gone;         /* the device died (power cut) */
} client_t;

/* Streams [start, len) with at most one window unacknowledged, as Write Commands. */
static void stream_from(dh_dev_t *d, const uint8_t *stream, uint32_t len, uint32_t start, uint16_t mtu, client_t *c)
{
    uint32_t payload = (uint32_t)mtu - 3u - 4u;
    uint32_t sent = start;
    uint8_t h[9];
    c->acked = start;
    c->failed_status = -1;
    dh_u16(h, CONN);
    dh_u16(h + 2, V2_DATA);
    h[4] = 0;
    dh_clear(d);
    while (c->acked < len) {
        if (sent < len && sent - c->acked < WINDOW) {
            uint32_t n = len - sent < payload ? len - sent : payload;
            if (n > WINDOW - (sent - c->acked)) {
                n = WINDOW - (sent - c->acked);
            }
            if (c->stop_after != 0 && c->sent_bytes >= c->stop_after) {
                return;
            }
            dh_u32(h + 5, sent);
            if (dh_call(d, 0x04, h, 9, stream + sent, n) != 0) {
                c->gone = true;
                return;
            }
            c->sent_bytes += n;
            sent += n;
        } else if (sent - c->acked >= WINDOW || sent >= len) {
            /* every ack of the frames sent so far has arrived with their FRAME_DONEs */
            CHECK_MSG(0, "window full at %u with no ack pending", c->acked);
            return;
        }
        for (unsigned i = 0; i < d->n_got; i++) {
            const dh_frame_t *f = &d->got[i];
            if (f->type != 0x82 || f->len != 14 || f->data[4] != 0x91) {
                continue;
            }
            uint32_t committed = dh_get_u32(f->data + 6);
            if (dh_get_u32(f->data + 10) != (uint32_t)crc32(0, stream, committed)) {
                c->bad_crc++;
            }
            if (f->data[5] == 0) {
                c->acked = committed;
            } else if (f->data[5] == 4) {
                sent = c->acked = committed;
            } else {
                c->failed_status = f->data[5];
                return;
            }
        }
        dh_clear(d);
    }
}

/* END; returns END_RSP's status or -1. */
static int end_cmd(dh_dev_t *d)
{
    uint8_t h[5], op = 0x11;
    dh_u16(h, CONN);
    dh_u16(h + 2, V2_CTRL);
    h[4] = 1;
    dh_clear(d);
    if (dh_call(d, 0x04, h, 5, &op, 1) != 0) {
        return -1;
    }
    const uint8_t *a = last_answer(d, 0x93);
    return a == NULL ? -1 : a[1];
}

static void running_image_sha(uint8_t sha[32])
{
    size_t len;
    char err[200];
    uint8_t *img = host_read_file(BLE_OTA_TEST_APP_IMAGE, &len, err, sizeof(err));
    REQUIRE(img != NULL);
    host_sha256(img, len, sha);
    free(img);
}

TEST(v2_update_end_to_end_with_frame_done_after_every_frame)
{
    static const uint8_t want_conn_params[11] = {1, 1, 0, 6, 0, 12, 0, 0, 0, 0x90, 0x01};
    static const uint8_t want_data_len[7] = {2, 1, 0, 251, 0, 0x48, 0x08};
    const char *flash = htu_fresh_path("v2-e2e.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    dh_dev_t d;
    uint8_t info[123], rsp[16], running[32];
    size_t len;
    uint8_t *img = dh_image_of_app("v2-e2e-2.0.0", &len);
    REQUIRE(img != NULL);
    uint8_t sha[32];
    host_sha256(img, len, sha);
    running_image_sha(running);

    dh_start(&d, create);
    dh_clear(&d);
    connect_dev(&d, 247);
    /* link requests right after CONNECT; no 2M PHY on the ESP32 */
    int lr = dh_find(&d, 0x89, 0, 1, 0);
    REQUIRE(lr >= 0);
    CHECK_EQ_INT(d.got[lr].len, 11);
    CHECK_MEM_EQ(d.got[lr].data, want_conn_params, 11);
    lr = dh_find(&d, 0x89, 0, 2, 0);
    REQUIRE(lr >= 0);
    CHECK_EQ_INT(d.got[lr].len, 7);
    CHECK_MEM_EQ(d.got[lr].data, want_data_len, 7);
    CHECK_EQ_INT(dh_find(&d, 0x89, 0, 3, 0), -1);
    CHECK_CONTAINS(d.console, "ble_ota: link: requested connection interval 7.5-15 ms, latency 0, timeout 4000 ms");
    CHECK_CONTAINS(d.console, "ble_ota: link: requested data length 251 (2120 us)");
    CHECK_CONTAINS(d.console, "ble_ota: link: 2M PHY not available on this chip");

    link_update(&d, 251);
    read_info(&d, info);
    CHECK_EQ_INT(info[0], 2);
    CHECK_EQ_HEX(info[1], 0x1f); /* deflate, resume, manifest, background erase (the default), delta */
    CHECK_EQ_HEX(info[114], 0); /* the device program enforces nothing unless told to */
    CHECK_EQ_INT(info[2] | info[3] << 8, 0);
    CHECK_EQ_HEX(dh_get_u32(info + 4), 0x1F0000); /* ota_1 in firmware/partitions.csv */
    CHECK_EQ_INT(info[8] | info[9] << 8, 244);
    CHECK_EQ_INT(dh_get_u32(info + 10), WINDOW);
    CHECK_MEM_EQ(info + 14, running, 32);
    CHECK(memcmp(info + 46, BLE_OTA_TEST_APP_VERSION, strlen(BLE_OTA_TEST_APP_VERSION)) == 0);

    unsigned erases_before = d.flash_ops[1];
    unsigned ops_before = d.flash_ops[1] + d.flash_ops[2];
    REQUIRE_EQ_INT(begin(&d, 0, 0, (uint32_t)len, sha, (uint32_t)len, rsp), 0);
    unsigned n_begin_erases = d.n_erases;
    /* BEGIN (esp_ota_begin for the first 64 KB) erased the first block, as one operation */
    REQUIRE(n_begin_erases >= 1);
    CHECK(d.erases[n_begin_erases - 1].op > ops_before);
    CHECK_EQ_HEX(d.erases[n_begin_erases - 1].addr, SLOT_ADDR);
    CHECK_EQ_HEX(d.erases[n_begin_erases - 1].len, BLOCK);
    CHECK_EQ_INT(dh_get_u32(rsp + 2), 0);
    CHECK_EQ_INT(dh_get_u32(rsp + 10), WINDOW);
    CHECK_EQ_INT(rsp[14] | rsp[15] << 8, 244);
    client_t c;
    memset(&c, 0, sizeof(c));
    stream_from(&d, img, (uint32_t)len, 0, 247, &c);
    CHECK_EQ_INT(c.acked, len);
    CHECK_EQ_INT(c.bad_crc, 0);
    CHECK_EQ_INT(c.sent_bytes, len);
    CHECK_EQ_INT(end_cmd(&d), 0);
    /* The slot is erased once, in order, from BEGIN's first block on: a 64 KB block erase
     * wherever a whole block lies within the image's sectors, sectors for the tail, never
     * past the image; the otadata sector is erased once by set_boot. */
    uint32_t image_end = SLOT_ADDR + (((uint32_t)len + 4095u) & ~4095u);
    uint32_t next = SLOT_ADDR;
    unsigned blocks = 0, sectors = 0, other = 0;
    REQUIRE(len > 2u * BLOCK);
    REQUIRE(d.n_erases < DH_MAX_ERASES);
    for (unsigned i = 0; i < d.n_erases; i++) {
        const dh_erase_t *e = &d.erases[i];
        if (e->op <= ops_before || e->addr < SLOT_ADDR || e->addr >= SLOT_ADDR + 0x1F0000u) {
            other += e->op > ops_before;
            continue;
        }
        uint32_t want = next % BLOCK == 0 && image_end - next >= BLOCK ? BLOCK : 4096u;
        CHECK_MSG(e->addr == next && e->len == want, "erase %u: 0x%x bytes at 0x%x, want 0x%x at 0x%x", i, e->len,
                  e->addr, want, next);
        if (e->len == BLOCK) {
            CHECK_EQ_HEX(e->addr % BLOCK, 0);
            blocks++;
        } else {
            sectors++;
        }
        next = e->addr + e->len;
    }
    CHECK_EQ_HEX(next, image_end);
    /* The image rounded up to whole sectors: blocks while a whole one remains, then sectors
     * (a tail that rounds up to 64 KB is one more block). */
    uint32_t erased_len = ((uint32_t)len + 4095u) & ~4095u;
    CHECK_EQ_INT(blocks, erased_len / BLOCK);
    CHECK_EQ_INT(sectors, (erased_len % BLOCK) / 4096u);
    CHECK_EQ_INT(other, 1);
    CHECK_EQ_INT(d.flash_ops[1] - erases_before, blocks + sectors + other);
    REQUIRE(dh_wait_for(&d, 0x87) == 0);
    CHECK_EQ_INT(d.reset_reason, 1);
    CHECK_CONTAINS(d.console, "v2 OTA done");
    CHECK_CONTAINS(d.console, "ble_ota: restarting into the new image");
    CHECK_EQ_INT(d.frames_done, d.frames_in);
    CHECK_EQ_INT(d.done_mismatch, 0);
    CHECK_EQ_INT(dh_end(&d), 0);
    CHECK(dh_boots_version(flash, "v2-e2e-2.0.0"));
    free(img);
}

TEST(a_2m_chip_is_asked_for_the_2m_phy_and_link_updates_are_logged)
{
    static const uint8_t want_phy[5] = {3, 1, 0, 3, 3};
    const char *flash = htu_fresh_path("v2-e2e-s3.bin");
    const char *create[] = {"--flash", flash, "--create", "--chip", "esp32s3", NULL};
    dh_dev_t d;
    dh_start(&d, create);
    dh_clear(&d);
    connect_dev(&d, 517);
    int lr = dh_find(&d, 0x89, 0, 3, 0);
    REQUIRE(lr >= 0);
    CHECK_EQ_INT(d.got[lr].len, 5);
    CHECK_MEM_EQ(d.got[lr].data, want_phy, 5);
    CHECK_CONTAINS(d.console, "ble_ota: link: requested the 2M PHY");
    uint8_t upd[7] = {1, 0, 6, 0, 251, 0, 2};
    REQUIRE(dh_call(&d, 0x07, upd, sizeof(upd), NULL, 0) == 0);
    CHECK_CONTAINS(d.console, "ble_ota: link: connection 1 now uses interval 7.50 ms, data length 251, 2M PHY");
    uint8_t info[123];
    read_info(&d, info);
    CHECK_EQ_INT(info[2] | info[3] << 8, 9);
    /* two whole 251-byte packets carry a 495-byte value (MTU 517 alone would give 514,
     * and GATT caps an attribute value at 512) */
    CHECK_EQ_INT(info[8] | info[9] << 8, 495);
    /* an ESP32 image is refused up front */
    size_t len;
    uint8_t *img = dh_image_of_app("v2-wrong-chip", &len);
    REQUIRE(img != NULL);
    uint8_t sha[32], rsp[16];
    host_sha256(img, len, sha);
    CHECK_EQ_INT(begin(&d, 0, 0, (uint32_t)len, sha, (uint32_t)len, rsp), 3);
    CHECK_EQ_INT(d.frames_done, d.frames_in);
    CHECK_EQ_INT(dh_end(&d), 0);
    free(img);
}

TEST(link_update_sizes_max_frame_to_the_data_length)
{
    const char *flash = htu_fresh_path("v2-e2e-dl.bin");
    const char *create[] = {"--flash", flash, "--create", NULL};
    dh_dev_t d;
    uint8_t info[123];
    dh_start(&d, create);
    connect_dev(&d, 256);
    /* until the link reports otherwise, 27-byte packets: nine of them carry 236 bytes */
    read_info(&d, info);
    CHECK_EQ_INT(info[8] | info[9] << 8, 236);
    link_update(&d, 251);
    CHECK_CONTAINS(d.console, "ble_ota: link: connection 1 now uses interval 7.50 ms, data length 251, 2M PHY");
    /* one 251-byte packet: 244, not MTU - 3 = 253 (that would need a second, 9-byte packet) */
    read_info(&d, info);
    CHECK_EQ_INT(info[8] | info[9] << 8, 244);
    CHECK_EQ_INT(d.frames_done, d.frames_in);
    CHECK_EQ_INT(dh_end(&d), 0);
}

TEST(already_installed_sends_nothing_and_writes_nothing)
{
    const char *flash = htu_fresh_path("v2-e2e-same.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    dh_dev_t d;
    uint8_t running[32], rsp[16];
    running_image_sha(running);
    size_t len;
    char err[200];
    uint8_t *img = host_read_file(BLE_OTA_TEST_APP_IMAGE, &len, err, sizeof(err));
    REQUIRE(img != NULL);
    dh_start(&d, create);
    connect_dev(&d, 247);
    unsigned ops = d.flash_ops[1] + d.flash_ops[2];
    CHECK_EQ_INT(begin(&d, 0, 0, (uint32_t)len, running, (uint32_t)len, rsp), 1);
    CHECK_EQ_INT(d.flash_ops[1] + d.flash_ops[2], ops);
    CHECK_CONTAINS(d.console, "this image is already running");
    CHECK_EQ_INT(dh_end(&d), 0);
    free(img);
}

TEST(compressed_update_resumed_after_a_disconnect)
{
    const char *flash = htu_fresh_path("v2-e2e-z.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    dh_dev_t d;
    size_t len;
    uint8_t *img = dh_image_of_app("v2-e2e-z", &len);
    REQUIRE(img != NULL);
    uint8_t sha[32], rsp[16], info[123];
    host_sha256(img, len, sha);
    uLongf zlen = compressBound(len);
    uint8_t *z = malloc(zlen);
    REQUIRE(z != NULL && compress2(z, &zlen, img, len, 9) == Z_OK);
    CHECK(zlen < len); /* the host image compresses */

    dh_start(&d, create);
    connect_dev(&d, 185);
    REQUIRE_EQ_INT(begin(&d, 1, 0, (uint32_t)len, sha, (uint32_t)zlen, rsp), 0);
    client_t c;
    memset(&c, 0, sizeof(c));
    c.stop_after = (uint32_t)zlen / 3u;
    stream_from(&d, z, (uint32_t)zlen, 0, 185, &c);
    uint32_t sent = c.sent_bytes;
    disconnect_dev(&d);
    CHECK_CONTAINS(d.console, "v2 session kept after the disconnect");

    connect_dev(&d, 185);
    read_info(&d, info);
    uint32_t held = dh_get_u32(info + 78);
    CHECK_EQ_INT(held, sent); /* the host's writer keeps up: everything sent was committed */
    CHECK_MEM_EQ(info + 82, sha, 32);
    REQUIRE_EQ_INT(begin(&d, 1, 0, (uint32_t)len, sha, (uint32_t)zlen, rsp), 0);
    CHECK_EQ_INT(dh_get_u32(rsp + 2), held);
    CHECK_EQ_HEX(dh_get_u32(rsp + 6), (uint32_t)crc32(0, z, held));
    memset(&c, 0, sizeof(c));
    stream_from(&d, z, (uint32_t)zlen, held, 185, &c);
    CHECK_EQ_INT(c.acked, zlen);
    CHECK_EQ_INT(sent + c.sent_bytes, zlen); /* nothing sent twice */
    CHECK_EQ_INT(end_cmd(&d), 0);
    REQUIRE(dh_wait_for(&d, 0x87) == 0);
    CHECK_EQ_INT(d.frames_done, d.frames_in);
    /* The work the rig's device cost model charges (CPU_WORK): the CRC over every compressed
     * byte received, inflate of the whole image, and SHA-256 of it once while it streams and
     * once for each esp_image_verify (esp_ota_end, esp_ota_set_boot_partition). */
    CHECK_EQ_INT(d.cpu_work[1], zlen);
    CHECK_EQ_INT(d.cpu_work[3], len);
    CHECK_EQ_INT(d.cpu_work[2], 3 * len - 2 * 32);
    CHECK_EQ_INT(dh_end(&d), 0);
    CHECK(dh_boots_version(flash, "v2-e2e-z"));
    free(z);
    free(img);
}

/* BEGIN with the delta flag: 76 bytes, the base's SHA-256 appended. Returns BEGIN_RSP's status. */
static int begin_delta(dh_dev_t *d, uint8_t flags, uint32_t size, const uint8_t sha[32], uint32_t stream,
                       const uint8_t base[32])
{
    uint8_t h[5], cmd[76];
    dh_u16(h, CONN);
    dh_u16(h + 2, V2_CTRL);
    h[4] = 1;
    cmd[0] = 0x10;
    cmd[1] = (uint8_t)(flags | 0x10u);
    dh_u16(cmd + 2, 0);
    dh_u32(cmd + 4, size);
    memcpy(cmd + 8, sha, 32);
    dh_u32(cmd + 40, stream);
    memcpy(cmd + 44, base, 32);
    dh_clear(d);
    if (dh_call(d, 0x04, h, 5, cmd, sizeof(cmd)) != 0) {
        return -1;
    }
    const uint8_t *a = last_answer(d, 0x90);
    return a == NULL ? -1 : a[1];
}

static size_t put_varint(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80u) {
        p[n++] = (uint8_t)(v | 0x80u);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* A patch of img against base in the format of docs/protocol-v2.md: COPY where the bytes at the
 * same offset agree for 16 bytes or more, ADD elsewhere (two builds of one app differ in place). */
static size_t make_patch(const uint8_t *base, size_t base_len, const uint8_t *img, size_t len, uint8_t *out)
{
    size_t o = 0, i = 0;
    while (i < len) {
        size_t run = 0;
        while (i + run < len && i + run < base_len && img[i + run] == base[i + run]) {
            run++;
        }
        if (run >= 16u) {
            out[o++] = 0x01;
            o += put_varint(out + o, (uint32_t)i);
            o += put_varint(out + o, (uint32_t)run);
            i += run;
            continue;
        }
        size_t j = i + (run > 0 ? run : 1u);
        while (j < len) { /* literal up to the next run of 16 equal bytes */
            size_t r = 0;
            while (j + r < len && j + r < base_len && r < 16u && img[j + r] == base[j + r]) {
                r++;
            }
            if (r >= 16u) {
                break;
            }
            j += r > 0 ? r : 1u;
        }
        out[o++] = 0x02;
        o += put_varint(out + o, (uint32_t)(j - i));
        memcpy(out + o, img + i, j - i);
        o += j - i;
        i = j;
    }
    out[o++] = 0x00;
    return o;
}

TEST(delta_update_rebuilds_the_image_from_the_running_slot_and_boots_it)
{
    const char *flash = htu_fresh_path("v2-e2e-delta.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    dh_dev_t d;
    size_t len, base_len;
    char err[200];
    uint8_t *base = host_read_file(BLE_OTA_TEST_APP_IMAGE, &base_len, err, sizeof(err));
    uint8_t *img = dh_image_of_app("v2-e2e-delta", &len);
    REQUIRE(base != NULL && img != NULL);
    uint8_t sha[32], base_sha[32], other[32], info[123];
    host_sha256(img, len, sha);
    host_sha256(base, base_len, base_sha);
    uint8_t *patch = malloc(2 * len + 64);
    REQUIRE(patch != NULL);
    size_t plen = make_patch(base, base_len, img, len, patch);
    uLongf zlen = compressBound(plen);
    uint8_t *z = malloc(zlen);
    REQUIRE(z != NULL && compress2(z, &zlen, patch, plen, 9) == Z_OK);
    CHECK(plen < len / 4u);
    printf("  figure: the host app image with another version: %zu bytes, patch %zu, deflated %lu\n", len, plen,
           (unsigned long)zlen);

    dh_start(&d, create);
    connect_dev(&d, 247);
    read_info(&d, info);
    CHECK_EQ_HEX(info[1] & 0x10u, 0x10);
    CHECK_MEM_EQ(info + 14, base_sha, 32);
    /* another base: refused before any erase */
    memcpy(other, base_sha, 32);
    other[5] ^= 1u;
    CHECK_EQ_INT(begin_delta(&d, 1, (uint32_t)len, sha, (uint32_t)zlen, other), 19);
    CHECK_CONTAINS(d.console, "the patch's base is not the running image");
    /* the right base: the deflated patch, cut by a lost link and resumed */
    REQUIRE_EQ_INT(begin_delta(&d, 1, (uint32_t)len, sha, (uint32_t)zlen, base_sha), 0);
    client_t c;
    memset(&c, 0, sizeof(c));
    c.stop_after = (uint32_t)zlen / 2u;
    stream_from(&d, z, (uint32_t)zlen, 0, 247, &c);
    uint32_t sent = c.sent_bytes;
    disconnect_dev(&d);
    connect_dev(&d, 247);
    REQUIRE_EQ_INT(begin_delta(&d, 1, (uint32_t)len, sha, (uint32_t)zlen, base_sha), 0);
    memset(&c, 0, sizeof(c));
    stream_from(&d, z, (uint32_t)zlen, sent, 247, &c);
    CHECK_EQ_INT(c.acked, zlen);
    CHECK_EQ_INT(c.bad_crc, 0);
    CHECK_EQ_INT(end_cmd(&d), 0);
    REQUIRE(dh_wait_for(&d, 0x87) == 0);
    CHECK_EQ_INT(dh_end(&d), 0);
    CHECK(dh_boots_version(flash, "v2-e2e-delta"));
    free(z);
    free(patch);
    free(img);
    free(base);
}

TEST(a_patch_that_reads_outside_the_base_is_refused_and_the_old_image_boots)
{
    const char *flash = htu_fresh_path("v2-e2e-badpatch.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    dh_dev_t d;
    size_t len, base_len;
    char err[200];
    uint8_t *base = host_read_file(BLE_OTA_TEST_APP_IMAGE, &base_len, err, sizeof(err));
    uint8_t *img = dh_image_of_app("v2-e2e-badpatch", &len);
    REQUIRE(base != NULL && img != NULL);
    uint8_t sha[32], base_sha[32], patch[32];
    host_sha256(img, len, sha);
    host_sha256(base, base_len, base_sha);
    size_t plen = 0;
    patch[plen++] = 0x01; /* COPY(0, 4096) then COPY(base_len - 8, 16): 8 bytes past the base */
    plen += put_varint(patch + plen, 0);
    plen += put_varint(patch + plen, 4096);
    patch[plen++] = 0x01;
    plen += put_varint(patch + plen, (uint32_t)base_len - 8u);
    plen += put_varint(patch + plen, 16);
    patch[plen++] = 0x00;

    dh_start(&d, create);
    connect_dev(&d, 247);
    REQUIRE_EQ_INT(begin_delta(&d, 0, (uint32_t)len, sha, (uint32_t)plen, base_sha), 0);
    client_t c;
    memset(&c, 0, sizeof(c));
    stream_from(&d, patch, (uint32_t)plen, 0, 247, &c);
    CHECK_EQ_INT(c.failed_status, 20);
    CHECK_CONTAINS(d.console, "copies from outside the running image");
    CHECK_EQ_INT(end_cmd(&d), 20);
    CHECK_EQ_INT(dh_end(&d), 0);
    CHECK(dh_boots_version(flash, BLE_OTA_TEST_APP_VERSION));
    free(img);
    free(base);
}

/* Runs a v2 update on a copy of base; returns END's status, or -1 if the device died. */
/* *block_op (if not NULL): the operation number of the run's last 64 KB block erase, or 0. */
static int v2_run(const char *work, const char *cut, const uint8_t *img, size_t len, const uint8_t sha[32],
                  unsigned *ops, unsigned *block_op)
{
    dh_dev_t d;
    uint8_t rsp[16];
    const char *args_cut[] = {"--flash", work, "--power-cut-at", cut, "--restart-delay-ms", "0", NULL};
    const char *args[] = {"--flash", work, "--restart-delay-ms", "0", NULL};
    dh_start(&d, cut != NULL ? args_cut : args);
    connect_dev(&d, 247);
    int st = begin(&d, 0, 0, (uint32_t)len, sha, (uint32_t)len, rsp);
    if (st == 0) {
        client_t c;
        memset(&c, 0, sizeof(c));
        stream_from(&d, img, (uint32_t)len, 0, 247, &c);
        st = c.gone ? -1 : end_cmd(&d);
        if (st == 0 && dh_wait_for(&d, 0x87) != 0) {
            st = -1;
        }
    }
    dh_close(&d);
    if (ops != NULL) {
        *ops = d.flash_ops[1] + d.flash_ops[2];
    }
    if (block_op != NULL) {
        *block_op = 0;
        for (unsigned i = 0; i < d.n_erases; i++) {
            if (d.erases[i].len == BLOCK) {
                *block_op = d.erases[i].op;
            }
        }
    }
    int code = d.exit_code;
    dh_free(&d);
    return st >= 0 ? st : (code == 137 ? -1 : -2);
}

TEST(power_cut_at_sampled_operations_of_a_v2_update_never_bricks_the_device)
{
    const char *base = htu_fresh_path("v2-cuts-base.bin");
    const char *create[] = {"--flash", base, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    dh_dev_t d;
    dh_start(&d, create);
    CHECK_EQ_INT(dh_end(&d), 0);

    size_t len;
    uint8_t *img = dh_image_of_app("v2-cuts-new", &len);
    REQUIRE(img != NULL);
    uint8_t sha[32];
    host_sha256(img, len, sha);
    const char *work = htu_fresh_path("v2-cuts-work.bin");
    htu_copy_file(base, work);
    unsigned total = 0, block_op = 0;
    REQUIRE_EQ_INT(v2_run(work, NULL, img, len, sha, &total, &block_op), 0);
    CHECK(total > 100);
    CHECK(dh_boots_version(work, "v2-cuts-new"));
    /* a 64 KB block erase is one operation: the cut lands before it or after it, never inside */
    REQUIRE(block_op > 2);

    unsigned cuts[] = {1, 2, total / 3, block_op, block_op + 1, total / 2, total * 7 / 8, total - 2, total - 1, total};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        char cut[16];
        snprintf(cut, sizeof(cut), "%u", cuts[i]);
        htu_copy_file(base, work);
        int st = v2_run(work, cut, img, len, sha, NULL, NULL);
        CHECK_MSG(st == -1, "cut at %u of %u: the update ended with %d instead of losing the device", cuts[i], total,
                  st);
        CHECK_MSG(dh_boots_version(work, BLE_OTA_TEST_APP_VERSION), "power cut at operation %u of %u: the old app did "
                                                                  "not boot",
                  cuts[i], total);
    }
    free(img);
}

/* IDLE: this much modeled time with nothing on the air (VirtualBoard.idle). */
static void idle_dev(dh_dev_t *d, uint32_t ms)
{
    uint8_t p[4];
    dh_u32(p, ms);
    REQUIRE(dh_call(d, 0x09, p, sizeof(p), NULL, 0) == 0);
}

#define PRE_LOG_ADDR 0xC000u /* the last sector of nvs (0x9000, 0x4000): port_host.c's erase record */
#define SLOT_SIZE 0x1F0000u

/* The newest valid entry of the erase record in a flash file, read as port_host.c writes it. */
static bool read_erase_record(const uint8_t *flash, uint32_t *addr, uint32_t *erased_to)
{
    bool found = false;
    uint32_t best = 0;
    *addr = *erased_to = 0;
    for (uint32_t i = 0; i < 4096u / 32u; i++) {
        const uint8_t *e = flash + PRE_LOG_ADDR + i * 32u;
        if (dh_get_u32(e) != 0x52455250u || (uint32_t)crc32(0, e, 16) != dh_get_u32(e + 16)) {
            continue;
        }
        if (!found || dh_get_u32(e + 4) > best) {
            found = true;
            best = dh_get_u32(e + 4);
            *addr = dh_get_u32(e + 8);
            *erased_to = dh_get_u32(e + 12);
        }
    }
    return found;
}

static bool all_ff(const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        if (p[i] != 0xFF) {
            return false;
        }
    }
    return true;
}

/* Erase commands that hit the update slot among the harness's erases from index `from`. */
static unsigned slot_erases(const dh_dev_t *d, unsigned from)
{
    unsigned n = 0;
    for (unsigned i = from; i < d->n_erases; i++) {
        n += d->erases[i].addr >= SLOT_ADDR && d->erases[i].addr < SLOT_ADDR + SLOT_SIZE;
    }
    return n;
}

TEST(idle_device_erases_the_update_slot_in_the_background_and_the_update_skips_those_erases)
{
    const char *flash = htu_fresh_path("v2-pre-erase.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    dh_dev_t d;
    uint8_t info[123], rsp[16];
    size_t len, flen;
    char err[200];
    uint8_t *img = dh_image_of_app("v2-pre-erased-2.0.0", &len);
    REQUIRE(img != NULL);
    uint8_t sha[32];
    host_sha256(img, len, sha);

    dh_start(&d, create);
    /* the default: only without a connection; a connected central keeps the slot as it is */
    connect_dev(&d, 247);
    idle_dev(&d, 60000);
    CHECK_EQ_INT(slot_erases(&d, 0), 0);
    read_info(&d, info);
    CHECK_EQ_HEX(info[1] & 0x08, 0x08);
    CHECK_EQ_INT(dh_get_u32(info + 119), 0);
    disconnect_dev(&d);
    /* CONFIG_BLE_OTA_PRE_ERASE_DELAY_S (30 s) after the disconnect, then one block a second */
    idle_dev(&d, 29000);
    CHECK_EQ_INT(slot_erases(&d, 0), 0);
    idle_dev(&d, 2000);
    unsigned first = slot_erases(&d, 0);
    CHECK(first >= 1 && first <= 3);
    idle_dev(&d, 40000);
    REQUIRE_EQ_INT(slot_erases(&d, 0), SLOT_SIZE / BLOCK);
    unsigned k = 0;
    for (unsigned i = 0; i < d.n_erases; i++) {
        if (d.erases[i].addr < SLOT_ADDR) {
            continue; /* the factory boot's otadata */
        }
        CHECK_EQ_HEX(d.erases[i].addr, SLOT_ADDR + k * BLOCK); /* in order, one 64 KB block each */
        CHECK_EQ_HEX(d.erases[i].len, BLOCK);
        if (k > 0) {
            CHECK_EQ_INT(d.erases[i].op, d.erases[i - 1].op + 2); /* each followed by its record write */
        }
        k++;
    }
    CHECK_CONTAINS(d.console, "pre-erase: erasing ota_1 (2031616 bytes at 0x200000) in the background");
    CHECK_CONTAINS(d.console, "pre-erase: ota_1 is erased (2031616 bytes)");
    uint8_t *fl = host_read_file(flash, &flen, err, sizeof(err));
    REQUIRE(fl != NULL);
    uint32_t addr, erased_to;
    REQUIRE(read_erase_record(fl, &addr, &erased_to));
    CHECK_EQ_HEX(addr, SLOT_ADDR);
    CHECK_EQ_HEX(erased_to, SLOT_SIZE);
    CHECK(all_ff(fl + SLOT_ADDR, SLOT_SIZE));
    free(fl);

    /* INFO says so; the update erases nothing in the slot */
    connect_dev(&d, 247);
    link_update(&d, 251);
    read_info(&d, info);
    CHECK_EQ_HEX(dh_get_u32(info + 119), SLOT_SIZE);
    unsigned erases_before = d.n_erases;
    REQUIRE_EQ_INT(begin(&d, 0, 0, (uint32_t)len, sha, (uint32_t)len, rsp), 0);
    CHECK_CONTAINS(d.console, "v2 BEGIN: ota_1 is pre-erased up to 2031616 bytes");
    client_t c;
    memset(&c, 0, sizeof(c));
    stream_from(&d, img, (uint32_t)len, 0, 247, &c);
    CHECK_EQ_INT(c.acked, len);
    CHECK_EQ_INT(end_cmd(&d), 0);
    CHECK_EQ_INT(slot_erases(&d, erases_before), 0);
    REQUIRE(dh_wait_for(&d, 0x87) == 0);
    CHECK_EQ_INT(dh_end(&d), 0);
    fl = host_read_file(flash, &flen, err, sizeof(err));
    REQUIRE(fl != NULL);
    REQUIRE(read_erase_record(fl, &addr, &erased_to));
    CHECK_EQ_INT(erased_to, 0); /* cleared before the first write */
    free(fl);
    CHECK(dh_boots_version(flash, "v2-pre-erased-2.0.0"));
    free(img);
}

TEST(a_record_that_calls_written_flash_erased_is_not_trusted)
{
    const char *flash = htu_fresh_path("v2-pre-erase-stale.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            "--pre-erase-delay-s", "0", "--pre-erase-pause-ms", "0", NULL};
    dh_dev_t d;
    uint8_t rsp[16];
    size_t len, flen;
    char err[200];
    uint8_t *img = dh_image_of_app("v2-pre-stale-2.0.0", &len);
    REQUIRE(img != NULL);
    uint8_t sha[32];
    host_sha256(img, len, sha);

    /* no delay, no pause: the whole slot right after boot */
    dh_start(&d, create);
    idle_dev(&d, 1000);
    CHECK_EQ_INT(slot_erases(&d, 0), SLOT_SIZE / BLOCK);
    CHECK_EQ_INT(dh_end(&d), 0);
    /* something the firmware does not know of writes into the slot (a serial flash of ota_1) */
    uint8_t *fl = host_read_file(flash, &flen, err, sizeof(err));
    REQUIRE(fl != NULL);
    memset(fl + SLOT_ADDR + 5 * BLOCK, 0x00, 64);
    FILE *f = fopen(flash, "r+b");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(fl, 1, flen, f) == flen);
    fclose(f);
    free(fl);

    const char *boot[] = {"--flash", flash, "--restart-delay-ms", "0", NULL};
    dh_start(&d, boot);
    connect_dev(&d, 247);
    unsigned erases_before = d.n_erases;
    REQUIRE_EQ_INT(begin(&d, 0, 0, (uint32_t)len, sha, (uint32_t)len, rsp), 0);
    CHECK_CONTAINS(d.console, "the pre-erase record says erased, but the slot holds data: erasing it again");
    client_t c;
    memset(&c, 0, sizeof(c));
    stream_from(&d, img, (uint32_t)len, 0, 247, &c);
    CHECK_EQ_INT(end_cmd(&d), 0);
    CHECK(slot_erases(&d, erases_before) >= (unsigned)(len / BLOCK)); /* erased again, as without a record */
    REQUIRE(dh_wait_for(&d, 0x87) == 0);
    CHECK_EQ_INT(dh_end(&d), 0);
    CHECK(dh_boots_version(flash, "v2-pre-stale-2.0.0"));
    free(img);
}

/* Boots work with a cut at operation `cut` (0: none) and lets 70 s pass idle; the ops it made. */
static unsigned pre_erase_run(const char *work, unsigned cut, const char *mode)
{
    dh_dev_t d;
    char cuts[16];
    snprintf(cuts, sizeof(cuts), "%u", cut);
    const char *args_cut[] = {"--flash", work, "--power-cut-at", cuts, "--power-cut-mode", mode, NULL};
    const char *args[] = {"--flash", work, NULL};
    uint8_t p[4];
    dh_start(&d, cut != 0 ? args_cut : args);
    dh_u32(p, 70000);
    int rc = dh_call(&d, 0x09, p, sizeof(p), NULL, 0);
    dh_close(&d);
    unsigned ops = d.flash_ops[1] + d.flash_ops[2];
    CHECK_MSG(cut == 0 ? (rc == 0 && d.exit_code == 0) : d.exit_code == 137, "cut %u (%s): exit %d", cut, mode,
              d.exit_code);
    dh_free(&d);
    return ops;
}

TEST(power_cut_at_every_operation_of_the_background_erase_leaves_the_record_behind_the_flash)
{
    const char *base = htu_fresh_path("v2-pre-cuts-base.bin");
    const char *create[] = {"--flash", base, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    dh_dev_t d;
    dh_start(&d, create);
    CHECK_EQ_INT(dh_end(&d), 0);
    /* an earlier image in the slot, so that "erased" is not the factory's blank */
    size_t len, flen;
    char err[200];
    uint8_t *old = dh_image_of_app("v2-pre-cuts-old", &len);
    REQUIRE(old != NULL);
    uint8_t *fl = host_read_file(base, &flen, err, sizeof(err));
    REQUIRE(fl != NULL);
    memset(fl + SLOT_ADDR, 0x5A, SLOT_SIZE);
    memcpy(fl + SLOT_ADDR, old, len);
    FILE *f = fopen(base, "r+b");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(fl, 1, flen, f) == flen);
    fclose(f);
    free(fl);
    free(old);

    uint8_t *img = dh_image_of_app("v2-pre-cuts-new", &len);
    REQUIRE(img != NULL);
    uint8_t sha[32];
    host_sha256(img, len, sha);
    const char *work = htu_fresh_path("v2-pre-cuts-work.bin");
    htu_copy_file(base, work);
    unsigned total = pre_erase_run(work, 0, "skip");
    REQUIRE_EQ_INT(total, 2 * SLOT_SIZE / BLOCK); /* a block erase and a record write per block */

    static const char *const modes[] = {"skip", "torn"};
    unsigned believed = 0, updates = 0;
    for (unsigned m = 0; m < 2; m++) {
        for (unsigned cut = 1; cut <= total; cut++) {
            htu_copy_file(base, work);
            (void)pre_erase_run(work, cut, modes[m]);
            fl = host_read_file(work, &flen, err, sizeof(err));
            REQUIRE(fl != NULL);
            uint32_t addr = 0, erased_to = 0;
            bool found = read_erase_record(fl, &addr, &erased_to);
            CHECK_MSG(!found || (addr == SLOT_ADDR && erased_to <= SLOT_SIZE && all_ff(fl + SLOT_ADDR, erased_to)),
                      "cut at %u (%s): the record says 0x%x erased at 0x%x, the flash disagrees", cut, modes[m],
                      erased_to, addr);
            believed += found && erased_to > 0;
            free(fl);
            /* then an update: it must install whatever the cut left (every 4th cut, both modes) */
            if (cut % 4 == 1 || cut == total) {
                CHECK_MSG(v2_run(work, NULL, img, len, sha, NULL, NULL) == 0, "cut at %u (%s): the update failed", cut,
                          modes[m]);
                CHECK_MSG(dh_boots_version(work, "v2-pre-cuts-new"), "cut at %u (%s): the new app did not boot", cut,
                          modes[m]);
                updates++;
            }
        }
    }
    CHECK(believed > total); /* most cuts left a record that an update used */
    CHECK(updates >= 30);
    free(img);
}

/* The value of NAME=<int> in an sdkconfig file, or fallback when it is absent. */
static int sdkconfig_int(const char *path, const char *name, int fallback)
{
    FILE *f = fopen(path, "r");
    char line[256];
    int value = fallback;
    size_t nl = strlen(name);
    REQUIRE(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, nl) == 0 && line[nl] == '=') {
            value = atoi(line + nl + 1);
        }
    }
    fclose(f);
    return value;
}

TEST(gatt_json_exports_the_v2_characteristics)
{
    char buf[4096];
    CHECK_EQ_INT(dh_gatt_json(buf, sizeof(buf)), 0);
    CHECK_CONTAINS(buf, "{\"id\":5,\"name\":\"v2_control\",\"uuid\":\"44d90618-0f1a-4804-b9c7-a5ae29118ffa\","
                        "\"properties\":[\"read\",\"write\",\"notify\"],\"writeSecurity\":\"open\"}");
    CHECK_CONTAINS(buf, "{\"id\":6,\"name\":\"v2_data\",\"uuid\":\"fe4a130e-1430-449c-bc25-1c299d409db4\","
                        "\"properties\":[\"write\",\"writeWithoutResponse\"],\"writeSecurity\":\"open\"}");
    /* then the controller's receive buffering, from firmware/sdkconfig.defaults, for the rig */
    char want[128];
    snprintf(want, sizeof(want), "]}],\"controller\":{\"aclRxBuffers\":%u,\"preferredMtu\":%u}}\n",
             (unsigned)BLE_OTA_TEST_ACL_FROM_LL_COUNT, (unsigned)BLE_OTA_TEST_PREFERRED_MTU);
    size_t n = strlen(buf), wn = strlen(want);
    CHECK(n > wn && strcmp(buf + n - wn, want) == 0);
    CHECK(strncmp(buf, "{\"services\":[", 13) == 0);
    /* CONFIG_BLE_OTA_LINK_SECURITY: every OTA write needs it, the Device Information reads do not */
    CHECK_EQ_INT(dh_gatt_json_with(buf, sizeof(buf), "encrypted"), 0);
    const char *p = buf;
    int secured = 0;
    while ((p = strstr(p, "\"writeSecurity\":\"encrypted\"")) != NULL) {
        secured++;
        p++;
    }
    CHECK_EQ_INT(secured, 4);
    CHECK(strstr(buf, "\"name\":\"model_number\",\"uuid\":\"2a24\",\"properties\":[\"read\"]}") != NULL);
    CHECK_EQ_INT(dh_gatt_json_with(buf, sizeof(buf), "sloppy"), 2);
    CHECK_EQ_INT(BLE_OTA_TEST_ACL_FROM_LL_COUNT, sdkconfig_int(BLE_OTA_TEST_SDKCONFIG_DEFAULTS,
                                                               "CONFIG_BT_NIMBLE_TRANSPORT_ACL_FROM_LL_COUNT", 24));
    CHECK_EQ_INT(BLE_OTA_TEST_PREFERRED_MTU,
                 sdkconfig_int(BLE_OTA_TEST_SDKCONFIG_DEFAULTS, "CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU", 256));
}
