/*
 * fs benchmark: how late a loop's 1 ms timer runs while 64 readers stream
 * cold 4 MiB files, with hark's fs (RWF_NOWAIT inline, the rest in the pool
 * or io_uring) against plain read() on the loop thread, in the same run.
 *
 * Why lateness of a timer: it is what every other client of the loop feels.
 * A read() that misses the page cache sleeps in the kernel for the disk,
 * and nothing else on the loop runs meanwhile. Each run starts cold: the
 * files are evicted with posix_fadvise(DONTNEED) (and mincore confirms it).
 *
 * Method: a 1 ms repeating hk timer records, for every deadline of its grid,
 * how late it ran; deadlines skipped while the loop was stuck count too,
 * each with its own lateness (so one 30 ms stall is 30 late samples, not
 * one: no coordinated omission). The readers: "plain" reads one chunk per
 * reader with read() from a check hook, every iteration, as a naive
 * event-loop server would; "hark" keeps one hk_fs_read in flight per reader
 * and submits the next chunk from its callback.
 *
 * Output: `fs system=<hark|hark-uring|plain> lag_p99_us= mb_per_s= ...` per
 * system (median over rounds), then `fs ratio ...`.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hark.h"

#define MS (UINT64_C(1000000))

static int nreaders = 64;
static size_t file_size = 4u << 20;
static size_t chunk = 128u << 10;
static int rounds = 3;
static const char *dir = "fs-bench-data";

struct run;

struct reader {
    struct run *run;
    int fd;
    uint64_t off;
    unsigned char *buf;
    hk_fs_req_t req;
    int done;
};

struct run {
    hk_loop_t *loop;
    hk_fs_t *fs;
    struct reader *r;
    int left;
    uint64_t bytes;
    uint64_t *lag; /* samples, ns */
    size_t nlag, caplag;
    uint64_t sched; /* the next deadline of the timer's grid */
    hk_timer_t timer;
    hk_hook_t hook;
    int failed;
};

static void lag_add(struct run *run, uint64_t ns)
{
    if (run->nlag == run->caplag) {
        run->caplag = run->caplag ? run->caplag * 2 : 4096;
        run->lag = realloc(run->lag, run->caplag * sizeof(*run->lag));
        if (!run->lag)
            abort();
    }
    run->lag[run->nlag++] = ns;
}

static void on_tick(hk_timer_t *t, uint64_t expirations)
{
    struct run *run = t->base.data;
    uint64_t now = hk_time_now();
    for (uint64_t k = 0; k < expirations; k++) {
        uint64_t due = run->sched + k * MS;
        lag_add(run, now > due ? now - due : 0);
    }
    run->sched += expirations * MS;
}

static void reader_finished(struct run *run, struct reader *r)
{
    r->done = 1;
    if (--run->left == 0) {
        hk_timer_stop(&run->timer);
        if (run->hook.base.loop)
            hk_hook_stop(&run->hook);
    }
}

/* plain: one blocking read() per reader per loop iteration. */
static void plain_hook(hk_hook_t *h)
{
    struct run *run = h->base.data;
    for (int i = 0; i < nreaders; i++) {
        struct reader *r = &run->r[i];
        if (r->done)
            continue;
        ssize_t n = read(r->fd, r->buf, chunk);
        if (n < 0) {
            fprintf(stderr, "fs-bench: read: %s\n", strerror(errno));
            run->failed = 1;
            n = 0;
        }
        run->bytes += (uint64_t)n;
        if (n == 0)
            reader_finished(run, r);
    }
}

static void hark_next(struct run *run, struct reader *r);

static void hark_cb(hk_fs_req_t *req)
{
    struct reader *r = req->data;
    struct run *run = r->run;
    if (req->result < 0) {
        fprintf(stderr, "fs-bench: hk_fs_read: %s\n", hk_strerror((int)req->result));
        run->failed = 1;
    }
    if (req->result <= 0) {
        reader_finished(run, r);
        return;
    }
    run->bytes += (uint64_t)req->result;
    r->off += (uint64_t)req->result;
    hark_next(run, r);
}

static void hark_next(struct run *run, struct reader *r)
{
    r->req.data = r;
    int err = hk_fs_read(run->fs, &r->req, r->fd, r->buf, chunk, (int64_t)r->off, hark_cb);
    if (err < 0) {
        fprintf(stderr, "fs-bench: hk_fs_read: %s\n", hk_strerror(err));
        run->failed = 1;
        reader_finished(run, r);
    }
}

static void path_of(char *out, size_t n, int i)
{
    snprintf(out, n, "%s/f%03d", dir, i);
}

