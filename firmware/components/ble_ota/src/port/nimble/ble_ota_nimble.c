/*
 * NimBLE port: builds the GATT database from the layout declared in
 * ble_ota_gatt.c, advertises, and forwards GAP and GATT events to the core.
 * Access callbacks only copy bytes and call the core; flash work happens in
 * the writer task (see ble_ota_esp_ota.c).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "sdkconfig.h"
#include "soc/soc_caps.h"

#include "esp_log.h"
#include "host/ble_hs.h"
#include "host/ble_uuid.h"
#include "host/util/util.h"
#include "nimble/nimble_port.h"
#include "nimble/nimble_port_freertos.h"
#include "services/gap/ble_svc_gap.h"
#include "services/gatt/ble_svc_gatt.h"
#if CONFIG_BLE_OTA_LINK_SECURITY > 0
#include "host/ble_store.h"
#include "esp_random.h"
#endif

#include "ble_ota.h"
#include "ble_ota_gatt.h"
#include "ble_ota_idf_priv.h"

#if !SOC_BT_SUPPORTED
#error "ble_ota needs a chip with a Bluetooth LE radio; this target (ESP32-S2, ESP32-P4) has none"
#endif

#if CONFIG_BT_NIMBLE_EXT_ADV
#error "ble_ota uses legacy advertising, which NimBLE compiles out with extended advertising: disable CONFIG_BT_NIMBLE_EXT_ADV"
#endif

#if CONFIG_BLE_OTA_LINK_SECURITY > 0 && !CONFIG_BT_NIMBLE_SECURITY_ENABLE
#error "CONFIG_BLE_OTA_LINK_SECURITY needs NimBLE's security manager: enable CONFIG_BT_NIMBLE_SECURITY_ENABLE (or choose an open link)"
#endif

static const char *TAG = "ble_ota";

#if CONFIG_BLE_OTA_LINK_SECURITY > 0
/* NimBLE's persistent bond store (keys in NVS with CONFIG_BT_NIMBLE_NVS_PERSIST); declared by
 * no public header in IDF v5, as its examples declare it. */
void ble_store_config_init(void);
#endif

/* NimBLE keeps pointers into these tables after registration: static storage. */
static ble_uuid_any_t s_svc_uuids[BLE_OTA_SVC_COUNT];
static ble_uuid_any_t s_chr_uuids[BLE_OTA_CHR_COUNT];
static uint16_t s_val_handles[BLE_OTA_CHR_COUNT];
/* Each service's characteristic list ends with a zeroed entry. */
static struct ble_gatt_chr_def s_chr_defs[BLE_OTA_CHR_COUNT + BLE_OTA_SVC_COUNT];
static struct ble_gatt_svc_def s_svc_defs[BLE_OTA_SVC_COUNT + 1];

static const char *s_device_name;
static uint8_t s_own_addr_type;
/* Only the NimBLE host task runs the access callback: one buffer is enough,
 * and it keeps 514 bytes off that task's stack. */
static uint8_t s_rx_buf[BLE_OTA_MAX_PACKET];

static void prv_advertise(void);

static ble_gatt_chr_flags prv_flags(uint8_t props, uint8_t access)
{
    ble_gatt_chr_flags flags = 0;

    /* CONFIG_BLE_OTA_LINK_SECURITY: NimBLE answers a write on an unencrypted link with ATT
     * "Insufficient Authentication" (0x05; "Insufficient Encryption" if it holds the peer's
     * keys), which makes the central pair; a Write Command is dropped. */
    if ((access & BLE_OTA_ACCESS_SECURED_WRITE) && CONFIG_BLE_OTA_LINK_SECURITY >= BLE_OTA_LINK_ENCRYPTED) {
        flags |= BLE_GATT_CHR_F_WRITE_ENC;
    }
    if ((access & BLE_OTA_ACCESS_SECURED_WRITE) && CONFIG_BLE_OTA_LINK_SECURITY >= BLE_OTA_LINK_AUTHENTICATED) {
        flags |= BLE_GATT_CHR_F_WRITE_AUTHEN;
    }

    if (props & BLE_OTA_PROP_READ) {
        flags |= BLE_GATT_CHR_F_READ;
    }
    if (props & BLE_OTA_PROP_WRITE) {
        flags |= BLE_GATT_CHR_F_WRITE;
    }
    if (props & BLE_OTA_PROP_WRITE_NO_RSP) {
        flags |= BLE_GATT_CHR_F_WRITE_NO_RSP;
    }
    if (props & BLE_OTA_PROP_NOTIFY) {
        flags |= BLE_GATT_CHR_F_NOTIFY;
    }
    if (props & BLE_OTA_PROP_INDICATE) {
        flags |= BLE_GATT_CHR_F_INDICATE;
    }
    return flags;
}

