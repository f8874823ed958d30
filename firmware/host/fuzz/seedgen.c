/*
 * fuzz-seedgen OUTDIR: writes the seed corpus, the gatt and boot directories of OUTDIR.
 *
 * Each GATT seed is a transcript of a real session: a client written here plays the protocol
 * against the core behind the fuzz harness's port (the same one the fuzz target runs), reads
 * what the core notifies and answers it, and every event it sends is recorded in the fuzz input
 * format. It stops with an error if a session does not end the way it must (DONE_ACK, END_RSP
 * OK, BUSY for the intruder), so a seed is always a session that worked with today's core.
 * The images are real ESP app images (firmware/host/src/image.c); the signed ones carry a
 * Secure Boot v2 signature sector whose blocks are signed the fake way the port checks.
 *
 * The boot seeds are the otadata states real update flows go through (first boot after an
 * update, rollback, nothing to roll back to, an install, a power cut in the confirm).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ble_ota.h"
#include "chip.h"
#include "fuzz_common.h"
#include "gatt_harness.h"
#include "image.h"

#define SECTOR 4096u
#define MTU 247u
#define FRAME 240u /* v2 DATA payload: max_frame 244 at MTU 247, data length 251, minus the offset */
#define MANIFEST_PIECE 200u

static const char *s_outdir;

typedef struct {
    uint8_t *buf;
    size_t len;
    size_t cap;
} rec_t;

static rec_t s_rec;

static void prv_append(const void *p, size_t n)
{
    if (s_rec.len + n > s_rec.cap) {
        s_rec.cap = (s_rec.len + n) * 2u;
        s_rec.buf = realloc(s_rec.buf, s_rec.cap);
        FZ_CHECK(s_rec.buf != NULL, "out of memory");
    }
    if (n > 0u) {
        memcpy(s_rec.buf + s_rec.len, p, n);
    }
    s_rec.len += n;
}

static void prv_start(const uint8_t header[FZ_HEADER_LEN])
{
    s_rec.len = 0;
    prv_append(header, FZ_HEADER_LEN);
    FZ_CHECK(fz_gatt_start(header), "the seed's configuration was refused by ble_ota_init");
}

/* Sends one event to the core and records it. */
static void prv_rec(uint8_t op, uint8_t conn, const void *payload, size_t n)
{
    uint8_t head[4] = { op, conn, (uint8_t)n, (uint8_t)(n >> 8) };

    prv_append(head, sizeof(head));
    prv_append(payload, n);
    fz_gatt_apply(op, conn, payload, n);
}

