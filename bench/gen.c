/* tubegen: tubebench's load generator. One thread, epoll, non-blocking sockets, pipelining.
 *
 * Why C: the Python generator's own cost was in every number and its ceiling was unknown (its
 * null responder was slower than beanstalkd), so its ratios could flatter the slower server.
 * This one drives N connections with D commands in flight each, checks every reply in order
 * (ids, body sizes and contents), and prints one JSON line on stdout. Every loop ends at its
 * count or at the --limit deadline; only 127.0.0.1 is ever dialled.
 *
 * Modes (all on tube --tube, default "bench"):
 *   put    --conns C --depth D --jobs N [--stamped]   N puts in all, D in flight per conn
 *          [--unique K]   put-unique instead (tubeserver's flow control), the i-th with key
 *                         k<i mod K>: K >= N makes every put insert, a small K makes most of
 *                         them DUPLICATE (counted in "duplicates")
 *   drain  --conns C --depth D --jobs N   reserve-with-timeout 0 + delete, D in flight
 *   batch  --conns C --batch K --jobs N   reserve-batch K 0, a delete per frame as it comes
 *   cycle  --conns P --consumers C --depth D --jobs N   closed-loop producers and consumers
 *   paced  --rate R --consumers C --jobs N   one producer on a clock; C=0 times put->INSERTED
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define STAMP 20               /* a timed body starts with CLOCK_MONOTONIC ns, 20 digits */
#define IN_CAP (256 * 1024)    /* receive buffer per connection (grows for a long frame) */
#define MAX_LINE 512           /* a reply line longer than this is garbage */
#define MAX_BODY (1 << 20)
#define SEEN_CAP (1u << 26)    /* ids above this are not checked for duplicates */
#define GRACE_NS 1000000000LL  /* after an error: how long to wait for replies in flight */
#define TIMER_TAG UINT32_MAX

enum mode { M_PUT, M_DRAIN, M_BATCH, M_CYCLE, M_PACED };
enum role { R_PUT, R_DRAIN, R_BATCH, R_CONSUME, R_PACED };
enum cmd { C_PUT, C_POLL, C_WAIT, C_DELETE, C_BATCH }; /* what a reply in the queue answers */

struct cfg {
    int port, conns, depth, consumers, batch, body, stamped;
    long long jobs, unique;
    double rate, limit;
    const char *tube;
    enum mode mode;
};

struct buf { char *p; size_t off, len, cap; };

struct pend { int64_t t; int32_t n; uint8_t cmd; }; /* send time (paced), batch count */

struct conn {
    int fd, idx, epollout;
    enum role role;
    struct buf in, out;
    struct pend *q;
    uint32_t qcap, qhead, qlen;
    int reserves;    /* reserves of any kind in flight */
    int waiting;     /* consumer: the tube ran dry; the next reserve blocks, alone */
    int drained;     /* no more reserves from this connection */
    int batch_left;  /* frames still due for the reserve-batch at the head; -1: header next */
    uint64_t last_id;
};

struct lat { int64_t *v; size_t n, cap; };

static struct cfg cfg;
static struct conn *conns;
static int nconns, ep = -1, tfd = -1;
static long long put_sent, put_acked, claimed, reserved, deleted, empties, errors, duplicates;
static char first_error[200];
static int stopping, timed_out;
static int64_t start_ns, last_ns, stop_at, deadline, last_send;
static double interval_ns;
static struct lat lat_pr, lat_ack, lat_lag; /* put-to-reserve, put-to-INSERTED, send lag */
static char *put_tmpl, *plain_body;
static size_t put_len, stamp_at;
static uint8_t *seen;
static size_t seen_bytes;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "tubegen: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(1);
}

static void *grow(void *p, size_t size) {
    void *q = realloc(p, size ? size : 1);
    if (!q) { errno = 0; die("out of memory"); }
    return q;
}

static void lat_add(struct lat *l, int64_t v) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4096;
        l->v = grow(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = v;
}

/* ---------------------------------------------------------------- errors */

