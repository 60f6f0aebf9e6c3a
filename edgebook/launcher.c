/*
 * edgebook-launch: start a worker or a build with limits, as a less privileged user.
 *
 *   edgebook-launch [--rlimit NAME=VALUE]... [--user UID:GID] [--parent PID]
 *                   [--chdir DIR] -- PROGRAM [ARG]...
 *
 * In order: open PROGRAM (as the caller, so the new user needs no access to the directory
 * it lives in), close every descriptor above 2, apply the resource limits, drop to UID:GID
 * with no supplementary groups, set no_new_privs, ask for SIGKILL when the parent dies
 * (after the user change, which would clear it), check that the parent is still PID,
 * change directory, and execute PROGRAM from the descriptor opened first. The environment
 * passes through unchanged: the caller has already scrubbed it. A script ("#!") is run by
 * its interpreter from /dev/fd/N, which therefore stays open in it; a binary gets fds 0-2.
 *
 * NAME is one of AS, CPU, NOFILE, NPROC, FSIZE, CORE; VALUE a number or "unlimited".
 * Exit statuses of its own: 125 the parent is gone, 126 a limit or the user change failed,
 * 127 PROGRAM cannot be executed, 2 usage. Each comes with one line on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static void die(int status, const char *what, const char *detail) {
    fprintf(stderr, "edgebook-launch: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    exit(status);
}

static int resource_of(const char *name, size_t len) {
    static const struct { const char *name; int resource; } table[] = {
        {"AS", RLIMIT_AS}, {"CPU", RLIMIT_CPU}, {"NOFILE", RLIMIT_NOFILE},
        {"NPROC", RLIMIT_NPROC}, {"FSIZE", RLIMIT_FSIZE}, {"CORE", RLIMIT_CORE},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strlen(table[i].name) == len && strncmp(table[i].name, name, len) == 0)
            return table[i].resource;
    return -1;
}

static void set_limit(const char *spec) {
    const char *eq = strchr(spec, '=');
    if (eq == NULL) die(2, "bad --rlimit (want NAME=VALUE)", spec);
    int resource = resource_of(spec, (size_t)(eq - spec));
    if (resource < 0) die(2, "unknown resource limit", spec);
    rlim_t value;
    if (strcmp(eq + 1, "unlimited") == 0) {
        value = RLIM_INFINITY;
    } else {
        char *end;
        errno = 0;
        unsigned long long parsed = strtoull(eq + 1, &end, 10);
        if (errno || *end || end == eq + 1) die(2, "bad --rlimit value", spec);
        value = (rlim_t)parsed;
    }
    struct rlimit limit = {value, value};
    if (setrlimit(resource, &limit) != 0) die(126, "setrlimit failed", spec);
}

static void close_inherited(int keep) {
#ifdef SYS_close_range
    if (keep > 3 && syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u) != 0) goto slow;
    if (syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0) return;
slow:
#endif
    for (int fd = 3; fd < 65536; fd++)
        if (fd != keep) close(fd);
}

int main(int argc, char **argv) {
    long uid = -1, gid = -1, parent = 0;
    const char *dir = NULL;
    int i = 1;
    /* Limits are applied after the program is opened; remember where they are. */
    int first_limit = 0, last_limit = -1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { i++; break; }
        if (i + 1 >= argc) die(2, "missing value for", argv[i]);
        if (strcmp(argv[i], "--rlimit") == 0) {
            if (!first_limit) first_limit = i + 1;
            last_limit = i + 1;
            i++;
        } else if (strcmp(argv[i], "--user") == 0) {
            if (sscanf(argv[++i], "%ld:%ld", &uid, &gid) != 2 || uid < 0 || gid < 0)
                die(2, "bad --user (want UID:GID)", argv[i]);
        } else if (strcmp(argv[i], "--parent") == 0) {
            parent = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--chdir") == 0) {
            dir = argv[++i];
        } else {
            die(2, "unknown option", argv[i]);
        }
    }
    if (i >= argc) die(2, "no program given", NULL);
    char **program = argv + i;

    int fd = open(program[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(127, strerror(errno), program[0]);
    close_inherited(fd);
    int exec_fd = fd;
    char line[256];
    ssize_t got = pread(fd, line, sizeof line - 1, 0);
    if (got > 2 && line[0] == '#' && line[1] == '!') {
        /* A script. Its interpreter is opened here too (the new user may not reach it) and
         * reads the script from /dev/fd/N, which therefore stays open. */
        line[got] = '\0';
        char *end = strchr(line, '\n');
        if (end == NULL) die(127, "script line too long", program[0]);
        *end = '\0';
        char *interp = line + 2 + strspn(line + 2, " \t");
        char *arg = interp + strcspn(interp, " \t");
        if (*arg) {
            *arg++ = '\0';
            arg += strspn(arg, " \t");
        }
        exec_fd = open(interp, O_RDONLY | O_CLOEXEC);
        if (exec_fd < 0) die(127, strerror(errno), interp);
        fcntl(fd, F_SETFD, 0);
        static char script[32];
        snprintf(script, sizeof script, "/dev/fd/%d", fd);
        int n = 0;
        while (program[n]) n++;
        char **args = calloc((size_t)n + 3, sizeof *args);
        if (args == NULL) die(127, "out of memory", NULL);
        int k = 0;
        args[k++] = interp;
        if (*arg) args[k++] = arg;
        args[k++] = script;
        for (int j = 1; j < n; j++) args[k++] = program[j];
        program = args;
    }

    for (int j = first_limit; first_limit && j <= last_limit; j++)
        if (strcmp(argv[j - 1], "--rlimit") == 0) set_limit(argv[j]);

    if (uid >= 0) {
        gid_t group = (gid_t)gid;
        if (setgroups(1, &group) != 0) die(126, "setgroups failed", strerror(errno));
        if (setresgid(group, group, group) != 0) die(126, "setresgid failed", strerror(errno));
        if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0)
            die(126, "setresuid failed", strerror(errno));
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die(126, "cannot set no_new_privs", strerror(errno));
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        die(126, "cannot set the parent-death signal", strerror(errno));
    if (parent > 0 && getppid() != (pid_t)parent) die(125, "the parent is gone", NULL);
    if (dir != NULL && chdir(dir) != 0 && chdir("/") != 0)
        die(126, "cannot change directory", strerror(errno));

    fexecve(exec_fd, program, environ);
    if (errno == EAGAIN) die(127, "cannot execute (the user is at its process limit)", program[0]);
    die(127, strerror(errno), program[0]);
    return 127;
}
