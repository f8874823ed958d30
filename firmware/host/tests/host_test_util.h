/* Helpers shared by the host build's own tests (not the core's). */
#ifndef HOST_TEST_UTIL_H
#define HOST_TEST_UTIL_H

#include "check.h"
#include "factory.h"
#include "image.h"
#include "io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char htu_s_paths[64][512];
static int htu_s_path_count;

static inline void htu_cleanup(void)
{
    for (int i = 0; i < htu_s_path_count; i++) {
        unlink(htu_s_paths[i]);
    }
}

/* A per-test scratch file under the build tree, unique per process, removed at exit. */
static inline const char *htu_path(const char *name)
{
    if (htu_s_path_count == 0) {
        atexit(htu_cleanup);
    }
    if (htu_s_path_count >= 64) {
        abort();
    }
    char *p = htu_s_paths[htu_s_path_count++];
    snprintf(p, sizeof(htu_s_paths[0]), "%s/t-%ld-%s", BLE_OTA_TEST_TMPDIR, (long)getpid(), name);
    return p;
}

/* A per-test scratch file that does not exist yet (a flash file the device must --create). */
static inline const char *htu_fresh_path(const char *name)
{
    const char *path = htu_path(name);
    unlink(path);
    return path;
}

/* An app image for `chip` carrying `exec` as its program; NULL (err says why) if it cannot be built. */
static inline uint8_t *htu_app_image(const char *chip, const char *version, const uint8_t *exec, size_t exec_len,
                                     size_t *len, char *err, size_t errlen)
{
    host_app_image_params_t p;
    memset(&p, 0, sizeof(p));
    p.chip = host_chip_by_name(chip);
    p.version = version;
    p.project_name = "esp_ble_ota";
    p.idf_ver = "v5.3.1";
    p.date = "Nov 24 2026";
    p.time = "21:00:00";
    p.exec = exec;
    p.exec_len = exec_len;
    host_sha256(exec, exec_len, p.elf_sha256);
    uint8_t *img = NULL;
    if (host_app_image_build(&p, &img, len, err, errlen) != 0) {
        return NULL;
    }
    return img;
}

/* An app image whose payload is not executable: enough for everything except exec. */
static inline uint8_t *htu_small_image(const char *chip, const char *version, size_t payload_len, size_t *len)
{
    uint8_t *payload = malloc(payload_len);
    for (size_t i = 0; i < payload_len; i++) {
        payload[i] = (uint8_t)(i * 31u + 7u);
    }
    char err[200];
    uint8_t *img = htu_app_image(chip, version, payload, payload_len, len, err, sizeof(err));
    if (img == NULL) {
        fprintf(stderr, "htu_small_image: %s\n", err);
        abort();
    }
    free(payload);
    return img;
}

/* Copies a file byte for byte (a flash state to run again from the same start). */
static inline void htu_copy_file(const char *from, const char *to)
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

static inline int htu_contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

#define CHECK_CONTAINS(hay, needle) CHECK_MSG(htu_contains((hay), (needle)), "missing \"%s\" in:\n%s", (needle), (hay))

#endif
