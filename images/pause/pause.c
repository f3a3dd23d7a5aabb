/* The pod sandbox's first process (containerd's `sandbox_image`): it holds the pod's
 * namespaces open, reaps the orphans that a shared PID namespace hands it, and exits 0 on
 * SIGINT or SIGTERM. Built with `gcc -static` by e2e/node/images.py. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signo) {
    (void)signo;
    _exit(0);
}

static void reap(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction action;

    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("pause (airflow-k8s e2e node)");
        return 0;
    }
    if (getpid() != 1) {
        fputs("pause: not the first process of its PID namespace\n", stderr);
    }
    memset(&action, 0, sizeof(action));
    sigemptyset(&action.sa_mask);
    action.sa_handler = stop;
    if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0) {
        return 1;
    }
    action.sa_handler = reap;
    action.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &action, NULL) != 0) {
        return 2;
    }
    for (;;) {
        pause();
    }
}
