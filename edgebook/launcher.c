/*
 * edgebook-launch: start a worker or a build with limits, as a less privileged user.
 *
 *   edgebook-launch [--rlimit NAME=VALUE]... [--user UID:GID] [--parent PID] [--chdir DIR]
 *                   [--hide PATH]... [--writable PATH]... [--tmpfs PATH]... [--hide-sockets DIR]...
 *                   [--pid-namespace] -- PROGRAM [ARG]...
 *
 * In order: open PROGRAM (as the caller, so the new user needs no access to the directory
 * it lives in), close every descriptor above 2, make the file-system view (below, when
 * asked), apply the resource limits (each clamped to the current hard limit when the
 * caller may not raise it), drop to UID:GID with no supplementary groups, drop every
 * capability, set no_new_privs, ask for SIGKILL when the parent dies (after the user
 * change, which would clear it), check that the parent is still PID, change directory,
 * and execute PROGRAM from the descriptor opened first. The environment passes through
 * unchanged: the caller has already scrubbed it. A script ("#!") is run by its
 * interpreter from /dev/fd/N, which therefore stays open in it; a binary gets fds 0-2.
 *
 * With --hide, --writable or --tmpfs the program gets a view of its own: a new mount
 * namespace (inside a new user namespace when not root) in which each hidden PATH is
 * covered (a file by /dev/null, a directory by an empty read-only tmpfs), every other file
 * system is read-only except the --writable paths, each --tmpfs PATH is a fresh empty
 * tmpfs owned by the program's user, and every Unix socket under a --hide-sockets DIR is
 * covered too. With --pid-namespace it also gets a PID namespace and
 * a fresh read-only /proc that shows only its own processes, so it can neither signal the
 * gateway nor reach the covered files through /proc/<gateway pid>/root, even as the same
 * user; the launcher then stays as the program's parent, and a second small process is the
 * namespace's init: both pass signals on and the launcher exits as the program did. With
 * every capability gone (the bounding set too), nothing in the view can undo a mount.
 *
 * Linux only: namespaces, capabilities, no_new_privs, the parent-death signal and
 * close_range. Elsewhere (macOS), or compiled with -DEDGEBOOK_PORTABLE, a view is refused
 * (status 126) and a small watcher process, a child of the program, kills it when the
 * parent is gone (it polls every 200 ms).
 *
 * NAME is one of AS, CPU, NOFILE, NPROC, FSIZE, CORE; VALUE a number or "unlimited".
 * Exit statuses of its own: 125 the parent is gone, 126 a limit, the view or the user
 * change failed, 127 PROGRAM cannot be executed, 2 usage. Each comes with one line on
 * stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* EDGEBOOK_PORTABLE builds only what every POSIX system has (as on macOS), so that path
 * can be tested on Linux too. */
#if defined(__linux__) && !defined(EDGEBOOK_PORTABLE)
#define LINUX_ONLY 1
#endif

#ifdef LINUX_ONLY
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

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
    if (setrlimit(resource, &limit) == 0) return;
    /* Without the privilege to raise it, the hard limit is the most there is: a gateway
     * started under a low hard limit still runs its builds and workers, under that limit. */
    struct rlimit current;
    if (errno != EPERM || getrlimit(resource, &current) != 0 || current.rlim_max >= value)
        die(126, "setrlimit failed", spec);
    limit.rlim_cur = limit.rlim_max = current.rlim_max;
    if (setrlimit(resource, &limit) != 0) die(126, "setrlimit failed", spec);
}

/* Closes every descriptor above 2 but KEEP: close_range where the kernel has it, else
 * each descriptor listed in /dev/fd, else every number below the descriptor limit. */
static void close_inherited(int keep) {
#if defined(LINUX_ONLY) && defined(SYS_close_range)
    if ((keep <= 3 || syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u) == 0)
        && syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
        return;
#endif
    DIR *listing = opendir("/dev/fd");
    if (listing != NULL) {
        int fds[1024], n = 0, own = dirfd(listing), more = 0;
        struct dirent *entry;
        while ((entry = readdir(listing)) != NULL) {
            char *end;
            long fd = strtol(entry->d_name, &end, 10);
            if (*end || end == entry->d_name || fd <= 2 || fd == keep || fd == own) continue;
            if (n < (int)(sizeof fds / sizeof fds[0])) fds[n++] = (int)fd;
            else more = 1;
        }
        closedir(listing);
        for (int i = 0; i < n; i++) close(fds[i]);
        if (!more) return;
    }
    struct rlimit files;
    long top = sysconf(_SC_OPEN_MAX);
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_max != RLIM_INFINITY
        && (long)files.rlim_max > top)
        top = (long)files.rlim_max;
    if (top < 0 || top > (1L << 20)) top = 1L << 20;
    for (long fd = 3; fd < top; fd++)
        if (fd != keep) close((int)fd);
}

