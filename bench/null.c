/* tubenull: the null responder, tubebench's ceiling. It answers each beanstalk command in
 * order with a canned reply and keeps no jobs.
 *
 * Why C: the generator's ceiling must be the generator's. A Python responder is slower than
 * beanstalkd, so a load it could carry said nothing about what the generator can drive. One
 * thread, epoll, one receive and one send per readable chunk. Listens on 127.0.0.1 only,
 * prints {"port": N} once listening, and exits on SIGTERM, when its standard input closes
 * (its parent is gone) or after --limit seconds.
 *
 * Usage: tubenull [--port P (0: any free port)] [--body BYTES] [--limit SECONDS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STAMP 20
#define IN_CAP (256 * 1024)
#define MAX_LINE 1024
#define MAX_BODY (1 << 20)
#define LISTENER UINT32_MAX
#define STDIN_TAG (UINT32_MAX - 1)

struct buf { char *p; size_t off, len, cap; };
struct conn { int fd, epollout; struct buf in, out; };

static struct conn **conns; /* by fd */
static size_t nslots;
static int ep, body = 100;
static uint64_t next_id = 1;
static char *frame_body; /* a reserve's body: the clock in 20 digits, then x's */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "tubenull: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *grow(void *p, size_t size) {
    void *q = realloc(p, size);
    if (!q) die("out of memory");
    return q;
}

