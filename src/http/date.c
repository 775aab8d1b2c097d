/*
 * HTTP dates (RFC 9110 section 5.6.7), without the C library's time zone
 * machinery.
 *
 * Why not strftime/gmtime/timegm: strftime's day and month names follow the
 * locale, gmtime returns a static buffer shared by threads, and timegm is not
 * standard. HTTP dates are always GMT in English, so the conversion between
 * days since 1970 and a civil date is done here by arithmetic on 400-year
 * cycles (the Gregorian calendar repeats every 146097 days), counting years
 * from March so that the leap day falls at the end of a year.
 */
#include "http/internal.h"

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const long_days[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

#define DAYS_PER_CYCLE 146097     /* 400 Gregorian years */
#define MARCH_0000_TO_1970 719468 /* days from 0000-03-01 to 1970-01-01 */

/* Days since 1970-01-01 to year, month (1..12), day (1..31). */
static void civil_from_days(int64_t z, int64_t *year, unsigned *month, unsigned *day)
{
    z += MARCH_0000_TO_1970;
    int64_t cycle = (z >= 0 ? z : z - (DAYS_PER_CYCLE - 1)) / DAYS_PER_CYCLE;
    unsigned doc = (unsigned)(z - cycle * DAYS_PER_CYCLE);                /* 0..146096 */
    unsigned yoc = (doc - doc / 1460 + doc / 36524 - doc / 146096) / 365; /* 0..399 */
    unsigned doy = doc - (365 * yoc + yoc / 4 - yoc / 100);               /* from March 1 */
    unsigned mp = (5 * doy + 2) / 153;                                    /* 0 = March */
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = cycle * 400 + yoc + (*month <= 2);
}

static int64_t days_from_civil(int64_t year, unsigned month, unsigned day)
{
    year -= month <= 2;
    int64_t cycle = (year >= 0 ? year : year - 399) / 400;
    unsigned yoc = (unsigned)(year - cycle * 400);
    unsigned mp = month > 2 ? month - 3 : month + 9;
    unsigned doy = (153 * mp + 2) / 5 + day - 1;
    unsigned doc = yoc * 365 + yoc / 4 - yoc / 100 + doy;
    return cycle * DAYS_PER_CYCLE + doc - MARCH_0000_TO_1970;
}

static void two(char *out, unsigned v)
{
    out[0] = (char)('0' + v / 10);
    out[1] = (char)('0' + v % 10);
}

void hk_http_date_format(time_t t, char *buf)
{
    int64_t s = (int64_t)t;
    if (s < 0)
        s = 0;
    if (s > 253402300799) /* 9999-12-31 23:59:59: the format has four year digits */
        s = 253402300799;
    int64_t d = s / 86400, year;
    unsigned sec = (unsigned)(s % 86400), month, day;
    civil_from_days(d, &year, &month, &day);
    memcpy(buf, days[(d + 4) % 7], 3); /* 1970-01-01 was a Thursday */
    memcpy(buf + 3, ", ", 2);
    two(buf + 5, day);
    buf[7] = ' ';
    memcpy(buf + 8, months[month - 1], 3);
    buf[11] = ' ';
    two(buf + 12, (unsigned)(year / 100));
    two(buf + 14, (unsigned)(year % 100));
    buf[16] = ' ';
    two(buf + 17, sec / 3600);
    buf[19] = ':';
    two(buf + 20, sec / 60 % 60);
    buf[22] = ':';
    two(buf + 23, sec % 60);
    memcpy(buf + 25, " GMT", 5); /* with the NUL */
}

/* A cursor over the input; every reader fails once the input does not match. */
struct cursor {
    const char *p, *end;
    int ok;
};

static void lit(struct cursor *c, const char *s)
{
    size_t n = strlen(s);
    if (!c->ok || (size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        c->ok = 0;
    else
        c->p += n;
}

static unsigned digits(struct cursor *c, unsigned n)
{
    unsigned v = 0;
    for (unsigned i = 0; i < n && c->ok; i++) {
        if (c->p == c->end || *c->p < '0' || *c->p > '9')
            c->ok = 0;
        else
            v = v * 10 + (unsigned)(*c->p++ - '0');
    }
    return v;
}

/* One of names[0..n) at the cursor; returns its index. */
static unsigned name(struct cursor *c, const char *const *names, unsigned n)
{
    for (unsigned i = 0; i < n && c->ok; i++) {
        size_t len = strlen(names[i]);
        if ((size_t)(c->end - c->p) >= len && memcmp(c->p, names[i], len) == 0) {
            c->p += len;
            return i;
        }
    }
    c->ok = 0;
    return 0;
}

static unsigned short_name(struct cursor *c, const char (*names)[4], unsigned n)
{
    const char *list[12];
    for (unsigned i = 0; i < n; i++)
        list[i] = names[i];
    return name(c, list, n);
}

/* "08:49:37" */
static unsigned clock_time(struct cursor *c)
{
    unsigned h = digits(c, 2);
    lit(c, ":");
    unsigned m = digits(c, 2);
    lit(c, ":");
    unsigned s = digits(c, 2);
    if (h > 23 || m > 59 || s > 60) /* 60: a leap second */
        c->ok = 0;
    return h * 3600 + m * 60 + s;
}

/* RFC 850's two-digit year: a timestamp that would be more than 50 years in the future is
 * in the century before (RFC 9110 section 5.6.7). The whole timestamp counts, not only its
 * year: 31 Dec of the year 50 years from now is more than 50 years away. */
static int64_t full_year(unsigned yy, unsigned month, unsigned day, unsigned secs)
{
    int64_t now = (int64_t)time(NULL), now_year;
    unsigned m, d, s = (unsigned)(now % 86400);
    civil_from_days(now / 86400, &now_year, &m, &d);
    int64_t y = now_year - now_year % 100 + yy, limit = now_year + 50;
    if (y > limit ||
        (y == limit && (month > m || (month == m && (day > d || (day == d && secs > s))))))
        y -= 100;
    return y;
}

/* "06 Nov 1994 08:49:37 GMT" (sep ' ', 4-digit year) or "06-Nov-94 08:49:37 GMT". */
static void day_to_end(struct cursor *c, const char *sep, unsigned year_digits, unsigned *day,
                       unsigned *month, unsigned *year, unsigned *secs)
{
    *day = digits(c, 2);
    lit(c, sep);
    *month = short_name(c, months, 12) + 1;
    lit(c, sep);
    *year = digits(c, year_digits);
    lit(c, " ");
    *secs = clock_time(c);
    lit(c, " GMT");
}

int hk_http_date_parse(const char *s, size_t len, time_t *t)
{
    struct cursor c = {s, s + len, 1};
    unsigned day, month, secs, y;
    int64_t year;
    if (len >= 4 && s[3] == ',') { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        short_name(&c, days, 7);
        lit(&c, ", ");
        day_to_end(&c, " ", 4, &day, &month, &y, &secs);
        year = y;
    } else if (len >= 4 && s[3] == ' ') { /* asctime: Sun Nov  6 08:49:37 1994 */
        short_name(&c, days, 7);
        lit(&c, " ");
        month = short_name(&c, months, 12) + 1;
        lit(&c, " ");
        if (c.ok && c.p < c.end && *c.p == ' ') {
            c.p++;
            day = digits(&c, 1);
        } else {
            day = digits(&c, 2);
        }
        lit(&c, " ");
        secs = clock_time(&c);
        lit(&c, " ");
        year = digits(&c, 4);
    } else { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        name(&c, long_days, 7);
        lit(&c, ", ");
        day_to_end(&c, "-", 2, &day, &month, &y, &secs);
        year = full_year(y, month, day, secs);
    }
    if (!c.ok || c.p != c.end || day < 1)
        return -EINVAL;
    static const unsigned char mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > mdays[month - 1] || (month == 2 && day == 29 && !leap))
        return -EINVAL;
    int64_t v = days_from_civil(year, month, day) * 86400 + secs;
    if ((int64_t)(time_t)v != v)
        return -EINVAL;
    *t = (time_t)v;
    return 0;
}