static void prv_save(const char *dir, const char *name)
{
    char path[1024];
    FILE *f;

    fz_gatt_finish();
    snprintf(path, sizeof(path), "%s/%s", s_outdir, dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fz_fail("cannot create %s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof(path), "%s/%s/%s.bin", s_outdir, dir, name);
    f = fopen(path, "wb");
    FZ_CHECK(f != NULL && fwrite(s_rec.buf, 1, s_rec.len, f) == s_rec.len && fclose(f) == 0, "cannot write %s",
             path);
    printf("%s/%s.bin: %zu bytes\n", dir, name, s_rec.len);
}

/* The seed just saved, with one port fault injected (header[4], header[5]): the same client,
 * now meeting a flash, digest or radio failure of the device. */
static void prv_save_fault(const char *base, int kind, uint8_t at)
{
    static const char *const names[FZ_FAULT_COUNT] = { "none", "open", "erase", "write", "sha-start", "inflate-start",
                                                       "slot-end", "set-boot", "notify", "slot-read", "disconnect" };
    char path[1024];
    FILE *f;

    s_rec.buf[4] = (uint8_t)kind;
    s_rec.buf[5] = at;
    snprintf(path, sizeof(path), "%s/gatt/%s-fault-%s-%u.bin", s_outdir, base, names[kind], (unsigned)at);
    f = fopen(path, "wb");
    FZ_CHECK(f != NULL && fwrite(s_rec.buf, 1, s_rec.len, f) == s_rec.len && fclose(f) == 0, "cannot write %s", path);
    printf("gatt/%s-fault-%s-%u.bin: %zu bytes\n", base, names[kind], (unsigned)at, s_rec.len);
    s_rec.buf[4] = 0;
    s_rec.buf[5] = 0;
}

/* The last notification `op` on `chr` to `conn` during the last event, or NULL. */
static const uint8_t *prv_note(uint8_t conn, uint8_t chr, uint8_t op)
{
    const fz_note_t *notes;
    size_t n = fz_gatt_notes(&notes);
    const uint8_t *last = NULL;

    for (size_t i = 0; i < n; i++) {
        if (notes[i].conn == conn + 1u && notes[i].chr == chr && notes[i].data[0] == op) {
            last = notes[i].data;
        }
    }
    return last;
}

static const uint8_t *prv_expect(uint8_t conn, uint8_t chr, uint8_t op, int status, const char *what)
{
    const uint8_t *d = prv_note(conn, chr, op);

    FZ_CHECK(d != NULL, "%s: no notification 0x%02x", what, op);
    FZ_CHECK(status < 0 || d[1] == status, "%s: status %s", what, ble_ota_v2_status_name(d[1]));
    return d;
}

/* --- images ------------------------------------------------------------------- */

typedef struct {
    uint8_t *bytes;
    size_t len;
    uint8_t sha[32];
} image_t;

/* An app image for the ESP32-S3 (the harness's default chip) whose payload looks like code:
 * runs of pseudo-random bytes with repeats, so that deflate has something to do. */
static image_t prv_image(const char *version, uint32_t secure_version, size_t exec_len)
{
    host_app_image_params_t p;
    image_t img;
    uint8_t *exec = malloc(exec_len);
    uint32_t x = 0x12345678u;
    char err[200];

    FZ_CHECK(exec != NULL, "out of memory");
    for (size_t i = 0; i < exec_len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        exec[i] = (i % 64u) < 40u ? (uint8_t)(x & 0x3Fu) : exec[i - 40u];
    }
    memset(&p, 0, sizeof(p));
    p.chip = host_chip_by_id(9u);
    p.version = version;
    p.project_name = "esp_ble_ota";
    p.idf_ver = "v5.3.1";
    p.date = "Jan  1 2025";
    p.time = "00:00:00";
    p.secure_version = secure_version;
    p.exec = exec;
    p.exec_len = exec_len;
    FZ_CHECK(host_app_image_build(&p, &img.bytes, &img.len, err, sizeof(err)) == 0, "image: %s", err);
    free(exec);
    fz_sha256(img.bytes, img.len, img.sha);
    return img;
}

/* What `ble-ota sign` writes: the image padded with 0xFF to 4 KB, then a signature sector with
 * one block by `key` over the SHA-256 of the padded image. */
static image_t prv_sign(image_t in, int key)
{
    image_t out;
    size_t padded = (in.len + SECTOR - 1u) / SECTOR * SECTOR;
    uint8_t digest[32];

    out.len = padded + SECTOR;
    out.bytes = malloc(out.len);
    FZ_CHECK(out.bytes != NULL, "out of memory");
    memset(out.bytes, 0xFF, out.len);
    memcpy(out.bytes, in.bytes, in.len);
    fz_sha256(out.bytes, padded, digest);
    fz_sign_block(key, digest, out.bytes + padded);
    fz_sha256(out.bytes, out.len, out.sha);
    free(in.bytes);
    return out;
}

/* The v2 manifest of a signed image: version 1, 1 block, secure_version, version, the block. */
static size_t prv_manifest(const image_t *signed_img, uint32_t secure_version, const char *version, uint8_t *out)
{
    memset(out, 0, BLE_OTA_V2_MANIFEST_HDR);
    out[0] = BLE_OTA_V2_MANIFEST_VERSION;
    out[1] = 1u;
    fz_put_u32(&out[4], secure_version);
    memcpy(&out[8], version, strlen(version));
    memcpy(&out[BLE_OTA_V2_MANIFEST_HDR], signed_img->bytes + signed_img->len - SECTOR, BLE_OTA_SIG_BLOCK_LEN);
    return BLE_OTA_V2_MANIFEST_HDR + BLE_OTA_SIG_BLOCK_LEN;
}

/* --- clients --------------------------------------------------------------------- */

static void prv_connect(uint8_t conn, uint8_t chr)
{
    uint8_t mtu[2];
    uint8_t sub[2] = { chr, 1u };
    uint8_t dl[2];
    uint8_t phy = 2u;

    fz_put_u16(mtu, MTU);
    fz_put_u16(dl, 251u);
    prv_rec(FZ_OP_CONNECT, conn, mtu, sizeof(mtu));
    prv_rec(FZ_OP_SUBSCRIBE, conn, sub, sizeof(sub));
    prv_rec(FZ_OP_DATA_LENGTH, conn, dl, sizeof(dl));
    prv_rec(FZ_OP_PHY, conn, &phy, 1u);
}

/* The baseline: packet size, REQUEST, the image in Write Requests, DONE. With lag, the writer
 * lags behind as the flash task does on the chip: each write is deferred, and a write the core
 * refuses with Insufficient Resources (its queue full) is sent again after the writer ran. */
static void prv_baseline_as(uint8_t conn, const image_t *img, bool lag)
{
    uint8_t size[2];
    uint8_t op;
    uint32_t retries = 0;

    prv_connect(conn, BLE_OTA_CHR_OTA_CONTROL);
    fz_put_u16(size, MTU - 3u);
    prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_OTA_DATA, conn, size, sizeof(size));
    op = BLE_OTA_OP_REQUEST;
    prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_OTA_CONTROL, conn, &op, 1u);
    FZ_CHECK(prv_note(conn, BLE_OTA_CHR_OTA_CONTROL, BLE_OTA_OP_REQUEST_ACK) != NULL, "baseline: no REQUEST_ACK");
    for (size_t off = 0; off < img->len;) {
        size_t n = img->len - off < MTU - 3u ? img->len - off : MTU - 3u;
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_OTA_DATA, (uint8_t)(conn | (lag ? FZ_DEFER : 0u)), img->bytes + off, n);
        if (fz_gatt_last_att() == BLE_OTA_ATT_ERR_INSUFFICIENT_RES) {
            uint8_t steps = 4u;
            prv_rec(FZ_OP_WRITER, conn, &steps, 1u);
            retries++;
            continue;
        }
        FZ_CHECK(fz_gatt_last_att() == 0, "baseline: ATT error 0x%02x at %zu", (unsigned)fz_gatt_last_att(), off);
        off += n;
    }
    FZ_CHECK(!lag || retries > 0u, "baseline: the lagging writer never filled the queue");
    op = BLE_OTA_OP_DONE;
    prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_OTA_CONTROL, conn, &op, 1u);
    FZ_CHECK(prv_note(conn, BLE_OTA_CHR_OTA_CONTROL, BLE_OTA_OP_DONE_ACK) != NULL, "baseline: no DONE_ACK");
}