static void out(struct buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        while (b->len + n > b->cap) b->cap = b->cap ? 2 * b->cap : 65536;
        b->p = grow(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void outf_id(struct buf *b, const char *fmt, uint64_t id) {
    char line[64];
    int n = snprintf(line, sizeof line, fmt, (unsigned long long)id);
    out(b, line, (size_t)n);
}

static void frame(struct buf *b) {
    char line[64];
    int n = snprintf(line, sizeof line, "RESERVED %llu %d\r\n", (unsigned long long)next_id++,
                     body);
    out(b, line, (size_t)n);
    out(b, frame_body, (size_t)body + 2);
}

static void close_conn(int fd) {
    struct conn *c = conns[fd];
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
    conns[fd] = NULL;
}

static int starts(const char *p, size_t n, const char *word) {
    size_t k = strlen(word);
    return n >= k && memcmp(p, word, k) == 0;
}

/* Answers every complete command in c->in; returns 0 to close the connection. */
static int answer(struct conn *c) {
    while (c->in.off < c->in.len) {
        char *p = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        char *eol = memmem(p, avail, "\r\n", 2);
        if (!eol) return avail <= MAX_LINE;
        size_t ll = (size_t)(eol - p), used = ll + 2;
        if (starts(p, ll, "put ") || starts(p, ll, "put-unique ")) { /* <bytes> is last */
            const char *sp = memrchr(p, ' ', ll);
            long bytes = strtol(sp + 1, NULL, 10);
            if (bytes < 0 || bytes > MAX_BODY) return 0;
            used += (size_t)bytes + 2;
            if (used > avail) {
                if (used > c->in.cap) { c->in.cap = used; c->in.p = grow(c->in.p, used); }
                return 1;
            }
            outf_id(&c->out, "INSERTED %llu\r\n", next_id++);
        } else if (starts(p, ll, "reserve-batch ")) {
            long k = strtol(p + 14, NULL, 10);
            if (k < 1 || k > 1000) {
                out(&c->out, "BAD_FORMAT\r\n", 12);
            } else {
                outf_id(&c->out, "RESERVED-BATCH %llu\r\n", (uint64_t)k);
                while (k--) frame(&c->out);
            }
        } else if (starts(p, ll, "reserve")) {
            frame(&c->out);
        } else if (starts(p, ll, "delete ")) {
            out(&c->out, "DELETED\r\n", 9);
        } else if (starts(p, ll, "use ")) {
            out(&c->out, "USING ", 6);
            out(&c->out, p + 4, ll - 4 + 2);
        } else if (starts(p, ll, "watch ") || starts(p, ll, "ignore ")) {
            out(&c->out, "WATCHING 1\r\n", 12);
        } else if (ll == 4 && !memcmp(p, "quit", 4)) {
            return 0;
        } else {
            out(&c->out, "UNKNOWN_COMMAND\r\n", 17);
        }
        c->in.off += used;
    }
    return 1;
}

static void set_epollout(int fd, struct conn *c, int on) {
    if (c->epollout == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    c->epollout = on;
}

static int flush(int fd, struct conn *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = send(fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) { set_epollout(fd, c, 1); return 1; }
            if (errno == EINTR) continue;
            return 0;
        }
        c->out.off += (size_t)n;
    }
    c->out.off = c->out.len = 0;
    set_epollout(fd, c, 0);
    return 1;
}

static void readable(int fd) {
    struct conn *c = conns[fd];
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
    else if (c->in.off > c->in.cap / 2 || c->in.len == c->in.cap) {
        memmove(c->in.p, c->in.p + c->in.off, c->in.len - c->in.off);
        c->in.len -= c->in.off;
        c->in.off = 0;
    }
    ssize_t n = recv(fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { close_conn(fd); return; }
    c->in.len += (size_t)n;
    int64_t t = now_ns(); /* one clock per chunk stamps its reserves' bodies */
    for (int i = STAMP - 1; i >= 0 && body >= STAMP; i--) {
        frame_body[i] = (char)('0' + t % 10);
        t /= 10;
    }
    if (!answer(c) || !flush(fd, c)) close_conn(fd);
}

static void accept_all(int lfd) {
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if ((size_t)fd >= nslots) {
            size_t n = nslots ? nslots : 64;
            while (n <= (size_t)fd) n *= 2;
            conns = grow(conns, n * sizeof *conns);
            memset(conns + nslots, 0, (n - nslots) * sizeof *conns);
            nslots = n;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) die("out of memory");
        c->fd = fd;
        c->in.cap = IN_CAP;
        c->in.p = grow(NULL, IN_CAP);
        conns[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
}

int main(int argc, char **argv) {
    int port = 0;
    double limit = 86400;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--body")) body = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--limit")) limit = atof(argv[i + 1]);
        else { fprintf(stderr, "tubenull: unknown flag %s\n", argv[i]); return 2; }
    }
    if (argc % 2 == 0 || port < 0 || port > 65535 || body < 0 || body > MAX_BODY || !(limit > 0)) {
        fprintf(stderr, "usage: tubenull [--port P] [--body BYTES] [--limit SECONDS]\n");
        return 2;
    }
    frame_body = grow(NULL, (size_t)body + 2);
    memset(frame_body, 'x', (size_t)body);
    memcpy(frame_body + body, "\r\n", 2);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 1024) < 0) die("listen");
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    printf("{\"port\": %d, \"pid\": %d}\n", ntohs(sa.sin_port), (int)getpid());
    fflush(stdout);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = LISTENER};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll");
    ev.data.u32 = STDIN_TAG;
    int watch_stdin = epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) == 0; /* not a file or /dev/null */

    int64_t end = now_ns() + (int64_t)(limit * 1e9);
    struct epoll_event evs[64];
    while (now_ns() < end) {
        int n = epoll_wait(ep, evs, 64, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            uint32_t tag = evs[i].data.u32;
            if (tag == LISTENER) { accept_all(lfd); continue; }
            if (tag == STDIN_TAG) {
                char junk[256];
                if (watch_stdin && read(0, junk, sizeof junk) <= 0) return 0; /* parent gone */
                continue;
            }
            struct conn *c = conns[tag];
            if (!c) continue;
            if ((evs[i].events & EPOLLOUT) && !flush((int)tag, c)) {
                close_conn((int)tag);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) readable((int)tag);
        }
    }
    return 0;
}
