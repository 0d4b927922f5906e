/*
 * smol-exec SECONDS COMMAND [ARGS...]
 *
 * Runs one sandbox command under a wall-clock deadline, then ends everything it left behind. The container's own
 * processes run as another uid, so kill(-1) here reaches exactly what this command started (background jobs,
 * setsid/nohup children, fork-bomb leftovers) and nothing else. Exit status: the command's; 124 when the deadline
 * stopped it with SIGTERM, 137 when it also needed SIGKILL (as GNU timeout --kill-after reports it).
 * One small process instead of bash + timeout: every exec in the sandbox pays for this wrapper.
 *
 * The command runs as the same uid, so it can kill this wrapper (then the final sweep never runs): the host sees
 * a death by signal (exit status above 128) and runs `smol-exec --sweep` itself. The wrapper is not dumpable, so
 * the command cannot trace it, read its memory or reach its descriptors.
 *
 * smol-exec --sweep
 *
 * Ends every process of the calling uid except itself, then prints "oom_kill N": how many processes the
 * container's memory limit has killed so far (cgroup v2 memory.events or v1 memory.oom_control), "?" if unknown.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GRACE_SECONDS 2.0

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Waits for the child until the monotonic deadline; returns 1 when it exited (status filled in). */
static int wait_until(pid_t child, double deadline, int *status) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        pid_t done = waitpid(child, status, WNOHANG);
        if (done == child) return 1;
        if (done < 0 && errno != EINTR) return 1;
        double left = deadline - now();
        if (left <= 0) return 0;
        struct timespec wait = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
        if (wait.tv_sec > 1) { wait.tv_sec = 1; wait.tv_nsec = 0; }
        sigtimedwait(&set, NULL, &wait);
    }
}

static void sweep(void) {
    for (int i = 0; i < 5; i++) {
        if (kill(-1, SIGKILL) < 0 && errno == ESRCH) break;
    }
}

static long oom_kills(void) {
    static const char *files[] = {"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        FILE *f = fopen(files[i], "r");
        if (f == NULL) continue;
        char key[64];
        long value;
        while (fscanf(f, "%63s %ld", key, &value) == 2) {
            if (strcmp(key, "oom_kill") == 0) {
                fclose(f);
                return value;
            }
        }
        fclose(f);
    }
    return -1;
}

int main(int argc, char **argv) {
    /* First of all: out of reach of ptrace and /proc for the command (same uid). execve() in the child resets it. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (argc == 2 && strcmp(argv[1], "--sweep") == 0) {
        sweep();
        long kills = oom_kills();
        if (kills < 0) printf("oom_kill ?\n");
        else printf("oom_kill %ld\n", kills);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: smol-exec SECONDS COMMAND [ARGS...] | smol-exec --sweep\n");
        return 125;
    }
    char *end = NULL;
    double seconds = strtod(argv[1], &end);
    if (end == argv[1] || seconds <= 0) {
        fprintf(stderr, "smol-exec: bad deadline %s\n", argv[1]);
        return 125;
    }
    sigset_t set, previous;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &previous);

    pid_t child = fork();
    if (child < 0) {
        perror("smol-exec: fork");
        return 125;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &previous, NULL);
        setpgid(0, 0);
        execvp(argv[2], argv + 2);
        fprintf(stderr, "smol-exec: %s: %s\n", argv[2], errno == ENOENT ? "command not found" : "cannot run");
        _exit(errno == ENOENT ? 127 : 126);
    }
    setpgid(child, child);

    int status = 0, code;
    if (wait_until(child, now() + seconds, &status)) {
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else {
        kill(-child, SIGTERM);
        kill(child, SIGTERM);
        code = 124;
        if (!wait_until(child, now() + GRACE_SECONDS, &status)) {
            kill(-child, SIGKILL);
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            code = 137;
        }
    }
    sweep();
    return code;
}
