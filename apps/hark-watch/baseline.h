/*
 * baseline.h: what is normal, per executable and class. For each (exe, class)
 * a Welford accumulator of the socket interest count of its processes, one
 * sample per process per scan; the alert rule; the state file.
 */
#ifndef HARK_WATCH_BASELINE_H
#define HARK_WATCH_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#include "hark/stats.h"

enum proc_class { CLASS_OTHER = 0, CLASS_NET = 1 };

typedef struct bl_entry {
    char *exe;
    uint8_t cls;
    hk_welford_t w;       /* the baseline */
    hk_welford_t pending; /* samples of the current scan, merged at its end */
} bl_entry_t;

typedef struct baseline {
    bl_entry_t *v;
    size_t n, cap;
    uint32_t *index; /* open addressing: 0 = empty, else entry index + 1 */
    size_t icap;
    double alpha, k; /* k = 1/sqrt(alpha) */
    double floor;    /* an alert needs x - mean >= floor too */
    uint64_t warmup; /* samples before an entry may alert */
} baseline_t;

typedef struct verdict {
    int alert;
    int warming; /* fewer than warmup samples: never alerts */
    double mean, sd, threshold;
    uint64_t samples; /* behind mean and sd (this scan's sample is not among them) */
} verdict_t;

/* Errors: -EINVAL (alpha outside (0, 1], floor < 0). */
int baseline_init(baseline_t *b, double alpha, double floor, uint64_t warmup);
void baseline_free(baseline_t *b);

/* Finds (or with create, adds) the entry of (exe, cls); NULL when absent or out of memory. */
bl_entry_t *baseline_get(baseline_t *b, const char *exe, int cls, int create);

/*
 * Judges one sample x against e's baseline (not yet containing this scan):
 * alert iff the entry is warm, x > mean + k sd and x - mean >= floor.
 */
void baseline_judge(const baseline_t *b, const bl_entry_t *e, double x, verdict_t *v);

/* Records a sample (alerting or not, see baseline.c) into e's pending accumulator. */
void baseline_observe(bl_entry_t *e, double x);

/* Merges every entry's pending samples into its baseline (end of a scan). */
void baseline_commit(baseline_t *b);

/*
 * The state file: "hark-watch-state 1" then one line per entry,
 * "<class> <n> <mean> <m2> <exe>", the path %-escaped. Save writes path.tmp,
 * fsyncs it, renames it over path and fsyncs the directory (atomic replace).
 * Errors are -errno; *line gets the failing line number on a parse error
 * (-EINVAL). A missing file loads as empty (returns -ENOENT; callers may
 * treat that as fine).
 */
int baseline_save(const baseline_t *b, const char *path);
int baseline_load(baseline_t *b, const char *path, unsigned *line);

/* Serialises into a malloc'd buffer (so the fsync can run off the loop). */
int baseline_serialize(const baseline_t *b, char **out, size_t *len);
int baseline_write_file(const char *path, const char *data, size_t len);

#endif
