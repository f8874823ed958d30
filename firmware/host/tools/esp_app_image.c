/*
 * esp-app-image: wraps a host executable into an ESP app image in the real format
 * (esp_image_header_t, one DROM segment starting with esp_app_desc_t, checksum byte,
 * appended SHA-256), the way idf.py/esptool elf2image wrap an ELF for the chip.
 */
#include "build_config.h"
#include "chip.h"
#include "factory.h"
#include "image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void prv_usage(FILE *out)
{
    fprintf(out,
            "usage: esp-app-image --out <app.bin> [--chip CHIP] [--version V] [--project NAME]\n"
            "                     [--secure-version N] [--idf-ver V] [--date \"Nov 24 2026\"] [--time HH:MM:SS]\n"
            "                     <executable>\n"
            "chips: %s (default esp32)\n"
            "Date and time default to SOURCE_DATE_EPOCH if set, else now.\n",
            host_chip_names());
}

int main(int argc, char **argv)
{
    host_app_image_params_t p;
    memset(&p, 0, sizeof(p));
    p.chip = host_chip_by_name("esp32");
    p.version = "1"; /* what ESP-IDF uses when a project sets no version */
    p.project_name = BLE_OTA_PROJECT_NAME;
    p.idf_ver = BLE_OTA_IDF_VER;
    const char *out = NULL, *exe = NULL, *date = NULL, *tim = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            prv_usage(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (exe != NULL) {
                fprintf(stderr, "esp-app-image: only one executable, got '%s' and '%s'\n", exe, a);
                return 2;
            }
            exe = a;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (v == NULL) {
            fprintf(stderr, "esp-app-image: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--out") == 0) {
            out = v;
        } else if (strcmp(a, "--chip") == 0) {
            p.chip = host_chip_by_name(v);
            if (p.chip == NULL) {
                fprintf(stderr, "esp-app-image: unknown chip '%s'; use one of: %s\n", v, host_chip_names());
                return 2;
            }
        } else if (strcmp(a, "--version") == 0) {
            p.version = v;
        } else if (strcmp(a, "--project") == 0) {
            p.project_name = v;
        } else if (strcmp(a, "--secure-version") == 0) {
            char *end;
            unsigned long sv = strtoul(v, &end, 0);
            if (*end != '\0' || sv > 0xFFFFFFFFul) {
                fprintf(stderr, "esp-app-image: --secure-version needs a number, got '%s'\n", v);
                return 2;
            }
            p.secure_version = (uint32_t)sv;
        } else if (strcmp(a, "--idf-ver") == 0) {
            p.idf_ver = v;
        } else if (strcmp(a, "--date") == 0) {
            date = v;
        } else if (strcmp(a, "--time") == 0) {
            tim = v;
        } else {
            fprintf(stderr, "esp-app-image: unknown option %s\n", a);
            prv_usage(stderr);
            return 2;
        }
    }
    if (out == NULL || exe == NULL) {
        prv_usage(stderr);
        return 2;
    }
    /* __DATE__/__TIME__ format, which is what esp_app_desc_t holds */
    char dbuf[16], tbuf[16];
    time_t now = time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde != NULL && *sde) {
        now = (time_t)strtoll(sde, NULL, 10);
    }
    struct tm tm;
    gmtime_r(&now, &tm);
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(dbuf, sizeof(dbuf), "%s %2d %04d", months[tm.tm_mon], tm.tm_mday, tm.tm_year + 1900);
    snprintf(tbuf, sizeof(tbuf), "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
    p.date = date ? date : dbuf;
    p.time = tim ? tim : tbuf;

    char err[256];
    size_t exe_len = 0;
    uint8_t *exe_data = host_read_file(exe, &exe_len, err, sizeof(err));
    if (exe_data == NULL) {
        fprintf(stderr, "esp-app-image: %s\n", err);
        return 1;
    }
    p.exec = exe_data;
    p.exec_len = exe_len;
    host_sha256(exe_data, exe_len, p.elf_sha256);
    uint8_t *img = NULL;
    size_t img_len = 0;
    if (host_app_image_build(&p, &img, &img_len, err, sizeof(err)) != 0) {
        fprintf(stderr, "esp-app-image: %s\n", err);
        free(exe_data);
        return 1;
    }
    FILE *f = fopen(out, "wb");
    int ok = f != NULL && fwrite(img, 1, img_len, f) == img_len;
    if (f != NULL && fclose(f) != 0) {
        ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "esp-app-image: cannot write %s\n", out);
    }
    free(img);
    free(exe_data);
    return ok ? 0 : 1;
}
