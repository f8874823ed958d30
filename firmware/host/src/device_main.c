/*
 * ble-ota-device: one boot of one simulated ESP32 (Contract B, firmware/host/README.md).
 * ROM + 2nd stage bootloader emulation on the flash file; then the app executable found
 * in the chosen app image is exec'd in this same process, so what was flashed is what runs.
 */
#include "bootloader.h"
#include "build_config.h"
#include "factory.h"
#include "gatt_json.h"
#include "io.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void prv_usage(FILE *out)
{
    fprintf(out,
            "usage: ble-ota-device --flash <flash.bin> [--create [--chip <chip>] [--image <app.bin>]]\n"
            "                      [--power-cut-at N [--power-cut-mode skip|torn]] [--name NAME]\n"
            "                      [--reset-reason poweron|sw]\n"
            "                      [--restart-delay-ms MS] [--trusted-key-digest HEX]... [--anti-rollback on|off]\n"
            "                      [--allow-downgrade on|off] [--baseline on|off] [--pinned-key-digests LIST]\n"
            "                      [--flash-journal FILE] [--link-security open|encrypted|authenticated]\n"
            "                      [--idle-timeout-s S] [--refusal-backoff-max-s S]\n"
            "                      [--pre-erase off|disconnected|idle] [--pre-erase-delay-s S]\n"
            "                      [--pre-erase-pause-ms MS]\n"
            "       ble-ota-device [--link-security LEVEL] --gatt-json\n"
            "chips: %s\n"
            "stdin/stdout carry the binary frames described in firmware/host/README.md.\n",
            host_chip_names());
}

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux 6.3+: ask for an executable memfd when vm.memfd_noexec=1 */
#endif

