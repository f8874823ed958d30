/*
 * ble-ota-app: the application that goes into the firmware image. The bootloader
 * emulation (ble-ota-device) execs it out of the app slot it chose; it is the host
 * counterpart of firmware/main: start-up lines, self-test and confirm/rollback,
 * then the BLE OTA service driven by frames on stdin/stdout.
 */
#include "ble_ota.h"
#include "bootloader.h"
#include "io.h"
#include "port_host.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BLE_OTA_SELF_TEST_FORCE_FAIL
#define BLE_OTA_SELF_TEST_FORCE_FAIL 0
#endif

#define TAG_APP "ble_ota_host"
#define TAG_MAIN "main"
#define TAG_PORT "ble_ota" /* lines the NimBLE/esp_ota ports print on the device */

typedef struct {
    const char *flash;
    int slot;
    uint64_t t0_ns;
    uint64_t flash_ops;
    uint64_t power_cut_at;
    bool power_cut_torn;
    const char *name;
    uint32_t restart_delay_ms;
    const char *trusted[3];
    int n_trusted;
    bool anti_rollback;
    const char *flash_journal;
    ble_ota_link_security_t link_security;
    bool allow_downgrade;
    bool disable_baseline;
    const char *pinned; /* CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS */
    long idle_timeout_s;        /* CONFIG_BLE_OTA_IDLE_TIMEOUT_S; -1: the firmware's default */
    long refusal_backoff_max_s; /* CONFIG_BLE_OTA_REFUSAL_BACKOFF_MAX_S; -1: the default */
    int pre_erase;              /* CONFIG_BLE_OTA_PRE_ERASE (ble_ota_pre_erase_t); -1: the default */
    long pre_erase_delay_s;     /* CONFIG_BLE_OTA_PRE_ERASE_DELAY_S; -1: the default */
    long pre_erase_pause_ms;    /* CONFIG_BLE_OTA_PRE_ERASE_PAUSE_MS; -1: the default */
} app_args_t;

/* The IDF port's writer task runs ble_ota_writer_run_once(1000): however quiet the link, the
 * core's timers (the idle timeout) are looked at at least once a second. */
#define WRITER_TICK_MS 1000

static int prv_usage(void)
{
    fprintf(stderr, "ble-ota-app is the application inside the firmware image and is started by the bootloader:\n"
                    "run ble-ota-device --flash <flash.bin> instead.\n");
    return 2;
}

static int prv_parse(int argc, char **argv, app_args_t *a)
{
    memset(a, 0, sizeof(*a));
    a->slot = -1;
    a->name = "esp32";
    a->restart_delay_ms = 500;
    a->idle_timeout_s = -1;
    a->refusal_backoff_max_s = -1;
    a->pre_erase = -1;
    a->pre_erase_delay_s = -1;
    a->pre_erase_pause_ms = -1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            return -1;
        }
        if (strcmp(argv[i], "--flash") == 0) {
            a->flash = v;
        } else if (strcmp(argv[i], "--slot") == 0) {
            a->slot = atoi(v);
        } else if (strcmp(argv[i], "--t0-ns") == 0) {
            a->t0_ns = strtoull(v, NULL, 10);
        } else if (strcmp(argv[i], "--flash-ops") == 0) {
            a->flash_ops = strtoull(v, NULL, 10);
        } else if (strcmp(argv[i], "--power-cut-at") == 0) {
            a->power_cut_at = strtoull(v, NULL, 10);
        } else if (strcmp(argv[i], "--power-cut-mode") == 0) {
            a->power_cut_torn = strcmp(v, "torn") == 0;
        } else if (strcmp(argv[i], "--name") == 0) {
            a->name = v;
        } else if (strcmp(argv[i], "--delete-exe") == 0) {
            /* the bootloader staged us in a temporary file: we are running, it can go */
            unlink(v);
        } else if (strcmp(argv[i], "--restart-delay-ms") == 0) {
            a->restart_delay_ms = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(argv[i], "--trusted-key-digest") == 0 && a->n_trusted < 3) {
            a->trusted[a->n_trusted++] = v;
        } else if (strcmp(argv[i], "--anti-rollback") == 0) {
            a->anti_rollback = strcmp(v, "on") == 0;
        } else if (strcmp(argv[i], "--flash-journal") == 0) {
            a->flash_journal = v;
        } else if (strcmp(argv[i], "--baseline") == 0) {
            a->disable_baseline = strcmp(v, "off") == 0;
        } else if (strcmp(argv[i], "--pinned-key-digests") == 0) {
            a->pinned = v;
        } else if (strcmp(argv[i], "--idle-timeout-s") == 0) {
            a->idle_timeout_s = strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--refusal-backoff-max-s") == 0) {
            a->refusal_backoff_max_s = strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--pre-erase") == 0) {
            a->pre_erase = strcmp(v, "idle") == 0           ? BLE_OTA_PRE_ERASE_IDLE
                           : strcmp(v, "disconnected") == 0 ? BLE_OTA_PRE_ERASE_DISCONNECTED
                                                            : BLE_OTA_PRE_ERASE_OFF;
        } else if (strcmp(argv[i], "--pre-erase-delay-s") == 0) {
            a->pre_erase_delay_s = strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--pre-erase-pause-ms") == 0) {
            a->pre_erase_pause_ms = strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--allow-downgrade") == 0) {
            a->allow_downgrade = strcmp(v, "on") == 0;
        } else if (strcmp(argv[i], "--link-security") == 0) {
            a->link_security = strcmp(v, "authenticated") == 0 ? BLE_OTA_LINK_AUTHENTICATED
                               : strcmp(v, "encrypted") == 0   ? BLE_OTA_LINK_ENCRYPTED
                                                               : BLE_OTA_LINK_OPEN;
        } else {
            return -1;
        }
        i++;
    }
    return a->flash && a->slot >= 0 ? 0 : -1;
}

