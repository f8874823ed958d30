/*
 * File-backed SPI NOR flash. Enforces what real NOR flash enforces: a write can only
 * clear bits (1 -> 0), so writing over unerased bytes is refused; erase works on whole,
 * aligned 4 KB sectors. An erase is split into the commands esp_flash_erase_region
 * sends the chip: one 64 KB block erase for every 64 KB aligned 64 KB piece of the
 * range, one sector erase for each 4 KB sector of the rest. Every such erase command
 * and every write counts as one operation; reads are observed but not counted. The
 * Nth counted operation can be made to fail the way a power cut does: it is not
 * performed and the process dies.
 */
#ifndef HOST_FLASH_H
#define HOST_FLASH_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#define HOST_FLASH_SIZE_4MB (4u * 1024u * 1024u)
/* The chip's block erase (command 0xD8), as esp_flash's generic chip driver uses it. */
#define HOST_FLASH_BLOCK_SIZE 0x10000u

typedef enum {
    HOST_FLASH_OP_ERASE = 1,
    HOST_FLASH_OP_WRITE = 2,
    HOST_FLASH_OP_READ = 3,
} host_flash_op_t;

typedef void (*host_flash_observer_t)(void *ctx, host_flash_op_t op, uint32_t addr, uint32_t len);

typedef struct {
    uint8_t *mem;
    size_t size;
    int fd;
    uint64_t ops;          /* counted operations so far (erase sectors + writes), across exec */
    uint64_t power_cut_at; /* 1-based operation number the power is cut at; 0 = no power cut */
    /* false: the cut operation does not happen at all. true: it is torn, as when the power
     * drops while the chip works on it: a write programs the first half of its bytes, an erase
     * erases the first half of its sector or block; the rest stays as it was. */
    bool power_cut_torn;
    host_flash_observer_t observer;
    void *observer_ctx;
    /* Called instead of _exit(137) when the power is cut; tests use it. Must not return. */
    void (*on_power_cut)(void *ctx);
    void *power_cut_ctx;
    /* -1, or a file every completed counted operation is appended to (host_flash_journal_open). */
    int journal_fd;
    char error[256];
} host_flash_t;

/* Creates (or truncates) a flash file of `size` bytes, all erased (0xFF). */
int host_flash_create_file(const char *path, size_t size, char *err, size_t errlen);
int host_flash_open(host_flash_t *f, const char *path, char *err, size_t errlen);
void host_flash_close(host_flash_t *f);

/*
 * Appends every erase command and write that completes from now on to `path` (created if
 * missing, appended to otherwise, so the bootloader and the app it starts write one journal).
 * A record is: u8 operation (1 erase, 2 write), u32 address, u32 length, little-endian, then
 * for a write its `length` bytes. Replaying the first N records on the flash as it was when the
 * journal started gives the flash as it was after operation N; the bench's power-cut sweep
 * does so for every N instead of making one update per cut point.
 */
int host_flash_journal_open(host_flash_t *f, const char *path, char *err, size_t errlen);

/* All return 0 or -1 with f->error set. */
int host_flash_read(host_flash_t *f, uint32_t addr, void *buf, size_t len);
int host_flash_write(host_flash_t *f, uint32_t addr, const void *buf, size_t len);
int host_flash_erase(host_flash_t *f, uint32_t addr, size_t len);

/* A read that returns a pointer into the flash instead of copying (observed like a read). */
const uint8_t *host_flash_view(host_flash_t *f, uint32_t addr, size_t len);

/* Direct view for read-only inspection by tools that must not count reads (ble-ota-flash info). */
const uint8_t *host_flash_peek(const host_flash_t *f, uint32_t addr, size_t len);

#endif
