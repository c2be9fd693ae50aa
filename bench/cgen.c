/*
 * bench/cgen.c: the Postfix-shaped milter client of bench/postfixgen.py,
 * replayed in C so that the generator costs the machine little CPU.
 *
 *   cgen SCRIPT HOST PORT CONNECTIONS PER_CONNECTION SECONDS WARMUP [LATENCIES]
 *
 * SCRIPT is written by bench/cgen.py: the exact bytes postfixgen.py sends
 * (Postfix's macros at each stage, commands grouped into writes that each
 * end where a reply is owed), for the protocol the filter negotiated. It
 * holds three kinds of sequences of writes:
 *
 *   opening   OPTNEG, then CONNECT and HELO with their macros
 *   message   MAIL ... EOM of one message (several, each with its own
 *             queue id, used in turn)
 *   closing   QUIT
 *
 * Each write carries a flag: 0 no reply owed, 1 read replies up to a final
 * one, 2 the same in the body, where SKIP ('s') jumps to the message's last
 * write (end of message), 3 read one reply whatever its code (the answer
 * to OPTNEG). A final reply is one of "acdrty4fs", as in
 * postfixgen.py; the modifications before it are read and dropped. After
 * every read TCP_QUICKACK is re-armed, as postfixgen.py does.
 *
 * CONNECTIONS threads each run SMTP sessions back to back: connect (with
 * TCP_NODELAY), the opening, PER_CONNECTION messages (0: until the end),
 * QUIT, close. Messages begun after WARMUP seconds are counted until
 * WARMUP + SECONDS. One line goes to stdout:
 *
 *   messages=N total=N errors=N connections=N seconds=S cpu=S p50_ms=X p99_ms=X
 *
 * cpu is this process's user + system seconds over the whole run (warm-up
 * included); a latency runs from a message's first write to its end of
 * message reply, and for a session's first message from the connect. With
 * LATENCIES, every counted message's latency is written there too, in
 * seconds, one per line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    uint8_t flag;
    uint32_t len;
    unsigned char *data;
} step_t;

typedef struct {
    uint32_t n;
    step_t *steps;
} seq_t;

static seq_t opening, closing;
static seq_t *messages;
static uint32_t nmessages;
static struct sockaddr_in addr;
static long per_connection;
static double deadline, warm_end;

typedef struct {
    long messages, total, errors, connections;
    double *lat;
    long nlat, cap;
} counts_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t read_u32(FILE *f)
{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) {
        fprintf(stderr, "cgen: script truncated\n");
        exit(2);
    }
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void read_seq(FILE *f, seq_t *s)
{
    s->n = read_u32(f);
    s->steps = calloc(s->n ? s->n : 1, sizeof(step_t));
    for (uint32_t i = 0; i < s->n; i++) {
        int flag = fgetc(f);
        if (flag == EOF) {
            fprintf(stderr, "cgen: script truncated\n");
            exit(2);
        }
        s->steps[i].flag = (uint8_t)flag;
        s->steps[i].len = read_u32(f);
        s->steps[i].data = malloc(s->steps[i].len ? s->steps[i].len : 1);
        if (fread(s->steps[i].data, 1, s->steps[i].len, f) != s->steps[i].len) {
            fprintf(stderr, "cgen: script truncated\n");
            exit(2);
        }
    }
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, unsigned char *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Replies up to a final one (with any, the first): its code, or -1 when
 * the connection failed. */
static int read_final(int fd, int any)
{
    unsigned char head[5], small[512];
    int one = 1;
    for (;;) {
        if (read_all(fd, head, 5))
            return -1;
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
        if (len == 0)
            return -1;
        uint32_t rest = len - 1;
        while (rest) {
            uint32_t take = rest < sizeof small ? rest : sizeof small;
            if (read_all(fd, small, take))
                return -1;
            rest -= take;
        }
        if (any || (head[4] && strchr("acdrty4fs", head[4])))
            return head[4];
    }
}

