/* The lab's resolver probe: getaddrinfo as uv (Rust std) calls it, then connect to each address in order.
 *
 * usage: probe NAME [PORT]
 * Hints as Rust std's lookup_host: AF_UNSPEC, SOCK_STREAM, no flags (no AI_ADDRCONFIG).
 * Prints one line per address ("addr ADDRESS"); with PORT, connects to each in the order getaddrinfo gave,
 * blocking, no timeout of its own (as a naive client does), and prints "connected ADDRESS" or
 * "connect ADDRESS: ERROR".
 * Exit: 0 resolved (and connected, with PORT); 2 getaddrinfo failed ("getaddrinfo: TEXT", TEXT from the
 * libc's own gai_strerror); 3 no address connected.
 * Built twice: with musl-gcc (static) and with gcc (glibc).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>

static const char *text(const struct sockaddr *sa, char *buf, socklen_t len) {
    const void *addr = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                                 : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    return inet_ntop(sa->sa_family, addr, buf, len);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: probe NAME [PORT]\n");
        return 64;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], argc == 3 ? argv[2] : NULL, &hints, &res);
    if (rc != 0) {
        printf("getaddrinfo: %s\n", gai_strerror(rc));
        return 2;
    }
    char buf[INET6_ADDRSTRLEN];
    for (ai = res; ai; ai = ai->ai_next)
        printf("addr %s\n", text(ai->ai_addr, buf, sizeof buf));
    if (argc == 2)
        return 0;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            printf("connected %s\n", text(ai->ai_addr, buf, sizeof buf));
            close(fd);
            return 0;
        }
        int err = errno;
        printf("connect %s: %s\n", text(ai->ai_addr, buf, sizeof buf), strerror(err));
        close(fd);
    }
    return 3;
}
