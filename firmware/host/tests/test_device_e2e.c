/*
 * The device program end to end, through its frames, as the virtual rig drives it:
 * boot, baseline OTA exchange, RESET, and the next boot running what was flashed.
 */
#include "host_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

typedef struct {
    pid_t pid;
    int in;  /* our end of its stdin */
    int out; /* our end of its stdout */
    char *console;
    size_t console_len;
    unsigned flash_ops[4];
    int exited;
    int exit_code;
} dev_t_;

static void prv_spawn(dev_t_ *d, const char *const *extra)
{
    memset(d, 0, sizeof(*d));
    signal(SIGPIPE, SIG_IGN);
    int in[2], out[2];
    REQUIRE(pipe(in) == 0 && pipe(out) == 0);
    const char *argv[24];
    int n = 0;
    argv[n++] = BLE_OTA_TEST_DEVICE;
    for (; extra[n - 1] != NULL; n++) {
        argv[n] = extra[n - 1];
    }
    argv[n] = NULL;
    fflush(NULL);
    d->pid = fork();
    REQUIRE(d->pid >= 0);
    if (d->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    d->in = in[1];
    d->out = out[0];
    d->console = calloc(1, 1);
}

static void prv_send(dev_t_ *d, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    /* A device that died (power cut) makes these fail; the next prv_expect reports it. */
    uint8_t hdr[3] = {type, (uint8_t)((alen + blen) & 0xFF), (uint8_t)((alen + blen) >> 8)};
    if (write(d->in, hdr, 3) != 3 || (alen && write(d->in, a, alen) != (ssize_t)alen) ||
        (blen && write(d->in, b, blen) != (ssize_t)blen)) {
        return;
    }
}

static int prv_read_exact(int fd, uint8_t *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, timeout_ms);
        if (r <= 0) {
            return -1;
        }
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0) {
            return got == 0 ? 0 : -1;
        }
        got += (size_t)k;
    }
    return 1;
}

/* Reads frames until one of `type`; console and flash operations are collected on the way.
 * Returns the payload length, or -1 on EOF/timeout. */
static int prv_expect(dev_t_ *d, uint8_t type, uint8_t *payload, size_t cap)
{
    static uint8_t buf[0x10000];
    for (;;) {
        uint8_t hdr[3];
        if (prv_read_exact(d->out, hdr, 3, 30000) != 1) {
            return -1;
        }
        size_t len = (size_t)(hdr[1] | hdr[2] << 8);
        if (len && prv_read_exact(d->out, buf, len, 30000) != 1) {
            return -1;
        }
        if (hdr[0] == 0x83) {
            d->console = realloc(d->console, d->console_len + len + 1);
            memcpy(d->console + d->console_len, buf, len);
            d->console_len += len;
            d->console[d->console_len] = 0;
        } else if (hdr[0] == 0x88 && len == 9 && buf[0] >= 1 && buf[0] <= 3) {
            d->flash_ops[buf[0]]++;
        }
        if (hdr[0] == type) {
            size_t n = len < cap ? len : cap;
            memcpy(payload, buf, n);
            return (int)len;
        }
    }
}

static int prv_wait(dev_t_ *d)
{
    close(d->in);
    uint8_t sink[16];
    while (prv_expect(d, 0xFF, sink, sizeof(sink)) >= 0) {
    }
    int status = 0;
    REQUIRE(waitpid(d->pid, &status, 0) == d->pid);
    close(d->out);
    d->exited = 1;
    d->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return d->exit_code;
}

static void prv_free(dev_t_ *d)
{
    free(d->console);
    d->console = NULL;
}

static void prv_u16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* WRITE {conn, chr, with_response, data}; returns the WRITE_RSP status for requests. */
static int prv_write(dev_t_ *d, uint16_t chr, const uint8_t *data, size_t len, int with_rsp)
{
    uint8_t h[5];
    prv_u16le(h, 1);
    prv_u16le(h + 2, chr);
    h[4] = (uint8_t)with_rsp;
    prv_send(d, 0x04, h, 5, data, len);
    if (!with_rsp) {
        return 0;
    }
    uint8_t rsp[5];
    if (prv_expect(d, 0x84, rsp, sizeof(rsp)) != 5) {
        return -1;
    }
    return rsp[4];
}

/* The baseline exchange (SEED-PROTOCOL.md): packet size, REQUEST, data with response, DONE.
 * Returns the opcode notified after DONE. */