/* Creates the files once (kept between runs), flushed so that they can be evicted. */
static int make_files(void)
{
    mkdir(dir, 0755);
    unsigned char *buf = malloc(chunk);
    for (size_t i = 0; i < chunk; i++)
        buf[i] = (unsigned char)(i * 7);
    for (int i = 0; i < nreaders; i++) {
        char p[512];
        path_of(p, sizeof(p), i);
        struct stat st;
        if (stat(p, &st) == 0 && (size_t)st.st_size == file_size)
            continue;
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "fs-bench: %s: %s\n", p, strerror(errno));
            free(buf);
            return -1;
        }
        for (size_t off = 0; off < file_size; off += chunk)
            if (write(fd, buf, chunk) != (ssize_t)chunk)
                abort();
        fdatasync(fd);
        close(fd);
    }
    free(buf);
    return 0;
}

/* Evicts every file; returns the pages still resident afterwards. */
static size_t evict_all(void)
{
    size_t resident = 0, pages = (file_size + 4095) / 4096;
    unsigned char *vec = malloc(pages);
    for (int i = 0; i < nreaders; i++) {
        char p[512];
        path_of(p, sizeof(p), i);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        void *m = mmap(NULL, file_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED && mincore(m, file_size, vec) == 0)
            for (size_t k = 0; k < pages; k++)
                resident += vec[k] & 1;
        if (m != MAP_FAILED)
            munmap(m, file_size);
        close(fd);
    }
    free(vec);
    return resident;
}

/* FS_BENCH_STALLS=1 prints each reported stall (at most one a second), for diagnosis. */
static void quiet_stall(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)loop;
    (void)arg;
    if (getenv("FS_BENCH_STALLS"))
        fprintf(stderr, "# stall %s %.0f us (cpu %.0f us)\n", info->symbol ? info->symbol : "?",
                (double)info->duration_ns / 1e3, (double)info->cpu_ns / 1e3);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double p99_us, p50_us, max_us, mb_per_s;
    hk_fs_stats_t fs;
    uint64_t stalls; /* loop callbacks that ran longer than 1 ms */
};

