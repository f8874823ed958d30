#include "gatt_json.h"

#include "ble_ota_gatt.h"

int host_gatt_json_write(FILE *out, unsigned acl_rx_buffers, unsigned preferred_mtu,
                         ble_ota_link_security_t link_security)
{
    const char *level = ble_ota_link_security_name(link_security);
    if (level == NULL) {
        return -1;
    }
    static const struct {
        unsigned bit;
        const char *name;
    } props[] = {
        {BLE_OTA_PROP_READ, "read"},
        {BLE_OTA_PROP_WRITE, "write"},
        {BLE_OTA_PROP_WRITE_NO_RSP, "writeWithoutResponse"},
        {BLE_OTA_PROP_NOTIFY, "notify"},
        {BLE_OTA_PROP_INDICATE, "indicate"},
    };
    char uuid[BLE_OTA_UUID_STR_SIZE];
    fputs("{\"services\":[", out);
    for (size_t s = 0; s < BLE_OTA_SVC_COUNT; s++) {
        const ble_ota_svc_def_t *svc = &ble_ota_gatt_services[s];
        if (ble_ota_uuid_to_string(&svc->uuid, uuid, sizeof(uuid)) < 0) {
            return -1;
        }
        fprintf(out, "%s{\"name\":\"%s\",\"uuid\":\"%s\",\"characteristics\":[", s ? "," : "", svc->name, uuid);
        for (size_t c = 0; c < svc->characteristic_count; c++) {
            const ble_ota_chr_def_t *chr = &svc->characteristics[c];
            if (ble_ota_uuid_to_string(&chr->uuid, uuid, sizeof(uuid)) < 0) {
                return -1;
            }
            fprintf(out, "%s{\"id\":%d,\"name\":\"%s\",\"uuid\":\"%s\",\"properties\":[", c ? "," : "", (int)chr->id,
                    chr->name, uuid);
            int first = 1;
            for (size_t p = 0; p < sizeof(props) / sizeof(props[0]); p++) {
                if (chr->properties & props[p].bit) {
                    fprintf(out, "%s\"%s\"", first ? "" : ",", props[p].name);
                    first = 0;
                }
            }
            fputs("]", out);
            if (chr->access & BLE_OTA_ACCESS_SECURED_WRITE) {
                fprintf(out, ",\"writeSecurity\":\"%s\"", level);
            }
            fputs("}", out);
        }
        fputs("]}", out);
    }
    fprintf(out, "],\"controller\":{\"aclRxBuffers\":%u,\"preferredMtu\":%u}}\n", acl_rx_buffers, preferred_mtu);
    return ferror(out) ? -1 : 0;
}