static int prv_write_all(int fd, const uint8_t *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, p + off, len - off);
        if (w <= 0) {
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

static int prv_stage_memfd(const uint8_t *exec, size_t len)
{
    int fd = memfd_create("ble-ota-app", MFD_CLOEXEC | MFD_EXEC);
    if (fd < 0 && errno == EINVAL) {
        fd = memfd_create("ble-ota-app", MFD_CLOEXEC); /* kernels before 6.3 */
    }
    if (fd < 0) {
        return -1;
    }
    if (prv_write_all(fd, exec, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int prv_stage_tmpfile(const uint8_t *exec, size_t len, const char *flash_path, char *out, size_t cap)
{
    snprintf(out, cap, "%s.app-XXXXXX", flash_path);
    int fd = mkstemp(out);
    if (fd < 0 || fchmod(fd, 0700) != 0 || prv_write_all(fd, exec, len) != 0) {
        fprintf(stderr, "ble-ota-device: cannot stage the app next to %s: %s\n", flash_path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(out);
        }
        out[0] = '\0';
        return -1;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *flash_path = NULL, *chip_name = NULL, *image = NULL, *name = "esp32", *restart_delay = NULL;
    bool create = false, sw_reset = false;
    uint64_t power_cut_at = 0;
    const char *power_cut_mode = "skip";
    /* Firmware configuration the app reads (Kconfig on a chip): passed through to it. */
    const char *trusted[3];
    int n_trusted = 0;
    const char *anti_rollback = NULL;
    const char *allow_downgrade = NULL;
    const char *baseline = NULL;
    const char *pinned = NULL;
    const char *flash_journal = NULL;
    const char *link_security = NULL;
    const char *idle_timeout = NULL;    /* CONFIG_BLE_OTA_IDLE_TIMEOUT_S */
    const char *refusal_backoff = NULL; /* CONFIG_BLE_OTA_REFUSAL_BACKOFF_MAX_S */
    const char *pre_erase = NULL;       /* CONFIG_BLE_OTA_PRE_ERASE */
    const char *pre_erase_delay = NULL; /* CONFIG_BLE_OTA_PRE_ERASE_DELAY_S */
    const char *pre_erase_pause = NULL; /* CONFIG_BLE_OTA_PRE_ERASE_PAUSE_MS */
    ble_ota_link_security_t link_level = BLE_OTA_LINK_OPEN;
    bool gatt_json = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--gatt-json") == 0) {
            gatt_json = true;
            continue;
        } else if (strcmp(arg, "--create") == 0) {
            create = true;
            continue;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            prv_usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "ble-ota-device: %s needs a value\n", arg);
            prv_usage(stderr);
            return 2;
        }
        if (strcmp(arg, "--flash") == 0) {
            flash_path = v;
        } else if (strcmp(arg, "--chip") == 0) {
            chip_name = v;
        } else if (strcmp(arg, "--image") == 0) {
            image = v;
        } else if (strcmp(arg, "--power-cut-at") == 0) {
            char *end;
            power_cut_at = strtoull(v, &end, 10);
            if (*end != '\0' || power_cut_at == 0) {
                fprintf(stderr, "ble-ota-device: --power-cut-at needs a flash operation number >= 1, got '%s'\n", v);
                return 2;
            }
        } else if (strcmp(arg, "--power-cut-mode") == 0) {
            if (strcmp(v, "skip") != 0 && strcmp(v, "torn") != 0) {
                fprintf(stderr, "ble-ota-device: --power-cut-mode is skip (the operation never happens) or torn "
                                "(half of it happens), got '%s'\n",
                        v);
                return 2;
            }
            power_cut_mode = v;
        } else if (strcmp(arg, "--name") == 0) {
            name = v;
        } else if (strcmp(arg, "--reset-reason") == 0) {
            if (strcmp(v, "sw") != 0 && strcmp(v, "poweron") != 0) {
                fprintf(stderr, "ble-ota-device: --reset-reason is poweron or sw, got '%s'\n", v);
                return 2;
            }
            sw_reset = strcmp(v, "sw") == 0;
        } else if (strcmp(arg, "--restart-delay-ms") == 0) {
            restart_delay = v;
        } else if (strcmp(arg, "--trusted-key-digest") == 0) {
            if (n_trusted == 3 || strlen(v) != 64 || strspn(v, "0123456789abcdefABCDEF") != 64) {
                fprintf(stderr, "ble-ota-device: --trusted-key-digest takes a SHA-256 as 64 hex digits, at most 3 times "
                                "(ble-ota keygen and ble-ota info print it), got '%s'\n",
                        v);
                return 2;
            }
            trusted[n_trusted++] = v;
        } else if (strcmp(arg, "--anti-rollback") == 0) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                fprintf(stderr, "ble-ota-device: --anti-rollback is on or off, got '%s'\n", v);
                return 2;
            }
            anti_rollback = v;
        } else if (strcmp(arg, "--pinned-key-digests") == 0) {
            /* CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS: the firmware's core parses it, as on the chip */
            pinned = v;
        } else if (strcmp(arg, "--baseline") == 0) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                fprintf(stderr, "ble-ota-device: --baseline is on (the baseline protocol's REQUEST is taken) or off "
                                "(v2 only), got '%s'\n",
                        v);
                return 2;
            }
            baseline = v;
        } else if (strcmp(arg, "--allow-downgrade") == 0) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                fprintf(stderr, "ble-ota-device: --allow-downgrade is on (an older app version when the client "
                                "asks) or off, got '%s'\n",
                        v);
                return 2;
            }
            allow_downgrade = v;
        } else if (strcmp(arg, "--flash-journal") == 0) {
            flash_journal = v;
        } else if (strcmp(arg, "--idle-timeout-s") == 0 || strcmp(arg, "--refusal-backoff-max-s") == 0) {
            /* the Kconfig ranges: 0 to 3600 s, 0 turning the limit off */
            char *end;
            unsigned long secs = strtoul(v, &end, 10);
            if (v[0] < '0' || v[0] > '9' || *end != '\0' || secs > 3600) {
                fprintf(stderr, "ble-ota-device: %s takes whole seconds from 0 (off) to 3600, got '%s'\n", arg, v);
                return 2;
            }
            *(strcmp(arg, "--idle-timeout-s") == 0 ? &idle_timeout : &refusal_backoff) = v;
        } else if (strcmp(arg, "--pre-erase") == 0) {
            if (strcmp(v, "off") != 0 && strcmp(v, "disconnected") != 0 && strcmp(v, "idle") != 0) {
                fprintf(stderr, "ble-ota-device: --pre-erase is off, disconnected (idle without a connection) or "
                                "idle (connected or not), got '%s'\n",
                        v);
                return 2;
            }
            pre_erase = v;
        } else if (strcmp(arg, "--pre-erase-delay-s") == 0 || strcmp(arg, "--pre-erase-pause-ms") == 0) {
            /* the Kconfig ranges: 0 to 3600 s, 0 to 60000 ms */
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            bool delay = strcmp(arg, "--pre-erase-delay-s") == 0;
            if (v[0] < '0' || v[0] > '9' || *end != '\0' || n > (delay ? 3600ul : 60000ul)) {
                fprintf(stderr, "ble-ota-device: %s takes a whole number from 0 to %s, got '%s'\n", arg,
                        delay ? "3600 (seconds)" : "60000 (milliseconds)", v);
                return 2;
            }
            *(delay ? &pre_erase_delay : &pre_erase_pause) = v;
        } else if (strcmp(arg, "--link-security") == 0) {
            int found = 0;
            for (int level = BLE_OTA_LINK_OPEN; level <= BLE_OTA_LINK_AUTHENTICATED; level++) {
                if (strcmp(v, ble_ota_link_security_name((ble_ota_link_security_t)level)) == 0) {
                    link_level = (ble_ota_link_security_t)level;
                    found = 1;
                }
            }
            if (!found) {
                fprintf(stderr, "ble-ota-device: --link-security is open, encrypted (pairing, Just Works included) or "
                                "authenticated (pairing with MITM protection), got '%s'\n",
                        v);
                return 2;
            }
            link_security = v;
        } else {
            fprintf(stderr, "ble-ota-device: unknown option %s\n", arg);
            prv_usage(stderr);
            return 2;
        }
        i++;
    }
    if (gatt_json) {
        return host_gatt_json_write(stdout, BLE_OTA_ACL_FROM_LL_COUNT, BLE_OTA_PREFERRED_MTU, link_level) == 0 ? 0 : 1;
    }
    if (flash_path == NULL) {
        fprintf(stderr, "ble-ota-device: --flash <flash.bin> is required\n");
        prv_usage(stderr);
        return 2;
    }
    const host_chip_t *want_chip = NULL;
    if (chip_name != NULL) {
        want_chip = host_chip_by_name(chip_name);
        if (want_chip == NULL) {
            fprintf(stderr, "ble-ota-device: unknown chip '%s'; use one of: %s\n", chip_name, host_chip_names());
            return 2;
        }
    }
    char err[512];
    uint64_t t0 = host_clock_now_ns();
    if (create) {
        const host_chip_t *chip = want_chip ? want_chip : host_chip_by_name("esp32");
        char default_image[600];
        snprintf(default_image, sizeof(default_image), "%s/ble-ota-app-%s.bin", BLE_OTA_IMAGE_DIR, chip->name);
        const char *app_path = image ? image : default_image;
        size_t app_len = 0;
        uint8_t *app = host_read_file(app_path, &app_len, err, sizeof(err));
        if (app == NULL) {
            fprintf(stderr, "ble-ota-device: %s (build the host firmware first, or pass --image)\n", err);
            return 1;
        }
        int rc = host_factory_create(flash_path, chip, app, app_len, err, sizeof(err));
        free(app);
        if (rc != 0) {
            fprintf(stderr, "ble-ota-device: %s\n", err);
            return 1;
        }
    }

    host_io_init(HOST_IO_FRAMES, 1);
    host_clock_set_t0_ns(t0);
    host_flash_t flash;
    if (host_flash_open(&flash, flash_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "ble-ota-device: %s\n", err);
        return 1;
    }
    flash.power_cut_at = power_cut_at;
    flash.power_cut_torn = strcmp(power_cut_mode, "torn") == 0;
    flash.observer = host_io_flash_observer;
    if (flash_journal != NULL && host_flash_journal_open(&flash, flash_journal, err, sizeof(err)) != 0) {
        fprintf(stderr, "ble-ota-device: %s\n", err);
        return 1;
    }
    if (want_chip != NULL && !create) {
        host_bl_info_t bl;
        if (host_bootloader_detect(&flash, &bl, err, sizeof(err)) == 0 && bl.chip != want_chip) {
            fprintf(stderr, "ble-ota-device: the flash holds a bootloader for %s, not %s (the chip is chosen at --create)\n",
                    bl.chip->model, want_chip->model);
            return 2;
        }
    }

    host_boot_t boot;
    if (host_bootloader_run(&flash, sw_reset, &boot) != 0) {
        return 1;
    }
    const uint8_t *exec;
    size_t exec_len;
    if (host_image_find_exec(&flash, &boot.image, &exec, &exec_len, err, sizeof(err)) != 0) {
        /* The bootloader checked the image and jumps into it; on silicon, what is not code for
         * this program faults at once, the panic handler restarts the chip, and the bootloader
         * then rolls an image that never confirmed itself back. So does this program, with the
         * panic handler's lines; a rig that sees boot after boot like this halts the board. */
        const host_chip_t *chip = host_chip_by_id(boot.image.header.chip_id);
        bool riscv = chip != NULL && (strcmp(chip->name, "esp32c3") == 0 || strcmp(chip->name, "esp32c2") == 0 ||
                                      strcmp(chip->name, "esp32c6") == 0 || strcmp(chip->name, "esp32h2") == 0);
        uint8_t reason = HOST_RESET_PANIC;

        host_log('E', "boot", "%s", err);
        fprintf(stderr, "ble-ota-device: %s; restarting as the panic handler would\n", err);
        host_io_printf("Guru Meditation Error: Core  0 panic'ed (%s). Exception was unhandled.\r\n\r\n",
                       riscv ? "Illegal instruction" : "IllegalInstruction");
        host_io_printf("Rebooting...\r\n");
        (void)host_io_frame(HOST_FRAME_RESET, &reason, 1, NULL, 0);
        host_flash_close(&flash);
        return 0;
    }
    /* The app runs from a copy, like code mapped from flash: later writes to the slot must
     * not change the running program. A memfd leaves nothing behind; where memfds may not be
     * executed (vm.memfd_noexec), a temporary file that the app deletes at start does. */
    char tmp_exe[600] = "";
    /* BLE_OTA_DEVICE_NO_MEMFD=1 forces the file path (tests use it to cover both). */
    const char *no_memfd = getenv("BLE_OTA_DEVICE_NO_MEMFD");
    int mfd = no_memfd != NULL && strcmp(no_memfd, "1") == 0 ? -1 : prv_stage_memfd(exec, exec_len);
    if (mfd < 0 && prv_stage_tmpfile(exec, exec_len, flash_path, tmp_exe, sizeof(tmp_exe)) != 0) {
        return 1;
    }
    char slot[16], t0s[32], ops[32], cut[32];
    snprintf(slot, sizeof(slot), "%d", boot.slot);
    snprintf(t0s, sizeof(t0s), "%" PRIu64, t0);
    snprintf(ops, sizeof(ops), "%" PRIu64, flash.ops);
    snprintf(cut, sizeof(cut), "%" PRIu64, power_cut_at);
    char *app_argv[48];
    int n = 0;
    app_argv[n++] = "ble-ota-app";
    app_argv[n++] = "--flash";
    app_argv[n++] = (char *)flash_path;
    app_argv[n++] = "--slot";
    app_argv[n++] = slot;
    app_argv[n++] = "--t0-ns";
    app_argv[n++] = t0s;
    app_argv[n++] = "--flash-ops";
    app_argv[n++] = ops;
    app_argv[n++] = "--power-cut-at";
    app_argv[n++] = cut;
    app_argv[n++] = "--power-cut-mode";
    app_argv[n++] = (char *)power_cut_mode;
    app_argv[n++] = "--name";
    app_argv[n++] = (char *)name;
    if (restart_delay != NULL) {
        app_argv[n++] = "--restart-delay-ms";
        app_argv[n++] = (char *)restart_delay;
    }
    for (int k = 0; k < n_trusted; k++) {
        app_argv[n++] = "--trusted-key-digest";
        app_argv[n++] = (char *)trusted[k];
    }
    if (anti_rollback != NULL) {
        app_argv[n++] = "--anti-rollback";
        app_argv[n++] = (char *)anti_rollback;
    }
    if (baseline != NULL) {
        app_argv[n++] = "--baseline";
        app_argv[n++] = (char *)baseline;
    }
    if (pinned != NULL) {
        app_argv[n++] = "--pinned-key-digests";
        app_argv[n++] = (char *)pinned;
    }
    if (allow_downgrade != NULL) {
        app_argv[n++] = "--allow-downgrade";
        app_argv[n++] = (char *)allow_downgrade;
    }
    if (link_security != NULL) {
        app_argv[n++] = "--link-security";
        app_argv[n++] = (char *)link_security;
    }
    if (flash_journal != NULL) {
        app_argv[n++] = "--flash-journal";
        app_argv[n++] = (char *)flash_journal;
    }
    if (idle_timeout != NULL) {
        app_argv[n++] = "--idle-timeout-s";
        app_argv[n++] = (char *)idle_timeout;
    }
    if (refusal_backoff != NULL) {
        app_argv[n++] = "--refusal-backoff-max-s";
        app_argv[n++] = (char *)refusal_backoff;
    }
    if (pre_erase != NULL) {
        app_argv[n++] = "--pre-erase";
        app_argv[n++] = (char *)pre_erase;
    }
    if (pre_erase_delay != NULL) {
        app_argv[n++] = "--pre-erase-delay-s";
        app_argv[n++] = (char *)pre_erase_delay;
    }
    if (pre_erase_pause != NULL) {
        app_argv[n++] = "--pre-erase-pause-ms";
        app_argv[n++] = (char *)pre_erase_pause;
    }
    if (tmp_exe[0] != '\0') {
        app_argv[n++] = "--delete-exe";
        app_argv[n++] = tmp_exe;
    }
    app_argv[n] = NULL;
    host_flash_close(&flash);
    extern char **environ;
    if (mfd >= 0) {
        fexecve(mfd, app_argv, environ);
        if (errno == EACCES || errno == EPERM) {
            /* noexec memfds: fall back to a file */
            close(mfd);
            if (prv_stage_tmpfile(exec, exec_len, flash_path, tmp_exe, sizeof(tmp_exe)) == 0) {
                app_argv[n++] = "--delete-exe";
                app_argv[n++] = tmp_exe;
                app_argv[n] = NULL;
                execve(tmp_exe, app_argv, environ);
            }
        }
    } else {
        execve(tmp_exe, app_argv, environ);
    }
    fprintf(stderr, "ble-ota-device: cannot start the app from %s: %s (is it a Linux executable for this machine?)\n",
            boot.part.label, strerror(errno));
    if (tmp_exe[0] != '\0') {
        unlink(tmp_exe);
    }
    return 1;
}
