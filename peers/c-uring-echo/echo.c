/*
 * Benchmark peer: a hand-written single-thread io_uring echo loop in C, the
 * reference point of DESIGN.md ("multishot accept and recv, provided
 * buffers"). Tuned as a C programmer would: one ring, SINGLE_ISSUER +
 * DEFER_TASKRUN when the kernel has them, buffers echoed in place.
 *
 *   cc -O2 -o c-uring-echo echo.c -luring && ./c-uring-echo 127.0.0.1:7200
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_COUNT 4096
#define BUF_SIZE 4096
#define BGID 1
enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;

static inline unsigned long long ud(int op, int fd, int bid) {
    return ((unsigned long long)op << 56) | ((unsigned long long)(unsigned)fd << 16) | (unsigned)bid;
}

static struct io_uring_sqe *sqe(void) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    while (!s) {
        io_uring_submit(&ring);
        s = io_uring_get_sqe(&ring);
    }
    return s;
}

static void arm_accept(int lfd) {
    struct io_uring_sqe *s = sqe();
    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, ud(OP_ACCEPT, lfd, 0));
}

static void arm_recv(int fd) {
    struct io_uring_sqe *s = sqe();
    io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = BGID;
    io_uring_sqe_set_data64(s, ud(OP_RECV, fd, 0));
}

static void give_back(int bid) {
    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid, io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(br, 1);
}

int main(int argc, char **argv) {
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:7200";
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *colon = strrchr(host, ':');
    if (!colon) return 2;
    *colon = 0;
    int port = atoi(colon + 1);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
        perror("bind/listen");
        return 1;
    }

    struct io_uring_params p = {0};
    /* C_URING_COOP=1: the flags a multi-threaded port can use (no single issuer). */
    if (getenv("C_URING_COOP"))
        p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CQSIZE;
    else
        p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    if (io_uring_queue_init_params(4096, &ring, &p) < 0) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = 16384;
        if (io_uring_queue_init_params(4096, &ring, &p) < 0) {
            perror("io_uring_queue_init");
            return 1;
        }
    }
    /* liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring: register by hand. */
    if (posix_memalign((void **)&br, 4096, BUF_COUNT * sizeof(struct io_uring_buf))) return 1;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = BUF_COUNT, .bgid = BGID};
    int err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err) {
        fprintf(stderr, "buf ring: %s\n", strerror(-err));
        return 1;
    }
    bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
    for (int i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, i, io_uring_buf_ring_mask(BUF_COUNT), i);
    io_uring_buf_ring_advance(br, BUF_COUNT);

    arm_accept(lfd);
    fprintf(stderr, "c-uring-echo on %s\n", addr);
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            n++;
            unsigned long long d = io_uring_cqe_get_data64(cqe);
            int op = (int)(d >> 56), fd = (int)((d >> 16) & 0xffffffffULL), res = cqe->res;
            if (op == OP_ACCEPT) {
                if (res >= 0) arm_recv(res);
                if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(lfd);
            } else if (op == OP_RECV) {
                if (res > 0) {
                    int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    struct io_uring_sqe *s = sqe();
                    io_uring_prep_send(s, fd, bufs + (size_t)bid * BUF_SIZE, res, MSG_NOSIGNAL);
                    io_uring_sqe_set_data64(s, ud(OP_SEND, fd, bid));
                    if (!(cqe->flags & IORING_CQE_F_MORE)) arm_recv(fd);
                } else if (res == -ENOBUFS) {
                    arm_recv(fd);
                } else if (!(cqe->flags & IORING_CQE_F_MORE)) {
                    close(fd);
                }
            } else if (op == OP_SEND) {
                give_back((int)(d & 0xffff));
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