static void fail(struct conn *c, const char *why, const char *line, size_t len) {
    if (!errors++) {
        int k = snprintf(first_error, sizeof first_error, "conn %d: %s%s", c ? c->idx : -1, why,
                         line ? ": " : "");
        if (line && k > 0 && (size_t)k < sizeof first_error) {
            size_t room = sizeof first_error - (size_t)k - 1;
            memcpy(first_error + k, line, len < room ? len : room);
            first_error[k + (len < room ? len : room)] = 0;
        }
    }
    if (!stopping) { stopping = 1; stop_at = now_ns() + GRACE_NS; }
}

/* ---------------------------------------------------------------- output */

static void put_bytes(struct buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        while (b->len + n > b->cap) b->cap = b->cap ? 2 * b->cap : 65536;
        b->p = grow(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void push(struct conn *c, enum cmd cmd, int32_t n, int64_t t) {
    if (c->qlen == c->qcap) { /* double the ring, unrolled from the head */
        uint32_t cap = c->qcap ? 2 * c->qcap : 64;
        struct pend *q = grow(NULL, cap * sizeof *q);
        for (uint32_t i = 0; i < c->qlen; i++) q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q; c->qcap = cap; c->qhead = 0;
    }
    struct pend *e = &c->q[(c->qhead + c->qlen++) % c->qcap];
    e->cmd = (uint8_t)cmd; e->n = n; e->t = t;
    if (cmd == C_POLL || cmd == C_WAIT || cmd == C_BATCH) c->reserves++;
}

static struct pend pop(struct conn *c) {
    struct pend e = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    if (e.cmd == C_POLL || e.cmd == C_WAIT || e.cmd == C_BATCH) c->reserves--;
    return e;
}

static void stamp(char *at, int64_t t) {
    for (int i = STAMP - 1; i >= 0; i--) { at[i] = (char)('0' + t % 10); t /= 10; }
}

static void send_put(struct conn *c, int64_t t) {
    size_t at = c->out.len;
    if (cfg.unique) { /* the header names this put's key; the body is the plain one */
        char head[96];
        int hl = snprintf(head, sizeof head, "put-unique k%lld 0 100 0 600 %d\r\n",
                          put_sent % cfg.unique, cfg.body);
        put_bytes(&c->out, head, (size_t)hl);
        put_bytes(&c->out, put_tmpl + stamp_at, put_len - stamp_at);
    } else {
        put_bytes(&c->out, put_tmpl, put_len);
        if (cfg.stamped) stamp(c->out.p + at + stamp_at, t);
    }
    push(c, C_PUT, 0, t);
    put_sent++;
}

static void send_text(struct conn *c, enum cmd cmd, int32_t n, const char *fmt,
                      unsigned long long arg) {
    char line[96];
    int k = snprintf(line, sizeof line, fmt, arg);
    put_bytes(&c->out, line, (size_t)k);
    push(c, cmd, n, 0);
}

static void set_epollout(struct conn *c, int on) {
    if (c->epollout == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)c->idx};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->epollout = on;
}

static void flush(struct conn *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) { set_epollout(c, 1); return; }
            if (errno == EINTR) continue;
            fail(c, "send failed (server gone?)", strerror(errno), strlen(strerror(errno)));
            c->out.off = c->out.len;
            break;
        }
        c->out.off += (size_t)n;
    }
    c->out.off = c->out.len = 0;
    set_epollout(c, 0);
}

/* ---------------------------------------------------------------- what each role sends next */