static void prv_baseline(uint8_t conn, const image_t *img)
{
    prv_baseline_as(conn, img, false);
}

/* INFO; returns the held session's offset. */
static uint32_t prv_info(uint8_t conn)
{
    const uint8_t *v;

    prv_rec(FZ_OP_READ + BLE_OTA_CHR_V2_CONTROL, conn, NULL, 0u);
    FZ_CHECK(fz_gatt_read_value(&v) == BLE_OTA_V2_INFO_LEN, "INFO is not %u bytes", (unsigned)BLE_OTA_V2_INFO_LEN);
    FZ_CHECK(fz_u16(&v[8]) == FRAME + 4u, "INFO's max_frame is %u, the client expects %u", fz_u16(&v[8]),
             FRAME + 4u);
    return fz_u32(&v[78]);
}

static void prv_send_manifest(uint8_t conn, const uint8_t *man, size_t len)
{
    uint8_t piece[3 + MANIFEST_PIECE];

    for (size_t off = 0; off < len; off += MANIFEST_PIECE) {
        size_t n = len - off < MANIFEST_PIECE ? len - off : MANIFEST_PIECE;
        piece[0] = BLE_OTA_V2_OP_MANIFEST;
        fz_put_u16(&piece[1], (uint16_t)off);
        memcpy(&piece[3], man + off, n);
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, conn, piece, 3u + n);
    }
}

static void prv_begin_cmd(uint8_t *cmd, uint8_t flags, const image_t *img, uint32_t stream_len)
{
    memset(cmd, 0, BLE_OTA_V2_BEGIN_LEN);
    cmd[0] = BLE_OTA_V2_OP_BEGIN;
    cmd[1] = flags;
    fz_put_u16(&cmd[2], 9u);
    fz_put_u32(&cmd[4], (uint32_t)img->len);
    memcpy(&cmd[8], img->sha, 32);
    fz_put_u32(&cmd[40], stream_len);
}

/* BEGIN; returns the offset BEGIN_RSP says to send from. */
static uint32_t prv_begin(uint8_t conn, uint8_t flags, const image_t *img, uint32_t stream_len)
{
    uint8_t cmd[BLE_OTA_V2_BEGIN_LEN];

    prv_begin_cmd(cmd, flags, img, stream_len);
    prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, conn, cmd, sizeof(cmd));
    return fz_u32(prv_expect(conn, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, BLE_OTA_V2_OK, "BEGIN") + 2);
}

/* DATA frames of [from, to) as Write Commands; every WINDOW_ACK must be OK. With burst, the
 * writer lags behind as a flash task does on the chip: the frames are deferred and the writer
 * runs one step every 24 frames, and catches up only when the client has a window in flight. */