static int run_once(const char *system, struct result *res)
{
    struct run run;
    memset(&run, 0, sizeof(run));
    size_t resident = evict_all();
    if (resident)
        printf("# fs system=%s: %zu pages still cached after eviction\n", system, resident);
    if (hk_loop_new(&run.loop, 0) < 0)
        return -1;
    /* Counts callbacks longer than 1 ms: tells a stall in our code from a late wake-up. */
    hk_loop_stall_detect(run.loop, MS, quiet_stall, NULL);
    int plain = strcmp(system, "plain") == 0;
    if (!plain) {
        hk_fs_options_t o = {0};
        if (strncmp(system, "hark-uring", 10) == 0)
            o.backend = HK_FS_BACKEND_URING;
        if (strstr(system, "-nonowait"))
            o.flags |= HK_FS_NO_NOWAIT; /* diagnostics: the backend alone */
        if (hk_fs_new(run.loop, &o, &run.fs) < 0)
            return -1;
    }
    run.r = calloc((size_t)nreaders, sizeof(*run.r));
    for (int i = 0; i < nreaders; i++) {
        char p[512];
        path_of(p, sizeof(p), i);
        run.r[i].run = &run;
        run.r[i].fd = open(p, O_RDONLY | O_CLOEXEC);
        run.r[i].buf = malloc(chunk);
        if (run.r[i].fd < 0)
            return -1;
    }
    run.left = nreaders;
    hk_timer_init(run.loop, &run.timer);
    run.timer.base.data = &run;
    uint64_t t0 = hk_time_now();
    run.sched = t0 + MS;
    hk_timer_start(&run.timer, on_tick, run.sched, (int64_t)MS);
    if (plain) {
        hk_hook_init(run.loop, &run.hook, HK_HOOK_CHECK);
        run.hook.base.data = &run;
        hk_hook_start(&run.hook, plain_hook);
    } else {
        for (int i = 0; i < nreaders; i++)
            hark_next(&run, &run.r[i]);
    }
    hk_loop_run(run.loop, HK_RUN_DEFAULT);
    uint64_t t1 = hk_time_now();

    qsort(run.lag, run.nlag, sizeof(*run.lag), cmp_u64);
    res->p99_us = run.nlag ? (double)run.lag[(size_t)((double)(run.nlag - 1) * 0.99)] / 1e3 : 0;
    res->p50_us = run.nlag ? (double)run.lag[run.nlag / 2] / 1e3 : 0;
    res->max_us = run.nlag ? (double)run.lag[run.nlag - 1] / 1e3 : 0;
    res->mb_per_s = (double)run.bytes / 1e6 / ((double)(t1 - t0) / 1e9);
    memset(&res->fs, 0, sizeof(res->fs));
    hk_loop_stats_t ls;
    hk_loop_stats(run.loop, &ls);
    res->stalls = ls.stalls;
    if (run.fs)
        hk_fs_stats(run.fs, &res->fs);
    if (run.bytes != (uint64_t)nreaders * file_size)
        run.failed = 1;

    hk_close(&run.timer.base, NULL);
    if (plain)
        hk_close(&run.hook.base, NULL);
    if (run.fs)
        hk_fs_free(run.fs);
    hk_loop_run(run.loop, HK_RUN_NOWAIT);
    hk_loop_free(run.loop);
    for (int i = 0; i < nreaders; i++) {
        close(run.r[i].fd);
        free(run.r[i].buf);
    }
    free(run.r);
    free(run.lag);
    return run.failed ? -1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

struct summary {
    double p99, p50, max, mbps;
};

static int bench(const char *system, struct summary *s)
{
    double p99[64], p50[64], mx[64], mb[64];
    uint64_t stalls = 0;
    struct result r;
    for (int i = 0; i < rounds; i++) {
        if (run_once(system, &r) < 0) {
            printf("# fs system=%s: run failed\n", system);
            return -1;
        }
        p99[i] = r.p99_us;
        p50[i] = r.p50_us;
        mx[i] = r.max_us;
        mb[i] = r.mb_per_s;
        stalls += r.stalls;
    }
    s->p99 = median(p99, rounds);
    s->p50 = median(p50, rounds);
    s->max = median(mx, rounds);
    s->mbps = median(mb, rounds);
    printf("fs system=%s lag_p99_us=%.0f mb_per_s=%.0f lag_p50_us=%.0f lag_max_us=%.0f "
           "stalls_1ms=%llu readers=%d file_mib=%zu chunk_kib=%zu rounds=%d",
           system, s->p99, s->mbps, s->p50, s->max, (unsigned long long)stalls, nreaders,
           file_size >> 20, chunk >> 10, rounds);
    if (strcmp(system, "plain") != 0)
        printf(" backend=%s uring_error=%s reads_inline=%llu reads_pool=%llu reads_uring=%llu",
               r.fs.backend == HK_FS_BACKEND_URING ? "uring" : "pool",
               r.fs.uring_error ? hk_err_name(r.fs.uring_error) : "0",
               (unsigned long long)r.fs.reads_inline, (unsigned long long)r.fs.reads_pool,
               (unsigned long long)r.fs.reads_uring);
    printf("\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const char *systems = "plain,hark,hark-uring";
    int c;
    while ((c = getopt(argc, argv, "d:n:s:c:r:S:")) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            nreaders = atoi(optarg);
            break;
        case 's':
            file_size = (size_t)atol(optarg) << 20;
            break;
        case 'c':
            chunk = (size_t)atol(optarg) << 10;
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'S':
            systems = optarg;
            break;
        default:
            fprintf(stderr, "usage: fs-bench [-d dir] [-n readers] [-s file_mib] [-c chunk_kib] "
                            "[-r rounds] [-S plain,hark,hark-uring]\n");
            return 2;
        }
    }
    if (nreaders < 1 || rounds < 1 || rounds > 64 || chunk == 0 || file_size < chunk)
        return 2;
    if (make_files() < 0)
        return 1;
    struct summary plain = {0}, hark = {0}, uring = {0};
    int have_plain = 0, have_hark = 0, have_uring = 0, status = 0;
    char *list = strdup(systems);
    for (char *save = NULL, *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        struct summary sum;
        if (bench(s, &sum) < 0) {
            status = 1;
            continue;
        }
        if (strcmp(s, "plain") == 0) {
            plain = sum;
            have_plain = 1;
        } else if (strcmp(s, "hark") == 0) {
            hark = sum;
            have_hark = 1;
        } else if (strcmp(s, "hark-uring") == 0) {
            uring = sum;
            have_uring = 1;
        }
    }
    free(list);
    if (have_plain && have_hark)
        printf("fs ratio plain/hark lag_p99=%.1f mb_per_s_hark/plain=%.2f\n",
               hark.p99 > 0 ? plain.p99 / hark.p99 : 0,
               plain.mbps > 0 ? hark.mbps / plain.mbps : 0);
    if (have_plain && have_uring)
        printf("fs ratio plain/hark-uring lag_p99=%.1f mb_per_s_hark-uring/plain=%.2f\n",
               uring.p99 > 0 ? plain.p99 / uring.p99 : 0,
               plain.mbps > 0 ? uring.mbps / plain.mbps : 0);
    return status;
}