#define MAX_PATHS 64
static const char *hidden[MAX_PATHS], *writable[MAX_PATHS], *fresh[MAX_PATHS],
                  *socket_dirs[MAX_PATHS];
static int n_hidden, n_writable, n_fresh, n_socket_dirs, own_pids;

#ifdef LINUX_ONLY
/* Waits for CHILD, passing the usual termination signals on to it (and, as a namespace's
 * init, reaping every orphan); returns its wait status. */
static volatile pid_t forward_to;

static void forward(int sig) {
    if (forward_to > 0) kill(forward_to, sig);
}

static int wait_for(pid_t child, int reap_all) {
    static const int signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward;
    forward_to = child;
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        sigaction(signals[i], &action, NULL);
    for (;;) {
        int status;
        pid_t got = waitpid(reap_all ? -1 : child, &status, 0);
        if (got == child) return status;
        if (got < 0 && errno != EINTR) return W_EXITCODE(126, 0);
    }
}

/* Ends this process the way the wait STATUS says the program ended. */
static void exit_like(int status) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);  /* the program's core is not the launcher's */
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        _exit(128 + sig);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 126);
}

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

/* Left as they are: the old /proc (a fresh one covers it) and namespace handles. Every
 * other file system (tmpfs, /dev, /sys and cgroups among them: a capability-less root
 * may still write files it owns) becomes read-only. */
static int kept_fs(const char *type) {
    return strcmp(type, "proc") == 0 || strcmp(type, "nsfs") == 0;
}

static void make_read_only(void) {
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
        if (kept_fs(type) || is_writable(fields[4])) continue;
        unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(fields[5]);
        if (mount(NULL, fields[4], NULL, flags, NULL) == 0) continue;
        /* Only a mount point nobody here can reach (under a directory this user cannot
         * enter, or covered by another mount) may stay as it is. */
        int failure = errno;
        struct stat st;
        if ((failure == EACCES || failure == ENOENT) && stat(fields[4], &st) != 0
            && (errno == EACCES || errno == ENOENT))
            continue;
        die(126, "cannot make read-only", fields[4]);
    }
    fclose(info);
}

/* Covers every Unix socket under DIR (a few levels down, symbolic links not followed) with
 * /dev/null: a read-only file system still lets a process connect to a socket, and a
 * capability-less root still counts as root to the daemons behind them (systemd, Docker). */
static void hide_sockets(const char *dir, int depth) {
    DIR *listing = opendir(dir);
    if (listing == NULL) return;
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, entry->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISSOCK(st.st_mode)) {
            if (mount("/dev/null", path, NULL, MS_BIND, NULL) != 0)
                die(126, "cannot hide the socket", path);
        } else if (S_ISDIR(st.st_mode) && depth > 0) {
            hide_sockets(path, depth - 1);
        }
    }
    closedir(listing);
}

/* New mount and PID namespaces (and a user namespace when not root), the file systems
 * arranged as the options ask. Runs before any privilege is dropped. */
static void enter_view(uid_t owner, gid_t group) {
    uid_t uid = getuid();
    gid_t gid = getgid();
    int pids = own_pids ? CLONE_NEWPID : 0;
    if (unshare(CLONE_NEWNS | pids) != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | pids) != 0)
            die(126, "cannot make private namespaces", strerror(errno));
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
    make_read_only();
    for (int i = 0; i < n_hidden; i++) {
        struct stat st;
        if (lstat(hidden[i], &st) != 0) continue;
        int rc = S_ISDIR(st.st_mode)
            ? mount("tmpfs", hidden[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=000")
            : mount("/dev/null", hidden[i], NULL, MS_BIND, NULL);
        if (rc != 0) die(126, "cannot hide", hidden[i]);
    }
    for (int i = 0; i < n_socket_dirs; i++) hide_sockets(socket_dirs[i], 6);
    for (int i = 0; i < n_fresh; i++) {
        char options[96];
        snprintf(options, sizeof options, "size=64m,mode=700,uid=%u,gid=%u",
                 (unsigned)owner, (unsigned)group);
        if (mkdir(fresh[i], 0700) != 0 && errno != EEXIST)  /* under an earlier --tmpfs */
            die(126, "cannot make a mount point", fresh[i]);
        if (mount("tmpfs", fresh[i], "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
            die(126, "cannot mount a private tmpfs on", fresh[i]);
    }
}

/* Lets go of the program's stdin and stdout (stderr stays, for the launcher's own errors). */
static void release_stdio(void) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) return;
    dup2(null, 0);
    dup2(null, 1);
    close(null);
}

/* The namespace's init (this process, PID 1 in it): a fresh /proc, then the program in a
 * child, whose wait status goes to the launcher through REPORT. Only returns in the child. */
static void become_init(int report, int exec_fd, int script_fd) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        die(126, "cannot set the parent-death signal", strerror(errno));
    if (mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        die(126, "cannot mount a private /proc", strerror(errno));
    pid_t program = fork();
    if (program < 0) die(126, "fork failed", strerror(errno));
    if (program == 0) {
        close(report);
        return;
    }
    close(exec_fd);
    if (script_fd >= 0) close(script_fd);
    release_stdio();
    int status = wait_for(program, 1);
    if (write(report, &status, sizeof status) != (ssize_t)sizeof status) _exit(126);
    _exit(0);  /* the kernel kills whatever is left in the namespace */
}

/* Forks the namespace's init and stays as the program's parent until it ends. */
static void start_in_view(int exec_fd, int script_fd) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) die(126, "pipe failed", strerror(errno));
    pid_t init = fork();
    if (init < 0) die(126, "fork failed", strerror(errno));
    if (init == 0) {
        close(report[0]);
        become_init(report[1], exec_fd, script_fd);
        return;
    }
    close(report[1]);
    close(exec_fd);
    if (script_fd >= 0) close(script_fd);
    release_stdio();
    int status = wait_for(init, 0), program_status;
    ssize_t got;
    do {
        got = read(report[0], &program_status, sizeof program_status);
    } while (got < 0 && errno == EINTR);
    exit_like(got == (ssize_t)sizeof program_status ? program_status : status);
}

/* Every capability gone for good: the bounding set (so exec cannot bring any back, even
 * as root), the ambient and inheritable sets, and root's special treatment at exec. */
static void drop_bounding_set(void) {
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM)
            die(126, "cannot drop a capability", strerror(errno));
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    /* fails without CAP_SETPCAP, that is with no capability to lose */
    prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
              SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0);
}

static void drop_capabilities(void) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2];
    memset(none, 0, sizeof none);
    if (syscall(SYS_capset, &header, none) != 0)
        die(126, "cannot drop capabilities", strerror(errno));
}
#else
/* Kills the program (this watcher's parent, once the launcher has become it) when PARENT
 * is gone: the portable stand-in for the parent-death signal. Returns in the launcher. */
static void watch_parent(pid_t parent) {
    pid_t program = getpid();
    pid_t watcher = fork();
    if (watcher < 0) die(126, "fork failed", strerror(errno));
    if (watcher > 0) return;
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd <= 2; fd++) dup2(null, fd);  /* never hold the program's pipes */
    close_inherited(-1);
    if (chdir("/") != 0) _exit(1);
    struct timespec pause = {0, 200 * 1000 * 1000};
    for (;;) {
        if (getppid() != program) _exit(0);  /* the program is gone */
        if (kill(parent, 0) != 0 && errno == ESRCH) {
            kill(program, SIGKILL);
            _exit(0);
        }
        nanosleep(&pause, NULL);
    }
}
#endif

