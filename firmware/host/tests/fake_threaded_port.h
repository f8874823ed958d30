/*
 * Thread-safe fake port: the BLE side and the writer run on two real threads,
 * as they do on FreeRTOS, with a pthread mutex for lock/unlock and a condition
 * variable for writer_wake/writer_wait. Used to check the queue's lock
 * discipline (run under ThreadSanitizer by hand: see test_core_threads.c).
 */
#ifndef FAKE_THREADED_PORT_H
#define FAKE_THREADED_PORT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "ble_ota.h"
#include "ble_ota_port.h"

#define TFAKE_SLOT_SIZE (1024u * 1024u)

typedef struct {
    pthread_mutex_t lock;      /* the port's lock() */
    pthread_mutex_t wake_lock; /* guards wake_pending and the notify record */
    pthread_cond_t wake;
    bool wake_pending;
    pthread_cond_t notified;
    uint8_t last_notify;
    unsigned notify_count;
    /* Writer-only state. */
    uint8_t slot[TFAKE_SLOT_SIZE];
    uint32_t slot_len;
    bool slot_open;
    uint32_t writes;
    unsigned slow_every; /* every Nth write sleeps, so the queue fills up */
    bool restart;
    int lock_holder_depth;
} tfake_t;

static tfake_t tfake;

static void tfake_sleep_us(long us)
{
    struct timespec ts = { 0, us * 1000L };
    nanosleep(&ts, NULL);
}

static int tfake_slot_begin(void *ctx, uint32_t size, ble_ota_slot_info_t *target)
{
    (void)ctx;
    (void)size;
    memset(target, 0, sizeof(*target));
    strcpy(target->label, "ota_1");
    tfake.slot_open = true;
    tfake.slot_len = 0;
    return BLE_OTA_OK;
}

static int tfake_slot_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    if (!tfake.slot_open || tfake.slot_len + len > TFAKE_SLOT_SIZE) {
        return BLE_OTA_ERR_FLASH;
    }
    tfake.writes++;
    if (tfake.slow_every != 0u && tfake.writes % tfake.slow_every == 0u) {
        tfake_sleep_us(2000); /* a sector erase */
    }
    memcpy(&tfake.slot[tfake.slot_len], data, len);
    tfake.slot_len += (uint32_t)len;
    return BLE_OTA_OK;
}

static int tfake_slot_end(void *ctx)
{
    (void)ctx;
    tfake.slot_open = false;
    return BLE_OTA_OK;
}

static void tfake_slot_abort(void *ctx)
{
    (void)ctx;
    tfake.slot_open = false;
}

static int tfake_ok(void *ctx)
{
    (void)ctx;
    return BLE_OTA_OK;
}

static int tfake_running(void *ctx, ble_ota_slot_info_t *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
    strcpy(out->label, "ota_0");
    out->state = BLE_OTA_SLOT_STATE_VALID;
    return BLE_OTA_OK;
}

static const char *tfake_version(void *ctx)
{
    (void)ctx;
    return "1.0.0";
}

static const char *tfake_chip(void *ctx)
{
    (void)ctx;
    return "ESP32";
}

static int tfake_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)conn;
    (void)chr;
    (void)len;
    pthread_mutex_lock(&tfake.wake_lock);
    tfake.last_notify = data[0];
    tfake.notify_count++;
    pthread_cond_broadcast(&tfake.notified);
    pthread_mutex_unlock(&tfake.wake_lock);
    return BLE_OTA_OK;
}

static uint32_t tfake_now(void *ctx)
{
    struct timespec ts;

    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void tfake_log(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap)
{
    (void)ctx;
    (void)level;
    (void)tag;
    (void)fmt;
    (void)ap;
}

static void tfake_restart(void *ctx, uint32_t delay_ms)
{
    (void)ctx;
    (void)delay_ms;
    tfake.restart = true;
}

static void tfake_lock(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&tfake.lock);
}

static void tfake_unlock(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&tfake.lock);
}

static void tfake_wake(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&tfake.wake_lock);
    tfake.wake_pending = true;
    pthread_cond_signal(&tfake.wake);
    pthread_mutex_unlock(&tfake.wake_lock);
}

static void tfake_wait(void *ctx, uint32_t timeout_ms)
{
    struct timespec until;

    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    until.tv_sec += timeout_ms / 1000u + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&tfake.wake_lock);
    while (!tfake.wake_pending) {
        if (pthread_cond_timedwait(&tfake.wake, &tfake.wake_lock, &until) != 0) {
            break;
        }
    }
    tfake.wake_pending = false;
    pthread_mutex_unlock(&tfake.wake_lock);
}

/* SHA-256 is not what this fake is for: report it unavailable, which the
 * core must tolerate (it then logs no digest). */
static int tfake_sha_start(void *ctx)
{
    (void)ctx;
    return BLE_OTA_ERR_UNSUPPORTED;
}

static int tfake_sha_update(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return BLE_OTA_ERR_UNSUPPORTED;
}

static int tfake_sha_finish(void *ctx, uint8_t out[BLE_OTA_SHA256_LEN])
{
    (void)ctx;
    (void)out;
    return BLE_OTA_ERR_UNSUPPORTED;
}

static const ble_ota_port_t tfake_port = {
    NULL,
    tfake_slot_begin,
    tfake_slot_write,
    tfake_slot_end,
    tfake_slot_abort,
    tfake_ok,
    tfake_running,
    tfake_ok,
    tfake_ok,
    tfake_version,
    tfake_chip,
    tfake_notify,
    tfake_now,
    tfake_log,
    tfake_restart,
    tfake_lock,
    tfake_unlock,
    tfake_wake,
    tfake_wait,
    tfake_sha_start,
    tfake_sha_update,
    tfake_sha_finish,
    NULL, /* disconnect: these tests drop no idle link */
};

static inline void tfake_reset(void)
{
    memset(&tfake, 0, sizeof(tfake));
    pthread_mutex_init(&tfake.lock, NULL);
    pthread_mutex_init(&tfake.wake_lock, NULL);
    pthread_cond_init(&tfake.wake, NULL);
    pthread_cond_init(&tfake.notified, NULL);
}

/* Waits until the notification count reaches n; returns the last opcode. */
static inline uint8_t tfake_wait_notify(unsigned n)
{
    uint8_t op;

    pthread_mutex_lock(&tfake.wake_lock);
    while (tfake.notify_count < n) {
        pthread_cond_wait(&tfake.notified, &tfake.wake_lock);
    }
    op = tfake.last_notify;
    pthread_mutex_unlock(&tfake.wake_lock);
    return op;
}

static atomic_bool tfake_writer_stopping;

/* The writer task, as the IDF port runs it, on its own thread. */
static void *tfake_writer_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&tfake_writer_stopping)) {
        (void)ble_ota_writer_run_once(5);
    }
    /* Whatever is still queued belongs to the test's last steps. */
    while (ble_ota_writer_run_once(0)) {
    }
    return NULL;
}

/* pthread_create's result. */
static inline int tfake_writer_start(pthread_t *writer)
{
    atomic_store(&tfake_writer_stopping, false);
    return pthread_create(writer, NULL, tfake_writer_main, NULL);
}

/* Stops the writer once the queue is empty; pthread_join's result. */
static inline int tfake_writer_join(pthread_t writer)
{
    atomic_store(&tfake_writer_stopping, true);
    tfake_wake(NULL);
    return pthread_join(writer, NULL);
}

#endif /* FAKE_THREADED_PORT_H */
