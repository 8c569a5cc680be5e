/* armgym-spawn: apply a sandboxed step's resource limits, drop to `nobody`, exec the step.
 *
 * Doing this in Python (subprocess's preexec_fn) forces a full fork() of the verifier process
 * (a worker holds 100+ MB, so each step paid ~3 ms just to copy it) and runs Python code in a
 * forked child of a threaded program. With this helper, subprocess can use vfork(), and the
 * limits are set by a tiny static program instead.
 *
 *   armgym-spawn CPU_S AS_MB FSIZE_MB NOFILE NPROC -- PROGRAM ARGS...
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

#define NOBODY 65534

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
    if (argc < 8 || strcmp(argv[6], "--") != 0) { errno = EINVAL; die("usage"); }
    rlim_t cpu = num(argv[1]), mb = 1024 * 1024;
    limit(RLIMIT_CPU, cpu, cpu + 1, "RLIMIT_CPU");
    limit(RLIMIT_AS, num(argv[2]) * mb, num(argv[2]) * mb, "RLIMIT_AS");
    limit(RLIMIT_FSIZE, num(argv[3]) * mb, num(argv[3]) * mb, "RLIMIT_FSIZE");
    limit(RLIMIT_NOFILE, num(argv[4]), num(argv[4]), "RLIMIT_NOFILE");
    limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0) die("setgroups");
        if (setgid(NOBODY) != 0) die("setgid");
        if (setuid(NOBODY) != 0) die("setuid");
    }
    limit(RLIMIT_NPROC, num(argv[5]), num(argv[5]), "RLIMIT_NPROC");
    execv(argv[7], argv + 7);
    die(argv[7]);
    return 125;
}
