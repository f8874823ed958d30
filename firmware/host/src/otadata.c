#include "otadata.h"

#include <stdio.h>
#include <string.h>

uint32_t host_crc32_le(uint32_t crc, const uint8_t *buf, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= buf[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

uint32_t host_ota_select_crc(const esp_ota_select_entry_t *s)
{
    uint8_t seq[4];
    memcpy(seq, &s->ota_seq, 4);
    return host_crc32_le(UINT32_MAX, seq, 4);
}

bool host_ota_select_invalid(const esp_ota_select_entry_t *s)
{
    return s->ota_seq == UINT32_MAX || s->ota_state == ESP_OTA_IMG_INVALID || s->ota_state == ESP_OTA_IMG_ABORTED;
}

bool host_ota_select_valid(const esp_ota_select_entry_t *s)
{
    return !host_ota_select_invalid(s) && s->crc == host_ota_select_crc(s);
}

int host_ota_active_entry(const esp_ota_select_entry_t two[2])
{
    bool v0 = host_ota_select_valid(&two[0]);
    bool v1 = host_ota_select_valid(&two[1]);
    if (v0 && v1) {
        return two[0].ota_seq >= two[1].ota_seq ? 0 : 1;
    }
    if (v0) {
        return 0;
    }
    if (v1) {
        return 1;
    }
    return -1;
}

const char *host_ota_state_name(uint32_t state)
{
    switch (state) {
    case ESP_OTA_IMG_NEW:
        return "NEW";
    case ESP_OTA_IMG_PENDING_VERIFY:
        return "PENDING_VERIFY";
    case ESP_OTA_IMG_VALID:
        return "VALID";
    case ESP_OTA_IMG_INVALID:
        return "INVALID";
    case ESP_OTA_IMG_ABORTED:
        return "ABORTED";
    case ESP_OTA_IMG_UNDEFINED:
        return "UNDEFINED";
    default:
        return "?";
    }
}

uint32_t host_ota_seq_for_slot(uint32_t current_seq, uint32_t slot, uint32_t count)
{
    if (count == 0) {
        return 0;
    }
    uint32_t base = (slot + 1) % count;
    uint32_t i = 0;
    while (current_seq > base + i * count) {
        i++;
    }
    return base + i * count;
}

int host_dev_load(host_dev_t *dev, host_flash_t *flash, char *err, size_t errlen)
{
    memset(dev, 0, sizeof(*dev));
    dev->flash = flash;
    uint8_t bin[ESP_PARTITION_TABLE_MAX_LEN];
    if (host_flash_read(flash, ESP_PARTITION_TABLE_OFFSET, bin, sizeof(bin)) != 0) {
        snprintf(err, errlen, "%s", flash->error);
        return -1;
    }
    if (host_ptable_from_binary(bin, sizeof(bin), &dev->table, err, errlen) != 0) {
        return -1;
    }
    dev->otadata = host_ptable_find(&dev->table, PART_TYPE_DATA, PART_SUBTYPE_DATA_OTA);
    dev->ota_count = host_ptable_ota_count(&dev->table);
    return 0;
}

int host_otadata_read(host_dev_t *dev, esp_ota_select_entry_t two[2])
{
    if (dev->otadata == NULL) {
        snprintf(dev->flash->error, sizeof(dev->flash->error), "partition table has no otadata partition");
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (host_flash_read(dev->flash, dev->otadata->offset + (uint32_t)i * ESP_FLASH_SECTOR_SIZE, &two[i],
                            sizeof(two[i])) != 0) {
            return -1;
        }
    }
    return 0;
}

int host_otadata_write(host_dev_t *dev, int index, const esp_ota_select_entry_t *e)
{
    uint32_t addr = dev->otadata->offset + (uint32_t)index * ESP_FLASH_SECTOR_SIZE;
    if (host_flash_erase(dev->flash, addr, ESP_FLASH_SECTOR_SIZE) != 0) {
        return -1;
    }
    return host_flash_write(dev->flash, addr, e, sizeof(*e));
}

int host_ota_selected_slot(const host_dev_t *dev, const esp_ota_select_entry_t two[2])
{
    int active = host_ota_active_entry(two);
    if (active < 0 || dev->ota_count == 0) {
        return -1;
    }
    return (int)((two[active].ota_seq - 1) % (uint32_t)dev->ota_count);
}

static int prv_rewrite(host_dev_t *dev, esp_ota_select_entry_t two[2], uint32_t seq, int index)
{
    two[index].ota_seq = seq;
    two[index].crc = host_ota_select_crc(&two[index]);
    return host_otadata_write(dev, index, &two[index]);
}

int host_ota_set_boot(host_dev_t *dev, int slot, char *err, size_t errlen)
{
    esp_ota_select_entry_t two[2];
    if (slot < 0 || slot >= dev->ota_count) {
        snprintf(err, errlen, "there is no ota_%d partition (the table has %d OTA slots)", slot, dev->ota_count);
        return -1;
    }
    if (host_otadata_read(dev, two) != 0) {
        snprintf(err, errlen, "%s", dev->flash->error);
        return -1;
    }
    int active = host_ota_active_entry(two);
    int next;
    uint32_t seq;
    if (active != -1) {
        uint32_t cur_slot = (two[active].ota_seq - 1) % (uint32_t)dev->ota_count;
        if (cur_slot == (uint32_t)slot) {
            next = active;
            seq = two[active].ota_seq;
        } else {
            next = active ^ 1;
            seq = host_ota_seq_for_slot(two[active].ota_seq, (uint32_t)slot, (uint32_t)dev->ota_count);
        }
    } else {
        next = 0;
        seq = (uint32_t)slot + 1;
    }
    two[next].ota_state = ESP_OTA_IMG_NEW;
    if (prv_rewrite(dev, two, seq, next) != 0) {
        snprintf(err, errlen, "%s", dev->flash->error);
        return -1;
    }
    return 0;
}

static int prv_image_plausible(host_dev_t *dev, int slot)
{
    const host_part_t *p = host_ptable_ota(&dev->table, slot);
    uint8_t magic = 0xFF;
    return p != NULL && host_flash_read(dev->flash, p->offset, &magic, 1) == 0 && magic == ESP_IMAGE_HEADER_MAGIC;
}

int host_ota_mark_valid(host_dev_t *dev, char *err, size_t errlen)
{
    esp_ota_select_entry_t two[2];
    if (host_otadata_read(dev, two) != 0) {
        snprintf(err, errlen, "%s", dev->flash->error);
        return -1;
    }
    int active = host_ota_active_entry(two);
    if (active == -1 || dev->ota_count == 0) {
        snprintf(err, errlen, "Running firmware is factory");
        return -1;
    }
    if (two[active].ota_state == ESP_OTA_IMG_VALID) {
        return 0;
    }
    two[active].ota_state = ESP_OTA_IMG_VALID;
    if (prv_rewrite(dev, two, two[active].ota_seq, active) != 0) {
        snprintf(err, errlen, "%s", dev->flash->error);
        return -1;
    }
    return 0;
}

int host_ota_mark_invalid(host_dev_t *dev, char *err, size_t errlen)
{
    esp_ota_select_entry_t two[2];
    if (host_otadata_read(dev, two) != 0) {
        snprintf(err, errlen, "%s", dev->flash->error);
        return -1;
    }
    int active = host_ota_active_entry(two);
    if (active == -1 || dev->ota_count == 0) {
        snprintf(err, errlen, "Running firmware is factory");
        return -1;
    }
    /* esp_ota_check_rollback_is_possible: the other entry must be valid and point at an image */
    int last = active ^ 1;
    if (!host_ota_select_valid(&two[last]) ||
        !prv_image_plausible(dev, (int)((two[last].ota_seq - 1) % (uint32_t)dev->ota_count))) {
        snprintf(err, errlen, "Rollback is not possible, do not have any suitable apps in slots");
        return -1;
    }
    two[active].ota_state = ESP_OTA_IMG_INVALID;
    if (prv_rewrite(dev, two, two[active].ota_seq, active) != 0) {
        snprintf(err, errlen, "%s", dev->flash->error);
        return -1;
    }
    return 0;
}

int host_ota_get_state(host_dev_t *dev, int slot, uint32_t *state)
{
    esp_ota_select_entry_t two[2];
    if (host_otadata_read(dev, two) != 0 || dev->ota_count == 0) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (two[i].ota_seq != UINT32_MAX && two[i].crc == host_ota_select_crc(&two[i]) &&
            (two[i].ota_seq - 1) % (uint32_t)dev->ota_count == (uint32_t)slot) {
            *state = two[i].ota_state;
            return 0;
        }
    }
    return -1;
}

int host_ota_invalidate_inactive(host_dev_t *dev, int running_slot)
{
    esp_ota_select_entry_t two[2];
    if (host_otadata_read(dev, two) != 0) {
        return -1;
    }
    int active = host_ota_active_entry(two);
    if (active == -1 || dev->ota_count == 0) {
        return 1; /* nothing to invalidate, like ESP_FAIL which esp_ota_begin ignores */
    }
    int inactive = active ^ 1;
    if (two[inactive].ota_seq == UINT32_MAX || two[inactive].crc != host_ota_select_crc(&two[inactive])) {
        return 1;
    }
    int slot = (int)((two[inactive].ota_seq - 1) % (uint32_t)dev->ota_count);
    if (slot == running_slot) {
        return 1;
    }
    return host_flash_erase(dev->flash, dev->otadata->offset + (uint32_t)inactive * ESP_FLASH_SECTOR_SIZE,
                            ESP_FLASH_SECTOR_SIZE);
}
