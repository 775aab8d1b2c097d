/*
 * bench/capacity/packet.h: the telemetry packet of the capacity benchmark and
 * the per-device work the ingest loop does for each one.
 *
 * Why fixed-size, little-endian fields read with memcpy: this is the shape of
 * a real sensor datagram (a device id, a sequence number, a timestamp and a
 * few readings in 64 bytes), and parsing it must be safe for any bytes that
 * arrive, aligned or not, so the ingest never casts the buffer to a struct.
 * The update touches one record of CAP_RECORD bytes per packet, chosen by the
 * device id out of 10,000 (2 MB of records, more than a core's L2), which is
 * the memory behaviour of a real ingest table rather than of one hot line.
 * The sender and the ingest share this file so that they agree on the layout.
 */
#ifndef CAP_PACKET_H
#define CAP_PACKET_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define CAP_PACKET 64
#define CAP_MAGIC 0x31544b48u /* "HKT1" read as a little-endian u32 */
#define CAP_READINGS 10

/* Offsets: magic 0, device 4, seq 8, timestamp 16, readings 24 (10 x int32). */
#define CAP_OFF_DEVICE 4
#define CAP_OFF_SEQ 8
#define CAP_OFF_TS 16
#define CAP_OFF_READINGS 24

typedef struct cap_device {
    uint64_t count;     /* packets seen */
    uint64_t last_seq;  /* highest sequence number seen */
    uint64_t last_ts;   /* the device's timestamp of that packet */
    uint64_t gaps;      /* sequence numbers skipped (lost or late) */
    uint64_t reordered; /* packets older than last_seq */
    int64_t sum[CAP_READINGS];
    int32_t min[CAP_READINGS];
    int32_t max[CAP_READINGS];
} cap_device_t;

#define CAP_RECORD ((int)sizeof(cap_device_t))

static inline uint32_t cap_get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return le32toh(v);
}

static inline uint64_t cap_get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

static inline void cap_put32(unsigned char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof v);
}

static inline void cap_put64(unsigned char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof v);
}

/* Fills a packet (the sender's side). */
static inline void cap_encode(unsigned char *p, uint32_t device, uint64_t seq, uint64_t ts)
{
    cap_put32(p, CAP_MAGIC);
    cap_put32(p + CAP_OFF_DEVICE, device);
    cap_put64(p + CAP_OFF_SEQ, seq);
    cap_put64(p + CAP_OFF_TS, ts);
    for (int i = 0; i < CAP_READINGS; i++) {
        /* Readings that move with seq, so that min, max and sum do real work. */
        cap_put32(p + CAP_OFF_READINGS + 4 * i, (uint32_t)((seq * 2654435761u + i) & 0xffffu));
    }
}

/*
 * Parses one datagram of len bytes and updates its device's record. Returns
 * 0, or -1 for a packet that is not ours (wrong size or magic, unknown
 * device), which is counted and otherwise ignored.
 */
static inline int cap_ingest(cap_device_t *devs, uint32_t ndevs, const unsigned char *p,
                             unsigned len)
{
    if (len != CAP_PACKET || cap_get32(p) != CAP_MAGIC) {
        return -1;
    }
    uint32_t id = cap_get32(p + CAP_OFF_DEVICE);
    if (id >= ndevs) {
        return -1;
    }
    cap_device_t *d = &devs[id];
    uint64_t seq = cap_get64(p + CAP_OFF_SEQ);
    if (d->count == 0 || seq > d->last_seq) {
        d->gaps += d->count == 0 ? 0 : seq - d->last_seq - 1;
        d->last_seq = seq;
        d->last_ts = cap_get64(p + CAP_OFF_TS);
    } else {
        d->reordered++;
    }
    for (int i = 0; i < CAP_READINGS; i++) {
        int32_t r = (int32_t)cap_get32(p + CAP_OFF_READINGS + 4 * i);
        if (d->count == 0 || r < d->min[i]) {
            d->min[i] = r;
        }
        if (d->count == 0 || r > d->max[i]) {
            d->max[i] = r;
        }
        d->sum[i] += r;
    }
    d->count++;
    return 0;
}

#endif
