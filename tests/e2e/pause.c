/* pause: the sandbox ("infra") container of the CRI tests' pods, as Kubernetes'
 * own pause image has it: hold the pod's namespaces, reap orphans, and exit
 * on SIGTERM/SIGINT. Built with `gcc -static -O2` into an image of its own
 * (tests/support/cri.rs), so no registry is needed. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void bye(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction quit = {.sa_handler = bye};
    struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGTERM, &quit, NULL) || sigaction(SIGINT, &quit, NULL) || sigaction(SIGCHLD, &child, NULL)) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