static int prv_access(uint16_t conn_handle, uint16_t attr_handle, struct ble_gatt_access_ctxt *ctxt,
                      void *arg)
{
    ble_ota_chr_id_t id = (ble_ota_chr_id_t)(uintptr_t)arg;
    uint16_t len = 0;
    size_t out_len = 0;
    int rc;

    (void)attr_handle;
    switch (ctxt->op) {
    case BLE_GATT_ACCESS_OP_READ_CHR:
        rc = ble_ota_on_read(conn_handle, id, s_rx_buf, sizeof(s_rx_buf), &out_len);
        if (rc != 0) {
            return rc;
        }
        return os_mbuf_append(ctxt->om, s_rx_buf, (uint16_t)out_len) == 0 ? 0
                                                                           : BLE_ATT_ERR_INSUFFICIENT_RES;
    case BLE_GATT_ACCESS_OP_WRITE_CHR:
        if (OS_MBUF_PKTLEN(ctxt->om) > sizeof(s_rx_buf)) {
            return BLE_ATT_ERR_INVALID_ATTR_VALUE_LEN;
        }
        if (ble_hs_mbuf_to_flat(ctxt->om, s_rx_buf, sizeof(s_rx_buf), &len) != 0) {
            return BLE_ATT_ERR_UNLIKELY;
        }
        /* NimBLE does not tell a Write Command from a Write Request here, so
         * say "cannot be refused": the core then never loses data silently. */
        return ble_ota_on_write(conn_handle, id, s_rx_buf, len, false);
    default:
        return BLE_ATT_ERR_UNLIKELY;
    }
}

static int prv_build_gatt_table(void)
{
    size_t next_chr = 0;
    size_t s;
    size_t c;

    memset(s_chr_defs, 0, sizeof(s_chr_defs));
    memset(s_svc_defs, 0, sizeof(s_svc_defs));
    for (s = 0; s < BLE_OTA_SVC_COUNT; s++) {
        const ble_ota_svc_def_t *svc = &ble_ota_gatt_services[s];

        if (ble_uuid_init_from_buf(&s_svc_uuids[s], svc->uuid.bytes, svc->uuid.len) != 0) {
            return BLE_HS_EINVAL;
        }
        s_svc_defs[s].type = BLE_GATT_SVC_TYPE_PRIMARY;
        s_svc_defs[s].uuid = &s_svc_uuids[s].u;
        s_svc_defs[s].characteristics = &s_chr_defs[next_chr];
        for (c = 0; c < svc->characteristic_count; c++) {
            const ble_ota_chr_def_t *chr = &svc->characteristics[c];
            struct ble_gatt_chr_def *def = &s_chr_defs[next_chr++];

            if (ble_uuid_init_from_buf(&s_chr_uuids[chr->id], chr->uuid.bytes, chr->uuid.len) != 0) {
                return BLE_HS_EINVAL;
            }
            def->uuid = &s_chr_uuids[chr->id].u;
            def->access_cb = prv_access;
            def->arg = (void *)(uintptr_t)chr->id;
            def->flags = prv_flags(chr->properties, chr->access);
            def->val_handle = &s_val_handles[chr->id];
        }
        next_chr++; /* terminator, already zeroed */
    }
    return 0;
}

