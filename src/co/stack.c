/*
 * Coroutine stacks: mmap'd, committed lazily by the kernel, with a PROT_NONE
 * guard page below, and pooled when freed.
 *
 * Why a guard page and a handler: a coroutine that recurses too deep would
 * otherwise write into whatever lies below its stack (another stack, a heap
 * chunk) and fail much later, somewhere else. With the guard, the first write
 * below the stack faults. The fault happens on the overflowed stack, so the
 * SIGSEGV handler runs on an alternate signal stack (one per worker); it
 * checks whether the address is inside the running coroutine's guard page,
 * says so with the coroutine's name, and lets the signal kill the process as
 * it would have anyway (or hands any other fault to the previous handler).
 *
 * Stacks are registered with Valgrind so memcheck does not report a switch as
 * a wild stack pointer change.
 */
#include "co/internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

/* A pooled stack keeps its own description at its top. */
typedef struct hk__stack_node {
    hk__stack_t st;
    struct hk__stack_node *next;
} hk__stack_node_t;

#define HK__STACK_POOL_MAX 1024u

static pthread_mutex_t hk__stack_lock = PTHREAD_MUTEX_INITIALIZER;
static hk__stack_node_t *hk__stack_pool;
static unsigned hk__stack_npool;

size_t hk__page_size(void)
{
    static size_t page;
    size_t p = __atomic_load_n(&page, __ATOMIC_RELAXED);
    if (!p) {
        long v = sysconf(_SC_PAGESIZE);
        p = v > 0 ? (size_t)v : 4096;
        __atomic_store_n(&page, p, __ATOMIC_RELAXED);
    }
    return p;
}

static hk__stack_node_t *hk__stack_node(const hk__stack_t *st)
{
    return (hk__stack_node_t *)(st->lo + st->size - sizeof(hk__stack_node_t));
}

static int hk__stack_from_pool(hk__stack_t *st, size_t size, int guarded)
{
    pthread_mutex_lock(&hk__stack_lock);
    hk__stack_node_t **pp = &hk__stack_pool;
    for (unsigned i = 0; *pp && i < 8; i++, pp = &(*pp)->next) {
        hk__stack_node_t *n = *pp;
        if (n->st.size == size && n->st.guarded == guarded) {
            *pp = n->next;
            hk__stack_npool--;
            *st = n->st;
            pthread_mutex_unlock(&hk__stack_lock);
            return 1;
        }
    }
    pthread_mutex_unlock(&hk__stack_lock);
    return 0;
}

/*
 * Why a cache per worker in front of the shared pool: a coroutine that exits
 * gives its stack back on its worker, and spawns on a worker are the common
 * case, so most stacks go round without the pool's mutex. Only the worker's
 * own thread touches its cache.
 */
#define HK__STACK_CACHE_MAX 64u

static int hk__stack_from_cache(hk__worker_t *w, hk__stack_t *st, size_t size, int guarded)
{
    hk__stack_node_t **pp = (hk__stack_node_t **)&w->stack_cache;
    for (unsigned i = 0; *pp && i < 8; i++, pp = &(*pp)->next) {
        hk__stack_node_t *n = *pp;
        if (n->st.size == size && n->st.guarded == guarded) {
            *pp = n->next;
            w->nstack_cache--;
            *st = n->st;
            return 1;
        }
    }
    return 0;
}

void hk__stack_cache_flush(hk__worker_t *w)
{
    hk__stack_node_t *n = w->stack_cache;
    w->stack_cache = NULL;
    w->nstack_cache = 0;
    while (n) {
        hk__stack_node_t *next = n->next;
        hk__stack_t st = n->st;
        hk__stack_put(&st); /* no worker on this thread any more: to the shared pool */
        n = next;
    }
}

int hk__stack_get(hk__stack_t *st, size_t size, int guarded)
{
    size_t page = hk__page_size();
    /*
     * No mapping can be that large; and rounding up to pages wrapped such a
     * size to 0, a mapping of the guard page alone, below which the
     * coroutine was then written (SIGSEGV).
     */
    if (size > SIZE_MAX / 2)
        return -ENOMEM;
    size = (size + page - 1) & ~(page - 1);
    hk__worker_t *w = hk__worker_current();
    if (w && hk__stack_from_cache(w, st, size, guarded))
        return 0;
    if (hk__stack_from_pool(st, size, guarded))
        return 0;
    size_t guard = guarded ? page : 0;
    size_t total = size + guard;
    void *map = mmap(NULL, total, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return -ENOMEM;
    if (guard && mprotect(map, guard, PROT_NONE) < 0) {
        munmap(map, total);
        return -ENOMEM; /* usually vm.max_map_count */
    }
    st->map = map;
    st->total = total;
    st->lo = (char *)map + guard;
    st->size = size;
    st->guarded = guarded;
    st->vgid = VALGRIND_STACK_REGISTER(st->lo, st->lo + size);
    return 0;
}

void hk__stack_put(hk__stack_t *st)
{
    hk__worker_t *w = hk__worker_current();
    if (w && w->nstack_cache < HK__STACK_CACHE_MAX) {
        hk__stack_node_t *n = hk__stack_node(st);
        n->st = *st;
        n->next = w->stack_cache;
        w->stack_cache = n;
        w->nstack_cache++;
        return;
    }
    pthread_mutex_lock(&hk__stack_lock);
    if (hk__stack_npool < HK__STACK_POOL_MAX) {
        hk__stack_node_t *n = hk__stack_node(st);
        n->st = *st;
        n->next = hk__stack_pool;
        hk__stack_pool = n;
        hk__stack_npool++;
        pthread_mutex_unlock(&hk__stack_lock);
        return;
    }
    pthread_mutex_unlock(&hk__stack_lock);
    VALGRIND_STACK_DEREGISTER(st->vgid);
    munmap(st->map, st->total);
}

/* ---- the guard-page handler ---- */

static struct sigaction hk__segv_old;
static pthread_once_t hk__segv_once = PTHREAD_ONCE_INIT;

static void hk__segv_write(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static void hk__segv_handler(int sig, siginfo_t *si, void *uctx)
{
    hk__worker_t *w = hk__worker_current();
    hk_co_t *co = w ? w->current : NULL;
    char *addr = si->si_addr;
    if (co && co->stack.guarded && addr >= co->stack.map && addr < co->stack.lo + 256) {
        hk__segv_write("hark: coroutine '");
        hk__segv_write(co->name);
        hk__segv_write("' overflowed its stack (guard page hit)\n");
        signal(SIGSEGV, SIG_DFL);
        return; /* the faulting access repeats and the default action ends the process */
    }
    if (hk__segv_old.sa_flags & SA_SIGINFO) {
        if (hk__segv_old.sa_sigaction) {
            hk__segv_old.sa_sigaction(sig, si, uctx);
            return;
        }
    } else if (hk__segv_old.sa_handler != SIG_DFL && hk__segv_old.sa_handler != SIG_IGN) {
        hk__segv_old.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
}

static void hk__segv_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = hk__segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &hk__segv_old);
}

int hk__stack_thread_init(void **altp)
{
    pthread_once(&hk__segv_once, hk__segv_install);
    size_t size = 64 * 1024;
    void *alt = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (alt == MAP_FAILED)
        return -ENOMEM;
    stack_t ss = {.ss_sp = alt, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) {
        munmap(alt, size);
        return -errno;
    }
    *altp = alt;
    return 0;
}

void hk__stack_thread_fini(void *alt)
{
    if (!alt)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(alt, 64 * 1024);
}
