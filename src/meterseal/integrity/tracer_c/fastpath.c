/*
 * fastpath.c: the monitor's wait loop, and the re-check of a judgement already made.
 *
 * Built with gcc at run time as a shared library (meterseal.integrity.native) and called by
 * the tracer thread through ctypes, so the ptrace calls come from the thread that is the
 * tracer. ms_next waits for the traced processes and returns every stop to the Python monitor
 * (on the same thread) except a trapped call that repeats one the monitor has already judged
 * trusted in a steady state (a "recipe", registered by the monitor).
 * For such a call the loop re-reads, from the stopped process and the file system, every
 * input the judgement depended on, and resumes the process only if all of them are unchanged:
 *
 *   - the trap, the registers unwinding started from, and each stack word it read
 *     (so the calling function is the same),
 *   - the path string at the call's argument, the directory it is relative to, and that no
 *     component of the path is a symbolic link now (so the object is the same),
 *   - the program file's identity (device, inode, size, mtime, ctime) and every measured
 *     segment of its code in memory byte-equal to the file (so newHV is HV: f_v holds).
 *
 * The monitor dropped the recipe if the function's behaviour history changed, so f_d holds as
 * it did. Anything else, or any difference, goes to the monitor, which judges afresh. Each
 * re-checked stop is queued (recipe, pid, time) for the monitor's audit log.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EVENT_SECCOMP 7
#define NOT_SENSITIVE 0xFFFFUL
#define STACK_WINDOW 16384
#define MAX_PATH_BYTES 4096
#define RING 65536
#define MAX_FDS 64

struct word { uint64_t addr, value; int readable; };
struct segment { uint64_t addr, len; unsigned char *bytes; };

struct image {
    int pid;
    uint64_t dev, ino;
    int64_t size, mtime_ns, ctime_ns;
    uint32_t nseg;
    struct segment *seg;
    struct image *next;
};

struct recipe {
    int id, pid, slot, trap;
    uint64_t rip, rsp, rbp;
    int path_arg, dirfd_arg, dirfd;
    unsigned char *path;
    uint32_t path_len;
    char *link, *target; /* readlink(link) must be target; link NULL: none */
    uint32_t nprefix;
    char **prefix;
    uint32_t nword;
    struct word *word;
    struct recipe *next;
};

struct hit { int id, pid; int64_t at_ns; };

struct ms_session {
    int unsafe_resume_all; /* benchmark floor only: resume every trapped call unjudged */
    struct recipe *recipes;
    struct image *images;
    struct { int pid, fd; } fds[MAX_FDS];
    pthread_mutex_t lock; /* the ring: written by the tracer thread, drained by another */
    struct hit ring[RING];
    unsigned head, tail;
    uint64_t hits, passed;
    unsigned char window[STACK_WINDOW];
    unsigned char chunk[1 << 16];
};

/* -- decoding what the monitor registers (little-endian, bounds-checked) ------------------ */

struct reader { const unsigned char *p; size_t left; int bad; };

static void take(struct reader *r, void *out, size_t n) {
    if (r->bad || r->left < n) { r->bad = 1; memset(out, 0, n); return; }
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
}
static uint32_t u32(struct reader *r) { uint32_t v; take(r, &v, 4); return v; }
static uint64_t u64(struct reader *r) { uint64_t v; take(r, &v, 8); return v; }
static int32_t i32(struct reader *r) { int32_t v; take(r, &v, 4); return v; }
static int64_t i64(struct reader *r) { int64_t v; take(r, &v, 8); return v; }

static unsigned char *blob(struct reader *r, uint32_t *len, int text) {
    *len = u32(r);
    if (r->bad || r->left < *len) { r->bad = 1; return NULL; }
    unsigned char *out = malloc((size_t)*len + 1);
    if (out == NULL) { r->bad = 1; return NULL; }
    memcpy(out, r->p, *len);
    out[*len] = 0;
    r->p += *len;
    r->left -= *len;
    if (text && memchr(out, 0, *len) != NULL) r->bad = 1; /* a path holds no NUL */
    return out;
}

static void free_recipe(struct recipe *c) {
    if (c == NULL) return;
    free(c->path); free(c->link); free(c->target);
    for (uint32_t i = 0; c->prefix && i < c->nprefix; i++) free(c->prefix[i]);
    free(c->prefix); free(c->word); free(c);
}

static void free_image(struct image *m) {
    if (m == NULL) return;
    for (uint32_t i = 0; m->seg && i < m->nseg; i++) free(m->seg[i].bytes);
    free(m->seg); free(m);
}

/* -- the session ---------------------------------------------------------------------------- */

