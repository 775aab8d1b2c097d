/*
 * The fixture of the config loader tests: a fresh temporary directory with
 * www/ and api/ directories, empty cert.pem, key.pem, ex.pem, ex.key and a
 * plain file, removed afterwards; helpers that load a config text written
 * to <dir>/hark.conf, or check the exact message of a failing one.
 * Included by each config test file (static inline: each uses a part).
 */
#ifndef HTTPD_CONFIG_FIXTURE_H
#define HTTPD_CONFIG_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char dir[64];
static char conf_path[128];
static char err[1024];

static inline void touch(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "%s", p);
    close(fd);
}

static inline void mkdir_in(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(mkdir(p, 0700), 0, "%s", p);
}

static inline void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/hk-httpd-conf-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(conf_path, sizeof conf_path, "%s/hark.conf", dir);
    mkdir_in("www");
    mkdir_in("api");
    touch("cert.pem");
    touch("key.pem");
    touch("ex.pem");
    touch("ex.key");
    touch("file");
}

static inline void teardown(void)
{
    const char *files[] = {"cert.pem", "key.pem", "ex.pem", "ex.key", "file", "hark.conf"};
    char p[256];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/www", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/api", dir);
    rmdir(p);
    rmdir(dir);
}

static inline void write_conf(const char *text)
{
    FILE *f = fopen(conf_path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static inline httpd_config_t *load(const char *text)
{
    write_conf(text);
    httpd_config_t *cfg = httpd_config_load(conf_path, err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    return cfg;
}

/* Loading text fails with "<conf_path>:" + want. */
static inline void fails(const char *text, const char *want)
{
    write_conf(text);
    httpd_config_t *cfg = httpd_config_load(conf_path, err, sizeof err);
    cr_assert_null(cfg, "loaded: %s", text);
    char full[1024];
    snprintf(full, sizeof full, "%s:%s", conf_path, want);
    cr_assert_str_eq(err, full);
}

static inline const char *in_dir(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

#endif
