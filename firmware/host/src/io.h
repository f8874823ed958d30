/*
 * Output of the simulated device: binary frames on stdout (firmware/host/README.md),
 * ESP-IDF-format console text inside CONSOLE frames, and the boot clock that the
 * log timestamps count from.
 */
#ifndef HOST_IO_H
#define HOST_IO_H

#include "flash.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum {
    HOST_FRAME_CONNECT = 0x01,
    HOST_FRAME_DISCONNECT = 0x02,
    HOST_FRAME_MTU = 0x03,
    HOST_FRAME_WRITE = 0x04,
    HOST_FRAME_READ = 0x05,
    HOST_FRAME_SUBSCRIBE = 0x06,
    HOST_FRAME_LINK_UPDATE = 0x07,
    HOST_FRAME_CLOCK = 0x08,
    HOST_FRAME_IDLE = 0x09,
    HOST_FRAME_HELLO = 0x80,
    HOST_FRAME_NOTIFY = 0x82,
    HOST_FRAME_CONSOLE = 0x83,
    HOST_FRAME_WRITE_RSP = 0x84,
    HOST_FRAME_READ_RSP = 0x85,
    HOST_FRAME_RESET = 0x87,
    HOST_FRAME_FLASH_OP = 0x88,
    HOST_FRAME_LINK_REQUEST = 0x89,
    HOST_FRAME_FRAME_DONE = 0x8A,
    HOST_FRAME_CPU_WORK = 0x8B,
    HOST_FRAME_TERMINATE = 0x8C,
};

/* RESET frame reasons. */
enum {
    HOST_RESET_SW_RESTART = 1, /* esp_restart() after an update (schedule_restart) */
    HOST_RESET_ROLLBACK = 2,   /* esp_ota_mark_app_invalid_rollback_and_reboot() */
    HOST_RESET_NO_APP = 3,     /* unused by the device: it exits non-zero instead */
    HOST_RESET_PANIC = 4,      /* the app faulted and the panic handler restarted the chip */
};

typedef enum {
    HOST_IO_FRAMES = 0,  /* device: everything as frames on the output fd */
    HOST_IO_TEXT = 1,    /* tools: console text as plain bytes on the output fd, no other frames */
    HOST_IO_CAPTURE = 2, /* tests: console text collected in memory, frames collected too */
} host_io_mode_t;

void host_io_init(host_io_mode_t mode, int out_fd);
host_io_mode_t host_io_mode(void);
/* Writes one frame (payload = a followed by b). Returns 0, or -1 if the reader is gone. */
int host_io_frame(uint8_t type, const void *a, size_t alen, const void *b, size_t blen);
void host_io_console(const char *bytes, size_t len);
__attribute__((format(printf, 1, 2))) void host_io_printf(const char *fmt, ...);

/* CAPTURE mode: console text and raw frames collected so far (NUL-terminated text). */
const char *host_io_captured_console(void);
const uint8_t *host_io_captured_frames(size_t *len);
void host_io_capture_reset(void);

/* Flash observer that announces every operation as a FLASH_OP frame. */
void host_io_flash_observer(void *ctx, host_flash_op_t op, uint32_t addr, uint32_t len);

/* Work the chip's CPU would do, for the rig's device cost model (CPU_WORK frame): what the
 * app computes that costs an ESP32 real time, in bytes (or, for a signature check, one). */
typedef enum {
    HOST_CPU_CRC32 = 1,          /* bytes */
    HOST_CPU_SHA256 = 2,         /* bytes hashed */
    HOST_CPU_INFLATE = 3,        /* bytes out of the decompressor */
    HOST_CPU_RSA3072_VERIFY = 4, /* signatures checked */
    HOST_CPU_ECDSA_P256_VERIFY = 5,
} host_cpu_work_t;
void host_io_cpu_work(host_cpu_work_t kind, uint32_t amount);

/* Boot clock: t0 is when the chip came out of reset (kept across the bootloader's exec). */
void host_clock_set_t0_ns(uint64_t t0_ns);
uint64_t host_clock_t0_ns(void);
uint64_t host_clock_now_ns(void);
/* Milliseconds since reset, as the "(123)" of ESP-IDF log lines. */
uint32_t host_uptime_ms(void);
/*
 * The rig's link model says this much modeled time has passed since the boot began: uptime
 * (log timestamps, the core's now_ms) runs no slower than that from here on, so the console
 * and the modeled timeline agree. Timers for real waits (the restart delay) keep real time.
 */
void host_clock_follow_model_ms(uint32_t modeled_ms_since_boot);
/*
 * The rig let this much time pass with nothing on the air (its link model has no events then):
 * uptime moves on by that much at once, whether real time or the model was ahead before, so a
 * timer of the firmware (idle timeout, refusal back-off) sees exactly that wait go by.
 */
void host_clock_pass_ms(uint32_t ms);

/* ESP_LOG line: level is 'E', 'W', 'I', 'D' or 'V'; lines above the log level are dropped. */
__attribute__((format(printf, 3, 4))) void host_log(char level, const char *tag, const char *fmt, ...);
void host_logv(char level, const char *tag, const char *fmt, va_list ap);
void host_log_set_level(char max_level);

#endif