static ble_ota_chr_id_t prv_chr_of_handle(uint16_t val_handle)
{
    unsigned i;

    for (i = 0; i < BLE_OTA_CHR_COUNT; i++) {
        if (s_val_handles[i] == val_handle) {
            return (ble_ota_chr_id_t)i;
        }
    }
    return BLE_OTA_CHR_COUNT;
}

int ble_ota_nimble_disconnect(void *ctx, uint16_t conn)
{
    (void)ctx;
    /* BLE_GAP_EVENT_DISCONNECT follows: the core hears of it and the device advertises again. */
    return ble_gap_terminate(conn, BLE_ERR_REM_USER_CONN_TERM) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

int ble_ota_nimble_notify(void *ctx, uint16_t conn, ble_ota_chr_id_t chr, const uint8_t *data,
                          size_t len)
{
    struct os_mbuf *om;

    (void)ctx;
    if ((unsigned)chr >= BLE_OTA_CHR_COUNT) {
        return BLE_OTA_ERR_INVALID_ARG;
    }
    om = ble_hs_mbuf_from_flat(data, (uint16_t)len);
    if (om == NULL) {
        return BLE_OTA_ERR_NO_MEM;
    }
    /* Consumes om whatever the result. */
    return ble_gatts_notify_custom(conn, s_val_handles[chr], om) == 0 ? BLE_OTA_OK : BLE_OTA_ERR_STATE;
}

int ble_ota_nimble_link_request(void *ctx, uint16_t conn, const ble_ota_link_request_t *req)
{
    int rc;

    (void)ctx;
    switch (req->kind) {
    case BLE_OTA_LINK_CONN_PARAMS: {
        /* Centrals may refuse (Apple wants at least 15 ms); then the link
         * keeps their default. */
        struct ble_gap_upd_params params = {
            .itvl_min = req->min_interval,
            .itvl_max = req->max_interval,
            .latency = req->latency,
            .supervision_timeout = req->timeout,
            .min_ce_len = 0,
            .max_ce_len = 0,
        };
        rc = ble_gap_update_params(conn, &params);
        break;
    }
    case BLE_OTA_LINK_DATA_LENGTH:
        rc = ble_gap_set_data_len(conn, req->tx_octets, req->tx_time_us);
        break;
    case BLE_OTA_LINK_PHY:
#if CONFIG_BLE_OTA_PREFER_2M_PHY
        rc = ble_gap_set_prefered_le_phy(conn, req->tx_phys, req->rx_phys, BLE_GAP_LE_PHY_CODED_ANY);
        break;
#else
        /* A Bluetooth 4.2 controller (ESP32), or 5.0 features off in menuconfig. */
        return BLE_OTA_ERR_UNSUPPORTED;
#endif
    default:
        return BLE_OTA_ERR_INVALID_ARG;
    }
    if (rc != 0) {
        ESP_LOGD(TAG, "link request %d not started (rc %d)", (int)req->kind, rc);
        return BLE_OTA_ERR_STATE;
    }
    return BLE_OTA_OK;
}

/* What the link settled on, as the host build prints its LINK_UPDATE frames. */
static void prv_log_link(uint16_t conn_handle)
{
    struct ble_gap_conn_desc desc;

    if (ble_gap_conn_find(conn_handle, &desc) == 0) {
        ESP_LOGI(TAG, "link: connection %u now uses interval %u.%02u ms, latency %u", (unsigned)conn_handle,
                 (unsigned)(desc.conn_itvl * 125u / 100u), (unsigned)(desc.conn_itvl * 125u % 100u),
                 (unsigned)desc.conn_latency);
    }
}

static int prv_gap_event(struct ble_gap_event *event, void *arg)
{
    (void)arg;
    switch (event->type) {
    case BLE_GAP_EVENT_CONNECT:
        if (event->connect.status != 0) {
            prv_advertise();
            return 0;
        }
        /* The core asks for the link tuning through ble_ota_nimble_link_request. */
        ble_ota_on_connect(event->connect.conn_handle, ble_att_mtu(event->connect.conn_handle));
        return 0;
    case BLE_GAP_EVENT_CONN_UPDATE:
        if (event->conn_update.status == 0) {
            prv_log_link(event->conn_update.conn_handle);
        }
        return 0;
    case BLE_GAP_EVENT_PHY_UPDATE_COMPLETE:
        if (event->phy_updated.status == 0) {
            ESP_LOGI(TAG, "link: connection %u now uses the %s PHY", (unsigned)event->phy_updated.conn_handle,
                     event->phy_updated.tx_phy == BLE_GAP_LE_PHY_2M ? "2M" : "1M");
            ble_ota_on_phy(event->phy_updated.conn_handle, event->phy_updated.tx_phy == BLE_GAP_LE_PHY_2M ? 2u : 1u);
        }
        return 0;
#ifdef BLE_GAP_EVENT_DATA_LEN_CHG
    case BLE_GAP_EVENT_DATA_LEN_CHG:
        ESP_LOGI(TAG, "link: connection %u now uses data length %u", (unsigned)event->data_len_chg.conn_handle,
                 (unsigned)event->data_len_chg.max_tx_octets);
        /* What the central may send us per packet sizes the v2 DATA frames. */
        ble_ota_on_data_length(event->data_len_chg.conn_handle, event->data_len_chg.max_rx_octets);
        return 0;
#endif
    case BLE_GAP_EVENT_DISCONNECT:
        ESP_LOGI(TAG, "disconnect reason 0x%03x", event->disconnect.reason);
        ble_ota_on_disconnect(event->disconnect.conn.conn_handle);
        prv_advertise();
        return 0;
    case BLE_GAP_EVENT_ADV_COMPLETE:
        prv_advertise();
        return 0;
    case BLE_GAP_EVENT_MTU:
        ble_ota_on_mtu(event->mtu.conn_handle, event->mtu.value);
        return 0;
#if CONFIG_BLE_OTA_LINK_SECURITY > 0
    case BLE_GAP_EVENT_ENC_CHANGE: {
        struct ble_gap_conn_desc desc;
        if (event->enc_change.status == 0 && ble_gap_conn_find(event->enc_change.conn_handle, &desc) == 0) {
            ESP_LOGI(TAG, "link: connection %u encrypted (%s, %s, key size %u)",
                     (unsigned)event->enc_change.conn_handle,
                     desc.sec_state.authenticated ? "authenticated" : "unauthenticated",
                     desc.sec_state.bonded ? "bonded" : "not bonded", (unsigned)desc.sec_state.key_size);
        } else {
            ESP_LOGW(TAG, "link: connection %u not encrypted (status %d): OTA writes stay refused",
                     (unsigned)event->enc_change.conn_handle, event->enc_change.status);
        }
        return 0;
    }
    case BLE_GAP_EVENT_REPEAT_PAIRING: {
        /* A bonded central pairs again (it lost its keys, or a client such as noble keeps
         * none): drop the old bond and let the new pairing go on, as NimBLE's examples do. */
        struct ble_gap_conn_desc desc;
        if (ble_gap_conn_find(event->repeat_pairing.conn_handle, &desc) == 0) {
            ble_store_util_delete_peer(&desc.peer_id_addr);
        }
        return BLE_GAP_REPEAT_PAIRING_RETRY;
    }
    case BLE_GAP_EVENT_PASSKEY_ACTION: {
        struct ble_sm_io io;
        memset(&io, 0, sizeof(io));
        io.action = event->passkey.params.action;
        if (io.action != BLE_SM_IOACT_DISP) {
            ESP_LOGW(TAG, "pairing asks for IO action %u, which this device cannot do", (unsigned)io.action);
            return 0;
        }
#if CONFIG_BLE_OTA_PASSKEY > 0
        io.passkey = CONFIG_BLE_OTA_PASSKEY;
#else
        io.passkey = esp_random() % 1000000u;
#endif
        /* The console is the device's display: whoever pairs must see it (or know the static one). */
        ESP_LOGW(TAG, "pairing: passkey %06u", (unsigned)io.passkey);
        ble_sm_inject_io(event->passkey.conn_handle, &io);
        return 0;
    }
#endif
    case BLE_GAP_EVENT_SUBSCRIBE: {
        ble_ota_chr_id_t chr = prv_chr_of_handle(event->subscribe.attr_handle);
        if (chr != BLE_OTA_CHR_COUNT) {
            ble_ota_on_subscribe(event->subscribe.conn_handle, chr, event->subscribe.cur_notify != 0);
        }
        return 0;
    }
    default:
        return 0;
    }
}

static void prv_advertise(void)
{
    struct ble_hs_adv_fields fields;
    struct ble_hs_adv_fields rsp;
    struct ble_gap_adv_params params;
    ble_uuid128_t uuid;
    size_t name_len = strlen(s_device_name);
    bool uuid_in_adv;
    int rc;

    memset(&fields, 0, sizeof(fields));
    memset(&rsp, 0, sizeof(rsp));
    memset(&params, 0, sizeof(params));
    uuid.u.type = BLE_UUID_TYPE_128;
    memcpy(uuid.value, ble_ota_service_uuid.bytes, sizeof(uuid.value));

    fields.flags = BLE_HS_ADV_F_DISC_GEN | BLE_HS_ADV_F_BREDR_UNSUP;
    fields.tx_pwr_lvl_is_present = 1;
    fields.tx_pwr_lvl = BLE_HS_ADV_TX_PWR_LVL_AUTO;
    fields.name = (const uint8_t *)s_device_name;
    fields.name_len = (uint8_t)name_len;
    fields.name_is_complete = 1;
    /* flags (3) + TX power (3) + name (2 + n) + 128-bit UUID (18) must fit in
     * 31 bytes; with the default name "esp32" they fit exactly. A longer
     * name moves the UUID to the scan response. */
    uuid_in_adv = 3u + 3u + 2u + name_len + 18u <= BLE_HS_ADV_MAX_SZ;
    if (uuid_in_adv) {
        fields.uuids128 = &uuid;
        fields.num_uuids128 = 1;
        fields.uuids128_is_complete = 1;
    } else {
        rsp.uuids128 = &uuid;
        rsp.num_uuids128 = 1;
        rsp.uuids128_is_complete = 1;
    }
    rc = ble_gap_adv_set_fields(&fields);
    if (rc != 0) {
        ESP_LOGE(TAG, "advertising data rejected (rc %d): the device name \"%s\" is too long, "
                      "shorten CONFIG_BLE_OTA_DEVICE_NAME",
                 rc, s_device_name);
        return;
    }
    if (!uuid_in_adv) {
        rc = ble_gap_adv_rsp_set_fields(&rsp);
        if (rc != 0) {
            ESP_LOGE(TAG, "scan response rejected (rc %d)", rc);
            return;
        }
    }
    params.conn_mode = BLE_GAP_CONN_MODE_UND;
    params.disc_mode = BLE_GAP_DISC_MODE_GEN;
    params.itvl_min = BLE_GAP_ADV_FAST_INTERVAL1_MIN;
    params.itvl_max = BLE_GAP_ADV_FAST_INTERVAL1_MAX;
    rc = ble_gap_adv_start(s_own_addr_type, NULL, BLE_HS_FOREVER, &params, prv_gap_event, NULL);
    if (rc != 0 && rc != BLE_HS_EALREADY) {
        ESP_LOGE(TAG, "advertising did not start (rc %d)", rc);
        return;
    }
    ESP_LOGI(TAG, "advertising as \"%s\"", s_device_name);
}

static void prv_on_sync(void)
{
    int rc = ble_hs_util_ensure_addr(0);

    if (rc == 0) {
        rc = ble_hs_id_infer_auto(0, &s_own_addr_type);
    }
    if (rc != 0) {
        ESP_LOGE(TAG, "no usable BLE address (rc %d)", rc);
        return;
    }
    /* Longest LL packets for new links: fewer packets per ATT write. */
    rc = ble_gap_write_sugg_def_data_len(251, 2120);
    if (rc != 0) {
        ESP_LOGD(TAG, "data length suggestion refused by the controller (rc %d)", rc);
    }
#if CONFIG_BLE_OTA_PREFER_2M_PHY
    rc = ble_gap_set_prefered_default_le_phy(BLE_GAP_LE_PHY_1M_MASK | BLE_GAP_LE_PHY_2M_MASK,
                                             BLE_GAP_LE_PHY_1M_MASK | BLE_GAP_LE_PHY_2M_MASK);
    if (rc != 0) {
        ESP_LOGD(TAG, "2M PHY preference refused by the controller (rc %d)", rc);
    }
#endif
    prv_advertise();
}

static void prv_on_reset(int reason)
{
    ESP_LOGW(TAG, "NimBLE host reset (reason %d)", reason);
}

static void prv_host_task(void *param)
{
    (void)param;
    nimble_port_run(); /* returns only after nimble_port_stop() */
    nimble_port_freertos_deinit();
}

esp_err_t ble_ota_nimble_start(const char *device_name)
{
    esp_err_t err;
    int rc;

    s_device_name = device_name;
    err = nimble_port_init();
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "NimBLE init failed (%s): is CONFIG_BT_NIMBLE_ENABLED set and NVS initialised?",
                 esp_err_to_name(err));
        return err;
    }
    /* The largest ATT MTU, so one v2 frame carries up to 510 image bytes. */
    rc = ble_att_set_preferred_mtu(517);
    if (rc != 0) {
        ESP_LOGW(TAG, "preferred MTU 517 refused (rc %d): raise CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU's limit", rc);
    }
    ble_hs_cfg.sync_cb = prv_on_sync;
    ble_hs_cfg.reset_cb = prv_on_reset;