/*
 * Ctrl-C while the loop is busy between two waits (re-checking a stop) runs Python's C-level
 * handler, but the next waitpid then blocks without EINTR, and Python would see the signal
 * only at the next stop served in Python: none, while every stop is re-checked here. So
 * SIGINT is noted here first, then handed to the handler it replaced, and the loop returns
 * -EINTR before it waits again.
 */
static volatile sig_atomic_t interrupted;
static struct sigaction chained;

static void note_interrupt(int sig) {
    interrupted = 1;
    if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
        chained.sa_handler(sig);
    } else if (chained.sa_handler == SIG_DFL) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

int ms_watch_interrupts(void) {
    struct sigaction current, ours;
    if (sigaction(SIGINT, NULL, &current) != 0) return -errno;
    if (current.sa_handler == note_interrupt || (current.sa_flags & SA_SIGINFO)) return 0;
    chained = current;
    ours = current;
    ours.sa_handler = note_interrupt;
    return sigaction(SIGINT, &ours, NULL) == 0 ? 0 : -errno;
}

struct ms_session *ms_new(int unsafe_resume_all) {
    struct ms_session *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->unsafe_resume_all = unsafe_resume_all;
    pthread_mutex_init(&s->lock, NULL);
    for (int i = 0; i < MAX_FDS; i++) s->fds[i].pid = 0, s->fds[i].fd = -1;
    return s;
}

void ms_forget(struct ms_session *s, int pid) {
    for (struct recipe **c = &s->recipes; *c;) {
        if ((*c)->pid == pid) { struct recipe *gone = *c; *c = gone->next; free_recipe(gone); }
        else c = &(*c)->next;
    }
    for (struct image **m = &s->images; *m;) {
        if ((*m)->pid == pid) { struct image *gone = *m; *m = gone->next; free_image(gone); }
        else m = &(*m)->next;
    }
    for (int i = 0; i < MAX_FDS; i++)
        if (s->fds[i].pid == pid) { close(s->fds[i].fd); s->fds[i].pid = 0; s->fds[i].fd = -1; }
}