static int prv_baseline_upload(dev_t_ *d, const uint8_t *img, size_t len, uint16_t mtu)
{
    uint8_t p[8], note[16];
    prv_u16le(p, 1);
    prv_u16le(p + 2, mtu);
    prv_send(d, 0x01, p, 4, NULL, 0); /* CONNECT */
    prv_u16le(p + 2, 0);              /* OTA Control */
    p[4] = 1;
    prv_send(d, 0x06, p, 5, NULL, 0); /* SUBSCRIBE notify */
    uint16_t packet = (uint16_t)(mtu - 3);
    uint8_t size_le[2];
    prv_u16le(size_le, packet);
    CHECK_EQ_INT(prv_write(d, 1, size_le, 2, 1), 0);
    const uint8_t request = 0x01;
    prv_write(d, 0, &request, 1, 0); /* the baseline client sends opcodes as Write Commands */
    int n = prv_expect(d, 0x82, note, sizeof(note));
    if (n != 5) {
        return -1; /* the device is gone */
    }
    CHECK_EQ_INT(note[0] | note[1] << 8, 1);
    CHECK_EQ_INT(note[2] | note[3] << 8, 0);
    if (note[4] != 0x02) { /* REQUEST_ACK */
        return -2 - note[4];
    }
    for (size_t off = 0; off < len; off += packet) {
        size_t k = len - off < packet ? len - off : packet;
        int st = prv_write(d, 1, img + off, k, 1);
        if (st != 0) {
            return -1; /* refused, or the device is gone: the caller decides which was expected */
        }
    }
    const uint8_t done = 0x04;
    prv_write(d, 0, &done, 1, 0);
    n = prv_expect(d, 0x82, note, sizeof(note));
    return n == 5 ? note[4] : -1;
}

static uint8_t *prv_image_of_app(const char *version, size_t *len)
{
    char err[200];
    size_t exe_len;
    uint8_t *exe = host_read_file(BLE_OTA_TEST_APP_EXE, &exe_len, err, sizeof(err));
    if (exe == NULL) {
        return NULL;
    }
    host_app_image_params_t p;
    memset(&p, 0, sizeof(p));
    p.chip = host_chip_by_name("esp32");
    p.version = version;
    p.project_name = "esp_ble_ota";
    p.idf_ver = "v5.3.1";
    p.date = "Nov 24 2026";
    p.time = "22:00:00";
    p.exec = exe;
    p.exec_len = exe_len;
    host_sha256(exe, exe_len, p.elf_sha256);
    uint8_t *img = NULL;
    if (host_app_image_build(&p, &img, len, err, sizeof(err)) != 0) {
        img = NULL;
    }
    free(exe);
    return img;
}

static const char *prv_fresh_flash(const char *name)
{
    const char *path = htu_path(name);
    unlink(path);
    return path;
}

