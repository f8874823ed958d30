#include "flash.h"

#include "esp_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

__attribute__((format(printf, 2, 3))) static int prv_fail(host_flash_t *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->error, sizeof(f->error), fmt, ap);
    va_end(ap);
    return -1;
}

int host_flash_create_file(const char *path, size_t size, char *err, size_t errlen)
{
    if (size == 0 || size % ESP_FLASH_SECTOR_SIZE != 0) {
        snprintf(err, errlen, "flash size %zu is not a multiple of the 4 KB sector size", size);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create flash file %s: %s", path, strerror(errno));
        return -1;
    }
    static uint8_t erased[64 * 1024];
    memset(erased, 0xFF, sizeof(erased));
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof(erased) ? size - done : sizeof(erased);
        ssize_t w = write(fd, erased, n);
        if (w <= 0) {
            snprintf(err, errlen, "cannot fill flash file %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    close(fd);
    return 0;
}

int host_flash_open(host_flash_t *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->journal_fd = -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open flash file %s: %s (create it with --create or ble-ota-flash create)",
                 path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || (size_t)st.st_size % ESP_FLASH_SECTOR_SIZE != 0) {
        snprintf(err, errlen, "flash file %s has size %lld, which is not a whole number of 4 KB sectors", path,
                 (long long)st.st_size);
        close(fd);
        return -1;
    }
    /* MAP_SHARED: every completed operation is in the page cache at once, so a process that
     * dies (a power cut) leaves exactly the operations that completed. */
    void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED) {
        snprintf(err, errlen, "cannot map flash file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    f->fd = fd;
    f->mem = mem;
    f->size = (size_t)st.st_size;
    return 0;
}

void host_flash_close(host_flash_t *f)
{
    if (f->mem) {
        munmap(f->mem, f->size);
    }
    if (f->fd >= 0) {
        close(f->fd);
    }
    if (f->journal_fd >= 0) {
        close(f->journal_fd);
    }
    f->mem = NULL;
    f->fd = -1;
    f->journal_fd = -1;
}

int host_flash_journal_open(host_flash_t *f, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open flash journal %s: %s", path, strerror(errno));
        return -1;
    }
    if (f->journal_fd >= 0) {
        close(f->journal_fd);
    }
    f->journal_fd = fd;
    return 0;
}

/* One journal record; a journal that cannot be written ends the process, since a sweep
 * replaying a short journal would report cut points that were never tried. */
static void prv_journal(host_flash_t *f, host_flash_op_t op, uint32_t addr, const uint8_t *data, uint32_t len)
{
    if (f->journal_fd < 0) {
        return;
    }
    uint8_t head[9];
    head[0] = (uint8_t)op;
    for (int i = 0; i < 4; i++) {
        head[1 + i] = (uint8_t)(addr >> (8 * i));
        head[5 + i] = (uint8_t)(len >> (8 * i));
    }
    struct iovec iov[2] = {{head, sizeof(head)}, {(void *)data, data ? len : 0}};
    size_t want = sizeof(head) + (data ? len : 0);
    ssize_t w = writev(f->journal_fd, iov, data ? 2 : 1);
    if (w != (ssize_t)want) {
        fprintf(stderr, "ble-ota: flash journal write failed: %s\n", w < 0 ? strerror(errno) : "short write");
        _exit(70);
    }
}

static int prv_range_ok(host_flash_t *f, const char *what, uint32_t addr, size_t len)
{
    if (f->mem == NULL) {
        return prv_fail(f, "%s on a flash that is not open", what);
    }
    if ((uint64_t)addr + len > f->size) {
        return prv_fail(f, "%s of %zu bytes at 0x%08x runs past the end of the %zu-byte flash", what, len, addr,
                        f->size);
    }
    return 0;
}

static void prv_power_off(host_flash_t *f)
{
    if (f->on_power_cut) {
        f->on_power_cut(f->power_cut_ctx);
    }
    _exit(137);
}

/* Counts one erase/write operation. At the cut without tearing the power goes before the
 * operation (no return); with tearing it returns true: the caller does part of the operation,
 * then calls prv_power_off. */
static bool prv_count_op(host_flash_t *f)
{
    f->ops++;
    if (f->power_cut_at == 0 || f->ops != f->power_cut_at) {
        return false;
    }
    if (!f->power_cut_torn) {
        prv_power_off(f);
    }
    return true;
}

static void prv_observe(host_flash_t *f, host_flash_op_t op, uint32_t addr, size_t len)
{
    if (f->observer) {
        f->observer(f->observer_ctx, op, addr, (uint32_t)len);
    }
}

int host_flash_read(host_flash_t *f, uint32_t addr, void *buf, size_t len)
{
    if (prv_range_ok(f, "read", addr, len) != 0) {
        return -1;
    }
    memcpy(buf, f->mem + addr, len);
    prv_observe(f, HOST_FLASH_OP_READ, addr, len);
    return 0;
}

int host_flash_write(host_flash_t *f, uint32_t addr, const void *buf, size_t len)
{
    if (prv_range_ok(f, "write", addr, len) != 0) {
        return -1;
    }
    const uint8_t *src = buf;
    for (size_t i = 0; i < len; i++) {
        uint8_t old = f->mem[addr + i];
        if ((old & src[i]) != src[i]) {
            return prv_fail(f,
                            "NOR flash violation: write at 0x%08zx would set bits (0x%02x over 0x%02x); "
                            "erase the sector first",
                            (size_t)addr + i, src[i], old);
        }
    }
    bool torn = prv_count_op(f);
    /* AND, like the silicon: a write can only pull bits low. */
    for (size_t i = 0; i < (torn ? len / 2 : len); i++) {
        f->mem[addr + i] &= src[i];
    }
    if (torn) {
        prv_power_off(f);
    }
    prv_journal(f, HOST_FLASH_OP_WRITE, addr, src, (uint32_t)len);
    prv_observe(f, HOST_FLASH_OP_WRITE, addr, len);
    return 0;
}

int host_flash_erase(host_flash_t *f, uint32_t addr, size_t len)
{
    if (prv_range_ok(f, "erase", addr, len) != 0) {
        return -1;
    }
    if (addr % ESP_FLASH_SECTOR_SIZE != 0 || len % ESP_FLASH_SECTOR_SIZE != 0) {
        return prv_fail(f, "erase of 0x%zx bytes at 0x%08x is not aligned to the 4 KB sector size", len, addr);
    }
    /* As esp_flash_erase_region walks a range: a block erase wherever a whole aligned
     * block remains, else one sector; each command is one operation (one power-cut point). */
    for (size_t off = 0; off < len;) {
        uint32_t at = (uint32_t)(addr + off);
        size_t step = at % HOST_FLASH_BLOCK_SIZE == 0 && len - off >= HOST_FLASH_BLOCK_SIZE ? HOST_FLASH_BLOCK_SIZE
                                                                                            : ESP_FLASH_SECTOR_SIZE;
        if (prv_count_op(f)) {
            memset(f->mem + at, 0xFF, step / 2); /* half erased */
            prv_power_off(f);
        }
        memset(f->mem + at, 0xFF, step);
        prv_journal(f, HOST_FLASH_OP_ERASE, at, NULL, (uint32_t)step);
        prv_observe(f, HOST_FLASH_OP_ERASE, at, (uint32_t)step);
        off += step;
    }
    return 0;
}

const uint8_t *host_flash_view(host_flash_t *f, uint32_t addr, size_t len)
{
    if (prv_range_ok(f, "read", addr, len) != 0) {
        return NULL;
    }
    prv_observe(f, HOST_FLASH_OP_READ, addr, len);
    return f->mem + addr;
}

const uint8_t *host_flash_peek(const host_flash_t *f, uint32_t addr, size_t len)
{
    if (f->mem == NULL || (uint64_t)addr + len > f->size) {
        return NULL;
    }
    return f->mem + addr;
}