static void refill(struct conn *c) {
    if (stopping) return;
    switch (c->role) {
    case R_PUT: {
        int64_t t = cfg.stamped ? now_ns() : 0;
        while (c->qlen < (uint32_t)cfg.depth && put_sent < cfg.jobs) send_put(c, t);
        break;
    }
    case R_DRAIN:
        while (!c->drained && c->qlen < (uint32_t)cfg.depth && claimed < cfg.jobs) {
            send_text(c, C_POLL, 0, "reserve-with-timeout %llu\r\n", 0);
            claimed++;
        }
        break;
    case R_BATCH:
        if (!c->drained && !c->reserves && claimed < cfg.jobs) {
            long long k = cfg.jobs - claimed < cfg.batch ? cfg.jobs - claimed : cfg.batch;
            char line[64];
            int n = snprintf(line, sizeof line, "reserve-batch %lld 0\r\n", k);
            put_bytes(&c->out, line, (size_t)n);
            push(c, C_BATCH, (int32_t)k, 0);
            claimed += k;
        }
        break;
    case R_CONSUME:
        if (reserved >= cfg.jobs) break;
        /* Poll `depth` deep while jobs come. A blocking reserve never has another reserve
         * beside it: replies come in order, so whatever followed it would wait with it. */
        if (cfg.depth > 1 && !c->waiting) {
            while (c->qlen < (uint32_t)cfg.depth)
                send_text(c, C_POLL, 0, "reserve-with-timeout %llu\r\n", 0);
        } else if (!c->reserves) {
            send_text(c, C_WAIT, 0, "reserve-with-timeout %llu\r\n", 1);
        }
        break;
    case R_PACED:
        break;
    }
}

/* ---------------------------------------------------------------- replies */

