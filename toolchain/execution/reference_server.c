/* The C reference's entry point: the harness runtime, unchanged, plus a serve mode.
 *
 * Linked into reference.elf only (never into the harness a candidate is linked or placed into,
 * whose bytes the branch model indexes by address). The runtime's `main` becomes `armgym_run`
 * and writes to `armgym_out` instead of stdout:
 *
 *   ./reference.elf <seedhex> <ntests> <absruns> [<first> [<mode>]]   one run, as the runtime
 *   ./reference.elf serve                                            requests from stdin
 *
 * In serve mode each request is one line, "<id> <the run's arguments>", run exactly as the
 * one-off command line would be, its output collected in memory and written to stdout as one
 * frame: a 24-byte header (magic "ARSV", the request's id, the run's exit status, 0, the
 * payload's length as 64 bits) and the payload, then flushed. A ready frame (id 0, empty) is
 * written at start. The loop ends at EOF on stdin: the server lives as long as its host.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *armgym_out;

#undef stdout
#define stdout armgym_out
#define main armgym_run
#include "harness_runtime.c"
#undef main
#undef stdout

#define SERVE_MAGIC 0x56535241u /* "ARSV" */
#define MAX_WORDS 6             /* the id and at most five arguments */

static void frame(uint32_t id, int32_t status, const char *data, size_t len) {
    uint32_t head[4] = {SERVE_MAGIC, id, (uint32_t)status, 0};
    uint64_t n = len;
    if (fwrite(head, 1, sizeof head, stdout) != sizeof head || fwrite(&n, 1, 8, stdout) != 8 ||
        (len && fwrite(data, 1, len, stdout) != len) || fflush(stdout) != 0)
        exit(3);
}

/* One request ("<id> <arguments>"): the runtime's per-run state back to what a new process
 * has first; a malformed one is answered with status 2, as the runtime's main would. */
static void serve_one(char *line) {
    char *argv[MAX_WORDS + 1] = {"reference"};
    int count = 0, status = 2;
    uint32_t id = 0;
    for (char *w = strtok(line, " \n"); w; w = strtok(0, " \n")) {
        if (count == 0) id = (uint32_t)strtoul(w, 0, 10);
        else if (count < MAX_WORDS) argv[count] = w;
        count++;
    }
    char *data = 0;
    size_t len = 0;
    armgym_out = open_memstream(&data, &len);
    if (!armgym_out) exit(4);
    prepared = 0;
    lead_arg = -1;
    /* mode S reads inputs from stdin, which here carries the requests */
    if (count <= MAX_WORDS && !(count == MAX_WORDS && argv[5][0] == 'S')) {
        argv[count > 0 ? count : 1] = 0;
        status = armgym_run(count > 0 ? count : 1, argv);
    }
    if (fclose(armgym_out) != 0) exit(4);
    free(arena);
    arena = 0;
    frame(id, status, data, len);
    free(data);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "serve") == 0) {
        static char line[256];
        frame(0, 0, 0, 0);
        while (fgets(line, sizeof line, stdin)) serve_one(line);
        return 0;
    }
    armgym_out = stdout;
    return armgym_run(argc, argv);
}