static void prv_stream_as(uint8_t conn, const uint8_t *stream, uint32_t from, uint32_t to, bool burst)
{
    uint8_t frame[4 + FRAME];
    uint32_t acked = from;
    uint32_t sent = 0;

    for (uint32_t off = from; off < to; off += FRAME) {
        uint32_t n = to - off < FRAME ? to - off : FRAME;
        const uint8_t *ack;
        if (burst && off + n - acked > BLE_OTA_V2_BUFFER_SIZE) {
            uint8_t steps = 255u; /* a window in flight: wait for the writer's acknowledgement */
            prv_rec(FZ_OP_WRITER, conn, &steps, 1u);
            ack = prv_note(conn, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_WINDOW_ACK);
            FZ_CHECK(ack != NULL && ack[1] == BLE_OTA_V2_OK, "no WINDOW_ACK after the writer caught up");
            acked = fz_u32(ack + 2);
        }
        fz_put_u32(frame, off);
        memcpy(&frame[4], stream + off, n);
        prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_V2_DATA, (uint8_t)(conn | (burst ? FZ_DEFER : 0u)), frame, 4u + n);
        ack = prv_note(conn, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_WINDOW_ACK);
        if (burst && ++sent % 24u == 0u) {
            uint8_t steps = 1u;
            prv_rec(FZ_OP_WRITER, conn, &steps, 1u);
            ack = prv_note(conn, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_WINDOW_ACK);
        }
        FZ_CHECK(ack == NULL || ack[1] == BLE_OTA_V2_OK, "WINDOW_ACK %s at %u", ble_ota_v2_status_name(ack[1]),
                 (unsigned)off);
        if (ack != NULL) {
            acked = fz_u32(ack + 2);
        }
        FZ_CHECK(off + n - acked <= BLE_OTA_V2_BUFFER_SIZE, "the client overran the window");
    }
}

static void prv_stream(uint8_t conn, const uint8_t *stream, uint32_t from, uint32_t to)
{
    prv_stream_as(conn, stream, from, to, false);
}

static void prv_end(uint8_t conn)
{
    uint8_t op = BLE_OTA_V2_OP_END;
    uint32_t before = fz_gatt_restarts();

    prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, conn, &op, 1u);
    prv_expect(conn, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_END_RSP, BLE_OTA_V2_OK, "END");
    FZ_CHECK(fz_gatt_restarts() == before + 1u, "END_RSP OK without a restart");
}

static void prv_v2(uint8_t conn, const image_t *img, const uint8_t *stream, uint32_t stream_len, uint8_t flags,
                   const uint8_t *man, size_t man_len)
{
    uint32_t from;

    prv_connect(conn, BLE_OTA_CHR_V2_CONTROL);
    (void)prv_info(conn);
    if (man != NULL) {
        prv_send_manifest(conn, man, man_len);
    }
    from = prv_begin(conn, flags, img, stream_len);
    prv_stream(conn, stream, from, stream_len);
    prv_end(conn);
}

static uint8_t *prv_deflate(const image_t *img, uint32_t *len)
{
    uLongf n = compressBound(img->len);
    uint8_t *out = malloc(n);

    FZ_CHECK(out != NULL && compress2(out, &n, img->bytes, img->len, 9) == Z_OK, "zlib compress2 failed");
    *len = (uint32_t)n;
    return out;
}

/* A port with everything (v2, deflate, signatures, link tuning), security() present. */
static void prv_header(uint8_t *h, uint8_t security, uint8_t min_sv, uint8_t pin)
{
    memset(h, 0, FZ_HEADER_LEN);
    h[0] = (uint8_t)(FZ_F_V2 | FZ_F_INFLATE | FZ_F_SIGNATURES | FZ_F_LINK | (pin << FZ_F_PIN_SHIFT));
    h[1] = (uint8_t)(FZ_S_SECURITY | security);
    h[2] = min_sv;
    h[3] = 0x01u | 0x02u; /* trusts keys A and B, reads all blocks */
}