TEST(gatt_json_exports_the_layout_declared_in_c)
{
    dev_t_ d;
    const char *args[] = {"--gatt-json", NULL};
    prv_spawn(&d, args);
    close(d.in);
    char buf[4096] = {0};
    size_t got = 0;
    ssize_t k;
    while ((k = read(d.out, buf + got, sizeof(buf) - 1 - got)) > 0) {
        got += (size_t)k;
    }
    int status;
    waitpid(d.pid, &status, 0);
    close(d.out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_CONTAINS(buf, "{\"services\":[{");
    CHECK_CONTAINS(buf, "\"uuid\":\"d6f1d96d-594c-4c53-b1c6-144a1dfde6d8\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"7ad671aa-21c0-46a4-b722-270e3ae3d830\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"23408888-1f40-4cd8-9b89-ca8d45f8a5b0\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"180a\"");
    CHECK_CONTAINS(buf, "\"uuid\":\"2a24\"");
    CHECK_CONTAINS(buf, "\"id\":0,");
    CHECK_CONTAINS(buf, "\"notify\"");
    prv_free(&d);
}

TEST(baseline_exchange_then_next_boot_runs_the_new_version)
{
    const char *flash = prv_fresh_flash("e2e.bin");
    dev_t_ d;
    uint8_t hello[64];
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    prv_spawn(&d, create);
    int n = prv_expect(&d, 0x80, hello, sizeof(hello));
    REQUIRE(n >= 1);
    CHECK_EQ_INT(hello[0], 1);
    CHECK_MEM_EQ(hello + 1, "esp32", 5);
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "\033[0m\r\n");
    CHECK_CONTAINS(d.console, "ble_ota: Running partition: ota_0 at 0x10000, state valid");
    CHECK_CONTAINS(d.console, "ble_ota: advertising as \"esp32\"");

    /* Device Information: model is the chip, firmware revision the running version */
    uint8_t rd[4] = {1, 0, 3, 0};
    prv_send(&d, 0x05, rd, 4, NULL, 0);
    uint8_t rsp[64] = {0};
    n = prv_expect(&d, 0x85, rsp, sizeof(rsp) - 1);
    REQUIRE(n >= 5);
    CHECK_EQ_INT(rsp[4], 0);
    CHECK_MEM_EQ(rsp + 5, "ESP32", 5);

    size_t len;
    uint8_t *img = prv_image_of_app("e2e-2.0.0", &len);
    REQUIRE(img != NULL);
    CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 247), 0x05); /* DONE_ACK */
    uint8_t reason = 0;
    REQUIRE_EQ_INT(prv_expect(&d, 0x87, &reason, 1), 1);
    CHECK_EQ_INT(reason, 1);
    CHECK_CONTAINS(d.console, "ble_ota: restarting into the new image");
    CHECK_EQ_INT(prv_wait(&d), 0);
    CHECK(d.flash_ops[1] >= len / 4096);        /* erases */
    CHECK(d.flash_ops[2] >= len / 244);         /* one write per packet */
    prv_free(&d);

    /* next boot: the bootloader picks ota_1, the app confirms itself */
    const char *boot[] = {"--flash", flash, "--reset-reason", "sw", NULL};
    prv_spawn(&d, boot);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_CONTAINS(d.console, "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)");
    CHECK_CONTAINS(d.console, "boot: Loaded app from partition at offset 0x200000");
    CHECK_CONTAINS(d.console, "App version:      e2e-2.0.0");
    CHECK_CONTAINS(d.console, "state pending-verify");
    CHECK_CONTAINS(d.console, "Diagnostics completed successfully");
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);

    /* and the one after that still runs it: it was confirmed */
    const char *again[] = {"--flash", flash, NULL};
    prv_spawn(&d, again);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_CONTAINS(d.console, "App version:      e2e-2.0.0");
    CHECK_CONTAINS(d.console, "state valid");
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);
    free(img);
}

TEST(image_that_fails_its_self_test_is_rolled_back)
{
    const char *flash = prv_fresh_flash("e2e-selftest.bin");
    dev_t_ d;
    uint8_t hello[64];
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--restart-delay-ms", "0",
                            NULL};
    prv_spawn(&d, create);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    size_t len;
    char err[200];
    uint8_t *img = host_read_file(BLE_OTA_TEST_BAD_IMAGE, &len, err, sizeof(err));
    REQUIRE(img != NULL);
    CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x05);
    uint8_t reason = 0;
    REQUIRE_EQ_INT(prv_expect(&d, 0x87, &reason, 1), 1);
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);
    free(img);

    /* the bad image boots, fails its self-test, marks itself invalid and resets */
    const char *boot[] = {"--flash", flash, NULL};
    prv_spawn(&d, boot);
    REQUIRE_EQ_INT(prv_expect(&d, 0x87, &reason, 1), 1);
    CHECK_EQ_INT(reason, 2);
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "-bad");
    CHECK_CONTAINS(d.console, "Diagnostics failed! Start rollback to the previous version.");
    CHECK_CONTAINS(d.console, "esp_ota_ops: Rollback to previously worked partition.");
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);

    /* the bootloader goes back to the old app, which says what happened */
    prv_spawn(&d, boot);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_CONTAINS(d.console, "boot: Loaded app from partition at offset 0x10000");
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "\033");
    CHECK_CONTAINS(d.console, "ble_ota: Running partition: ota_0 at 0x10000, state valid");
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);
}

TEST(corrupt_upload_gets_done_nak_and_the_old_app_keeps_booting)
{
    const char *flash = prv_fresh_flash("e2e-corrupt.bin");
    dev_t_ d;
    uint8_t hello[64];
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    prv_spawn(&d, create);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    size_t len;
    uint8_t *img = prv_image_of_app("e2e-corrupt", &len);
    REQUIRE(img != NULL);
    img[len / 2] ^= 0x40;
    CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x06); /* DONE_NAK */
    CHECK_CONTAINS(d.console, "esp_ota_ops: New image failed verification");
    CHECK_CONTAINS(d.console, "ble_ota: esp_ota_end failed: ESP_ERR_OTA_VALIDATE_FAILED");
    uint8_t disc[3] = {1, 0, 0x13};
    prv_send(&d, 0x02, disc, 3, NULL, 0);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_EQ_INT(hello[0], 1); /* advertising again */
    CHECK_CONTAINS(d.console, "ble_ota: disconnect reason 0x213");
    CHECK_EQ_INT(prv_wait(&d), 0); /* no RESET: it just keeps running */
    prv_free(&d);
    free(img);

    const char *boot[] = {"--flash", flash, NULL};
    prv_spawn(&d, boot);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_CONTAINS(d.console, "boot: Loaded app from partition at offset 0x10000");
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "\033");
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);
}