static int parse_u64(const char *s, size_t n, uint64_t *out) {
    uint64_t v = 0;
    if (n == 0 || n > 19) return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static int starts(const char *line, size_t len, const char *word) {
    size_t n = strlen(word);
    return len >= n && memcmp(line, word, n) == 0;
}

/* A body is one this generator writes: x's, the first 20 of them possibly a clock. */
static int body_ok(const char *b, int64_t *stamp_out) {
    size_t head = (size_t)cfg.body < STAMP ? (size_t)cfg.body : STAMP;
    if (memcmp(b + head, plain_body + head, (size_t)cfg.body - head)) return 0;
    uint64_t t; /* 20 digits: a leading 0, then at most 19 that fit */
    if (cfg.body >= STAMP && b[0] == '0' && parse_u64(b + 1, STAMP - 1, &t)) {
        *stamp_out = (int64_t)t;
        return 1;
    }
    *stamp_out = -1;
    return memcmp(b, plain_body, head) == 0;
}

static int first_sighting(uint64_t id) {
    if (id >= SEEN_CAP) return 1;
    size_t need = (size_t)(id / 8) + 1;
    if (need > seen_bytes) {
        size_t cap = seen_bytes ? seen_bytes : 65536;
        while (cap < need) cap *= 2;
        seen = grow(seen, cap);
        memset(seen + seen_bytes, 0, cap - seen_bytes);
        seen_bytes = cap;
    }
    uint8_t bit = (uint8_t)(1u << (id % 8));
    if (seen[id / 8] & bit) return 0;
    seen[id / 8] |= bit;
    return 1;
}

/* A RESERVED frame at p (line of `ll` bytes). Returns the frame's length, 0 when incomplete,
 * -1 when it cannot be read on. */
static long frame(struct conn *c, const char *p, size_t ll, size_t avail, int64_t now) {
    const char *sp = memchr(p + 9, ' ', ll - 9);
    uint64_t id, bytes;
    if (!starts(p, ll, "RESERVED ") || !sp || !parse_u64(p + 9, (size_t)(sp - p - 9), &id) ||
        !parse_u64(sp + 1, (size_t)(p + ll - sp - 1), &bytes)) {
        fail(c, "expected RESERVED <id> <bytes>", p, ll);
        return -1;
    }
    if (bytes != (uint64_t)cfg.body) { fail(c, "wrong body size", p, ll); return -1; }
    size_t total = ll + 2 + bytes + 2;
    if (total > avail) {
        if (total > c->in.cap) { c->in.cap = total; c->in.p = grow(c->in.p, c->in.cap); }
        return 0;
    }
    int64_t t;
    const char *b = p + ll + 2;
    if (b[bytes] != '\r' || b[bytes + 1] != '\n' || !body_ok(b, &t))
        fail(c, "body is not one the generator wrote", p, ll);
    else if (!first_sighting(id))
        fail(c, "job reserved twice", p, ll);
    reserved++;
    if (c->role == R_CONSUME) {
        if (cfg.depth > 1) c->waiting = 0;
        if (t < 0 || t > now) fail(c, "no clock in a timed body", p, ll);
        else lat_add(&lat_pr, now - t);
    }
    char line[64];
    int n = snprintf(line, sizeof line, "delete %llu\r\n", (unsigned long long)id);
    put_bytes(&c->out, line, (size_t)n);
    push(c, C_DELETE, 0, 0);
    return (long)total;
}

static void on_empty(struct conn *c) { /* TIMED_OUT or DEADLINE_SOON to a reserve */
    empties++;
    if (c->role == R_CONSUME) { if (cfg.depth > 1) c->waiting = 1; }
    else c->drained = 1;
}

/* Reads every complete reply in c->in; returns 0 when the stream cannot be read on. */
static int replies(struct conn *c, int64_t now) {
    while (c->in.off < c->in.len) {
        char *p = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        char *eol = memmem(p, avail, "\r\n", 2);
        if (!eol) {
            if (avail > MAX_LINE) { fail(c, "reply line too long", p, 60); return 0; }
            return 1;
        }
        size_t ll = (size_t)(eol - p), used = ll + 2;
        if (!c->qlen) { fail(c, "reply to no command", p, ll); return 0; }
        struct pend *e = &c->q[c->qhead];
        uint64_t v;
        switch (e->cmd) {
        case C_PUT:
            if (cfg.unique && cfg.unique < cfg.jobs && starts(p, ll, "DUPLICATE ") &&
                parse_u64(p + 10, ll - 10, &v) && v)
                duplicates++; /* names the job holding the key, put on any connection */
            else if (!starts(p, ll, "INSERTED ") || !parse_u64(p + 9, ll - 9, &v) || !v)
                fail(c, "put", p, ll);
            else if (v <= c->last_id)
                fail(c, "put: ids do not grow", p, ll);
            else c->last_id = v;
            if (c->role == R_PACED) lat_add(&lat_ack, now - e->t);
            put_acked++;
            last_ns = now;
            pop(c);
            break;
        case C_DELETE: /* a null responder may hand consumers more than --jobs: not counted */
            if (ll != 7 || memcmp(p, "DELETED", 7)) fail(c, "delete", p, ll);
            else if (++deleted <= cfg.jobs) last_ns = now;
            pop(c);
            break;
        case C_POLL:
        case C_WAIT:
            if (starts(p, ll, "TIMED_OUT") || starts(p, ll, "DEADLINE_SOON")) {
                pop(c);
                on_empty(c);
                break;
            } else {
                long k = frame(c, p, ll, avail, now);
                if (k <= 0) return k == 0;
                used = (size_t)k;
                pop(c);
            }
            break;
        case C_BATCH:
            if (c->batch_left < 0) {
                if (starts(p, ll, "TIMED_OUT") || starts(p, ll, "DEADLINE_SOON")) {
                    claimed -= e->n;
                    pop(c);
                    on_empty(c);
                } else if (starts(p, ll, "RESERVED-BATCH ") && parse_u64(p + 15, ll - 15, &v) &&
                           v >= 1 && v <= (uint64_t)e->n) {
                    claimed -= e->n - (int32_t)v;
                    c->batch_left = (int)v;
                } else {
                    fail(c, "reserve-batch", p, ll);
                    return 0;
                }
            } else {
                long k = frame(c, p, ll, avail, now);
                if (k <= 0) return k == 0;
                used = (size_t)k;
                if (--c->batch_left == 0) { c->batch_left = -1; pop(c); }
            }
            break;
        }
        c->in.off += used;
    }
    return 1;
}

static void drop(struct conn *c) { /* nothing more will be read from c */
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->qlen = 0;
    c->in.off = c->in.len = 0;
}

static void on_readable(struct conn *c) {
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
    else if (c->in.off > c->in.cap / 2 || c->in.len == c->in.cap) {
        memmove(c->in.p, c->in.p + c->in.off, c->in.len - c->in.off);
        c->in.len -= c->in.off;
        c->in.off = 0;
    }
    ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        fail(c, "recv failed", strerror(errno), strlen(strerror(errno)));
        drop(c);
        return;
    }
    if (n == 0) {
        fail(c, "the server closed the connection", NULL, 0);
        drop(c);
        return;
    }
    c->in.len += (size_t)n;
    if (!replies(c, now_ns())) { drop(c); return; }
    refill(c);
    flush(c);
}

