/*
 * Drives ble-ota-device through its frames the way the virtual rig does, one input
 * frame at a time: each frame is sent, then everything the device answers is read up
 * to its FRAME_DONE, so every test that uses dh_call also checks that FRAME_DONE
 * follows every input frame (a missing one is a timeout).
 */
#ifndef DEVICE_HARNESS_H
#define DEVICE_HARNESS_H

#include "host_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#define DH_MAX_NOTES 4096
#define DH_MAX_ERASES 1024

typedef struct {
    unsigned op; /* 1-based counted operation (erases and writes), what --power-cut-at takes */
    uint32_t addr;
    uint32_t len;
} dh_erase_t;

typedef struct {
    uint8_t type;
    uint16_t len;
    uint8_t data[128];
} dh_frame_t;

typedef struct {
    pid_t pid;
    int in;
    int out;
    char *console;
    size_t console_len;
    unsigned flash_ops[4];
    dh_erase_t erases[DH_MAX_ERASES]; /* every FLASH_OP erase, in order */
    unsigned n_erases;
    unsigned frames_in;   /* input frames sent */
    unsigned frames_done; /* FRAME_DONE frames received */
    uint64_t cpu_work[8]; /* CPU_WORK amounts by kind (HOST_CPU_*) */
    unsigned done_mismatch;
    /* device frames other than CONSOLE and FLASH_OP since the last dh_clear */
    dh_frame_t got[DH_MAX_NOTES];
    unsigned n_got;
    unsigned n_taken; /* got[] before this index were taken by dh_expect */
    bool reset_seen;
    uint8_t reset_reason;
    int exit_code;
} dh_dev_t;

static inline void dh_spawn(dh_dev_t *d, const char *const *extra)
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

static inline int dh_read_exact(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 30000) <= 0) {
            return -1;
        }
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0) {
            return -1;
        }
        got += (size_t)k;
    }
    return 0;
}

/* Reads one device frame and files it. Returns its type, or -1 when the device is gone. */
static inline int dh_read_frame(dh_dev_t *d, uint8_t *last_done_type)
{
    static uint8_t buf[0x10000];
    uint8_t hdr[3];
    if (dh_read_exact(d->out, hdr, 3) != 0) {
        return -1;
    }
    size_t len = (size_t)(hdr[1] | hdr[2] << 8);
    if (len && dh_read_exact(d->out, buf, len) != 0) {
        return -1;
    }
    switch (hdr[0]) {
    case 0x83:
        d->console = realloc(d->console, d->console_len + len + 1);
        memcpy(d->console + d->console_len, buf, len);
        d->console_len += len;
        d->console[d->console_len] = 0;
        break;
    case 0x88:
        if (len == 9 && buf[0] >= 1 && buf[0] <= 3) {
            d->flash_ops[buf[0]]++;
            if (buf[0] == 1 && d->n_erases < DH_MAX_ERASES) {
                dh_erase_t *e = &d->erases[d->n_erases++];
                e->op = d->flash_ops[1] + d->flash_ops[2];
                e->addr = (uint32_t)buf[1] | (uint32_t)buf[2] << 8 | (uint32_t)buf[3] << 16 | (uint32_t)buf[4] << 24;
                e->len = (uint32_t)buf[5] | (uint32_t)buf[6] << 8 | (uint32_t)buf[7] << 16 | (uint32_t)buf[8] << 24;
            }
        }
        break;
    case 0x8B:
        if (len == 5 && buf[0] < 8) {
            d->cpu_work[buf[0]] +=
                (uint32_t)buf[1] | (uint32_t)buf[2] << 8 | (uint32_t)buf[3] << 16 | (uint32_t)buf[4] << 24;
        }
        break;
    case 0x8A:
        d->frames_done++;
        if (last_done_type != NULL && len == 1) {
            *last_done_type = buf[0];
        }
        break;
    default:
        if (hdr[0] == 0x87 && len == 1) {
            d->reset_seen = true;
            d->reset_reason = buf[0];
        }
        if (d->n_got == DH_MAX_NOTES && d->n_taken > 0) {
            /* A long exchange (a baseline upload files a WRITE_RSP and a FRAME_DONE per packet):
             * make room by dropping what dh_expect already took, instead of the new frame. */
            memmove(d->got, d->got + d->n_taken, (d->n_got - d->n_taken) * sizeof(d->got[0]));
            d->n_got -= d->n_taken;
            d->n_taken = 0;
        }
        if (d->n_got < DH_MAX_NOTES) {
            dh_frame_t *f = &d->got[d->n_got++];
            f->type = hdr[0];
            f->len = (uint16_t)len;
            memcpy(f->data, buf, len < sizeof(f->data) ? len : sizeof(f->data));
        }
        break;
    }
    return hdr[0];
}

/* Reads until a frame of `type` (filed like the others). Returns 0, or -1. */
static inline int dh_wait_for(dh_dev_t *d, uint8_t type)
{
    for (;;) {
        int t = dh_read_frame(d, NULL);
        if (t < 0) {
            return -1;
        }
        if (t == type) {
            return 0;
        }
    }
}

/* Sends one frame and reads up to its FRAME_DONE. Returns 0, or -1 if the device is gone
 * (power cut, restart) before it. */