static void prv_gatt_seeds(void)
{
    uint8_t h[FZ_HEADER_LEN];
    uint8_t man[BLE_OTA_V2_MANIFEST_MAX];
    size_t man_len;
    image_t img = prv_image("1.3.0", 1u, 20000u);
    /* Larger than the 64 KB that BEGIN erases: the core erases ahead, by blocks and sectors. */
    image_t big = prv_image("1.3.0", 1u, 150000u);
    image_t signed_img = prv_sign(prv_image("1.3.0", 2u, 14000u), FZ_KEY_A);
    uint32_t z_len;
    uint8_t *z = prv_deflate(&img, &z_len);

    prv_header(h, 0u, 0u, 0u);
    prv_start(h);
    prv_v2(0u, &big, big.bytes, (uint32_t)big.len, 0u, NULL, 0u);
    prv_save("gatt", "v2-plain");

    /* The same with the writer lagging behind a client that keeps a window in flight. */
    prv_start(h);
    prv_connect(0u, BLE_OTA_CHR_V2_CONTROL);
    (void)prv_info(0u);
    (void)prv_begin(0u, 0u, &big, (uint32_t)big.len);
    prv_stream_as(0u, big.bytes, 0u, (uint32_t)big.len, true);
    prv_end(0u);
    prv_save("gatt", "v2-window-burst");

    man_len = prv_manifest(&signed_img, 2u, "1.3.0", man);

    /* The same with the key pinned (CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS), compressed. */
    prv_header(h, FZ_S_SIGNED_ONLY | FZ_S_ANTI_ROLLBACK, 1u, 1u);
    {
        uint32_t sz_len;
        uint8_t *sz = prv_deflate(&signed_img, &sz_len);
        prv_start(h);
        prv_v2(0u, &signed_img, sz, sz_len, BLE_OTA_V2_BEGIN_MANIFEST | BLE_OTA_V2_BEGIN_DEFLATE, man, man_len);
        prv_save("gatt", "v2-signed-deflate-pinned");
        free(sz);
    }

    /* Signed updates only over the baseline: checked at DONE. */
    prv_header(h, FZ_S_SIGNED_ONLY, 0u, 0u);
    prv_start(h);
    prv_baseline(0u, &signed_img);
    prv_save("gatt", "baseline-signed");

    /* Resumed: the link drops half-way, a new connection resumes the held session. */
    prv_header(h, 0u, 0u, 0u);
    prv_start(h);
    {
        uint32_t half = (uint32_t)img.len / 2u / FRAME * FRAME;
        uint32_t held;
        uint32_t from;
        prv_connect(0u, BLE_OTA_CHR_V2_CONTROL);
        (void)prv_info(0u);
        FZ_CHECK(prv_begin(0u, 0u, &img, (uint32_t)img.len) == 0u, "a new session starts at 0");
        prv_stream(0u, img.bytes, 0u, half);
        prv_rec(FZ_OP_DISCONNECT, 0u, NULL, 0u);
        prv_connect(1u, BLE_OTA_CHR_V2_CONTROL);
        held = prv_info(1u);
        FZ_CHECK(held > 0u && held <= half, "INFO holds offset %u after %u bytes", (unsigned)held, (unsigned)half);
        from = prv_begin(1u, 0u, &img, (uint32_t)img.len);
        FZ_CHECK(from == held, "resumed at %u, INFO said %u", (unsigned)from, (unsigned)held);
        prv_stream(1u, img.bytes, from, (uint32_t)img.len);
        prv_end(1u);
    }
    prv_save("gatt", "v2-resumed");

    /* Two links: the second one's BEGIN, DATA, ABORT and baseline REQUEST meet the session lock. */
    prv_start(h);
    {
        uint32_t third = (uint32_t)img.len / 3u / FRAME * FRAME;
        uint8_t cmd[BLE_OTA_V2_BEGIN_LEN];
        uint8_t frame[4 + 16] = { 0 };
        uint8_t op;
        prv_connect(0u, BLE_OTA_CHR_V2_CONTROL);
        (void)prv_info(0u);
        (void)prv_begin(0u, 0u, &img, (uint32_t)img.len);
        prv_stream(0u, img.bytes, 0u, third);
        prv_connect(1u, BLE_OTA_CHR_V2_CONTROL);
        prv_begin_cmd(cmd, BLE_OTA_V2_BEGIN_RESTART, &img, (uint32_t)img.len);
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, 1u, cmd, sizeof(cmd));
        prv_expect(1u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, BLE_OTA_V2_BUSY, "intruder BEGIN");
        memcpy(&frame[4], img.bytes, 16);
        prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_V2_DATA, 1u, frame, sizeof(frame));
        prv_expect(1u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_WINDOW_ACK, BLE_OTA_V2_NO_SESSION, "intruder DATA");
        op = BLE_OTA_V2_OP_ABORT;
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, 1u, &op, 1u);
        prv_expect(1u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_ABORT_RSP, BLE_OTA_V2_BUSY, "intruder ABORT");
        op = BLE_OTA_OP_REQUEST;
        prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_OTA_CONTROL, 1u, &op, 1u);
        FZ_CHECK(prv_note(1u, BLE_OTA_CHR_OTA_CONTROL, BLE_OTA_OP_REQUEST_NAK) != NULL, "intruder REQUEST: no NAK");
        prv_rec(FZ_OP_DISCONNECT, 1u, NULL, 0u);
        prv_stream(0u, img.bytes, third, (uint32_t)img.len);
        prv_end(0u);
    }
    prv_save("gatt", "v2-two-links");

    /* A client that lost END_RSP comes back within the restart delay: BEGIN of the image it
     * sent is INSTALLED_RESTARTING, another image BUSY, a baseline REQUEST REQUEST_NAK; nothing
     * opens the slot just written. Then the restart (500 ms). */
    prv_start(h);
    {
        image_t other = prv_image("1.4.0", 1u, 12000u);
        uint8_t cmd[BLE_OTA_V2_BEGIN_LEN];
        uint8_t op = BLE_OTA_OP_REQUEST;
        uint8_t ms[4];
        prv_v2(0u, &img, img.bytes, (uint32_t)img.len, 0u, NULL, 0u);
        prv_rec(FZ_OP_DISCONNECT, 0u, NULL, 0u);
        prv_connect(1u, BLE_OTA_CHR_V2_CONTROL);
        prv_begin_cmd(cmd, 0u, &img, (uint32_t)img.len);
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, 1u, cmd, sizeof(cmd));
        prv_expect(1u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, BLE_OTA_V2_INSTALLED_RESTARTING,
                   "BEGIN of the installed image");
        prv_begin_cmd(cmd, BLE_OTA_V2_BEGIN_RESTART, &other, (uint32_t)other.len);
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, 1u, cmd, sizeof(cmd));
        prv_expect(1u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, BLE_OTA_V2_BUSY, "BEGIN of another image");
        prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_OTA_CONTROL, 1u, &op, 1u);
        FZ_CHECK(prv_note(1u, BLE_OTA_CHR_OTA_CONTROL, BLE_OTA_OP_REQUEST_NAK) != NULL, "REQUEST before the restart");
        fz_put_u32(ms, 500u);
        prv_rec(FZ_OP_CLOCK, 1u, ms, sizeof(ms));
        FZ_CHECK(!fz_gatt_connected(1u), "the device did not restart");
        free(other.bytes);
    }
    prv_save("gatt", "v2-begin-before-restart");

    /* The baseline with the writer behind: Write Requests refused while its queue is full. */
    prv_header(h, 0u, 0u, 0u);
    prv_start(h);
    prv_baseline_as(0u, &img, true);
    prv_save("gatt", "baseline-writer-behind");

    /* A baseline client whose Write Commands outrun the flash: data is lost, DONE gets DONE_NAK. */
    prv_start(h);
    {
        uint8_t size[2];
        uint8_t op = BLE_OTA_OP_REQUEST;
        prv_connect(0u, BLE_OTA_CHR_OTA_CONTROL);
        fz_put_u16(size, MTU - 3u);
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_OTA_DATA, 0u, size, sizeof(size));
        prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_OTA_CONTROL, 0u, &op, 1u);
        for (size_t off = 0; off < 24u * (MTU - 3u); off += MTU - 3u) {
            prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_OTA_DATA, FZ_DEFER, img.bytes + off, MTU - 3u);
        }
        op = BLE_OTA_OP_DONE;
        prv_rec(FZ_OP_WRITE_CMD + BLE_OTA_CHR_OTA_CONTROL, 0u, &op, 1u);
        FZ_CHECK(prv_note(0u, BLE_OTA_CHR_OTA_CONTROL, BLE_OTA_OP_DONE_NAK) != NULL, "too fast: no DONE_NAK");
    }
    prv_save("gatt", "baseline-commands-too-fast");

    /* A central that connects and does nothing is dropped after the idle timeout (30 s); the
     * next one updates. */
    prv_start(h);
    {
        uint8_t mtu[2];
        uint8_t ms[4];
        uint8_t steps = 1u;
        fz_put_u16(mtu, MTU);
        fz_put_u32(ms, 31000u);
        prv_rec(FZ_OP_CONNECT, 0u, mtu, sizeof(mtu));
        prv_rec(FZ_OP_CLOCK, 0u, ms, sizeof(ms));
        prv_rec(FZ_OP_WRITER, 0u, &steps, 1u);
        FZ_CHECK(!fz_gatt_connected(0u), "the idle link was not dropped");
        prv_v2(1u, &img, img.bytes, (uint32_t)img.len, 0u, NULL, 0u);
    }
    prv_save("gatt", "v2-idle-link-dropped");

    /* A session held for its owner: another image is BUSY until the hold (60 s) ends. */
    prv_start(h);
    {
        image_t other = prv_image("1.4.0", 1u, 12000u);
        uint8_t cmd[BLE_OTA_V2_BEGIN_LEN];
        uint8_t ms[4];
        prv_connect(0u, BLE_OTA_CHR_V2_CONTROL);
        (void)prv_info(0u);
        (void)prv_begin(0u, 0u, &img, (uint32_t)img.len);
        prv_stream(0u, img.bytes, 0u, (uint32_t)img.len / 2u / FRAME * FRAME);
        prv_rec(FZ_OP_DISCONNECT, 0u, NULL, 0u);
        prv_connect(1u, BLE_OTA_CHR_V2_CONTROL);
        (void)prv_info(1u);
        prv_begin_cmd(cmd, 0u, &other, (uint32_t)other.len);
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, 1u, cmd, sizeof(cmd));
        prv_expect(1u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, BLE_OTA_V2_BUSY, "BEGIN during the hold");
        /* The client leaves and comes back after the hold (an idle link would be dropped at 30 s). */
        prv_rec(FZ_OP_DISCONNECT, 1u, NULL, 0u);
        fz_put_u32(ms, 61000u);
        prv_rec(FZ_OP_CLOCK, 1u, ms, sizeof(ms));
        prv_connect(1u, BLE_OTA_CHR_V2_CONTROL);
        FZ_CHECK(prv_begin(1u, 0u, &other, (uint32_t)other.len) == 0u, "a new session starts at 0");
        prv_stream(1u, other.bytes, 0u, (uint32_t)other.len);
        prv_end(1u);
        free(other.bytes);
    }
    prv_save("gatt", "v2-session-held");

    /* Signed updates only: BEGIN without a manifest is refused, the next BEGIN meets the
     * refusal back-off (BUSY for 1 s), and after it the signed image goes in. */
    prv_header(h, FZ_S_SIGNED_ONLY | FZ_S_ANTI_ROLLBACK, 1u, 0u);
    prv_start(h);
    {
        uint8_t cmd[BLE_OTA_V2_BEGIN_LEN];
        uint8_t ms[4];
        prv_connect(0u, BLE_OTA_CHR_V2_CONTROL);
        (void)prv_info(0u);
        prv_begin_cmd(cmd, 0u, &signed_img, (uint32_t)signed_img.len);
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, 0u, cmd, sizeof(cmd));
        prv_expect(0u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, BLE_OTA_V2_UNSIGNED, "unsigned BEGIN");
        prv_rec(FZ_OP_WRITE_RSP + BLE_OTA_CHR_V2_CONTROL, 0u, cmd, sizeof(cmd));
        prv_expect(0u, BLE_OTA_CHR_V2_CONTROL, BLE_OTA_V2_OP_BEGIN_RSP, BLE_OTA_V2_BUSY, "BEGIN in the back-off");
        fz_put_u32(ms, 2000u);
        prv_rec(FZ_OP_CLOCK, 0u, ms, sizeof(ms));
        prv_send_manifest(0u, man, man_len);
        (void)prv_begin(0u, BLE_OTA_V2_BEGIN_MANIFEST, &signed_img, (uint32_t)signed_img.len);
        prv_stream(0u, signed_img.bytes, 0u, (uint32_t)signed_img.len);
        prv_end(0u);
    }
    prv_save("gatt", "v2-refusal-backoff");

    /* The baseline, v2 with deflate, and v2 signed (updates signed only with anti-rollback, the
     * firmware's default); then the same sessions with the port failing once where each
     * failure can hit. */
    prv_header(h, 0u, 0u, 0u);
    prv_start(h);
    prv_baseline(0u, &img);
    prv_save("gatt", "baseline");
    prv_save_fault("baseline", FZ_FAULT_OPEN, 1u);
    prv_save_fault("baseline", FZ_FAULT_ERASE, 2u);
    prv_save_fault("baseline", FZ_FAULT_WRITE, 3u);
    prv_save_fault("baseline", FZ_FAULT_SHA_START, 1u);
    prv_save_fault("baseline", FZ_FAULT_END, 1u);
    prv_save_fault("baseline", FZ_FAULT_SET_BOOT, 1u);
    prv_save_fault("baseline", FZ_FAULT_NOTIFY, 1u);
    prv_start(h);
    prv_v2(0u, &img, z, z_len, BLE_OTA_V2_BEGIN_DEFLATE, NULL, 0u);
    prv_save("gatt", "v2-deflate");
    prv_save_fault("v2-deflate", FZ_FAULT_OPEN, 1u);
    prv_save_fault("v2-deflate", FZ_FAULT_WRITE, 5u);
    prv_save_fault("v2-deflate", FZ_FAULT_SHA_START, 1u);
    prv_save_fault("v2-deflate", FZ_FAULT_INFLATE, 1u);
    prv_save_fault("v2-deflate", FZ_FAULT_SET_BOOT, 1u);
    prv_save_fault("v2-deflate", FZ_FAULT_NOTIFY, 2u);
    prv_header(h, FZ_S_SIGNED_ONLY | FZ_S_ANTI_ROLLBACK, 1u, 0u);
    prv_start(h);
    prv_v2(0u, &signed_img, signed_img.bytes, (uint32_t)signed_img.len, BLE_OTA_V2_BEGIN_MANIFEST, man, man_len);
    prv_save("gatt", "v2-signed");
    prv_save_fault("v2-signed", FZ_FAULT_READ, 1u);
    prv_save_fault("v2-signed", FZ_FAULT_SHA_START, 2u);

    free(z);
    free(big.bytes);
    free(img.bytes);
    free(signed_img.bytes);
}