#if CONFIG_BLE_OTA_LINK_SECURITY > 0
    /* Bond, prefer LE Secure Connections, keep the keys in NVS. ENCRYPTED takes Just Works
     * (no IO): a central that pairs at all gets an encrypted link. AUTHENTICATED shows a passkey
     * on the console (CONFIG_BLE_OTA_PASSKEY, or a random one) and needs MITM protection. */
    ble_hs_cfg.sm_bonding = 1;
    ble_hs_cfg.sm_sc = 1;
    ble_hs_cfg.sm_mitm = CONFIG_BLE_OTA_LINK_SECURITY >= BLE_OTA_LINK_AUTHENTICATED;
    ble_hs_cfg.sm_io_cap =
        CONFIG_BLE_OTA_LINK_SECURITY >= BLE_OTA_LINK_AUTHENTICATED ? BLE_HS_IO_DISPLAY_ONLY : BLE_HS_IO_NO_INPUT_OUTPUT;
    ble_hs_cfg.sm_our_key_dist = BLE_SM_PAIR_KEY_DIST_ENC | BLE_SM_PAIR_KEY_DIST_ID;
    ble_hs_cfg.sm_their_key_dist = BLE_SM_PAIR_KEY_DIST_ENC | BLE_SM_PAIR_KEY_DIST_ID;
    ble_hs_cfg.store_status_cb = ble_store_util_status_rr;
    ble_store_config_init();
#endif

    ble_svc_gap_init();
    ble_svc_gatt_init();
    rc = prv_build_gatt_table();
    if (rc == 0) {
        rc = ble_gatts_count_cfg(s_svc_defs);
    }
    if (rc == 0) {
        rc = ble_gatts_add_svcs(s_svc_defs);
    }
    if (rc != 0) {
        ESP_LOGE(TAG, "GATT table registration failed (rc %d)", rc);
        return ESP_FAIL;
    }
    rc = ble_svc_gap_device_name_set(device_name);
    if (rc != 0) {
        ESP_LOGE(TAG, "device name \"%s\" refused (rc %d): it must be shorter than "
                      "CONFIG_BT_NIMBLE_GAP_DEVICE_NAME_MAX_LEN",
                 device_name, rc);
        return ESP_ERR_INVALID_ARG;
    }
    nimble_port_freertos_init(prv_host_task);
    return ESP_OK;
}