static inline int dh_call(dh_dev_t *d, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    uint8_t hdr[3] = {type, (uint8_t)((alen + blen) & 0xFF), (uint8_t)((alen + blen) >> 8)};
    if (write(d->in, hdr, 3) != 3 || (alen && write(d->in, a, alen) != (ssize_t)alen) ||
        (blen && write(d->in, b, blen) != (ssize_t)blen)) {
        return -1;
    }
    d->frames_in++;
    for (;;) {
        uint8_t done_type = 0;
        int t = dh_read_frame(d, &done_type);
        if (t < 0) {
            return -1;
        }
        if (t == 0x8A) {
            if (done_type != type) {
                d->done_mismatch++;
            }
            return 0;
        }
    }
}

static inline void dh_clear(dh_dev_t *d)
{
    d->n_got = 0;
    d->n_taken = 0;
}

/* Reads the device's output as a stream: the next frame of `type` after the ones already taken
 * (frames of other types on the way are taken too), from those filed or, once they are used up,
 * from the device. Copies up to cap bytes of its payload; returns the payload's length, or -1
 * when the device is gone first. */
static inline int dh_expect(dh_dev_t *d, uint8_t type, uint8_t *payload, size_t cap)
{
    for (;;) {
        while (d->n_taken < d->n_got) {
            const dh_frame_t *f = &d->got[d->n_taken++];
            if (f->type == type) {
                size_t n = f->len < cap ? f->len : cap;
                n = n < sizeof(f->data) ? n : sizeof(f->data);
                if (n != 0) {
                    memcpy(payload, f->data, n);
                }
                return f->len;
            }
        }
        /* everything filed was taken: start over, so a long exchange never fills got[] */
        dh_clear(d);
        if (dh_read_frame(d, NULL) < 0) {
            return -1;
        }
    }
}

/* Index of the n-th filed frame of a type whose payload (after the skip bytes) starts with
 * first, or -1. first < 0 matches any. */
static inline int dh_find(const dh_dev_t *d, uint8_t type, size_t skip, int first, unsigned nth)
{
    for (unsigned i = 0; i < d->n_got; i++) {
        const dh_frame_t *f = &d->got[i];
        if (f->type == type && f->len > skip && (first < 0 || f->data[skip] == (uint8_t)first)) {
            if (nth == 0) {
                return (int)i;
            }
            nth--;
        }
    }
    return -1;
}

static inline int dh_close(dh_dev_t *d)
{
    close(d->in);
    while (dh_read_frame(d, NULL) >= 0) {
    }
    int status = 0;
    REQUIRE(waitpid(d->pid, &status, 0) == d->pid);
    close(d->out);
    d->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return d->exit_code;
}

static inline void dh_free(dh_dev_t *d)
{
    free(d->console);
    d->console = NULL;
}

/* Starts the device with these arguments and waits until it advertises (REQUIREd). */
static inline void dh_start(dh_dev_t *d, const char *const *args)
{
    dh_spawn(d, args);
    REQUIRE(dh_expect(d, 0x80, NULL, 0) >= 1);
}

/* dh_close then dh_free; returns the exit code. */
static inline int dh_end(dh_dev_t *d)
{
    int code = dh_close(d);
    dh_free(d);
    return code;
}

/* Boots the flash once without input: whether it advertised with `version` on the console
 * (the console goes to stderr when not). */
static inline int dh_boots_version(const char *flash, const char *version)
{
    dh_dev_t d;
    const char *boot[] = {"--flash", flash, NULL};
    dh_spawn(&d, boot);
    int ok = dh_expect(&d, 0x80, NULL, 0) >= 1;
    char want[128];
    snprintf(want, sizeof(want), "App version:      %s\033", version);
    ok = ok && htu_contains(d.console, want);
    if (!ok) {
        fprintf(stderr, "boot of %s did not run %s:\n%s\n", flash, version, d.console);
    }
    dh_end(&d);
    return ok;
}

/* Runs ble-ota-device --gatt-json: its stdout into buf (NUL-terminated), returns its exit code. */
static inline int dh_gatt_json_with(char *buf, size_t cap, const char *link_security)
{
    dh_dev_t d;
    const char *plain[] = {"--gatt-json", NULL};
    const char *with_level[] = {"--link-security", link_security, "--gatt-json", NULL};
    const char **args = link_security != NULL ? with_level : plain;
    dh_spawn(&d, args);
    close(d.in);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < cap && (k = read(d.out, buf + got, cap - 1 - got)) > 0) {
        got += (size_t)k;
    }
    buf[got] = 0;
    int status = 0;
    pid_t waited = waitpid(d.pid, &status, 0);
    close(d.out);
    dh_free(&d);
    if (waited != d.pid) {
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static inline int dh_gatt_json(char *buf, size_t cap)
{
    return dh_gatt_json_with(buf, cap, NULL);
}

/* An ESP32 app image carrying the host app (what the bootloader execs), with this version. */
static inline uint8_t *dh_image_of_app(const char *version, size_t *len)
{
    char err[200];
    size_t exe_len;
    uint8_t *exe = host_read_file(BLE_OTA_TEST_APP_EXE, &exe_len, err, sizeof(err));
    if (exe == NULL) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    uint8_t *img = htu_app_image("esp32", version, exe, exe_len, len, err, sizeof(err));
    if (img == NULL) {
        fprintf(stderr, "%s\n", err);
    }
    free(exe);
    return img;
}

static inline void dh_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void dh_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t dh_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif
