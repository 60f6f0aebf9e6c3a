/*
 * edgebook-launch: start a worker or a build with limits, as a less privileged user.
 *
 *   edgebook-launch [--rlimit NAME=VALUE]... [--user UID:GID] [--parent PID]
 *                   [--chdir DIR] [--hide PATH]... [--writable PATH]... -- PROGRAM [ARG]...
 *
 * In order: open PROGRAM (as the caller, so the new user needs no access to the directory
 * it lives in), close every descriptor above 2, apply the resource limits, drop to UID:GID
 * with no supplementary groups, set no_new_privs, ask for SIGKILL when the parent dies
 * (after the user change, which would clear it), check that the parent is still PID,
 * change directory, and execute PROGRAM from the descriptor opened first. The environment
 * passes through unchanged: the caller has already scrubbed it. A script ("#!") is run by
 * its interpreter from /dev/fd/N, which therefore stays open in it; a binary gets fds 0-2.
 *
 * With --hide or --writable (builds), the program gets a file-system view of its own first:
 * a private mount namespace (a user namespace too when not root) in which each hidden PATH
 * is covered (a file by /dev/null, a directory by an empty read-only tmpfs) and every
 * persistent file system is read-only except the --writable paths. So a build script can
 * neither read the gateway's runtime file nor write outside its workspace, target dir and
 * cargo cache.
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
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

#define MAX_PATHS 64
static const char *hidden[MAX_PATHS], *writable[MAX_PATHS];
static int n_hidden, n_writable;

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) die(126, "cannot write", path);
    close(fd);
}

static int under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/' || n == 1);
}

static int is_writable(const char *path) {
    for (int i = 0; i < n_writable; i++)
        if (under(path, writable[i])) return 1;
    return 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s) {
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

static unsigned long locked_flags(const char *options) {
    unsigned long flags = 0;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", options);
    for (char *save, *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        if (strcmp(opt, "nosuid") == 0) flags |= MS_NOSUID;
        else if (strcmp(opt, "nodev") == 0) flags |= MS_NODEV;
        else if (strcmp(opt, "noexec") == 0) flags |= MS_NOEXEC;
        else if (strcmp(opt, "noatime") == 0) flags |= MS_NOATIME;
        else if (strcmp(opt, "nodiratime") == 0) flags |= MS_NODIRATIME;
        else if (strcmp(opt, "relatime") == 0) flags |= MS_RELATIME;
    }
    return flags;
}

static int volatile_fs(const char *type) {
    static const char *types[] = {"proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup",
                                  "cgroup2", "mqueue", "securityfs", "debugfs", "tracefs",
                                  "pstore", "bpf", "configfs", "fusectl", "hugetlbfs",
                                  "autofs", "binfmt_misc", "nsfs", NULL};
    for (int i = 0; types[i]; i++)
        if (strcmp(type, types[i]) == 0) return 1;
    return 0;
}

/* A private view of the file system: hidden paths covered, the rest read-only but for
 * the writable paths. Runs before any privilege is dropped. */
static void confine_files(void) {
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWNS) != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            die(126, "cannot make a private mount namespace", strerror(errno));
        char map[64];
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
        write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
        write_file("/proc/self/gid_map", map);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        die(126, "cannot make mounts private", strerror(errno));
    for (int i = 0; i < n_writable; i++)
        if (mount(writable[i], writable[i], NULL, MS_BIND | MS_REC, NULL) != 0)
            die(126, "cannot keep writable", writable[i]);
    FILE *info = fopen("/proc/self/mountinfo", "re");
    if (info == NULL) die(126, "cannot read mountinfo", strerror(errno));
    char line[4096];
    while (fgets(line, sizeof line, info)) {
        /* id parent major:minor root mountpoint options [optional...] - type source super */
        char *fields[6] = {0}, *save, *p = line;
        for (int f = 0; f < 6; f++, p = NULL) fields[f] = strtok_r(p, " ", &save);
        if (fields[4] == NULL || fields[5] == NULL) continue;
        char *rest = fields[5] + strlen(fields[5]) + 1;
        char *sep = strncmp(rest, "- ", 2) == 0 ? rest - 1 : strstr(rest, " - ");
        if (sep == NULL) continue;
        char type[64] = "";
        sscanf(sep + 3, "%63s", type);
        unescape(fields[4]);
        if (volatile_fs(type) || is_writable(fields[4])) continue;
        unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(fields[5]);
        if (mount(NULL, fields[4], NULL, flags, NULL) != 0 && errno != EACCES && errno != ENOENT)
            die(126, "cannot make read-only", fields[4]);
    }
    fclose(info);
    for (int i = 0; i < n_hidden; i++) {
        struct stat st;
        if (lstat(hidden[i], &st) != 0) continue;
        int rc = S_ISDIR(st.st_mode)
            ? mount("tmpfs", hidden[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=000")
            : mount("/dev/null", hidden[i], NULL, MS_BIND, NULL);
        if (rc != 0) die(126, "cannot hide", hidden[i]);
    }
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
        } else if (strcmp(argv[i], "--hide") == 0 || strcmp(argv[i], "--writable") == 0) {
            int hide = argv[i][2] == 'h';
            if ((hide ? n_hidden : n_writable) >= MAX_PATHS) die(2, "too many paths", argv[i]);
            if (argv[i + 1][0] != '/') die(2, "paths must be absolute", argv[i + 1]);
            if (hide) hidden[n_hidden++] = argv[++i];
            else writable[n_writable++] = argv[++i];
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

    if (n_hidden || n_writable) confine_files();

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