/* ---------------------------------------------------------------- the paced producer */

static void arm(int64_t at) {
    struct itimerspec its = {0};
    its.it_value.tv_sec = at / 1000000000LL;
    its.it_value.tv_nsec = at % 1000000000LL;
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
}

static void paced_tick(struct conn *c) {
    uint64_t ticks;
    if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("read timerfd");
    if (stopping || put_sent >= cfg.jobs) return;
    int64_t now = now_ns();
    long long due = (long long)((double)(now - start_ns) / interval_ns) + 1;
    if (due > cfg.jobs) due = cfg.jobs;
    for (long long i = put_sent; i < due; i++)
        lat_add(&lat_lag, now - start_ns - (int64_t)((double)i * interval_ns));
    while (put_sent < due) send_put(c, now);
    last_send = now;
    flush(c);
    if (put_sent < cfg.jobs) arm(start_ns + (int64_t)((double)put_sent * interval_ns));
}

/* ---------------------------------------------------------------- setup */

static void ask(int fd, const char *cmd, const char *expect) {
    char reply[256];
    size_t got = 0;
    if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) != (ssize_t)strlen(cmd)) die("setup send");
    while (got < 2 || memcmp(reply + got - 2, "\r\n", 2)) {
        if (got == sizeof reply) { errno = 0; die("setup reply too long"); }
        ssize_t n = recv(fd, reply + got, sizeof reply - got, 0);
        if (n <= 0) { if (!n) errno = 0; die("setup: the server closed the connection"); }
        got += (size_t)n;
    }
    if (strncmp(reply, expect, strlen(expect))) {
        reply[got - 2] = 0;
        fprintf(stderr, "tubegen: %.*s got %s\n", (int)strlen(cmd) - 2, cmd, reply);
        exit(1);
    }
}

static void open_conn(struct conn *c, int idx, enum role role) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
    struct timeval tv = {.tv_sec = 10};
    int one = 1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(c, 0, sizeof *c);
    c->idx = idx; c->role = role; c->batch_left = -1;
    c->waiting = role == R_CONSUME; /* the first reserve waits: producers may not have begun */
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        char what[64];
        snprintf(what, sizeof what, "connect 127.0.0.1:%d", cfg.port);
        die(what);
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char cmd[256];
    if (role == R_PUT || role == R_PACED) {
        snprintf(cmd, sizeof cmd, "use %s\r\n", cfg.tube);
        ask(c->fd, cmd, "USING ");
    } else {
        snprintf(cmd, sizeof cmd, "watch %s\r\n", cfg.tube);
        ask(c->fd, cmd, "WATCHING ");
        if (strcmp(cfg.tube, "default")) ask(c->fd, "ignore default\r\n", "WATCHING ");
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->in.cap = IN_CAP;
    c->in.p = grow(NULL, c->in.cap);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

/* ---------------------------------------------------------------- the run */

static int finished(void) {
    if (cfg.mode == M_CYCLE && deleted >= cfg.jobs && put_acked >= cfg.jobs) return 1;
    if (cfg.mode == M_PACED && put_acked >= cfg.jobs && (!cfg.consumers || deleted >= cfg.jobs))
        return 1;
    if (cfg.mode == M_PACED && put_sent < cfg.jobs && !stopping) return 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].qlen) return 0;
    return 1; /* nothing in flight, and nothing more was sent */
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t rank(const struct lat *l, double q) { /* nearest rank, as summary.percentile */
    size_t r = (size_t)((q / 100.0) * (double)l->n);
    if ((double)r < (q / 100.0) * (double)l->n) r++;
    if (r < 1) r = 1;
    return l->v[r - 1];
}

