/* hark/api.h: marks the functions libhark exports (everything else is hidden). */
#ifndef HARK_API_H
#define HARK_API_H

#if defined(__GNUC__)
#define HK_API __attribute__((visibility("default")))
#else
#define HK_API
#endif

#endif