/* The start-up lines of an ESP-IDF v5 app (cpu_start, app_init, efuse_init, main_task). */
static void prv_print_startup(const host_chip_t *chip, const esp_app_desc_t *d)
{
    host_log('I', "cpu_start", "%s", chip->cores > 1 ? "Multicore app" : "Unicore app");
    host_log('I', "cpu_start", "Pro cpu start user code");
    host_log('I', "cpu_start", "cpu freq: %u Hz", chip->cpu_freq_hz);
    host_log('I', "app_init", "Application information:");
    host_log('I', "app_init", "Project name:     %.32s", d->project_name);
    host_log('I', "app_init", "App version:      %.32s", d->version);
    host_log('I', "app_init", "Compile time:     %.16s %.16s", d->date, d->time);
    char sha[17];
    for (int i = 0; i < 8; i++) {
        snprintf(sha + 2 * i, 3, "%02x", d->app_elf_sha256[i]);
    }
    host_log('I', "app_init", "ELF file SHA256:  %s...", sha);
    host_log('I', "app_init", "ESP-IDF:          %.32s", d->idf_ver);
    host_log('I', "efuse_init", "Min chip rev:     v%d.%d", 0, 0);
    host_log('I', "efuse_init", "Max chip rev:     v%d.%d ", chip->max_chip_rev_full / 100,
             chip->max_chip_rev_full % 100);
    host_log('I', "efuse_init", "Chip rev:         v%d.%d", chip->chip_rev_full / 100, chip->chip_rev_full % 100);
    host_log('I', "main_task", "Started on CPU0");
    host_log('I', "main_task", "Calling app_main()");
}

static int prv_read_exact(uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(0, buf + got, n - got);
        if (r == 0) {
            return got == 0 ? 0 : -1;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        got += (size_t)r;
    }
    return 1;
}

static void prv_hello(const char *name, int advertising)
{
    uint8_t adv = (uint8_t)advertising;
    (void)host_io_frame(HOST_FRAME_HELLO, &adv, 1, name, strlen(name));
}

static void prv_advertise(const char *name)
{
    host_log('I', TAG_PORT, "advertising as \"%s\"", name);
    prv_hello(name, 1);
}

/* port->disconnect, as ble_ota_nimble_disconnect: ble_gap_terminate(conn, BLE_ERR_REM_USER_CONN_TERM).
 * The rig drops the link (the central hears reason 0x13) and reports it back with a DISCONNECT
 * frame, as NimBLE's BLE_GAP_EVENT_DISCONNECT (reason 0x216, terminated by the local host)
 * follows; the app then advertises again, as after any disconnect. */