/* --- boot seeds ------------------------------------------------------------------ */

/* header: anti_rollback, eFuse minimum, slot 0 (kind, secure_version), slot 1 (kind, sv),
 * otadata entry 0 (seq, state, crc), entry 1 (seq, state, crc); kinds 0 blank 1 corrupt 2 good,
 * states 0 NEW 1 PENDING_VERIFY 2 VALID 3 INVALID 4 ABORTED 5 UNDEFINED, crc 0 ok 2 erased. */
static void prv_boot_seed(const char *name, const uint8_t header[12], const uint8_t *steps, size_t n_steps)
{
    char path[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/boot", s_outdir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fz_fail("cannot create %s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof(path), "%s/boot/%s.bin", s_outdir, name);
    f = fopen(path, "wb");
    FZ_CHECK(f != NULL && fwrite(header, 1, 12, f) == 12 && fwrite(steps, 3, n_steps, f) == n_steps && fclose(f) == 0,
             "cannot write %s", path);
    printf("boot/%s.bin: %zu bytes\n", name, 12u + 3u * n_steps);
}

static void prv_boot_seeds(void)
{
    /* ota_0 confirmed (seq 1), the update in ota_1 set to boot (seq 2, NEW). */
    static const uint8_t updated[12] = { 1, 1, 2, 1, 2, 2, 1, 2, 0, 2, 0, 0 };
    /* The factory state: otadata blank, the app in ota_0 only. */
    static const uint8_t factory[12] = { 1, 0, 2, 0, 0, 0, 0xFF, 0, 2, 0xFF, 0, 2 };
    /* An update in ota_1 with nothing behind it: ota_0 blank, its entry erased. */
    static const uint8_t alone[12] = { 0, 0, 0, 0, 2, 0, 0xFF, 0, 2, 2, 0, 0 };
    static const uint8_t pass[] = { 0, 0, 0, 0, 0, 0 };
    static const uint8_t fail_then_boot[] = { 0, 0x01, 0, 0, 0, 0 };
    static const uint8_t broken_sha[] = { 0, 4u << 1, 0, 0, 0, 0 };
    static const uint8_t confirm_fails[] = { 0, 0, 0x01, 0, 0, 0 };
    static const uint8_t cut_confirm[] = { 0, 0, (3u << 1) | 0x10u, 0, 0, 0, 0, 0, 0 };
    /* boot; install a good image; its first boot fails the self-test (rollback); boot; an install
     * that leaves a corrupt image; boot */
    static const uint8_t install_cycle[] = { 0, 0, 0, 1, 2, 2, 0, 0x01, 0, 0, 0, 0, 1, 1, 3, 0, 0, 0 };

    prv_boot_seed("first-boot-after-update", updated, pass, 2);
    prv_boot_seed("self-test-fails-rollback", updated, fail_then_boot, 2);
    prv_boot_seed("sha-port-broken", updated, broken_sha, 2);
    prv_boot_seed("confirm-fails", updated, confirm_fails, 2);
    prv_boot_seed("power-cut-in-confirm", updated, cut_confirm, 3);
    prv_boot_seed("nothing-to-roll-back-to", alone, fail_then_boot, 2);
    prv_boot_seed("factory-install-cycle", factory, install_cycle, 6);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz-seedgen OUTDIR (writes OUTDIR/gatt/*.bin and OUTDIR/boot/*.bin)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    s_outdir = argv[1];
    if (mkdir(s_outdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz-seedgen: cannot create %s: %s\n", s_outdir, strerror(errno));
        return 1;
    }
    prv_gatt_seeds();
    prv_boot_seeds();
    free(s_rec.buf);
    return 0;
}
