/* armgym-spawn: apply a sandboxed step's resource limits, drop to `nobody` (or the unprivileged
 * uid given), exec the step.
 *
 * Doing this in Python (subprocess's preexec_fn) forces a full fork() of the verifier process
 * (a worker holds 100+ MB, so each step paid ~3 ms just to copy it) and runs Python code in a
 * forked child of a threaded program. With this helper, subprocess can use vfork(), and the
 * limits are set by a tiny static program instead.
 *
 *   armgym-spawn CPU_S AS_MB FSIZE_MB NOFILE NPROC UID -- PROGRAM ARGS...
 *
 * UID is the user to run as when started as root (its group is the same number; the caller
 * passes nobody's, or another uid that owns nothing, e.g. the C reference's servers'), so that
 * RLIMIT_NPROC, which counts a user's tasks host-wide, counts each kind of process apart.
 *
 * On any failure before exec it writes "armgym-spawn: ..." to stderr and exits 125, which the
 * caller reports as an infrastructure failure, never as the step's outcome.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "armgym-spawn: %s: %s\n", what, strerror(errno));
    _exit(125);
}

static void limit(int resource, rlim_t soft, rlim_t hard, const char *what) {
    struct rlimit rl = {soft, hard};
    if (setrlimit(resource, &rl) != 0) die(what);
}

static rlim_t num(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || !*s) { errno = EINVAL; die("bad limit"); }
    return (rlim_t)v;
}

int main(int argc, char **argv) {
    if (argc < 9 || strcmp(argv[7], "--") != 0) { errno = EINVAL; die("usage"); }
    rlim_t cpu = num(argv[1]), mb = 1024 * 1024;
    limit(RLIMIT_CPU, cpu, cpu + 1, "RLIMIT_CPU");
    limit(RLIMIT_AS, num(argv[2]) * mb, num(argv[2]) * mb, "RLIMIT_AS");
    limit(RLIMIT_FSIZE, num(argv[3]) * mb, num(argv[3]) * mb, "RLIMIT_FSIZE");
    limit(RLIMIT_NOFILE, num(argv[4]), num(argv[4]), "RLIMIT_NOFILE");
    limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
    rlim_t uid = num(argv[6]);
    if (uid == 0 || uid > 65534) { errno = EINVAL; die("bad uid"); }
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0) die("setgroups");
        if (setgid((gid_t)uid) != 0) die("setgid");
        if (setuid((uid_t)uid) != 0) die("setuid");
    }
    limit(RLIMIT_NPROC, num(argv[5]), num(argv[5]), "RLIMIT_NPROC");
    execv(argv[8], argv + 8);
    die(argv[8]);
    return 125;
}