static int prv_terminate(void *ctx, uint16_t conn)
{
    uint8_t p[3] = {(uint8_t)conn, (uint8_t)(conn >> 8), 0x13};
    (void)ctx;
    return host_io_frame(HOST_FRAME_TERMINATE, p, sizeof(p), NULL, 0) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

static uint32_t prv_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t prv_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static void prv_dispatch(uint8_t type, const uint8_t *p, size_t len, const char *name)
{
    switch (type) {
    case HOST_FRAME_CONNECT:
        if (len >= 4) {
            ble_ota_on_connect(prv_u16(p), prv_u16(p + 2));
            prv_hello(name, 0); /* NimBLE stops advertising while connected */
            return;
        }
        break;
    case HOST_FRAME_DISCONNECT:
        if (len >= 3) {
            /* NimBLE reports HCI reasons offset by BLE_HS_ERR_HCI_BASE (0x200) */
            host_log('I', TAG_PORT, "disconnect reason 0x%03x", 0x200 + p[2]);
            ble_ota_on_disconnect(prv_u16(p));
            prv_advertise(name); /* and the app advertises again */
            return;
        }
        break;
    case HOST_FRAME_MTU:
        if (len >= 4) {
            ble_ota_on_mtu(prv_u16(p), prv_u16(p + 2));
            return;
        }
        break;
    case HOST_FRAME_WRITE:
        if (len >= 5) {
            uint16_t conn = prv_u16(p);
            uint16_t chr = prv_u16(p + 2);
            bool with_rsp = p[4] != 0;
            int rc = ble_ota_on_write(conn, (ble_ota_chr_id_t)chr, p + 5, len - 5, with_rsp);
            if (with_rsp) {
                uint8_t rsp[5] = {p[0], p[1], p[2], p[3], (uint8_t)rc};
                (void)host_io_frame(HOST_FRAME_WRITE_RSP, rsp, sizeof(rsp), NULL, 0);
            }
            return;
        }
        break;
    case HOST_FRAME_READ:
        if (len >= 4) {
            uint8_t out[BLE_OTA_MAX_PACKET + 3];
            size_t out_len = 0;
            int rc = ble_ota_on_read(prv_u16(p), (ble_ota_chr_id_t)prv_u16(p + 2), out, sizeof(out), &out_len);
            uint8_t rsp[5] = {p[0], p[1], p[2], p[3], (uint8_t)rc};
            (void)host_io_frame(HOST_FRAME_READ_RSP, rsp, sizeof(rsp), out, rc == 0 ? out_len : 0);
            return;
        }
        break;
    case HOST_FRAME_SUBSCRIBE:
        if (len >= 5) {
            ble_ota_on_subscribe(prv_u16(p), (ble_ota_chr_id_t)prv_u16(p + 2), (p[4] & 0x03) != 0);
            return;
        }
        break;
    case HOST_FRAME_LINK_UPDATE:
        if (len >= 7) {
            /* what NimBLE's connection update / PHY update / data length events tell the port */
            unsigned itvl = prv_u16(p + 2);
            host_log('I', TAG_PORT, "link: connection %u now uses interval %u.%02u ms, data length %u, %s PHY",
                     (unsigned)prv_u16(p), itvl * 125 / 100, itvl * 125 % 100, (unsigned)prv_u16(p + 4),
                     p[6] == 2 ? "2M" : "1M");
            /* the rig's data length is both directions' (NimBLE: data_len_chg.max_rx_octets) */
            ble_ota_on_data_length(prv_u16(p), prv_u16(p + 4));
            ble_ota_on_phy(prv_u16(p), p[6]);
            return;
        }
        break;
    case HOST_FRAME_CLOCK:
        if (len >= 4) {
            host_clock_follow_model_ms(prv_u32(p));
            return;
        }
        break;
    case HOST_FRAME_IDLE:
        if (len >= 4) {
            /* The writer task wakes at least once a second (WRITER_TICK_MS): the time goes by in such
             * ticks, the writer running after each, so that work paced in time (the background erase
             * of the update slot, one block per pause) happens within the wait as on a chip. */
            uint32_t left = prv_u32(p);
            while (left > 0) {
                uint32_t step = left > WRITER_TICK_MS ? WRITER_TICK_MS : left;
                host_clock_pass_ms(step);
                left -= step;
                if (left > 0) {
                    while (ble_ota_writer_run_once(0)) {
                    }
                }
            }
            return;
        }
        break;
    default:
        host_log('W', TAG_APP, "ignoring unknown frame type 0x%02x from the rig", type);
        return;
    }
    host_log('W', TAG_APP, "ignoring frame type 0x%02x with a %zu-byte payload (too short)", type, len);
}

int main(int argc, char **argv)
{
    app_args_t a;
    if (prv_parse(argc, argv, &a) != 0) {
        return prv_usage();
    }
    host_io_init(HOST_IO_FRAMES, 1);
    host_clock_set_t0_ns(a.t0_ns ? a.t0_ns : host_clock_now_ns());

    char err[256];
    host_flash_t flash;
    if (host_flash_open(&flash, a.flash, err, sizeof(err)) != 0) {
        fprintf(stderr, "ble-ota-app: %s\n", err);
        return 1;
    }
    flash.ops = a.flash_ops;
    flash.power_cut_at = a.power_cut_at;
    flash.power_cut_torn = a.power_cut_torn;
    flash.observer = host_io_flash_observer;
    if (a.flash_journal != NULL && host_flash_journal_open(&flash, a.flash_journal, err, sizeof(err)) != 0) {
        fprintf(stderr, "ble-ota-app: %s\n", err);
        return 1;
    }

    host_bl_info_t bl;
    if (host_bootloader_detect(&flash, &bl, err, sizeof(err)) != 0) {
        fprintf(stderr, "ble-ota-app: %s\n", err);
        return 1;
    }
    static host_port_t hp;
    static ble_ota_port_t port;
    if (host_port_init(&hp, &port, &flash, bl.chip, a.slot, err, sizeof(err)) != 0) {
        fprintf(stderr, "ble-ota-app: %s\n", err);
        return 1;
    }
    port.disconnect = prv_terminate;
    /* CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS (signed updates only when there is one) and
     * CONFIG_BLE_OTA_ANTI_ROLLBACK, with the secure_version eFuse beside the flash file. */
    hp.sec.require_signed = a.n_trusted > 0;
    hp.sec.n_trusted = a.n_trusted;
    for (int k = 0; k < a.n_trusted; k++) {
        for (int b = 0; b < 32; b++) {
            unsigned byte = 0;
            sscanf(a.trusted[k] + 2 * b, "%2x", &byte);
            hp.sec.trusted[k][b] = (uint8_t)byte;
        }
    }
    hp.sec.anti_rollback = a.anti_rollback;
    snprintf(hp.sec.efuse_path, sizeof(hp.sec.efuse_path), "%s.efuse", a.flash);
    /* CONFIG_BLE_OTA_LINK_SECURITY: the rig's ATT server enforces it (the layout it serves says
     * so per characteristic); the app reports it in v2 INFO and says it here. */
    hp.sec.link_security = a.link_security;
    hp.sec.allow_downgrade = a.allow_downgrade;
    if (a.link_security != BLE_OTA_LINK_OPEN) {
        host_log('I', TAG_APP, "link: OTA writes need an %s link (%s)", ble_ota_link_security_name(a.link_security),
                 a.link_security == BLE_OTA_LINK_AUTHENTICATED ? "pairing with MITM protection"
                                                               : "pairing or bonding, Just Works included");
    }
    if (hp.sec.require_signed || hp.sec.anti_rollback) {
        host_log('I', TAG_APP, "updates: %s%s (secure_version minimum %u)%s",
                 hp.sec.require_signed ? "signed only" : "unsigned accepted",
                 hp.sec.anti_rollback ? ", anti-rollback on" : "", (unsigned)host_port_min_secure_version(&hp),
                 hp.sec.allow_downgrade ? ", an older app version on request" : "");
    }
    const host_part_t *running = host_ptable_ota(&hp.dev.table, a.slot);
    esp_app_desc_t desc;
    memcpy(&desc, host_flash_peek(&flash, running->offset + 0x20, sizeof(desc)), sizeof(desc));
    prv_print_startup(bl.chip, &desc);

    ble_ota_config_t cfg = BLE_OTA_CONFIG_DEFAULT_INIT;
    cfg.device_name = a.name;
    cfg.restart_delay_ms = a.restart_delay_ms;
    cfg.disable_baseline = a.disable_baseline;
    cfg.trusted_key_digests = a.pinned;
    if (a.idle_timeout_s >= 0) {
        cfg.idle_timeout_ms = (uint32_t)a.idle_timeout_s * 1000u;
    }
    if (a.refusal_backoff_max_s >= 0) {
        cfg.refusal_backoff_max_ms = (uint32_t)a.refusal_backoff_max_s * 1000u;
    }
    if (a.pre_erase >= 0) {
        cfg.pre_erase = (uint8_t)a.pre_erase;
    }
    if (a.pre_erase_delay_s >= 0) {
        cfg.pre_erase_delay_ms = (uint32_t)a.pre_erase_delay_s * 1000u;
    }
    if (a.pre_erase_pause_ms >= 0) {
        cfg.pre_erase_pause_ms = (uint32_t)a.pre_erase_pause_ms;
    }
    static ble_ota_port_v2_t port_v2;
    host_port_v2(&hp, &port_v2);
    if (ble_ota_init(&port, &cfg) != BLE_OTA_OK || ble_ota_v2_attach(&port_v2) != BLE_OTA_OK) {
        host_log('E', TAG_APP, "ble_ota_init failed: the host port is incomplete, or --pinned-key-digests is malformed");
        return 1;
    }
    /* Same decisions and lines as firmware/main/main.c. */
    ble_ota_boot_result_t boot = ble_ota_boot_check(BLE_OTA_SELF_TEST_FORCE_FAIL != 0);
    switch (boot) {
    case BLE_OTA_BOOT_CONFIRMED:
        host_log('I', TAG_MAIN, "new image confirmed");
        break;
    case BLE_OTA_BOOT_NOT_PENDING:
        break;
    case BLE_OTA_BOOT_ROLLBACK_FAILED:
        host_log('E', TAG_MAIN, "self-test failed and there is no previous image: OTA requests will be "
                                "refused until an image is flashed over serial");
        break;
    case BLE_OTA_BOOT_CONFIRM_FAILED:
    case BLE_OTA_BOOT_ERROR:
    default:
        host_log('W', TAG_MAIN, "boot check did not complete (result %d)", (int)boot);
        break;
    }
    prv_advertise(a.name);

    static uint8_t payload[0x10000];
    for (;;) {
        int wait = host_port_restart_wait_ms(&hp);
        if (wait == 0) {
            host_log('I', TAG_PORT, "restarting into the new image");
            host_port_restart_now(&hp, HOST_RESET_SW_RESTART);
        }
        struct pollfd pfd = {0, POLLIN, 0};
        int pr = poll(&pfd, 1, wait < 0 || wait > WRITER_TICK_MS ? WRITER_TICK_MS : wait);
        if (pr < 0 && errno != EINTR) {
            break;
        }
        if (pr == 0) {
            /* nothing arrived: the writer's tick, which drops a link idle for too long */
            while (ble_ota_writer_run_once(0)) {
            }
            continue;
        }
        if (pr < 0) {
            continue;
        }
        uint8_t hdr[3];
        int r = prv_read_exact(hdr, 3);
        if (r == 0) {
            break; /* the rig closed our stdin: power off */
        }
        size_t len = (size_t)(hdr[1] | (hdr[2] << 8));
        if (r < 0 || (len > 0 && prv_read_exact(payload, len) != 1)) {
            fprintf(stderr, "ble-ota-app: truncated frame on stdin\n");
            break;
        }
        prv_dispatch(hdr[0], payload, len, a.name);
        while (ble_ota_writer_run_once(0)) {
        }
        /* The rig holds its modeled clock until this: the frame and its flash work are done. */
        (void)host_io_frame(HOST_FRAME_FRAME_DONE, &hdr[0], 1, NULL, 0);
    }
    host_port_deinit(&hp);
    host_flash_close(&flash);
    return 0;
}