static int run_seq(int fd, const seq_t *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        const step_t *st = &s->steps[i];
        if (write_all(fd, st->data, st->len))
            return -1;
        if (st->flag == 0)
            continue;
        int code = read_final(fd, st->flag == 3);
        if (code < 0)
            return -1;
        if (st->flag == 2 && code == 's' && i + 2 < s->n)
            i = s->n - 2; /* SKIP: on to end of message, the last write */
    }
    return 0;
}

static void note_latency(counts_t *c, double seconds)
{
    if (c->nlat == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->lat = realloc(c->lat, (size_t)c->cap * sizeof(double));
    }
    c->lat[c->nlat++] = seconds;
}

static void *client(void *arg)
{
    counts_t *c = arg;
    static long turn;
    while (now() < deadline) {
        double start = now();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
            c->errors++;
            if (fd >= 0)
                close(fd);
            usleep(1000);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->connections++;
        int failed = run_seq(fd, &opening);
        long sent = 0;
        while (!failed && now() < deadline && (per_connection == 0 || sent < per_connection)) {
            long k = __atomic_fetch_add(&turn, 1, __ATOMIC_RELAXED);
            double began = now();
            if (run_seq(fd, &messages[k % nmessages])) {
                failed = 1;
                break;
            }
            sent++;
            c->total++;
            if (began >= warm_end) {
                c->messages++;
                note_latency(c, now() - (sent == 1 ? start : began));
            }
        }
        if (failed)
            c->errors++;
        else
            run_seq(fd, &closing);
        close(fd);
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: cgen SCRIPT HOST PORT CONNECTIONS PER_CONNECTION SECONDS WARMUP [LATENCIES]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    read_seq(f, &opening);
    nmessages = read_u32(f);
    if (!nmessages) {
        fprintf(stderr, "cgen: no message in the script\n");
        return 2;
    }
    messages = calloc(nmessages, sizeof(seq_t));
    for (uint32_t i = 0; i < nmessages; i++)
        read_seq(f, &messages[i]);
    read_seq(f, &closing);
    fclose(f);

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "cgen: %s is not an IPv4 address\n", argv[2]);
        return 2;
    }
    long conns = atol(argv[4]);
    per_connection = atol(argv[5]);
    double seconds = atof(argv[6]), warmup = atof(argv[7]);
    double start = now();
    warm_end = start + warmup;
    deadline = warm_end + seconds;

    pthread_t *threads = calloc((size_t)conns, sizeof(pthread_t));
    counts_t *counts = calloc((size_t)conns, sizeof(counts_t));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (long i = 0; i < conns; i++)
        pthread_create(&threads[i], &attr, client, &counts[i]);
    counts_t all = {0};
    for (long i = 0; i < conns; i++) {
        pthread_join(threads[i], NULL);
        all.messages += counts[i].messages;
        all.total += counts[i].total;
        all.errors += counts[i].errors;
        all.connections += counts[i].connections;
        for (long j = 0; j < counts[i].nlat; j++)
            note_latency(&all, counts[i].lat[j]);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    if (argc == 9) {
        FILE *out = fopen(argv[8], "w");
        if (!out) {
            perror(argv[8]);
            return 2;
        }
        for (long j = 0; j < all.nlat; j++)
            fprintf(out, "%.6f\n", all.lat[j]);
        fclose(out);
    }
    double p50 = 0, p99 = 0;
    if (all.nlat) {
        qsort(all.lat, (size_t)all.nlat, sizeof(double), by_value);
        p50 = all.lat[(all.nlat - 1) / 2] * 1000;
        p99 = all.lat[(long)((all.nlat - 1) * 0.99)] * 1000;
    }
    printf("messages=%ld total=%ld errors=%ld connections=%ld seconds=%.3f cpu=%.4f p50_ms=%.3f p99_ms=%.3f\n",
           all.messages, all.total, all.errors, all.connections, seconds, cpu, p50, p99);
    return 0;
}