static void print_lat(const char *name, struct lat *l) {
    if (!l->n) { printf(",\"%s\":null", name); return; }
    qsort(l->v, l->n, sizeof *l->v, cmp64);
    printf(",\"%s\":{\"n\":%zu,\"p50\":%lld,\"p99\":%lld,\"p999\":%lld,\"max\":%lld}", name, l->n,
           (long long)rank(l, 50), (long long)rank(l, 99), (long long)rank(l, 99.9),
           (long long)l->v[l->n - 1]);
}

static void print_json(double cpu) {
    static const char *names[] = {"put", "drain", "batch", "cycle", "paced"};
    long long done = cfg.mode == M_PUT || (cfg.mode == M_PACED && !cfg.consumers) ? put_acked
                     : deleted < cfg.jobs ? deleted : cfg.jobs;
    double elapsed = (double)(last_ns > start_ns ? last_ns - start_ns : 1) / 1e9;
    printf("{\"generator\":\"c\",\"mode\":\"%s\",\"jobs\":%lld,\"done\":%lld,\"puts\":%lld,"
           "\"reserved\":%lld,\"deleted\":%lld,\"empty_replies\":%lld,\"duplicates\":%lld,"
           "\"elapsed_s\":%.9f,\"timed_out\":%s,\"cpu_s\":%.6f,\"errors\":%lld,"
           "\"first_error\":\"",
           names[cfg.mode], cfg.jobs, done, put_acked, reserved, deleted, empties, duplicates,
           elapsed, timed_out ? "true" : "false", cpu, errors);
    for (const char *s = first_error; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20 || ch > 0x7e) printf("\\u%04x", ch);
        else putchar(ch);
    }
    printf("\"");
    if (cfg.mode == M_PACED) {
        double span = (double)(last_send - start_ns) / 1e9;
        printf(",\"sent_rate\":%.3f", put_sent > 1 && span > 0 ? (double)(put_sent - 1) / span
                                                                : 0.0);
    }
    print_lat("latency_ns", &lat_pr);
    print_lat("ack_latency_ns", &lat_ack);
    print_lat("send_lag_ns", &lat_lag);
    printf("}\n");
}

static void usage(const char *why) {
    fprintf(stderr, "tubegen: %s\nusage: tubegen --port P --mode put|drain|batch|cycle|paced "
            "[--conns N] [--depth N] [--jobs N] [--body BYTES] [--batch N] [--consumers N] "
            "[--rate PER_S] [--limit SECONDS] [--tube NAME] [--stamped] [--unique KEYS]\n", why);
    exit(2);
}

static long long num(const char *s, long long lo, long long hi, const char *flag) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof why, "%s wants a whole number in %lld..%lld", flag, lo, hi);
        usage(why);
    }
    return v;
}