TEST(power_cut_during_an_upload_exits_137_and_the_old_app_boots)
{
    const char *flash = prv_fresh_flash("e2e-cut.bin");
    dev_t_ d;
    uint8_t hello[64];
    size_t len;
    uint8_t *img = prv_image_of_app("e2e-cut", &len);
    REQUIRE(img != NULL);
    /* the first boot does 2 operations (otadata erase + write); cut halfway through the data */
    unsigned cut = 2 + (unsigned)(len / 514) / 2;
    char cut_s[16];
    snprintf(cut_s, sizeof(cut_s), "%u", cut);
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--power-cut-at", cut_s,
                            NULL};
    prv_spawn(&d, create);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_EQ_INT(prv_baseline_upload(&d, img, len, 517), -1); /* the link dies with the device */
    CHECK_EQ_INT(prv_wait(&d), 137);
    CHECK_EQ_INT(d.flash_ops[1] + d.flash_ops[2], cut - 1);
    prv_free(&d);
    free(img);

    const char *boot[] = {"--flash", flash, NULL};
    prv_spawn(&d, boot);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_CONTAINS(d.console, "boot: Loaded app from partition at offset 0x10000");
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);
}

TEST(bad_command_lines_say_what_to_do)
{
    dev_t_ d;
    const char *none[] = {NULL};
    prv_spawn(&d, none);
    CHECK_EQ_INT(prv_wait(&d), 2);
    prv_free(&d);
    const char *missing[] = {"--flash", htu_path("missing.bin"), NULL};
    prv_spawn(&d, missing);
    CHECK_EQ_INT(prv_wait(&d), 1);
    prv_free(&d);
}

TEST(create_for_another_chip_boots_that_chips_image_and_refuses_foreign_images)
{
    static const struct {
        const char *chip, *rom, *model, *cores;
    } chips[] = {{"esp32s3", "ESP-ROM:esp32s3-20210327", "ESP32-S3", "cpu_start: Multicore app"},
                 {"esp32c3", "ESP-ROM:esp32c3-api1-20210207", "ESP32-C3", "cpu_start: Unicore app"}};
    for (size_t i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "e2e-%s.bin", chips[i].chip);
        const char *flash = prv_fresh_flash(name);
        dev_t_ d;
        uint8_t hello[64];
        const char *create[] = {"--flash", flash, "--create", "--chip", chips[i].chip, NULL};
        prv_spawn(&d, create);
        REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
        CHECK_CONTAINS(d.console, chips[i].rom);
        CHECK_CONTAINS(d.console, chips[i].cores);
        uint8_t rd[4] = {1, 0, 3, 0};
        prv_send(&d, 0x05, rd, 4, NULL, 0);
        uint8_t rsp[64] = {0};
        int n = prv_expect(&d, 0x85, rsp, sizeof(rsp) - 1);
        REQUIRE(n >= 5);
        CHECK_EQ_STR((const char *)rsp + 5, chips[i].model);
        /* an ESP32 image is refused at DONE: esp_ota_end checks the chip id */
        size_t len;
        uint8_t *img = prv_image_of_app("e2e-wrong-chip", &len);
        REQUIRE(img != NULL);
        CHECK_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x06);
        CHECK_CONTAINS(d.console, "mismatch chip ID");
        free(img);
        CHECK_EQ_INT(prv_wait(&d), 0);
        prv_free(&d);
        /* the chip is remembered by the flash: a later boot needs no --chip */
        const char *boot[] = {"--flash", flash, NULL};
        prv_spawn(&d, boot);
        REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
        CHECK_CONTAINS(d.console, chips[i].rom);
        CHECK_EQ_INT(prv_wait(&d), 0);
        prv_free(&d);
        const char *wrong[] = {"--flash", flash, "--chip", "esp32", NULL};
        prv_spawn(&d, wrong);
        CHECK_EQ_INT(prv_wait(&d), 2);
        prv_free(&d);
    }
}

