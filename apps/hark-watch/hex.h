/*
 * hex.h: one hex digit's value, for the parsers that read hex by hand
 * (/proc/net in netinfo.c, the state file's %-escapes in state.c) rather
 * than with sscanf or strtoul, which accept signs and white space.
 */
#ifndef HARK_WATCH_HEX_H
#define HARK_WATCH_HEX_H

/* The value of '0'-'9', 'A'-'F' or 'a'-'f'; -1 for any other byte. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

#endif