static void parse_args(int argc, char **argv) {
    int mode = -1;
    cfg = (struct cfg){.conns = 1, .depth = 1, .batch = 100, .body = 100, .limit = 60,
                       .tube = "bench"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--stamped")) { cfg.stamped = 1; continue; }
        if (!v) usage("a flag without its value");
        i++;
        if (!strcmp(a, "--port")) cfg.port = (int)num(v, 1, 65535, a);
        else if (!strcmp(a, "--conns")) cfg.conns = (int)num(v, 1, 10000, a);
        else if (!strcmp(a, "--depth")) cfg.depth = (int)num(v, 1, 100000, a);
        else if (!strcmp(a, "--consumers")) cfg.consumers = (int)num(v, 0, 10000, a);
        else if (!strcmp(a, "--batch")) cfg.batch = (int)num(v, 1, 1000, a);
        else if (!strcmp(a, "--body")) cfg.body = (int)num(v, 0, MAX_BODY, a);
        else if (!strcmp(a, "--jobs")) cfg.jobs = num(v, 0, 10000000000LL, a);
        else if (!strcmp(a, "--unique")) cfg.unique = num(v, 0, 10000000000LL, a);
        else if (!strcmp(a, "--tube")) cfg.tube = v;
        else if (!strcmp(a, "--rate") || !strcmp(a, "--limit")) {
            char *end;
            double d = strtod(v, &end);
            if (*end || end == v || !(d > 0) || d > 1e9) usage("--rate and --limit want > 0");
            *(strcmp(a, "--rate") ? &cfg.limit : &cfg.rate) = d;
        } else if (!strcmp(a, "--mode")) {
            static const char *names[] = {"put", "drain", "batch", "cycle", "paced"};
            for (int m = 0; m < 5; m++)
                if (!strcmp(v, names[m])) mode = m;
            if (mode < 0) usage("unknown --mode");
        } else usage("unknown flag");
    }
    if (!cfg.port || mode < 0) usage("--port and --mode are required");
    cfg.mode = (enum mode)mode;
    if (strlen(cfg.tube) > 200 || strpbrk(cfg.tube, " \r\n")) usage("bad --tube");
    if (cfg.mode == M_PACED && !(cfg.rate > 0)) usage("paced wants --rate");
    if (cfg.mode == M_CYCLE || cfg.mode == M_PACED) cfg.stamped = 1;
    if (cfg.stamped && cfg.body < STAMP) usage("a timed body needs --body 20 or more");
    if (cfg.unique && (cfg.mode != M_PUT || cfg.stamped)) usage("--unique is for put, untimed");
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    prctl(PR_SET_TIMERSLACK, 1UL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");

    plain_body = grow(NULL, (size_t)cfg.body + 1);
    memset(plain_body, 'x', (size_t)cfg.body);
    char head[96];
    int hl = snprintf(head, sizeof head, "put 100 0 600 %d\r\n", cfg.body);
    put_len = (size_t)hl + (size_t)cfg.body + 2;
    put_tmpl = grow(NULL, put_len);
    memcpy(put_tmpl, head, (size_t)hl);
    memcpy(put_tmpl + hl, plain_body, (size_t)cfg.body);
    memcpy(put_tmpl + hl + cfg.body, "\r\n", 2);
    stamp_at = (size_t)hl;

    enum role main_role = cfg.mode == M_PUT ? R_PUT : cfg.mode == M_DRAIN ? R_DRAIN
                        : cfg.mode == M_BATCH ? R_BATCH : cfg.mode == M_CYCLE ? R_PUT : R_PACED;
    int producers = cfg.mode == M_PACED ? 1 : cfg.conns;
    int consumers = cfg.mode == M_CYCLE || cfg.mode == M_PACED ? cfg.consumers : 0;
    if (cfg.mode == M_CYCLE && !consumers) usage("cycle wants --consumers 1 or more");
    nconns = producers + consumers;
    conns = grow(NULL, (size_t)nconns * sizeof *conns);
    for (int i = 0; i < nconns; i++) open_conn(&conns[i], i, i < producers ? main_role : R_CONSUME);

    double cpu0 = cpu_s();
    start_ns = last_ns = last_send = now_ns();
    deadline = start_ns + (int64_t)(cfg.limit * 1e9);
    if (cfg.mode == M_PACED) {
        interval_ns = 1e9 / cfg.rate;
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (tfd < 0) die("timerfd_create");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TIMER_TAG};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0) die("epoll_ctl");
        arm(start_ns);
    }
    for (int i = 0; i < nconns; i++) { refill(&conns[i]); flush(&conns[i]); }

    struct epoll_event evs[64];
    while (!finished()) {
        int64_t now = now_ns(), until = stopping && stop_at < deadline ? stop_at : deadline;
        if (now >= until) { timed_out = !stopping; break; }
        int64_t wait = (until - now + 999999) / 1000000;
        int n = epoll_wait(ep, evs, 64, wait > 100 ? 100 : (int)wait);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            uint32_t tag = evs[i].data.u32;
            if (tag == TIMER_TAG) { paced_tick(&conns[0]); continue; }
            struct conn *c = &conns[tag];
            if (evs[i].events & EPOLLOUT) flush(c);
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
    }
    double cpu = cpu_s() - cpu0;
    print_json(cpu);
    fflush(stdout);
    return 0;
}