int main(int argc, char **argv) {
    long uid = -1, gid = -1, parent = 0;
    const char *dir = NULL;
    int i = 1;
    /* Limits are applied after the program is opened; remember where they are. */
    int first_limit = 0, last_limit = -1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { i++; break; }
        if (strcmp(argv[i], "--pid-namespace") == 0) { own_pids = 1; continue; }
        if (i + 1 >= argc) die(2, "missing value for", argv[i]);
        if (strcmp(argv[i], "--rlimit") == 0) {
            if (!first_limit) first_limit = i + 1;
            last_limit = i + 1;
            i++;
        } else if (strcmp(argv[i], "--user") == 0) {
            int end = 0;
            if (sscanf(argv[++i], "%ld:%ld%n", &uid, &gid, &end) != 2 || argv[i][end]
                || uid < 0 || gid < 0 || uid >= UINT32_MAX || gid >= UINT32_MAX)
                die(2, "bad --user (want UID:GID)", argv[i]);
        } else if (strcmp(argv[i], "--parent") == 0) {
            char *end;
            errno = 0;
            parent = strtol(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || parent <= 0 || parent != (pid_t)parent)
                die(2, "bad --parent (want a process id)", argv[i]);
        } else if (strcmp(argv[i], "--chdir") == 0) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--hide") == 0 || strcmp(argv[i], "--writable") == 0
                   || strcmp(argv[i], "--tmpfs") == 0 || strcmp(argv[i], "--hide-sockets") == 0) {
            int kind = strcmp(argv[i], "--hide-sockets") == 0 ? 's' : argv[i][2];
            const char **list = kind == 'h' ? hidden : kind == 'w' ? writable
                              : kind == 't' ? fresh : socket_dirs;
            int *count = kind == 'h' ? &n_hidden : kind == 'w' ? &n_writable
                       : kind == 't' ? &n_fresh : &n_socket_dirs;
            if (*count >= MAX_PATHS) die(2, "too many paths", argv[i]);
            if (argv[i + 1][0] != '/') die(2, "paths must be absolute", argv[i + 1]);
            list[(*count)++] = argv[++i];
        } else {
            die(2, "unknown option", argv[i]);
        }
    }
    if (i >= argc) die(2, "no program given", NULL);
    char **program = argv + i;
    if (parent == 0) parent = getppid();

    int fd = open(program[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(127, strerror(errno), program[0]);
    close_inherited(fd);
    int exec_fd = fd, script_fd = -1;
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
        script_fd = fd;
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

    uid_t owner = uid >= 0 ? (uid_t)uid : getuid();
    gid_t group = gid >= 0 ? (gid_t)gid : getgid();
#ifdef LINUX_ONLY
    /* The launcher itself dies with the gateway; each process below dies with its parent. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        die(126, "cannot set the parent-death signal", strerror(errno));
    if (getppid() != (pid_t)parent) die(125, "the parent is gone", NULL);
    if (n_hidden || n_writable || n_fresh || n_socket_dirs || own_pids) {
        enter_view(owner, group);
        if (own_pids) start_in_view(exec_fd, script_fd);
    }
    drop_bounding_set();
#else
    (void)script_fd;
    if (n_hidden || n_writable || n_fresh || n_socket_dirs || own_pids)
        die(126, "no private file-system view on this system", NULL);
    if (getppid() != (pid_t)parent) die(125, "the parent is gone", NULL);
    /* Before the limits and the user change: the watcher is not one of the program's
     * processes (under its process limit), and the program cannot signal it. */
    watch_parent((pid_t)parent);
#endif

    for (int j = first_limit; first_limit && j <= last_limit; j++)
        if (strcmp(argv[j - 1], "--rlimit") == 0) set_limit(argv[j]);

    if (uid >= 0) {
#ifdef __APPLE__
        if (setgroups(1, &group) != 0) die(126, "setgroups failed", strerror(errno));
#else
        if (setgroups(0, NULL) != 0) die(126, "setgroups failed", strerror(errno));
#endif
        if (setregid(group, group) != 0 || setgid(group) != 0)
            die(126, "cannot change group", strerror(errno));
        if (setreuid(owner, owner) != 0 || setuid(owner) != 0)
            die(126, "cannot change user", strerror(errno));
        if (getuid() != owner || geteuid() != owner) die(126, "the user change did not hold", NULL);
    }
#ifdef LINUX_ONLY
    drop_capabilities();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die(126, "cannot set no_new_privs", strerror(errno));
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        die(126, "cannot set the parent-death signal", strerror(errno));
    if (!own_pids && getppid() != (pid_t)parent) die(125, "the parent is gone", NULL);
#endif
    if (dir != NULL && chdir(dir) != 0 && chdir("/") != 0)
        die(126, "cannot change directory", strerror(errno));

#ifdef LINUX_ONLY
    fexecve(exec_fd, program, environ);
#else
    /* No fexecve everywhere (macOS): run the file opened first through /dev/fd. */
    char self[32];
    snprintf(self, sizeof self, "/dev/fd/%d", exec_fd);
    execve(self, program, environ);
#endif
    if (errno == EAGAIN) die(127, "cannot execute (the user is at its process limit)", program[0]);
    die(127, strerror(errno), program[0]);
    return 127;
}
