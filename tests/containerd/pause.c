/*
 * pause: the sandbox ("infra") container of the oom-tracer containerd test
 * runtime. It holds the pod's namespaces open, sleeps until SIGTERM or
 * SIGINT, and reaps any child that is re-parented to it (it is PID 1 when the
 * pod has its own PID namespace).
 *
 * Built with `gcc -static -O2` by setup.sh and packed as the only file of the
 * image localhost/oom-tracer/pause:test (no pulls are possible here, so the
 * CRI plugin's sandbox_image must be a local image).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig) { stop = sig; }

/* Only interrupts sigsuspend(); the children are reaped in main(). */
static void on_chld(int sig) { (void)sig; }

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		puts("oom-tracer pause 1");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not running as PID 1\n");

	/*
	 * Block the signals we wait for, so that none can slip in between the
	 * check of `stop` and the wait: sigsuspend() unblocks them atomically.
	 */
	sigset_t wanted, old;
	sigemptyset(&wanted);
	sigaddset(&wanted, SIGTERM);
	sigaddset(&wanted, SIGINT);
	sigaddset(&wanted, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &wanted, &old) < 0) {
		perror("pause: sigprocmask");
		return 1;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term;
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	sa.sa_handler = on_chld;
	sa.sa_flags = SA_NOCLDSTOP;
	if (sigaction(SIGCHLD, &sa, NULL) < 0) {
		perror("pause: sigaction SIGCHLD");
		return 1;
	}

	sigset_t waitmask = old;
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGCHLD);
	while (!stop) {
		sigsuspend(&waitmask);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}

	fprintf(stderr, "pause: shutting down, got signal %d\n", (int)stop);
	return 0;
}
