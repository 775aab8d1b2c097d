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

/*
 * A freed stack keeps its own description inside itself: where its coroutine
 * lived (hk__stack_put's at), or at its top when no spot is given.
 */
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

static hk__stack_node_t *hk__stack_node(const hk__stack_t *st, void *at)
{
    return at ? at : (hk__stack_node_t *)(st->lo + st->size - sizeof(hk__stack_node_t));
}

/*
 * Why a cache per worker in front of the shared pool: a coroutine that exits
 * gives its stack back on its worker, and spawns on a worker are the common
 * case, so most stacks go round without the pool's mutex. Only the worker's
 * own thread touches its cache.
 *
 * Why stacks move between the two in batches (as Go moves free goroutines
 * between a P's list and the scheduler's): a spawner that keeps more
 * coroutines alive than the cache holds (bench/co_micro spawns 1,000 before
 * it waits) otherwise took the pool's mutex twice per coroutine, once to
 * free its stack and once to take one; under callgrind those lock and unlock
 * calls were an eighth of a spawn's instructions. Now it is twice per batch.
 */
#define HK__STACK_CACHE_MAX 64u
#define HK__STACK_BATCH 32u

static int hk__stack_fits(const hk__stack_node_t *n, size_t size, int guarded)
{
    return n->st.size == size && n->st.guarded == guarded;
}

/* Takes a stack of this kind from the pool, and up to a batch more into w's cache. */
static int hk__stack_from_pool(hk__worker_t *w, hk__stack_t *st, size_t size, int guarded)
{
    unsigned room = w ? HK__STACK_CACHE_MAX - w->nstack_cache : 0;
    if (room > HK__STACK_BATCH)
        room = HK__STACK_BATCH;
    int got = 0;
    pthread_mutex_lock(&hk__stack_lock);
    hk__stack_node_t **pp = &hk__stack_pool;
    /* A bounded scan: the pool is one list for every size, most of one size. */
    for (unsigned i = 0; *pp && i < 2 * HK__STACK_BATCH; i++) {
        hk__stack_node_t *n = *pp;
        if (!hk__stack_fits(n, size, guarded)) {
            pp = &n->next;
            continue;
        }
        *pp = n->next;
        hk__stack_npool--;
        if (!got) {
            *st = n->st;
            got = 1;
        } else {
            n->next = w->stack_cache;
            w->stack_cache = n;
            w->nstack_cache++;
            room--;
        }
        if (!room)
            break;
    }
    pthread_mutex_unlock(&hk__stack_lock);
    return got;
}

static int hk__stack_from_cache(hk__worker_t *w, hk__stack_t *st, size_t size, int guarded)
{
    hk__stack_node_t **pp = (hk__stack_node_t **)&w->stack_cache;
    for (unsigned i = 0; *pp && i < 8; i++, pp = &(*pp)->next) {
        hk__stack_node_t *n = *pp;
        if (hk__stack_fits(n, size, guarded)) {
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
        hk__stack_put(&st, n); /* no worker on this thread any more: to the shared pool */
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
    if (hk__stack_from_pool(w, st, size, guarded))
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

/* To the pool: the chain first .. last of n stacks; the ones it has no room for are unmapped. */
static void hk__stack_to_pool(hk__stack_node_t *first, hk__stack_node_t *last, unsigned n)
{
    hk__stack_node_t *excess = NULL;
    pthread_mutex_lock(&hk__stack_lock);
    while (n && hk__stack_npool + n > HK__STACK_POOL_MAX) {
        hk__stack_node_t *next = first->next;
        first->next = excess;
        excess = first;
        first = next;
        n--;
    }
    if (n) {
        last->next = hk__stack_pool;
        hk__stack_pool = first;
        hk__stack_npool += n;
    }
    pthread_mutex_unlock(&hk__stack_lock);
    while (excess) {
        hk__stack_node_t *next = excess->next;
        hk__stack_t st = excess->st; /* the node lives in the mapping */
        VALGRIND_STACK_DEREGISTER(st.vgid);
        munmap(st.map, st.total);
        excess = next;
    }
}

void hk__stack_put(hk__stack_t *st, void *at)
{
    hk__worker_t *w = hk__worker_current();
    hk__stack_node_t *n = hk__stack_node(st, at);
    n->st = *st;
    if (!w) {
        n->next = NULL;
        hk__stack_to_pool(n, n, 1);
        return;
    }
    n->next = w->stack_cache;
    w->stack_cache = n;
    if (++w->nstack_cache <= HK__STACK_CACHE_MAX)
        return;
    /* Full: the batch below the newest stack (kept: it is the one in cache) goes to the pool. */
    hk__stack_node_t *first = n->next, *last = first;
    for (unsigned i = 1; i < HK__STACK_BATCH; i++)
        last = last->next;
    n->next = last->next;
    w->nstack_cache -= HK__STACK_BATCH;
    hk__stack_to_pool(first, last, HK__STACK_BATCH);
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
        char name[sizeof co->name];
        hk__co_name_into(co, name);
        hk__segv_write("hark: coroutine '");
        hk__segv_write(name);
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
