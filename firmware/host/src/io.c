#include "io.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static host_io_mode_t s_mode = HOST_IO_TEXT;
static int s_fd = 1;
static char *s_cap_text;
static size_t s_cap_text_len;
static uint8_t *s_cap_frames;
static size_t s_cap_frames_len;
static uint64_t s_t0_ns;
static char s_max_level = 'I';

/* The ROM and the bootloader's own start-up take this long before its first log line;
 * it keeps our first timestamps where a real ESP32 puts them. */
#define HOST_ROM_BOOT_MS 27u

void host_io_init(host_io_mode_t mode, int out_fd)
{
    s_mode = mode;
    s_fd = out_fd;
    if (mode == HOST_IO_FRAMES) {
        /* A rig that went away must not kill us with SIGPIPE mid-flash-write. */
        signal(SIGPIPE, SIG_IGN);
    }
}

host_io_mode_t host_io_mode(void)
{
    return s_mode;
}

static void prv_append(uint8_t **buf, size_t *len, const void *data, size_t n, int nul)
{
    uint8_t *nb = realloc(*buf, *len + n + (nul ? 1 : 0));
    if (nb == NULL) {
        abort();
    }
    memcpy(nb + *len, data, n);
    *len += n;
    if (nul) {
        nb[*len] = 0;
    }
    *buf = nb;
}

static int prv_write_all(const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(s_fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int host_io_frame(uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    size_t len = alen + blen;
    if (len > 0xFFFF) {
        return -1;
    }
    uint8_t stackbuf[512];
    uint8_t *buf = len + 3 <= sizeof(stackbuf) ? stackbuf : malloc(len + 3);
    if (buf == NULL) {
        return -1;
    }
    buf[0] = type;
    buf[1] = (uint8_t)(len & 0xFF);
    buf[2] = (uint8_t)(len >> 8);
    if (alen) {
        memcpy(buf + 3, a, alen);
    }
    if (blen) {
        memcpy(buf + 3 + alen, b, blen);
    }
    int rc = 0;
    if (s_mode == HOST_IO_FRAMES) {
        rc = prv_write_all(buf, len + 3);
    } else if (s_mode == HOST_IO_CAPTURE) {
        prv_append(&s_cap_frames, &s_cap_frames_len, buf, len + 3, 0);
    }
    if (buf != stackbuf) {
        free(buf);
    }
    return rc;
}

void host_io_console(const char *bytes, size_t len)
{
    switch (s_mode) {
    case HOST_IO_FRAMES:
        /* Chunked so no frame exceeds the u16 length. */
        for (size_t off = 0; off < len; off += 0xFFFF) {
            size_t n = len - off < 0xFFFF ? len - off : 0xFFFF;
            (void)host_io_frame(HOST_FRAME_CONSOLE, bytes + off, n, NULL, 0);
        }
        break;
    case HOST_IO_TEXT:
        (void)prv_write_all((const uint8_t *)bytes, len);
        break;
    case HOST_IO_CAPTURE:
        prv_append((uint8_t **)&s_cap_text, &s_cap_text_len, bytes, len, 1);
        break;
    }
}

void host_io_printf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    host_io_console(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

const char *host_io_captured_console(void)
{
    return s_cap_text ? s_cap_text : "";
}

const uint8_t *host_io_captured_frames(size_t *len)
{
    *len = s_cap_frames_len;
    return s_cap_frames;
}

void host_io_capture_reset(void)
{
    free(s_cap_text);
    free(s_cap_frames);
    s_cap_text = NULL;
    s_cap_frames = NULL;
    s_cap_text_len = 0;
    s_cap_frames_len = 0;
}

void host_io_flash_observer(void *ctx, host_flash_op_t op, uint32_t addr, uint32_t len)
{
    (void)ctx;
    uint8_t p[9];
    p[0] = (uint8_t)op;
    memcpy(p + 1, &addr, 4);
    memcpy(p + 5, &len, 4);
    (void)host_io_frame(HOST_FRAME_FLASH_OP, p, sizeof(p), NULL, 0);
}

void host_io_cpu_work(host_cpu_work_t kind, uint32_t amount)
{
    if (amount == 0) {
        return;
    }
    uint8_t p[5];
    p[0] = (uint8_t)kind;
    memcpy(p + 1, &amount, 4);
    (void)host_io_frame(HOST_FRAME_CPU_WORK, p, sizeof(p), NULL, 0);
}

uint64_t host_clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void host_clock_set_t0_ns(uint64_t t0_ns)
{
    s_t0_ns = t0_ns;
}

uint64_t host_clock_t0_ns(void)
{
    if (s_t0_ns == 0) {
        s_t0_ns = host_clock_now_ns();
    }
    return s_t0_ns;
}

/* How far the link model's clock has run ahead of real time in this boot. */
static uint64_t s_model_ahead_ms;

uint32_t host_uptime_ms(void)
{
    uint64_t real_ms = (host_clock_now_ns() - host_clock_t0_ns()) / 1000000ull;
    return (uint32_t)(real_ms + s_model_ahead_ms) + HOST_ROM_BOOT_MS;
}

void host_clock_follow_model_ms(uint32_t modeled_ms_since_boot)
{
    uint64_t real_ms = (host_clock_now_ns() - host_clock_t0_ns()) / 1000000ull;

    /* Never backwards: a model that lags real time for a while leaves the clock alone. */
    if (modeled_ms_since_boot > real_ms + s_model_ahead_ms) {
        s_model_ahead_ms = modeled_ms_since_boot - real_ms;
    }
}

void host_clock_pass_ms(uint32_t ms)
{
    s_model_ahead_ms += ms;
}

void host_log_set_level(char max_level)
{
    s_max_level = max_level;
}

static int prv_level_rank(char level)
{
    switch (level) {
    case 'E':
        return 1;
    case 'W':
        return 2;
    case 'I':
        return 3;
    case 'D':
        return 4;
    default:
        return 5;
    }
}

void host_logv(char level, const char *tag, const char *fmt, va_list ap)
{
    if (prv_level_rank(level) > prv_level_rank(s_max_level)) {
        return;
    }
    /* ESP-IDF's LOG_FORMAT with CONFIG_LOG_COLORS: colour, "L (ms) tag: ", message, reset. */
    const char *color = level == 'E' ? "\033[0;31m" : level == 'W' ? "\033[0;33m" : level == 'I' ? "\033[0;32m" : "";
    const char *reset = color[0] ? "\033[0m" : "";
    char msg[768];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    host_io_printf("%s%c (%u) %s: %s%s\r\n", color, level, host_uptime_ms(), tag, msg, reset);
}

void host_log(char level, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host_logv(level, tag, fmt, ap);
    va_end(ap);
}