void ms_free(struct ms_session *s) {
    if (s == NULL) return;
    while (s->recipes) { struct recipe *c = s->recipes; s->recipes = c->next; free_recipe(c); }
    while (s->images) { struct image *m = s->images; s->images = m->next; free_image(m); }
    for (int i = 0; i < MAX_FDS; i++) if (s->fds[i].fd >= 0) close(s->fds[i].fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Drop every recipe of one behaviour slot (a process and function): its history changed. */
void ms_drop_slot(struct ms_session *s, int pid, int slot) {
    for (struct recipe **c = &s->recipes; *c;) {
        if ((*c)->pid == pid && (*c)->slot == slot) {
            struct recipe *gone = *c; *c = gone->next; free_recipe(gone);
        } else c = &(*c)->next;
    }
}

int ms_add_image(struct ms_session *s, const unsigned char *data, size_t len) {
    struct reader r = {data, len, 0};
    struct image *m = calloc(1, sizeof *m);
    if (m == NULL) return -ENOMEM;
    m->pid = i32(&r);
    m->dev = u64(&r); m->ino = u64(&r);
    m->size = i64(&r); m->mtime_ns = i64(&r); m->ctime_ns = i64(&r);
    m->nseg = u32(&r);
    if (!r.bad && m->nseg <= 64) m->seg = calloc(m->nseg ? m->nseg : 1, sizeof *m->seg);
    if (m->seg == NULL) r.bad = 1;
    for (uint32_t i = 0; !r.bad && i < m->nseg; i++) {
        uint32_t n;
        m->seg[i].addr = u64(&r);
        m->seg[i].bytes = blob(&r, &n, 0);
        m->seg[i].len = n;
    }
    if (r.bad || r.left) { free_image(m); return -EINVAL; }
    for (struct image **old = &s->images; *old; old = &(*old)->next)
        if ((*old)->pid == m->pid) { struct image *gone = *old; *old = gone->next; free_image(gone); break; }
    m->next = s->images;
    s->images = m;
    return 0;
}

int ms_add_recipe(struct ms_session *s, const unsigned char *data, size_t len) {
    struct reader r = {data, len, 0};
    struct recipe *c = calloc(1, sizeof *c);
    uint32_t n;
    if (c == NULL) return -ENOMEM;
    c->id = i32(&r); c->pid = i32(&r); c->slot = i32(&r); c->trap = i32(&r);
    c->rip = u64(&r); c->rsp = u64(&r); c->rbp = u64(&r);
    c->path_arg = i32(&r); c->dirfd_arg = i32(&r); c->dirfd = i32(&r);
    c->path = blob(&r, &c->path_len, 1);
    c->link = (char *)blob(&r, &n, 1);
    if (c->link && n == 0) { free(c->link); c->link = NULL; }
    c->target = (char *)blob(&r, &n, 1);
    c->nprefix = u32(&r);
    if (!r.bad && c->nprefix <= 4096) c->prefix = calloc(c->nprefix ? c->nprefix : 1, sizeof *c->prefix);
    if (c->prefix == NULL) r.bad = 1;
    for (uint32_t i = 0; !r.bad && i < c->nprefix; i++) c->prefix[i] = (char *)blob(&r, &n, 1);
    c->nword = u32(&r);
    if (!r.bad && c->nword <= 4096) c->word = calloc(c->nword ? c->nword : 1, sizeof *c->word);
    if (c->word == NULL) r.bad = 1;
    for (uint32_t i = 0; !r.bad && i < c->nword; i++) {
        c->word[i].addr = u64(&r);
        c->word[i].value = u64(&r);
        unsigned char ok;
        take(&r, &ok, 1);
        c->word[i].readable = ok;
    }
    if (r.bad || r.left || c->path_arg < 0 || c->path_arg > 5 || c->dirfd_arg > 5
        || c->path_len >= MAX_PATH_BYTES) {
        free_recipe(c);
        return -EINVAL;
    }
    c->next = s->recipes;
    s->recipes = c;
    return 0;
}

/* -- re-checking a stopped call against a recipe --------------------------------------------- */

static int mem_fd(struct ms_session *s, int pid) {
    int free_slot = -1;
    for (int i = 0; i < MAX_FDS; i++) {
        if (s->fds[i].pid == pid) return s->fds[i].fd;
        if (s->fds[i].pid == 0 && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    s->fds[free_slot].pid = pid;
    s->fds[free_slot].fd = fd;
    return fd;
}

/* All `len` bytes at `addr`, or fewer where the memory ends (as the monitor's reads do). */
static size_t read_mem(int fd, uint64_t addr, unsigned char *out, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(fd, out + done, len - done, (off_t)(addr + done));
        if (got <= 0) break;
        done += (size_t)got;
    }
    return done;
}

static int path_unchanged(int fd, const struct recipe *c, const struct user_regs_struct *regs) {
    uint64_t args[6] = {regs->rdi, regs->rsi, regs->rdx, regs->r10, regs->r8, regs->r9};
    if (c->dirfd_arg >= 0 && (int32_t)(uint32_t)args[c->dirfd_arg] != c->dirfd) return 0;
    unsigned char buf[MAX_PATH_BYTES + 1];
    size_t want = (size_t)c->path_len + 1;
    if (read_mem(fd, args[c->path_arg], buf, want) != want) return 0;
    if (memcmp(buf, c->path, c->path_len) != 0 || buf[c->path_len] != 0) return 0;
    if (c->link != NULL) {
        char target[MAX_PATH_BYTES + 1];
        ssize_t n = readlink(c->link, target, MAX_PATH_BYTES);
        if (n < 0 || (size_t)n != strlen(c->target) || memcmp(target, c->target, (size_t)n) != 0)
            return 0;
    }
    for (uint32_t i = 0; i < c->nprefix; i++) {
        struct stat st;
        /* A missing component resolves as the monitor's (non-strict) realpath resolves it. */
        if (lstat(c->prefix[i], &st) == 0 && S_ISLNK(st.st_mode)) return 0;
    }
    return 1;
}

static int stack_unchanged(struct ms_session *s, int fd, const struct recipe *c) {
    unsigned char *window = s->window;
    size_t span = 0; /* read only as much of the window as the words need */
    for (uint32_t i = 0; i < c->nword; i++)
        if (c->word[i].addr >= c->rsp && c->word[i].addr - c->rsp + 8 <= STACK_WINDOW
            && c->word[i].addr - c->rsp + 8 > span)
            span = c->word[i].addr - c->rsp + 8;
    size_t got = span ? read_mem(fd, c->rsp, window, span) : 0;
    for (uint32_t i = 0; i < c->nword; i++) {
        const struct word *w = &c->word[i];
        uint64_t at = w->addr - c->rsp, value = 0;
        int readable;
        if (w->addr >= c->rsp && at + 8 <= got) {
            memcpy(&value, window + at, 8);
            readable = 1;
        } else {
            unsigned char raw[8];
            readable = read_mem(fd, w->addr, raw, 8) == 8;
            if (readable) memcpy(&value, raw, 8);
        }
        if (readable != w->readable || (readable && value != w->value)) return 0;
    }
    return 1;
}

static int image_unchanged(struct ms_session *s, int fd, int pid) {
    const struct image *m = s->images;
    while (m && m->pid != pid) m = m->next;
    if (m == NULL) return 0;
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    if (stat(path, &st) != 0) return 0;
    if ((uint64_t)st.st_dev != m->dev || (uint64_t)st.st_ino != m->ino || st.st_size != m->size
        || (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != m->mtime_ns
        || (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec != m->ctime_ns)
        return 0;
    unsigned char *buf = s->chunk;
    for (uint32_t i = 0; i < m->nseg; i++) {
        for (uint64_t done = 0; done < m->seg[i].len;) {
            size_t most = sizeof s->chunk;
            size_t step = m->seg[i].len - done > most ? most : m->seg[i].len - done;
            if (read_mem(fd, m->seg[i].addr + done, buf, step) != step) return 0;
            if (memcmp(buf, m->seg[i].bytes + done, step) != 0) return 0;
            done += step;
        }
    }
    return 1;
}

/* The id of the recipe this stopped call repeats with every input unchanged, or -1. */
static int recheck(struct ms_session *s, int pid, int trap) {
    struct user_regs_struct regs;
    int have_regs = 0;
    for (const struct recipe *c = s->recipes; c; c = c->next) {
        if (c->pid != pid || c->trap != trap) continue;
        if (!have_regs) {
            if (ptrace(PTRACE_GETREGS, pid, 0, &regs) != 0) return -1;
            have_regs = 1;
        }
        if (regs.rip != c->rip || regs.rsp != c->rsp || regs.rbp != c->rbp) continue;
        int fd = mem_fd(s, pid);
        if (fd < 0) return -1;
        if (path_unchanged(fd, c, &regs) && stack_unchanged(s, fd, c) && image_unchanged(s, fd, pid))
            return c->id;
        return -1; /* the one candidate differs somewhere: the monitor judges afresh */
    }
    return -1;
}

static int record_hit(struct ms_session *s, int id, int pid) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&s->lock);
    int full = s->head - s->tail >= RING;
    if (!full) {
        struct hit *h = &s->ring[s->head % RING];
        h->id = id;
        h->pid = pid;
        h->at_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        s->head++;
    }
    pthread_mutex_unlock(&s->lock);
    return !full;
}

/* Move up to `max` queued re-checked stops out (for the audit log); how many were moved. */
int ms_drain(struct ms_session *s, int *ids, int *pids, int64_t *at_ns, int max) {
    int n = 0;
    pthread_mutex_lock(&s->lock);
    while (n < max && s->tail != s->head) {
        struct hit *h = &s->ring[s->tail % RING];
        ids[n] = h->id;
        pids[n] = h->pid;
        at_ns[n] = h->at_ns;
        s->tail++;
        n++;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t ms_hits(const struct ms_session *s) { return s->hits; }
uint64_t ms_passed(const struct ms_session *s) { return s->passed; }

/*
 * Wait for the next stop of process group `pgid` that the monitor must handle, resuming by
 * itself every trapped call whose recipe still holds. Returns 1 with that stop in *pid,
 * *status and *msg (*has_msg: whether the event message was read), 0 when no traced process
 * is left, -EINTR when a signal interrupted the wait (Python then runs its handlers: Ctrl-C
 * stops the monitor), another -errno if waiting failed.
 */
int ms_next(struct ms_session *s, int pgid, int *pid_out, int *status_out, unsigned long *msg_out,
            int *has_msg_out) {
    for (;;) {
        int status;
        if (interrupted) { interrupted = 0; return -EINTR; }
        pid_t pid = waitpid(-pgid, &status, __WALL);
        if (pid < 0) {
            if (errno == EINTR) interrupted = 0;
            return errno == ECHILD ? 0 : -errno;
        }
        unsigned long msg = 0;
        int has_msg = 0;
        if (WIFSTOPPED(status) && (status >> 16) == EVENT_SECCOMP
            && ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) == 0) {
            has_msg = 1;
            if (msg == NOT_SENSITIVE) { /* trapped only because everything is (benchmarks) */
                s->passed++;
                ptrace(PTRACE_CONT, pid, 0, 0);
                continue;
            }
            if (s->unsafe_resume_all) {
                s->hits++;
                ptrace(PTRACE_CONT, pid, 0, 0);
                continue;
            }
            int id = recheck(s, pid, (int)msg);
            if (id >= 0 && record_hit(s, id, pid)) {
                s->hits++;
                ptrace(PTRACE_CONT, pid, 0, 0);
                continue;
            }
        }
        *pid_out = pid;
        *status_out = status;
        *msg_out = msg;
        *has_msg_out = has_msg;
        return 1;
    }
}
