/* hark.h: the umbrella header; includes every public hark module. */
#ifndef HARK_H
#define HARK_H

#include "hark/error.h"
#include "hark/loop.h"
#include "hark/log.h"
#include "hark/pool.h"
#include "hark/fs.h"
#include "hark/dns.h"
#include "hark/net.h"
#include "hark/stats.h"
#include "hark/co.h"
#include "hark/tls.h"
#include "hark/co_net.h"
#include "hark/http.h"
#include "hark/publish.h"
#include "hark/conf.h"

#endif
