/* readdir (one caller-freed block) and readfile (size cap, files stat cannot size). */
#include <dirent.h>

#include "util.h"

static struct fx fx;

static void setup(void)
{
    fx_setup(&fx, HK_FS_BACKEND_POOL, 0);
}

static void teardown(void)
{
    fx_teardown(&fx);
}

static struct done submit_wait(hk_fs_req_t *req, int rc)
{
    cr_assert_eq(rc, 0, "%s", hk_strerror(rc));
    fx_wait(&fx, req->data);
    return *(struct done *)req->data;
}

Test(fs_dir, readdir_lists_entries)
{
    setup();
    char p[512];
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof(name), "file-%03d-%s", i, i % 7 ? "x" : "a-longer-name-here");
        fx_path(&fx, p, sizeof(p), name);
        fx_make_file(p, 0, 0);
    }
    fx_path(&fx, p, sizeof(p), "subdir");
    cr_assert_eq(mkdir(p, 0700), 0);

    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    d = submit_wait(&req, hk_fs_readdir(fx.fs, &req, fx.dir, fx_on_done));
    cr_assert_eq(d.result, N + 1);
    int seen[N] = {0}, dirs = 0;
    for (int i = 0; i < N + 1; i++) {
        const hk_fs_dirent_t *e = &req.dirents[i];
        cr_assert_str_neq(e->name, ".");
        cr_assert_str_neq(e->name, "..");
        if (strcmp(e->name, "subdir") == 0) {
            cr_assert(e->type == DT_DIR || e->type == DT_UNKNOWN);
            dirs++;
            continue;
        }
        int k;
        cr_assert_eq(sscanf(e->name, "file-%d-", &k), 1, "%s", e->name);
        cr_assert(e->type == DT_REG || e->type == DT_UNKNOWN);
        seen[k]++;
    }
    cr_assert_eq(dirs, 1);
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1);
    hk_fs_req_cleanup(&req);
    cr_assert_null(req.dirents);
    teardown();
}

Test(fs_dir, readdir_empty)
{
    setup();
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    d = submit_wait(&req, hk_fs_readdir(fx.fs, &req, fx.dir, fx_on_done));
    cr_assert_eq(d.result, 0);
    free(req.dirents); /* one block, even when empty */
    teardown();
}

Test(fs_dir, readfile_reads_whole_file)
{
    setup();
    char p[512];
    fx_path(&fx, p, sizeof(p), "whole");
    fx_make_file(p, 100000, 8);
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    d = submit_wait(&req, hk_fs_readfile(fx.fs, &req, p, 100000, fx_on_done));
    cr_assert_eq(d.result, 100000);
    cr_assert(fx_check_pattern((unsigned char *)req.file_data, 100000, 8, 0));
    cr_assert_eq(req.file_data[100000], 0);
    hk_fs_req_cleanup(&req);

    memset(&d, 0, sizeof(d));
    d = submit_wait(&req, hk_fs_readfile(fx.fs, &req, p, 99999, fx_on_done));
    cr_assert_eq(d.result, -EFBIG);
    cr_assert_null(req.file_data);

    fx_path(&fx, p, sizeof(p), "empty");
    fx_make_file(p, 0, 0);
    memset(&d, 0, sizeof(d));
    d = submit_wait(&req, hk_fs_readfile(fx.fs, &req, p, 0, fx_on_done));
    cr_assert_eq(d.result, 0);
    cr_assert_str_eq(req.file_data, "");
    free(req.file_data);
    teardown();
}

/* /proc files report size 0: they are read to the end, under the same cap. */
Test(fs_dir, readfile_unsized_files)
{
    setup();
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    d = submit_wait(&req, hk_fs_readfile(fx.fs, &req, "/proc/self/status", 0, fx_on_done));
    cr_assert_gt(d.result, 0);
    cr_assert_not_null(strstr(req.file_data, "Pid:"));
    cr_assert_eq((int64_t)strlen(req.file_data), d.result);
    hk_fs_req_cleanup(&req);

    memset(&d, 0, sizeof(d));
    d = submit_wait(&req, hk_fs_readfile(fx.fs, &req, "/proc/self/status", 10, fx_on_done));
    cr_assert_eq(d.result, -EFBIG);
    cr_assert_null(req.file_data);
    teardown();
}