static void prv_copy_file(const char *from, const char *to)
{
    size_t len;
    char err[200];
    uint8_t *data = host_read_file(from, &len, err, sizeof(err));
    REQUIRE(data != NULL);
    FILE *f = fopen(to, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(data, 1, len, f) == len);
    fclose(f);
    free(data);
}

/* Boots the flash once without input and returns whether the console shows `version`. */
static int prv_boots_version(const char *flash, const char *version, char *console_out, size_t cap)
{
    dev_t_ d;
    uint8_t hello[64];
    const char *boot[] = {"--flash", flash, NULL};
    prv_spawn(&d, boot);
    int ok = prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1;
    char want[128];
    snprintf(want, sizeof(want), "App version:      %s\033", version);
    ok = ok && htu_contains(d.console, want);
    snprintf(console_out, cap, "%s", d.console);
    prv_wait(&d);
    prv_free(&d);
    return ok;
}

TEST(device_power_cut_at_sampled_operations_of_a_baseline_update_never_bricks_it)
{
    /* a device that has booted once, so the upload's own boot does no flash work */
    const char *base = prv_fresh_flash("e2e-cuts-base.bin");
    dev_t_ d;
    uint8_t hello[64];
    const char *create[] = {"--flash", base, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    prv_spawn(&d, create);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);

    size_t len;
    uint8_t *img = prv_image_of_app("e2e-cuts-new", &len);
    REQUIRE(img != NULL);
    const char *work = prv_fresh_flash("e2e-cuts-work.bin");

    /* the clean run: count its erase/write operations */
    prv_copy_file(base, work);
    const char *run[] = {"--flash", work, "--restart-delay-ms", "0", NULL};
    prv_spawn(&d, run);
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    REQUIRE_EQ_HEX(prv_baseline_upload(&d, img, len, 517), 0x05);
    CHECK_EQ_INT(prv_wait(&d), 0);
    unsigned total = d.flash_ops[1] + d.flash_ops[2];
    prv_free(&d);
    CHECK(total > 100);
    static char console[1 << 16];
    CHECK(prv_boots_version(work, "e2e-cuts-new", console, sizeof(console)));

    /* every cut before the last operation (the otadata entry write) keeps the old app */
    unsigned cuts[16];
    int ncuts = 0;
    cuts[ncuts++] = 1;
    cuts[ncuts++] = 2;
    for (unsigned k = 1; k < 8; k++) {
        cuts[ncuts++] = total * k / 8;
    }
    cuts[ncuts++] = total - 2; /* last data write */
    cuts[ncuts++] = total - 1; /* erase of the otadata sector */
    cuts[ncuts++] = total;     /* write of the new otadata entry */
    for (int i = 0; i < ncuts; i++) {
        char cut[16];
        snprintf(cut, sizeof(cut), "%u", cuts[i]);
        prv_copy_file(base, work);
        const char *cutrun[] = {"--flash", work, "--power-cut-at", cut, NULL};
        prv_spawn(&d, cutrun);
        REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
        int up = prv_baseline_upload(&d, img, len, 517);
        CHECK_MSG(up == -1, "cut at %u of %u: upload ended with %d instead of losing the device", cuts[i], total, up);
        CHECK_EQ_INT(prv_wait(&d), 137);
        prv_free(&d);
        int old = prv_boots_version(work, BLE_OTA_TEST_APP_VERSION, console, sizeof(console));
        CHECK_MSG(old, "power cut at operation %u of %u: the old app did not boot:\n%s", cuts[i], total, console);
    }
    free(img);
}

TEST(app_staged_in_a_file_when_memfds_are_not_executable_leaves_nothing_behind)
{
    const char *flash = prv_fresh_flash("e2e-nomemfd.bin");
    dev_t_ d;
    uint8_t hello[64];
    setenv("BLE_OTA_DEVICE_NO_MEMFD", "1", 1);
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    prv_spawn(&d, create);
    unsetenv("BLE_OTA_DEVICE_NO_MEMFD");
    REQUIRE(prv_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_CONTAINS(d.console, "App version:      " BLE_OTA_TEST_APP_VERSION "\033");
    CHECK_EQ_INT(prv_wait(&d), 0);
    prv_free(&d);
    char cmd[1024], out[256] = {0};
    snprintf(cmd, sizeof(cmd), "ls %s.app-* 2>/dev/null | wc -l", flash);
    FILE *p = popen(cmd, "r");
    REQUIRE(p != NULL);
    REQUIRE(fgets(out, sizeof(out), p) != NULL);
    pclose(p);
    CHECK_EQ_INT(atoi(out), 0);
}
