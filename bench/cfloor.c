/* The floor: the least milter work Postfix can be asked for per SMTP session.
 *
 * Not libmilter: a thread per MTA connection, blocking reads, nothing else.
 * In option negotiation it switches off every step Postfix offers to leave
 * out (SMFIP_NOCONNECT ... SMFIP_NOBODY, SMFIP_NOUNKNOWN), waives every
 * remaining reply the MTA allows (SMFIP_NR_*), asks for no actions and sends
 * no macro lists (Postfix then sends its default ones), and answers end of
 * message with CONTINUE. TCP_NODELAY, and
 * TCP_QUICKACK set again after every read, so that neither side's small
 * writes wait for a delayed ACK. What is left per session is what Postfix
 * does for any milter: connect, negotiate, the macro packets it sends
 * anyway, end of message and its one reply, QUIT. bench/postfix.py
 * measures it as "floor".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { NOCONNECT = 0x1, NOHELO = 0x2, NOMAIL = 0x4, NORCPT = 0x8, NOBODY = 0x10,
       NOHDRS = 0x20, NOEOH = 0x40, NR_HDR = 0x80, NOUNKNOWN = 0x100, NODATA = 0x200,
       NR_CONN = 0x1000, NR_HELO = 0x2000, NR_MAIL = 0x4000, NR_RCPT = 0x8000,
       NR_DATA = 0x10000, NR_UNKN = 0x20000, NR_EOH = 0x40000, NR_BODY = 0x80000 };

static int read_all(int fd, unsigned char *buf, size_t len)
{
    int one = 1;
    while (len > 0) {
        ssize_t n = read(fd, buf, len);
        if (n <= 0)
            return -1;
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void put32(unsigned char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg, one = 1;
    unsigned char head[4], *body = malloc(1 << 20);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (body && read_all(fd, head, 4) == 0) {
        uint32_t len = get32(head);
        if (len == 0 || len > (1 << 20) || read_all(fd, body, len) != 0)
            break;
        if (body[0] == 'O' && len >= 13) {  /* SMFIC_OPTNEG: version, actions, protocol */
            uint32_t want = NOCONNECT | NOHELO | NOMAIL | NORCPT | NOBODY | NOHDRS | NOEOH
                | NOUNKNOWN | NODATA | NR_HDR | NR_CONN | NR_HELO | NR_MAIL | NR_RCPT
                | NR_DATA | NR_UNKN | NR_EOH | NR_BODY;
            unsigned char out[17];
            put32(out, 13);
            out[4] = 'O';
            put32(out + 5, 6);
            put32(out + 9, 0);
            put32(out + 13, get32(body + 9) & want);
            if (write(fd, out, sizeof out) != sizeof out)
                break;
        } else if (body[0] == 'E') {  /* SMFIC_BODYEOB: SMFIR_CONTINUE */
            unsigned char out[5] = {0, 0, 0, 1, 'c'};
            if (write(fd, out, sizeof out) != sizeof out)
                break;
        } else if (body[0] == 'Q') {
            break;
        }
        /* Everything else (macros, abort) owes no reply. */
    }
    free(body);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
    if (argc != 2 || ls < 0)
        return 2;
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 512) != 0)
        return 1;
    for (;;) {
        pthread_t t;
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            continue;
        if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0)
            close(fd);
        else
            pthread_detach(t);
    }
}
